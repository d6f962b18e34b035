//! Attention for the cpu backend. Keys are taken in blocks of [`BLOCK_BYTES`] and
//! every query head that reads a block works on it while it is in L1, so each cached
//! key and value row comes from memory once per step, not once per query head (3× less
//! traffic at SmolLM2's 9:3 GQA). A task folds [`PIECE`] keys at a time into a running
//! softmax (max, sum, weighted values; flash attention's online form), so its memory
//! does not grow with the context. A one-token step splits its keys into chunks of
//! [`CHUNK`] positions that run in parallel over all heads (each chunk a contiguous
//! stretch of the cache), each a softmax over its own keys (its max, its sum and its
//! unnormalised weighted values), merged at the end as flash-decoding does. Prompts
//! run a task per [`TILE`] query rows, so each key block serves all their heads (a
//! task per row and KV head where rows are few). A sliding-window layer's cache is a
//! ring, so a block of keys may take two runs of rows. The reference's per-head loop
//! (`weft_reference::ops::attention`) is the yardstick.

use rayon::prelude::*;
use weft_reference::ops::{with_buffer, AttnShape, KvRows};

/// Keys a decode chunk covers (more past [`MAX_CHUNKS`] chunks): enough that a task
/// outweighs its scheduling and the merge, few enough that a 1,500-key cache gives each
/// core several tasks.
pub const CHUNK: usize = 128;

/// Chunks a one-token step splits into at most (longer ones take longer chunks): a
/// bound on the partial sums' memory.
const MAX_CHUNKS: usize = 32;

/// Keys a task scores before folding them into its running softmax (online, as flash
/// attention does): the scores buffer stays heads × this, however long the context.
const PIECE: usize = 128;

/// Query rows a prefill task takes: every block of keys it reads serves all their
/// heads while it is in L1.
const TILE: usize = 4;

/// Bytes of one KV head's keys the heads work through together: the block stays in
/// L1 while every query head reading it does, and is long enough that the per-call
/// work outweighs the call (64 keys at SmolLM2's head width, 16 at Gemma 3's).
const BLOCK_BYTES: usize = 16 << 10;

/// Keys in a block of [`BLOCK_BYTES`] at head width `hd`: 16 to 64, a multiple of 8.
fn block_keys(hd: usize) -> usize {
    (BLOCK_BYTES / (4 * hd.max(1))).clamp(16, 64) / 8 * 8
}

thread_local! {
    /// A task's scores (heads × [`PIECE`] keys).
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The caller's partial results of a chunked step; a task's [max, sum] pairs
    /// otherwise.
    static PARTIALS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A prefill task's query heads and their sums.
    static TILE_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The row kernels attention spends its time in, a call per head and run of keys (a
/// backend's SIMD ones, or [`PORTABLE`]).
#[derive(Clone, Copy)]
pub struct RowOps {
    /// For each of the query heads in `q` (as many as `out` has rows, equal widths)
    /// and j < `out.n`: `out[h][j] = scale · q_h·row(first + j·stride)`. Every score is
    /// summed in one order, whatever heads and keys a call takes.
    pub scores:
        fn(q: &[f32], rows: KvRows, first: usize, stride: usize, scale: f32, out: ScoreRows),
    /// `x[i] = e^(x[i] − m)`, returning their sum.
    pub exp_sum: fn(x: &mut [f32], m: f32) -> f32,
    /// `acc += Σ_j w[j] · row(first + j·stride)` over `w.len()` rows of `acc.len()`.
    pub weighted_sum: fn(w: &[f32], rows: KvRows, first: usize, stride: usize, acc: &mut [f32]),
}

/// Where a call's scores go: head h's score of key j at `out[h·ld + j]`, j < `n`.
pub struct ScoreRows<'a> {
    pub out: &'a mut [f32],
    pub ld: usize,
    pub n: usize,
}

impl ScoreRows<'_> {
    /// Query heads: the rows `out` holds.
    pub fn heads(&self) -> usize {
        match self.out.len() {
            0 => 0,
            len => (len - self.n) / self.ld.max(1) + 1,
        }
    }
}

/// Plain loops over the cache rows' scalar dot and axpy (`KvRows`).
pub const PORTABLE: RowOps = RowOps {
    scores: |q, rows, first, stride, scale, out| {
        let heads = out.heads();
        if heads == 0 {
            return;
        }
        for (h, qh) in q.chunks_exact(q.len() / heads).enumerate() {
            for j in 0..out.n {
                out.out[h * out.ld + j] = rows.dot(qh, first + j * stride) * scale;
            }
        }
    },
    exp_sum: |x, m| {
        let mut l = 0.0;
        for v in x.iter_mut() {
            *v = (*v - m).exp();
            l += *v;
        }
        l
    },
    weighted_sum: |w, rows, first, stride, acc| {
        for (j, &wj) in w.iter().enumerate() {
            rows.axpy(acc, wj, first + j * stride);
        }
    },
};

/// Causal attention as `weft_reference::ops::attention` computes it, with `ops`'s row
/// kernels; a one-token step over more than `chunk` keys (the backend's [`CHUNK`], small
/// ones in tests) runs in chunks.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    ops: RowOps,
    q: &[f32],
    k: KvRows,
    v: KvRows,
    s: AttnShape,
    pos0: usize,
    out: &mut [f32],
    chunk: usize,
) {
    let (hd, nh, nkv) = (s.head_dim, s.n_heads, s.n_kv_heads);
    let g = nh / nkv;
    let keys = |t: usize| {
        let p = pos0 + t;
        s.window.map_or(0, |w| (p + 1).saturating_sub(w))..p + 1
    };
    let heads = Heads { ops, k, v, s };
    let seq = out.len() / (nh * hd);
    let span = keys(0);
    let chunk = chunk.max(1);
    if seq != 1 || span.len() <= chunk {
        // Each task's query rows share every key block they read: TILE rows a task
        // (all KV heads) when there are rows enough, else a task per row and KV head
        // (decode over a short context: the heads in parallel).
        let finish = |ml: &[f32], acc: &[f32], o: &mut [f32]| {
            for ((oh, ah), ml) in o
                .chunks_exact_mut(hd)
                .zip(acc.chunks_exact(hd))
                .zip(ml.chunks(2))
            {
                let inv = 1.0 / ml[1];
                oh.iter_mut().zip(ah).for_each(|(x, a)| *x = a * inv);
            }
        };
        if seq >= 2 * TILE {
            out.par_chunks_mut(TILE * nh * hd)
                .enumerate()
                .for_each(|(i, o)| {
                    let (t0, rows) = (i * TILE, o.len() / (nh * hd));
                    with_buffer(&TILE_BUF, |buf| {
                        buf.clear();
                        buf.resize(2 * rows * g * hd, 0.0);
                        let (qt, acc) = buf.split_at_mut(rows * g * hd);
                        for kvh in 0..nkv {
                            // The tile's query heads of this KV head, row after row.
                            for (r, qr) in qt.chunks_exact_mut(g * hd).enumerate() {
                                qr.copy_from_slice(
                                    &q[(t0 + r) * nh * hd + kvh * g * hd..][..g * hd],
                                );
                            }
                            with_buffer(&PARTIALS, |ml| {
                                ml.resize(2 * rows * g, 0.0);
                                with_buffer(&SCORES, |sc| {
                                    heads.run(qt, |_| kvh, |h| keys(t0 + h / g), sc, ml, acc)
                                });
                                for (r, ar) in acc.chunks_exact(g * hd).enumerate() {
                                    let or = &mut o[r * nh * hd + kvh * g * hd..][..g * hd];
                                    finish(&ml[2 * r * g..2 * (r + 1) * g], ar, or);
                                }
                            });
                        }
                    })
                });
            return;
        }
        // A task per query row and KV head: heads kvh·g.. of row t are adjacent in q
        // and out.
        out.par_chunks_mut(g * hd).enumerate().for_each(|(i, o)| {
            let (t, kvh) = (i / nkv, i % nkv);
            let qg = &q[t * nh * hd + kvh * g * hd..][..g * hd];
            // [max, sum] per head: the partials' buffer, which this path leaves free.
            with_buffer(&PARTIALS, |ml| {
                ml.resize(2 * g, 0.0);
                with_buffer(&SCORES, |sc| heads.run(qg, |_| kvh, |_| keys(t), sc, ml, o));
                for (oh, ml) in o.chunks_exact_mut(hd).zip(ml.chunks(2)) {
                    let inv = 1.0 / ml[1];
                    oh.iter_mut().for_each(|x| *x *= inv);
                }
            })
        });
        return;
    }
    // One query row: a task per chunk, writing [max, sum] per head then the heads'
    // unnormalised sums into a part of its own.
    let nc = span.len().div_ceil(chunk).min(MAX_CHUNKS);
    // Chunks of equal length but the last; none empty.
    let chunk = span.len().div_ceil(nc);
    let nc = span.len().div_ceil(chunk);
    let part = 2 * nh + nh * hd;
    with_buffer(&PARTIALS, |parts| {
        parts.clear();
        // Room for the most chunks, so decode steps do not allocate as the context grows.
        parts.reserve(MAX_CHUNKS * part);
        parts.resize(nc * part, 0.0);
        parts.par_chunks_mut(part).enumerate().for_each(|(c, p)| {
            let j0 = span.start + c * chunk;
            let (ml, acc) = p.split_at_mut(2 * nh);
            let keys = j0..(j0 + chunk).min(span.end);
            with_buffer(&SCORES, |sc| {
                heads.run(q, |h| h / g, |_| keys.clone(), sc, ml, acc)
            });
        });
        // Merge: each chunk's sums weighted by e^(its max − the overall max).
        with_buffer(&SCORES, |f| {
            for (h, oh) in out.chunks_exact_mut(hd).enumerate() {
                f.clear();
                f.extend(parts.chunks_exact(part).map(|p| p[2 * h]));
                let m = f.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                (ops.exp_sum)(f, m);
                let l: f32 = f
                    .iter()
                    .zip(parts.chunks_exact(part))
                    .map(|(f, p)| f * p[2 * h + 1])
                    .sum();
                oh.fill(0.0);
                (ops.weighted_sum)(f, KvRows::F32(parts), 2 * nh + h * hd, part, oh);
                let inv = 1.0 / l;
                oh.iter_mut().for_each(|x| *x *= inv);
            }
        });
    });
}

/// The cache and shape one call's tasks share.
struct Heads<'a> {
    ops: RowOps,
    k: KvRows<'a>,
    v: KvRows<'a>,
    s: AttnShape,
}

impl Heads<'_> {
    /// Query heads `qs` (rows of the head width), head h reading KV head `kv(h)` over
    /// keys `span(h)`: its max score and sum of e^(score − max) into `ml[2h]`,
    /// `ml[2h + 1]`, and Σ e^(score − max)·value into `acc[h·hd..]`.
    ///
    /// Keys go in pieces of [`PIECE`] at multiples of [`PIECE`], each head's scores
    /// computed over the union of the spans and folded over its own span only, and a
    /// key's score does not depend on its neighbours: so a head's result does not
    /// depend on which heads it ran with (a prompt's rows equal, bit for bit, what
    /// they give in other batches).
    fn run(
        &self,
        qs: &[f32],
        kv: impl Fn(usize) -> usize,
        span: impl Fn(usize) -> std::ops::Range<usize>,
        scores: &mut Vec<f32>,
        ml: &mut [f32],
        acc: &mut [f32],
    ) {
        let Heads { ops, k, v, s } = *self;
        let hd = s.head_dim;
        let kvw = s.n_kv_heads * hd;
        let nq = qs.len() / hd;
        let block = block_keys(hd);
        let lo = (0..nq).map(|h| span(h).start).min().unwrap_or(0);
        let keys = lo..(0..nq).map(|h| span(h).end).max().unwrap_or(0);
        scores.clear();
        // Room for a tile's heads, so a thread's first one-token step does not allocate.
        scores.reserve(TILE * s.n_heads * PIECE);
        scores.resize(nq * PIECE, 0.0);
        // Head h's part of cache row r starts at `at(r, h)`.
        let at = |r: usize, h: usize| r * kvw + kv(h) * hd;
        for h in 0..nq {
            ml[2 * h] = f32::NEG_INFINITY;
            ml[2 * h + 1] = 0.0;
        }
        acc.fill(0.0);
        let mut p0 = keys.start / PIECE * PIECE;
        while p0 < keys.end {
            let piece = p0.max(keys.start)..(p0 + PIECE).min(keys.end);
            for b0 in piece.clone().step_by(block) {
                let bn = block.min(piece.end - b0);
                for (o, r, len) in runs(b0, bn, s.cache_rows) {
                    // Heads of one KV head in one call: each key row serves them all.
                    let mut h0 = 0;
                    while h0 < nq {
                        let h1 = (h0 + 1..nq).find(|&h| kv(h) != kv(h0)).unwrap_or(nq);
                        let at0 = h0 * PIECE + b0 - p0 + o;
                        let out = ScoreRows {
                            out: &mut scores[at0..at0 + (h1 - h0 - 1) * PIECE + len],
                            ld: PIECE,
                            n: len,
                        };
                        (ops.scores)(&qs[h0 * hd..h1 * hd], k, at(r, h0), kvw, s.scale, out);
                        h0 = h1;
                    }
                }
            }
            // Heads sharing a KV head are adjacent, so its value rows stay in L1 while
            // they add them up.
            for (h, a) in acc.chunks_exact_mut(hd).take(nq).enumerate() {
                let own = span(h);
                let (lo, hi) = (own.start.max(piece.start), own.end.min(piece.end));
                if lo >= hi {
                    continue;
                }
                let row = &mut scores[h * PIECE + lo - p0..h * PIECE + hi - p0];
                if let Some(c) = s.softcap {
                    row.iter_mut().for_each(|d| *d = c * (*d / c).tanh());
                }
                // The running softmax: a higher max rescales what came before.
                let old = ml[2 * h];
                let m = row.iter().cloned().fold(old, f32::max);
                if m > old {
                    let f = (old - m).exp();
                    ml[2 * h + 1] *= f;
                    a.iter_mut().for_each(|x| *x *= f);
                }
                ml[2 * h] = m;
                ml[2 * h + 1] += (ops.exp_sum)(row, m);
                for b0 in (lo..hi).step_by(block) {
                    for (o, r, len) in runs(b0, block.min(hi - b0), s.cache_rows) {
                        (ops.weighted_sum)(&row[b0 - lo + o..][..len], v, at(r, h), kvw, a);
                    }
                }
            }
            p0 += PIECE;
        }
    }
}

/// The runs of consecutive cache rows that keys `j0..j0 + n` occupy in a cache of
/// `rows` rows (position j at row j mod `rows`), as (offset from `j0`, first row,
/// length): one run, or more where a sliding-window layer's ring wraps.
fn runs(j0: usize, n: usize, rows: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let mut o = 0;
    std::iter::from_fn(move || {
        (o < n).then(|| {
            let r = (j0 + o) % rows;
            let len = (n - o).min(rows - r);
            o += len;
            (o - len, r, len)
        })
    })
}
