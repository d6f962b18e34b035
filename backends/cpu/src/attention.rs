//! Attention for the cpu backend. Keys are taken in blocks of [`BLOCK`] positions and
//! every query head that reads a block works on it while it is in L1, so each cached
//! key and value row comes from memory once per step, not once per query head (3× less
//! traffic at SmolLM2's 9:3 GQA). A task folds [`PIECE`] keys at a time into a running
//! softmax (max, sum, weighted values; flash attention's online form), so its memory
//! does not grow with the context. A one-token step splits its keys into chunks of
//! [`CHUNK`] positions that run in parallel over all heads (each chunk a contiguous
//! stretch of the cache), each a softmax over its own keys (its max, its sum and its
//! unnormalised weighted values), merged at the end as flash-decoding does. Longer
//! steps run a task per query row and KV head. A sliding-window layer's cache is a
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

/// Key positions the heads work through together: a block of SmolLM2's K rows
/// (16 × 768 bytes) stays in L1 while its nine heads read it.
const BLOCK: usize = 16;

thread_local! {
    /// A task's scores (heads × [`PIECE`] keys).
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The caller's partial results of a chunked step; a task's [max, sum] pairs
    /// otherwise.
    static PARTIALS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The row kernels attention spends its time in, a call per head and run of keys (a
/// backend's SIMD ones, or [`PORTABLE`]).
#[derive(Clone, Copy)]
pub struct RowOps {
    /// `out[j] = scale · q·row(first + j·stride)` over `out.len()` rows of `q.len()`.
    pub scores:
        fn(q: &[f32], rows: KvRows, first: usize, stride: usize, scale: f32, out: &mut [f32]),
    /// `x[i] = e^(x[i] − m)`, returning their sum.
    pub exp_sum: fn(x: &mut [f32], m: f32) -> f32,
    /// `acc += Σ_j w[j] · row(first + j·stride)` over `w.len()` rows of `acc.len()`.
    pub weighted_sum: fn(w: &[f32], rows: KvRows, first: usize, stride: usize, acc: &mut [f32]),
}

/// Plain loops over the cache rows' scalar dot and axpy (`KvRows`).
pub const PORTABLE: RowOps = RowOps {
    scores: |q, rows, first, stride, scale, out| {
        for (j, o) in out.iter_mut().enumerate() {
            *o = rows.dot(q, first + j * stride) * scale;
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
        // A task per query row and KV head: heads kvh·g.. of row t are adjacent in q
        // and out.
        out.par_chunks_mut(g * hd).enumerate().for_each(|(i, o)| {
            let (t, kvh) = (i / nkv, i % nkv);
            let qg = &q[t * nh * hd + kvh * g * hd..][..g * hd];
            // [max, sum] per head: the partials' buffer, which this path leaves free.
            with_buffer(&PARTIALS, |ml| {
                ml.resize(2 * g, 0.0);
                with_buffer(&SCORES, |sc| {
                    heads.run(qg, kvh..kvh + 1, keys(t), sc, ml, o)
                });
                for (h, oh) in o.chunks_exact_mut(hd).enumerate() {
                    let inv = 1.0 / ml[2 * h + 1];
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
            with_buffer(&SCORES, |sc| heads.run(q, 0..nkv, keys, sc, ml, acc));
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
    /// The query heads of KV heads `kvhs` (their rows in `qs`) over `keys`: head h's
    /// max score and sum of e^(score − max) into `ml[2h]`, `ml[2h + 1]`, and
    /// Σ e^(score − max)·value into `acc[h·hd..]`, h counted from the range's first.
    fn run(
        &self,
        qs: &[f32],
        kvhs: std::ops::Range<usize>,
        keys: std::ops::Range<usize>,
        scores: &mut Vec<f32>,
        ml: &mut [f32],
        acc: &mut [f32],
    ) {
        let Heads { ops, k, v, s } = *self;
        let hd = s.head_dim;
        let g = s.n_heads / s.n_kv_heads;
        let kvw = s.n_kv_heads * hd;
        let (n, nq) = (keys.len(), kvhs.len() * g);
        scores.clear();
        // Room for every head, so a thread's first one-token step does not allocate.
        scores.reserve(s.n_heads * PIECE);
        scores.resize(nq * PIECE, 0.0);
        // Query head h (from the range's first) reads KV head kvhs.start + h / g; its
        // part of cache row r starts at `at(r, h)`.
        let at = |r: usize, h: usize| r * kvw + (kvhs.start + h / g) * hd;
        for h in 0..nq {
            ml[2 * h] = f32::NEG_INFINITY;
            ml[2 * h + 1] = 0.0;
        }
        acc.fill(0.0);
        for p0 in (0..n).step_by(PIECE) {
            let blocks = || {
                (p0..(p0 + PIECE).min(n))
                    .step_by(BLOCK)
                    .map(|b0| (b0, BLOCK.min(n - b0)))
            };
            for (b0, bn) in blocks() {
                for (o, r, len) in runs(keys.start + b0, bn, s.cache_rows) {
                    for (h, qh) in qs.chunks_exact(hd).take(nq).enumerate() {
                        let out = &mut scores[h * PIECE + b0 - p0 + o..][..len];
                        (ops.scores)(qh, k, at(r, h), kvw, s.scale, out);
                    }
                }
            }
            // Heads sharing a KV head are adjacent, so its value rows stay in L1 while
            // they add them up.
            let pn = PIECE.min(n - p0);
            for (h, a) in acc.chunks_exact_mut(hd).take(nq).enumerate() {
                let row = &mut scores[h * PIECE..][..pn];
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
                for (b0, bn) in blocks() {
                    for (o, r, len) in runs(keys.start + b0, bn, s.cache_rows) {
                        (ops.weighted_sum)(&row[b0 - p0 + o..][..len], v, at(r, h), kvw, a);
                    }
                }
            }
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
