//! weft's neutral quant crate: block layouts and the scalar, bit-exact decoders and dot
//! products of every stored weight type. The curated decoder, the reference backend and
//! every kernel test read weights through it; fast kernels live in their backend.
//!
//! Each type is one [`QuantKernel`]; block-quantised types implement the smaller
//! [`BlockFormat`] (decode one block) and get the row kernels for free, so adding
//! a GGML type is one `BlockFormat` impl plus one arm in [`kernel_for`].
//!
//! Decoding follows the reference (gguf-py / ggml) arithmetic operation for
//! operation, so decoded values are bit-exact. Dots decode a few blocks at a
//! time into a stack buffer and run the f32 dot on it: plain loops that LLVM
//! vectorises, where per-block dots with the scale factored out did not.
//!
//! Where the reference's float operations could round differently in another
//! order, the decoders keep its order; everywhere else the products are exact
//! (f16 scale × small integers fits in an f32 mantissa), which the comments note.
//!
//! One file per family: `float` (f32, f16, bf16), `legacy` (32-element blocks),
//! `kquant` (Q2_K…Q6_K), `iquant` (IQ4_NL, IQ4_XS), `ternary` (TQ1_0, TQ2_0).

use std::marker::PhantomData;
use weft_ir::DType;

mod float;
mod iquant;
mod kquant;
mod legacy;
mod ternary;

pub use float::{Bf16Kernel, F16Kernel, F32Kernel};
pub use iquant::{IQ4_NL, IQ4_XS};
pub use kquant::{scale_min as kquant_scale_min, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K};
pub use legacy::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
pub use ternary::{TQ1_0, TQ2_0};

/// Elements per super-block of the k-quant, IQ4_XS and ternary types.
const QK_K: usize = 256;

/// Kernels for one stored weight type; the matmul and the embedding lookup read rows only through this.
pub trait QuantKernel: Send + Sync {
    fn dtype(&self) -> DType;
    /// Decode one stored row (whole blocks) into f32; out.len() = number of elements.
    fn decode_row(&self, row: &[u8], out: &mut [f32]);
    /// Dot product of one stored row with x (x.len() = elements), reading the blocks directly, no f32 row materialised.
    fn dot(&self, row: &[u8], x: &[f32]) -> f32;
}

/// The kernels of a stored type.
pub fn kernel_for(dtype: DType) -> &'static dyn QuantKernel {
    match dtype {
        DType::F32 => &F32Kernel,
        DType::F16 => &F16Kernel,
        DType::BF16 => &Bf16Kernel,
        DType::Q8_0 => &Blocks::<Q8_0>(PhantomData),
        DType::Q4_0 => &Blocks::<Q4_0>(PhantomData),
        DType::Q4_1 => &Blocks::<Q4_1>(PhantomData),
        DType::Q5_0 => &Blocks::<Q5_0>(PhantomData),
        DType::Q5_1 => &Blocks::<Q5_1>(PhantomData),
        DType::Q2_K => &Blocks::<Q2_K>(PhantomData),
        DType::Q3_K => &Blocks::<Q3_K>(PhantomData),
        DType::Q4_K => &Blocks::<Q4_K>(PhantomData),
        DType::Q5_K => &Blocks::<Q5_K>(PhantomData),
        DType::Q6_K => &Blocks::<Q6_K>(PhantomData),
        DType::IQ4_NL => &Blocks::<IQ4_NL>(PhantomData),
        DType::IQ4_XS => &Blocks::<IQ4_XS>(PhantomData),
        DType::TQ1_0 => &Blocks::<TQ1_0>(PhantomData),
        DType::TQ2_0 => &Blocks::<TQ2_0>(PhantomData),
    }
}

/// Dot product of two f32 slices of equal length.
///
/// Eight independent accumulators so that LLVM can vectorise without
/// reassociating float adds (which it may not do on its own).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (a8, b8) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += a8[l] * b8[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ar.iter().zip(br) {
        tail += x * y;
    }
    hsum8(acc) + tail
}

#[inline(always)]
pub(crate) fn hsum8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// f16 → f32, exact, inlinable (half's runtime-dispatched conversion is a call
/// per scale, which dominated the block dots).
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let rest = ((h & 0x7FFF) as u32) << 13;
    if h & 0x7C00 == 0x7C00 {
        return f32::from_bits(sign | 0x7F80_0000 | rest);
    }
    // Rebias by multiplying by 2^112: exact for normals and subnormals alike.
    let mag = f32::from_bits(rest) * f32::from_bits(0x7780_0000);
    f32::from_bits(sign | mag.to_bits())
}

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

pub(crate) fn check_len(dtype: DType, row: &[u8], n: usize) {
    assert_eq!(
        dtype.row_bytes(n),
        Some(row.len()),
        "{dtype} row of {n} elements has the wrong byte length"
    );
}

/// One block-quantised layout, described block by block.
pub trait BlockFormat: Send + Sync + 'static {
    const DTYPE: DType;
    /// Elements per block.
    const BLOCK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Decode one block (`b.len() == BYTES`, `out.len() == BLOCK`) exactly as the reference does.
    fn decode_block(b: &[u8], out: &mut [f32]);
}

/// Elements decoded per step of a block dot (a stack buffer, never a whole row):
/// one super-block, or eight 32-element blocks.
const DOT_CHUNK: usize = QK_K;

/// The row kernel of a [`BlockFormat`].
pub struct Blocks<T>(PhantomData<T>);

impl<T: BlockFormat> QuantKernel for Blocks<T> {
    fn dtype(&self) -> DType {
        T::DTYPE
    }

    fn decode_row(&self, row: &[u8], out: &mut [f32]) {
        check_len(T::DTYPE, row, out.len());
        for (b, o) in row
            .chunks_exact(T::BYTES)
            .zip(out.chunks_exact_mut(T::BLOCK))
        {
            T::decode_block(b, o);
        }
    }

    fn dot(&self, row: &[u8], x: &[f32]) -> f32 {
        check_len(T::DTYPE, row, x.len());
        let per_step = (DOT_CHUNK / T::BLOCK).max(1);
        let mut buf = [0f32; DOT_CHUNK];
        let mut sum = 0f32;
        for (bs, xs) in row
            .chunks(per_step * T::BYTES)
            .zip(x.chunks(per_step * T::BLOCK))
        {
            let w = &mut buf[..xs.len()];
            for (b, o) in bs.chunks_exact(T::BYTES).zip(w.chunks_exact_mut(T::BLOCK)) {
                T::decode_block(b, o);
            }
            sum += dot_f32(w, xs);
        }
        sum
    }
}

/// Byte offsets of the f16 fields of one block of `dtype`: the scale d, then (where the
/// type has one) the minimum or the scale of the minimums. Tests use it to plant
/// extreme scales.
pub fn f16_field_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 | DType::IQ4_NL | DType::IQ4_XS => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        DType::TQ1_0 => &[52],
        DType::TQ2_0 => &[64],
        DType::F32 | DType::F16 | DType::BF16 => &[],
    }
}
