//! SIMD matmul kernels, picked once at lowering by runtime feature detection.
//!
//! A kernel computes one task's share of a matmul: every activation row against a
//! run of consecutive weight rows of one stored type, written into its columns of the
//! output. It tiles the work itself (several activation rows per decoded weight block
//! for prefill, two weight rows side by side for decode). The driver in
//! [`crate::matmul`] splits rows over rayon and quantises activations when a kernel
//! reads 8-bit blocks.
//!
//! x86_64: AVX2 + FMA + F16C (`x86`), and AVX-512 VNNI's `vpdpbusd` on 256-bit
//! vectors for the 32-element types' integer dots where present. aarch64: NEON
//! (`aarch64`): f32 activations, and int8 dots for the 32-element types. Elsewhere the
//! portable path runs.

use crate::attention::{RowOps, PORTABLE};
use crate::q8::{self, Q8KRows, Q8Rows};
use rayon::prelude::*;
use std::marker::PhantomData;
use weft_backend::Activations;
use weft_ir::DType;
#[cfg(target_arch = "x86_64")]
use weft_reference::ops::KvRows;

/// `$t.run::<$T, R, C>()` for the shape (r, c) of a [`tiles8`] tile, R and C as
/// constants (every kernel's tile loops unroll to registers).
#[allow(unused_macros)] // on targets without SIMD kernels
macro_rules! run_tile {
    ($t:expr, $T:ty, $shape:expr) => {
        match $shape {
            (8, _) => $t.run::<$T, 8, 1>(),
            (4, 2) => $t.run::<$T, 4, 2>(),
            (4, _) => $t.run::<$T, 4, 1>(),
            (2, 4) => $t.run::<$T, 2, 4>(),
            (2, _) => $t.run::<$T, 2, 1>(),
            (_, 8) => $t.run::<$T, 1, 8>(),
            _ => $t.run::<$T, 1, 1>(),
        }
    };
}

/// The f32-activation kernel for `$dtype`: `$chunk::<T>` over the `Decode` types of
/// an fdot file (`x86/fdot.rs` and `aarch64/fdot.rs` name them alike), `None` for
/// the rest.
#[allow(unused_macros)] // on targets without SIMD kernels
macro_rules! fdot_kernel {
    ($dtype:expr, $chunk:ident) => {
        Some(match $dtype {
            DType::F32 => $chunk::<F32> as ChunkFn,
            DType::F16 => $chunk::<F16>,
            DType::BF16 => $chunk::<Bf16>,
            DType::Q8_0 => $chunk::<Q8_0>,
            DType::Q4_0 => $chunk::<Q4_0>,
            DType::Q4_1 => $chunk::<Q4_1>,
            DType::Q5_0 => $chunk::<Q5_0>,
            DType::Q5_1 => $chunk::<Q5_1>,
            DType::Q4_K => $chunk::<Q4_K>,
            DType::Q5_K => $chunk::<Q5_K>,
            DType::Q6_K => $chunk::<Q6_K>,
            _ => return None,
        })
    };
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "aarch64")]
mod aarch64;

/// The instruction set the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The neutral quant crate's block dots (LLVM-vectorised plain loops).
    Portable,
    /// x86_64 with AVX2, FMA and F16C.
    Avx2,
    /// [`Isa::Avx2`] and AVX-512 VNNI on 256-bit vectors (`vpdpbusd`: a block's
    /// byte products summed into i32 lanes in one instruction, for the 32-element
    /// types' integer dots).
    Avx2Vnni,
    /// aarch64 with NEON.
    Neon,
}

impl Isa {
    /// The best instruction set this machine has.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            return Isa::Neon;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                return match is_x86_feature_detected!("avx512vnni")
                    && is_x86_feature_detected!("avx512vl")
                {
                    true => Isa::Avx2Vnni,
                    false => Isa::Avx2,
                };
            }
        }
        Isa::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2+fma+f16c",
            Isa::Avx2Vnni => "avx2+fma+f16c+avx512vnni",
            Isa::Neon => "neon",
        }
    }
}

/// What a kernel reads of the activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// The f32 rows.
    F32,
    /// Rows quantised per 32 elements ([`Q8Rows`]).
    Q8,
    /// Rows quantised per 256 elements with sums per 16 ([`Q8KRows`]).
    Q8K,
}

/// The activations of one matmul, in the forms its kernels need.
pub struct Acts<'a> {
    pub m: usize,
    pub k: usize,
    /// `m × k` f32.
    pub x: &'a [f32],
    pub q8: Option<&'a Q8Rows>,
    pub q8k: Option<&'a Q8KRows>,
}

/// Where a kernel writes: element `(i, j)` of a task is `out[i * ld + j]`, for
/// `i < rows` and `j < cols`. Tasks own disjoint columns of one output matrix, so
/// they write through a raw pointer rather than a shared `&mut`.
#[derive(Clone, Copy)]
pub struct OutPtr<'a> {
    ptr: *mut f32,
    ld: usize,
    rows: usize,
    cols: usize,
    _out: PhantomData<&'a mut [f32]>,
}

// SAFETY: column views are only made by `OutPtr::columns`, whose caller promises that
// no two views in use at the same time cover the same elements.
unsafe impl Send for OutPtr<'_> {}
unsafe impl Sync for OutPtr<'_> {}

impl<'a> OutPtr<'a> {
    /// The row-major `rows × ld` matrix `out` (borrowed for as long as views live).
    pub fn new(out: &'a mut [f32], rows: usize, ld: usize) -> Self {
        assert!(out.len() >= rows * ld, "output smaller than {rows} × {ld}");
        OutPtr {
            ptr: out.as_mut_ptr(),
            ld,
            rows,
            cols: ld,
            _out: PhantomData,
        }
    }

    /// Columns `j0..j0 + cols` of this view.
    ///
    /// # Safety
    /// Views in use at the same time (on any thread) must not share columns.
    pub unsafe fn columns(&self, j0: usize, cols: usize) -> Self {
        assert!(j0 + cols <= self.cols, "columns out of range");
        OutPtr {
            // SAFETY: j0 <= self.cols <= ld, within the first row of the matrix.
            ptr: unsafe { self.ptr.add(j0) },
            cols,
            ..*self
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Writes element `(i, j)`.
    #[inline(always)]
    pub fn set(&self, i: usize, j: usize, v: f32) {
        assert!(i < self.rows && j < self.cols);
        // SAFETY: in range (checked: i·ld + j < rows·ld <= len); exclusive by the
        // contract of `columns`.
        unsafe { *self.ptr.add(i * self.ld + j) = v }
    }
}

/// A weight type decoded in registers, 32 values at a time, for the f32-activation
/// kernels (`x86/fdot.rs`, `aarch64/fdot.rs`; `Part` is their vectors of 32 floats).
#[allow(dead_code)] // on targets without SIMD kernels
pub(crate) trait Decode {
    /// Elements and bytes per block.
    const BLOCK: usize;
    const BYTES: usize;
    /// 32-value parts per block.
    const PARTS: usize = Self::BLOCK / 32;
    /// The block's scales, decoded once per tile.
    type H: Copy;
    /// 32 values in vectors.
    type Part;
    unsafe fn header(b: *const u8) -> Self::H;
    /// Values `32·part..32·part + 32` of the block at `b` (`BYTES` readable bytes).
    unsafe fn part(b: *const u8, h: &Self::H, part: usize) -> Self::Part;
    /// The float types' reference kernel, which decodes a row's tail past its last
    /// whole block (every other type's rows are whole blocks).
    const TAIL: Option<&'static dyn weft_quant::QuantKernel> = None;
}

/// The tiles of an `m × n` task as (i, r, j, c): activation rows `i..i + r` against
/// weight rows `j..j + c`, with r·c = 8 where the shape allows (8 × 1 for prefill,
/// each decoded vector feeding 8 FMAs; 1 × 8 for decode; 4 × 2 and 2 × 4 for the rows
/// left over). Activation groups are the outer loop, so the task's weight rows stay in
/// cache while x streams past. Kernels keep one accumulator and one summation order
/// per output whatever the tile, so a row's result does not depend on its batch.
#[allow(dead_code)] // on targets without SIMD kernels
#[inline(always)]
pub(crate) fn tiles8(m: usize, n: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        if i >= m || n == 0 {
            return None;
        }
        let r = match m - i {
            8.. => 8,
            4..=7 => 4,
            2 | 3 => 2,
            _ => 1,
        };
        let c = if n - j >= 8 / r { 8 / r } else { 1 };
        let tile = (i, r, j, c);
        j += c;
        if j >= n {
            (i, j) = (i + r, 0);
        }
        Some(tile)
    })
}

/// R activation rows × C weight rows of an f32-activation kernel: `w` holds the C
/// weight rows of `rb` bytes, `x` the R activation rows of `k` floats, written at
/// `(i.., j..)` of `out`.
#[allow(dead_code)] // on targets without SIMD kernels
pub(crate) struct FTile<'a> {
    pub w: &'a [u8],
    pub rb: usize,
    pub x: &'a [f32],
    pub k: usize,
    pub out: OutPtr<'a>,
    pub i: usize,
    pub j: usize,
}

/// Checks an f32 kernel's task: `x` is `m × k` with `m` the output's rows, `w` holds
/// the task's weight rows of `rb` bytes, and a row's whole blocks fit in `rb`.
#[allow(dead_code)] // on targets without SIMD kernels
pub(crate) fn check_fdot_task<T: Decode>(w: &[u8], rb: usize, x: &Acts<'_>, out: &OutPtr<'_>) {
    let (m, k, n) = (x.m, x.k, out.cols());
    assert!(
        x.x.len() == m * k && out.rows() == m,
        "fdot: activations are not [m, k]"
    );
    assert!(w.len() == n * rb, "fdot: weight rows");
    assert!(k / T::BLOCK * T::BYTES <= rb, "fdot: blocks past the row");
}

#[allow(dead_code)] // on targets without SIMD kernels
impl<'a> FTile<'a> {
    /// Tile (i, r, j, c) of a task over weight rows `w` and activations `x`.
    #[inline(always)]
    pub fn new(
        w: &'a [u8],
        rb: usize,
        x: &'a Acts<'_>,
        out: OutPtr<'a>,
        (i, r, j, c): (usize, usize, usize, usize),
    ) -> Self {
        let k = x.k;
        FTile {
            w: &w[j * rb..(j + c) * rb],
            rb,
            x: &x.x[i * k..(i + r) * k],
            k,
            out,
            i,
            j,
        }
    }

    /// Output (r, c) from `s`, the sum over its whole blocks: the float rows' tail
    /// past `nb` blocks added on, element by element.
    #[inline(always)]
    pub fn store<T: Decode>(&self, r: usize, c: usize, nb: usize, mut s: f32) {
        if nb * T::BLOCK < self.k {
            // Fewer than a block's values (32 for the float types): decoded on the
            // stack by the reference kernel, then added element by element.
            let tail = T::TAIL.expect("rows of block types are whole blocks");
            let row = &self.w[c * self.rb..(c + 1) * self.rb][nb * T::BYTES..];
            let xr = &self.x[r * self.k + nb * T::BLOCK..(r + 1) * self.k];
            let mut wt = [0f32; 32];
            let wt = &mut wt[..xr.len()];
            tail.decode_row(row, wt);
            for (w, x) in wt.iter().zip(xr) {
                s += w * x;
            }
        }
        self.out.set(self.i + r, self.j + c, s);
    }
}

/// One task's kernel: `w` holds `out.cols()` consecutive weight rows of `rb` bytes.
///
/// # Safety
/// The kernel's instruction set must be present (it came from [`kernel`] with the
/// detected [`Isa`]) and the activations must hold the form it [`Needs`].
pub type ChunkFn = unsafe fn(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>);

/// The SIMD kernel for weights of `dtype` in `mode`, and what it reads; `None`: the
/// portable path. In `Int8` mode the float types (f32, f16, bf16) keep f32
/// activations, as llama.cpp's f16 path keeps its products exact.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn kernel(isa: Isa, mode: Activations, dtype: DType) -> Option<(ChunkFn, Needs)> {
    match isa {
        Isa::Portable => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => {
            let int8 = match mode {
                Activations::Int8 => x86::q8_kernel(dtype, isa == Isa::Avx2Vnni),
                Activations::F32 => None,
            };
            int8.or_else(|| x86::f32_kernel(dtype).map(|f| (f, Needs::F32)))
        }
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx2Vnni => None,
        // Int8 mode: integer dots for the 32-element types; the K-quants keep f32
        // activations (NEON has no integer kernels for them yet).
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            let int8 = match mode {
                Activations::Int8 => aarch64::q8_kernel(dtype),
                Activations::F32 => None,
            };
            int8.or_else(|| aarch64::f32_kernel(dtype).map(|f| (f, Needs::F32)))
        }
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon => None,
    }
}

/// The kernel for weights of `dtype` packed in the rows8 layout ([`crate::repack`]),
/// in `mode`; `None`: such weights are not packed.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn packed_kernel(isa: Isa, mode: Activations, dtype: DType) -> Option<(ChunkFn, Needs)> {
    match (isa, mode) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2 | Isa::Avx2Vnni, Activations::Int8) => {
            x86::rows8_kernel(dtype, isa == Isa::Avx2Vnni)
        }
        _ => None,
    }
}

/// Attention's row kernels for `isa`: the portable loops where it has no SIMD ones, or
/// for head widths that are not a multiple of 8.
pub fn row_ops(isa: Isa) -> RowOps {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => RowOps {
            // SAFETY (all): Avx2 is only ever the result of detection (with FMA and F16C).
            scores: |q, rows, first, stride, scale, out| match rows {
                _ if q.len() % (8 * out.heads().max(1)) != 0 => {
                    (PORTABLE.scores)(q, rows, first, stride, scale, out)
                }
                KvRows::F32(r) => unsafe { x86::attn::scores(q, r, first, stride, scale, out) },
                KvRows::F16(r) => unsafe { x86::attn::scores(q, r, first, stride, scale, out) },
            },
            exp_sum: |x, m| unsafe { x86::attn::exp_sum(x, m) },
            weighted_sum: |w, rows, first, stride, acc| match rows {
                _ if acc.len() % 8 != 0 => (PORTABLE.weighted_sum)(w, rows, first, stride, acc),
                KvRows::F32(r) => unsafe { x86::attn::weighted_sum(w, r, first, stride, acc) },
                KvRows::F16(r) => unsafe { x86::attn::weighted_sum(w, r, first, stride, acc) },
            },
        },
        _ => PORTABLE,
    }
}

/// Rows per rayon task when quantising activations.
fn quant_rows_per_task(k: usize) -> usize {
    (1 << 14) / k.max(1) + 1
}

/// Quantises `x` (`m × k`, k a multiple of 32) per 32 elements, rows in parallel,
/// with the fastest routine `isa` has.
pub fn quantize_q8(isa: Isa, x: &[f32], m: usize, k: usize, r: &mut Q8Rows) {
    r.resize(m, k);
    if m == 0 || k == 0 {
        return;
    }
    let nb = k / 32;
    x.par_chunks(k)
        .zip(r.q.par_chunks_mut(k))
        .zip(r.d.par_chunks_mut(nb))
        .zip(r.s.par_chunks_mut(nb))
        .with_min_len(quant_rows_per_task(k))
        .for_each(|(((x, q), d), s)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2 is only ever the result of detection.
            Isa::Avx2 | Isa::Avx2Vnni => unsafe { x86::quantize_row_q8(x, q, d, s) },
            _ => q8::quantize_row_q8(x, q, d, s),
        });
}

/// Quantises `x` (`m × k`, k a multiple of 256) per 256 elements with sums per 16.
pub fn quantize_q8k(isa: Isa, x: &[f32], m: usize, k: usize, r: &mut Q8KRows) {
    r.resize(m, k);
    if m == 0 || k == 0 {
        return;
    }
    let nb = k / 256;
    x.par_chunks(k)
        .zip(r.q.par_chunks_mut(k))
        .zip(r.d.par_chunks_mut(nb))
        .zip(r.bsums.par_chunks_mut(k / 16))
        .with_min_len(quant_rows_per_task(k))
        .for_each(|(((x, q), d), bs)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2 is only ever the result of detection.
            Isa::Avx2 | Isa::Avx2Vnni => unsafe { x86::quantize_row_q8k(x, q, d, bs) },
            _ => q8::quantize_row_q8k(x, q, d, bs),
        });
}
