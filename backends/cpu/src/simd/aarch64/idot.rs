//! 8-bit activations × the 32-element types' blocks: integer dots on base NEON.
//!
//! A block's 32 weight bytes (as signed values, the offset already taken off) meet the
//! activation block's 32 in widening multiplies (`smull`, exact in i16: |q| ≤ 16 and
//! |x| ≤ 127) whose pairs add into i32 lanes. The minimum of Q4_1 / Q5_1 meets the
//! activation block's sum instead of each value: `Σ (d·q + m)·x = d·Σq·x + m·Σx`.
//! (The dot-product extension's `sdot` would do the multiply-add in one instruction;
//! its intrinsics are not stable in Rust yet.) Every output adds its blocks in block
//! order whatever the tile, so a row's result does not depend on its batch.

// Index loops over the const tile sizes: LLVM unrolls them completely.
#![allow(clippy::needless_range_loop)]

use super::{f16_at, legacy_values};
use crate::simd::{tiles8, Acts, ChunkFn, Needs, OutPtr};
use std::arch::aarch64::*;
use weft_ir::DType;

/// A 32-element type as signed values per block.
trait Block {
    const BYTES: usize;
    /// The block's values (less any offset) as two vectors, its scale, and its
    /// minimum (0 for the types without one).
    unsafe fn decode(b: *const u8) -> (int8x16_t, int8x16_t, f32, f32);
}

pub(super) fn kernel(dtype: DType) -> Option<(ChunkFn, Needs)> {
    let f = match dtype {
        DType::Q8_0 => chunk::<Q8_0> as ChunkFn,
        DType::Q4_0 => chunk::<Q4_0>,
        DType::Q4_1 => chunk::<Q4_1>,
        DType::Q5_0 => chunk::<Q5_0>,
        DType::Q5_1 => chunk::<Q5_1>,
        _ => return None,
    };
    Some((f, Needs::Q8))
}

/// One task: every activation row against `out.cols()` weight rows of `rb` bytes, in
/// the tiles of [`tiles8`].
///
/// # Safety
/// NEON must be present (it is on every aarch64 Linux target) and `x` must hold the
/// rows quantised per 32.
#[target_feature(enable = "neon")]
unsafe fn chunk<T: Block>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    let (m, k, n) = (x.m, x.k, out.cols());
    let q = x.q8.expect("idot: activations quantised per 32");
    let nb = k / 32;
    assert!(q.m == m && q.k == k && k % 32 == 0 && out.rows() == m);
    assert!(q.q.len() == m * k && q.d.len() == m * nb && q.s.len() == m * nb);
    assert!(
        w.len() == n * rb && nb * T::BYTES <= rb,
        "idot: weight rows"
    );
    for (i, r, j, c) in tiles8(m, n) {
        let t = Tile {
            w: &w[j * rb..(j + c) * rb],
            rb,
            q: &q.q[i * k..(i + r) * k],
            d: &q.d[i * nb..(i + r) * nb],
            s: &q.s[i * nb..(i + r) * nb],
            nb,
            out,
            i,
            j,
        };
        // SAFETY: the tile's slices hold c weight rows and r activation rows (sliced
        // above, so in bounds).
        unsafe { run_tile!(t, T, (r, c)) }
    }
}

/// R activation rows × C weight rows.
struct Tile<'a> {
    w: &'a [u8],
    rb: usize,
    q: &'a [i8],
    d: &'a [f32],
    s: &'a [f32],
    nb: usize,
    out: OutPtr<'a>,
    i: usize,
    j: usize,
}

impl Tile<'_> {
    /// Needs `w.len() == C·rb` and R rows of activations.
    #[inline(always)]
    unsafe fn run<T: Block, const R: usize, const C: usize>(&self) {
        let nb = self.nb;
        debug_assert!(self.w.len() == C * self.rb && self.d.len() == R * nb);
        let mut acc = [[0f32; R]; C];
        let (w, q) = (self.w.as_ptr(), self.q.as_ptr());
        for b in 0..nb {
            for c in 0..C {
                let (lo, hi, dw, mw) = T::decode(w.add(c * self.rb + b * T::BYTES));
                for r in 0..R {
                    let xq = q.add((r * nb + b) * 32);
                    let (xl, xh) = (vld1q_s8(xq), vld1q_s8(xq.add(16)));
                    let mut p = vpaddlq_s16(vmull_s8(vget_low_s8(lo), vget_low_s8(xl)));
                    p = vpadalq_s16(p, vmull_high_s8(lo, xl));
                    p = vpadalq_s16(p, vmull_s8(vget_low_s8(hi), vget_low_s8(xh)));
                    p = vpadalq_s16(p, vmull_high_s8(hi, xh));
                    let sumi = vaddvq_s32(p) as f32;
                    let (dx, sx) = (self.d[r * nb + b], self.s[r * nb + b]);
                    acc[c][r] += dw * dx * sumi + mw * sx;
                }
            }
        }
        for c in 0..C {
            for r in 0..R {
                self.out.set(self.i + r, self.j + c, acc[c][r]);
            }
        }
    }
}

#[allow(non_camel_case_types)]
struct Q8_0;
impl Block for Q8_0 {
    const BYTES: usize = 34;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
        let q = b.add(2) as *const i8;
        (vld1q_s8(q), vld1q_s8(q.add(16)), f16_at(b), 0.0)
    }
}

/// The 32-element types with 4- or 5-bit values: (fifth bit at, nibbles at, offset
/// or minimum).
macro_rules! legacy {
    ($name:ident, $bytes:expr, $qh:expr, $qs:expr, $offset:expr) => {
        #[allow(non_camel_case_types)]
        struct $name;
        impl Block for $name {
            const BYTES: usize = $bytes;
            #[inline(always)]
            unsafe fn decode(b: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
                let (lo, hi) = legacy_values(b, $qs, $qh);
                let (lo, hi) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
                match $offset {
                    Some(o) => {
                        let o = vdupq_n_s8(o);
                        (vsubq_s8(lo, o), vsubq_s8(hi, o), f16_at(b), 0.0)
                    }
                    None => (lo, hi, f16_at(b), f16_at(b.add(2))),
                }
            }
        }
    };
}

legacy!(Q4_0, 18, None::<usize>, 2, Some(8));
legacy!(Q4_1, 20, None::<usize>, 4, None::<i8>);
legacy!(Q5_0, 22, Some(2), 6, Some(16));
legacy!(Q5_1, 24, Some(4), 8, None::<i8>);
