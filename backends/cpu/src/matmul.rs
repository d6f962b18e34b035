//! Matrix products against stored weights, and the embedding lookup.

use rayon::prelude::*;
use weft_backend::MatKernel;
use weft_ir::WeightView;
use weft_quant::{dot_f32, kernel_for, QuantKernel};

/// Elements of weight (times rows of x) one rayon task should cover at least,
/// so that small products do not drown in scheduling.
const MIN_TASK_WORK: usize = 1 << 15;

/// Rows of `w` per rayon task.
fn rows_per_task(n: usize, k: usize, m: usize) -> usize {
    let by_work = MIN_TASK_WORK / (k * m).max(1);
    let by_split = n.div_ceil(4 * rayon::current_num_threads());
    by_split.max(by_work.min(n)).max(1)
}

/// out[m×n] = x[m×k] · wᵀ, w = [n, k] in its stored type, with the kernel that suits
/// m: dot straight from the blocks for one row, decode-once-reuse for several.
pub fn matmul(x: &[f32], m: usize, w: &WeightView, out: &mut [f32]) {
    let kernel = if m == 1 {
        MatKernel::Dot
    } else {
        MatKernel::DecodeReuse
    };
    matmul_cat(x, m, &[w], kernel, out);
}

/// out[m×Σn] = x[m×k] · [w₁; w₂; …]ᵀ: several weights over one input in one parallel
/// pass, outputs side by side (fused q/k/v or gate/up projections).
///
/// `Dot`: each output is a dot product read straight from the blocks. `DecodeReuse`:
/// each weight row is decoded once into a per-task scratch of k floats (one row, never
/// the matrix) and dotted with all m rows of x.
pub fn matmul_cat(x: &[f32], m: usize, ws: &[&WeightView], kernel: MatKernel, out: &mut [f32]) {
    let k = ws.first().map_or(0, |w| w.cols());
    let n: usize = ws.iter().map(|w| w.rows()).sum();
    assert_eq!(x.len(), m * k, "matmul: x is not [{m}, {k}]");
    assert_eq!(out.len(), m * n, "matmul: out is not [{m}, {n}]");
    if m == 0 || n == 0 {
        return;
    }
    // Global row j of the stacked weights → (kernel, stored bytes).
    let parts: Vec<(usize, usize, &dyn QuantKernel, &[u8])> = ws
        .iter()
        .scan(0, |start, w| {
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
            let p = (*start, rb, kernel_for(w.dtype), w.bytes());
            *start += w.rows();
            Some(p)
        })
        .collect();
    let row = |j: usize| {
        let p = parts.iter().rev().find(|p| p.0 <= j).expect("row in range");
        let r = j - p.0;
        (p.2, &p.3[r * p.1..(r + 1) * p.1])
    };
    let per_task = rows_per_task(n, k, m);

    if m == 1 {
        out.par_chunks_mut(per_task)
            .enumerate()
            .for_each(|(c, oc)| {
                for (jj, o) in oc.iter_mut().enumerate() {
                    let (kern, r) = row(c * per_task + jj);
                    *o = kern.dot(r, x);
                }
            });
        return;
    }

    // Work in outᵀ = [n, m] so each task owns a contiguous slice (safe, no
    // shared writes), then transpose back.
    let mut t = vec![0f32; n * m];
    t.par_chunks_mut(per_task * m).enumerate().for_each_init(
        || vec![0f32; k],
        |wrow, (c, tc)| {
            for (jj, tj) in tc.chunks_exact_mut(m).enumerate() {
                let (kern, r) = row(c * per_task + jj);
                match kernel {
                    MatKernel::DecodeReuse => {
                        kern.decode_row(r, wrow);
                        for (o, xi) in tj.iter_mut().zip(x.chunks_exact(k.max(1))) {
                            *o = dot_f32(xi, wrow);
                        }
                    }
                    MatKernel::Dot => {
                        for (o, xi) in tj.iter_mut().zip(x.chunks_exact(k.max(1))) {
                            *o = kern.dot(r, xi);
                        }
                    }
                }
            }
        },
    );
    out.par_chunks_mut(n)
        .enumerate()
        .with_min_len((MIN_TASK_WORK / n).max(1))
        .for_each(|(i, oi)| {
            for (j, o) in oi.iter_mut().enumerate() {
                *o = t[j * m + i];
            }
        });
}

/// Embedding lookup: out[i] = row ids[i] of w decoded (only the rows asked for). The
/// caller has checked every id against the table's rows.
pub fn gather_rows(w: &WeightView, ids: &[u32], out: &mut [f32]) {
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
    out.par_chunks_mut(k)
        .zip(ids.par_iter())
        .with_min_len((MIN_TASK_WORK / k).max(1))
        .for_each(|(o, &id)| kern.decode_row(w.row(id as usize), o));
}
