//! Matrix products against stored weights, and the embedding lookup.
//!
//! The driver: output columns (weight rows) are cut into tasks, per weight when a
//! matmul stacks several (fused q/k/v, gate/up; each keeps its own stored type), and
//! rayon runs them. Each task runs its type's SIMD kernel over every activation row
//! (see [`crate::simd`]) or, without one, the portable path. In `Int8` mode the
//! activations are quantised once per matmul, in the forms the kernels need.

use crate::q8::{Q8KRows, Q8Rows};
use crate::repack::{self, Packed};
use crate::simd::{self, Acts, ChunkFn, Isa, Needs, OutPtr};
use rayon::prelude::*;
use weft_backend::{Activations, MatKernel};
use weft_ir::WeightView;
use weft_quant::{dot_f32, kernel_for, QuantKernel};

/// Elements of weight (times rows of x) one rayon task should cover at least,
/// so that small products do not drown in scheduling.
const MIN_TASK_WORK: usize = 1 << 15;

/// Weight bytes one prefill task should keep at most, so they stay in L2 while
/// every activation row streams past.
const MAX_TASK_BYTES: usize = 192 << 10;

/// How the matmuls run: the instruction set (detected, or forced by tests) and the
/// activation mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub isa: Isa,
    pub activations: Activations,
}

impl Default for Config {
    /// The detected instruction set, f32 activations.
    fn default() -> Self {
        Config {
            isa: Isa::detect(),
            activations: Activations::F32,
        }
    }
}

/// Rows of a weight of `n` rows per rayon task: about four tasks per thread (so a
/// busy core's share can be stolen), at least `MIN_TASK_WORK`, a multiple of 8 (the
/// decode tile takes eight rows), and for prefill at most `MAX_TASK_BYTES` of weights.
fn rows_per_task(n: usize, k: usize, m: usize, row_bytes: usize) -> usize {
    let by_work = MIN_TASK_WORK / (k * m).max(1);
    let by_split = n.div_ceil(4 * rayon::current_num_threads());
    let mut rows = by_split.max(by_work.min(n)).max(1);
    if m > 1 {
        rows = rows.min((MAX_TASK_BYTES / row_bytes.max(1)).max(4));
    }
    rows.next_multiple_of(8)
}

/// out[m×n] = x[m×k] · wᵀ, w = [n, k] in its stored type, f32 activations, on the
/// detected instruction set.
pub fn matmul(x: &[f32], m: usize, w: &WeightView, out: &mut [f32]) {
    matmul_cat(x, m, &[w], MatKernel::Dot, out);
}

/// [`matmul_with`] with the default [`Config`].
pub fn matmul_cat(x: &[f32], m: usize, ws: &[&WeightView], kernel: MatKernel, out: &mut [f32]) {
    matmul_with(
        &Config::default(),
        &Packed::default(),
        x,
        m,
        ws,
        kernel,
        out,
    )
}

/// How one weight's rows are read.
enum Path {
    Simd(ChunkFn, Needs),
    /// The neutral quant crate: `kernel` picks dot-from-blocks or decode-once-reuse.
    Portable(&'static dyn QuantKernel),
}

/// out[m×Σn] = x[m×k] · [w₁; w₂; …]ᵀ: several weights over one input in one parallel
/// pass, outputs side by side (fused q/k/v or gate/up projections).
///
/// Weights found in `packed` are read in their packed layout.
///
/// `kernel` matters only on the portable path (`Dot`: each output straight from the
/// blocks; `DecodeReuse`: each weight row decoded once into a per-task scratch of k
/// floats and dotted with every activation row); the SIMD kernels tile both cases.
pub fn matmul_with(
    cfg: &Config,
    packed: &Packed,
    x: &[f32],
    m: usize,
    ws: &[&WeightView],
    kernel: MatKernel,
    out: &mut [f32],
) {
    let k = ws.first().map_or(0, |w| w.cols());
    let n: usize = ws.iter().map(|w| w.rows()).sum();
    assert_eq!(x.len(), m * k, "matmul: x is not [{m}, {k}]");
    assert_eq!(out.len(), m * n, "matmul: out is not [{m}, {n}]");
    if m == 0 || n == 0 {
        return;
    }
    // Each weight's row bytes and path, checked; nothing here allocates (this runs
    // for every matmul of every decode step).
    for w in ws {
        assert_eq!(
            w.cols(),
            k,
            "matmul {}: rows of {} values, x has {k}",
            w.name,
            w.cols()
        );
        let rb = w.dtype.row_bytes(k).expect("weight rows are whole blocks");
        assert_eq!(
            w.bytes().len(),
            w.rows() * rb,
            "matmul {}: byte length",
            w.name
        );
    }
    let source = |w| source(cfg, packed, w);
    let row_bytes = |w: &WeightView| w.bytes().len() / w.rows().max(1);
    let per_task = |w: &WeightView| rows_per_task(w.rows(), k, m, row_bytes(w));
    // What the kernels read of x, found once (each lookup hashes the weight's address).
    let needs = |want: Needs| {
        ws.iter()
            .any(|&w| matches!(source(w).2, Path::Simd(_, got) if got == want))
    };
    let (q8, q8k) = (needs(Needs::Q8), needs(Needs::Q8K));
    QUANTISED.with(|q| {
        // A nested call (a pool thread that took another session's step while this
        // one waits) quantises into buffers of its own.
        let mut fresh = Quantised::default();
        let mut held = q.try_borrow_mut();
        let q = held.as_deref_mut().unwrap_or(&mut fresh);
        if q8 {
            simd::quantize_q8(cfg.isa, x, m, k, &mut q.q8);
        }
        if q8k {
            simd::quantize_q8k(cfg.isa, x, m, k, &mut q.q8k);
        }
        let acts = Acts {
            m,
            k,
            x,
            q8: q8.then_some(&q.q8),
            q8k: q8k.then_some(&q.q8k),
        };
        // Tasks, numbered across the weights: each a run of one weight's rows, owning
        // their output columns.
        let n_tasks: usize = ws.iter().map(|&w| w.rows().div_ceil(per_task(w))).sum();
        let whole = OutPtr::new(out, m, n);
        (0..n_tasks)
            .into_par_iter()
            .with_max_len(1)
            .for_each_init(Vec::new, |scratch, mut t| {
                let mut col0 = 0;
                for &w in ws {
                    let per = per_task(w);
                    let here = w.rows().div_ceil(per);
                    if t >= here {
                        t -= here;
                        col0 += w.rows();
                        continue;
                    }
                    let (r0, rb) = (t * per, row_bytes(w));
                    let rows = per.min(w.rows() - r0);
                    let (all, group, path) = source(w);
                    // Row r's offset: whole groups, then stored rows (only the last
                    // task ends off a multiple of 8).
                    let at = |r: usize| r / 8 * group + r % 8 * rb;
                    let bytes = &all[at(r0)..at(r0 + rows)];
                    // SAFETY: tasks cover disjoint column ranges (weights side by
                    // side, their rows cut without overlap).
                    let tile = unsafe { whole.columns(col0 + r0, rows) };
                    match path {
                        // SAFETY: the kernel came from `simd::kernel` for the detected
                        // (or a weaker, forced) instruction set, and `acts` holds the
                        // quantised forms it needs (made above from `needs`).
                        Path::Simd(f, _) => unsafe { f(bytes, rb, &acts, tile) },
                        Path::Portable(kern) => {
                            portable(kern, bytes, rb, x, m, k, kernel, scratch, tile)
                        }
                    }
                    return;
                }
            });
    })
}

/// A weight's bytes, the bytes of an 8-row group, and how they are read: packed
/// where the lowering packed it.
fn source<'a>(cfg: &Config, packed: &'a Packed, w: &'a WeightView) -> (&'a [u8], usize, Path) {
    let rb = w.bytes().len() / w.rows().max(1);
    let packed = packed.get(w).and_then(|p| {
        let (f, needs) = simd::packed_kernel(cfg.isa, cfg.activations, w.dtype)?;
        Some((p, repack::group_bytes(w.dtype, rb)?, Path::Simd(f, needs)))
    });
    let group = 8 * rb;
    packed.unwrap_or_else(|| match simd::kernel(cfg.isa, cfg.activations, w.dtype) {
        Some((f, needs)) if w.cols() > 0 => (w.bytes(), group, Path::Simd(f, needs)),
        _ => (w.bytes(), group, Path::Portable(kernel_for(w.dtype))),
    })
}

/// Activations quantised for the integer kernels, kept per thread between matmuls.
#[derive(Default)]
struct Quantised {
    q8: Q8Rows,
    q8k: Q8KRows,
}

thread_local! {
    static QUANTISED: std::cell::RefCell<Quantised> = std::cell::RefCell::default();
}

/// The portable path of one task: the quant crate's block dots, or each row decoded
/// once and dotted with every activation row.
#[allow(clippy::too_many_arguments)]
fn portable(
    kern: &dyn QuantKernel,
    w: &[u8],
    rb: usize,
    x: &[f32],
    m: usize,
    k: usize,
    kernel: MatKernel,
    scratch: &mut Vec<f32>,
    out: OutPtr<'_>,
) {
    for (j, r) in w.chunks_exact(rb.max(1)).enumerate() {
        if m > 1 && kernel == MatKernel::DecodeReuse {
            scratch.resize(k, 0.0);
            kern.decode_row(r, scratch);
            for (i, xi) in x.chunks_exact(k.max(1)).enumerate() {
                out.set(i, j, dot_f32(xi, scratch));
            }
        } else {
            for (i, xi) in x.chunks_exact(k.max(1)).enumerate() {
                out.set(i, j, kern.dot(r, xi));
            }
        }
    }
}

/// Embedding lookup: out[i] = row ids[i] of w decoded (only the rows asked for). The
/// caller has checked every id against the table's rows. A table the lowering packed
/// (also the output head) is read from its packed copy, so its file pages stay
/// released: random rows fault their neighbours back in, a whole table's worth over a
/// long prompt.
pub fn gather_rows(packed: &Packed, w: &WeightView, ids: &[u32], out: &mut [f32]) {
    let k = w.cols();
    assert_eq!(
        out.len(),
        ids.len() * k,
        "gather {}: out is not [{}, {k}]",
        w.name,
        ids.len()
    );
    if k == 0 {
        return;
    }
    let kern = kernel_for(w.dtype);
    let (rows, rb) = (w.rows(), w.row_bytes());
    let packed = packed.get(w).filter(|_| repack::packs(w.dtype));
    out.par_chunks_mut(k)
        .zip(ids.par_iter())
        .with_min_len((MIN_TASK_WORK / k).max(1))
        .for_each(|(o, &id)| match packed {
            // Block by block through the stack: a decode step allocates nothing.
            Some(p) => {
                let (bs, bb) = (w.dtype.block_size(), w.dtype.block_bytes());
                let mut block = [0u8; repack::MAX_BLOCK];
                for (b, ob) in o.chunks_exact_mut(bs).enumerate() {
                    repack::stored_block(w.dtype, p, rows, rb, id as usize, b, &mut block[..bb]);
                    kern.decode_row(&block[..bb], ob);
                }
            }
            None => kern.decode_row(w.row(id as usize), o),
        });
}
