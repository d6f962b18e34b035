//! Decoding and dot products for every stored weight type.
//!
//! Each type is one [`QuantKernel`]; block-quantised types implement the smaller
//! [`BlockFormat`] (decode one block) and get the row kernels for free, so adding
//! a GGML type is one `BlockFormat` impl plus one arm in [`kernel_for`].
//!
//! Decoding follows the reference (gguf-py / ggml) arithmetic operation for
//! operation, so decoded values are bit-exact. Dots decode a few blocks at a
//! time into a stack buffer and run the f32 dot on it: plain loops that LLVM
//! vectorises, where per-block dots with the scale factored out did not.

use half::f16;
use half::slice::HalfFloatSliceExt;
use std::marker::PhantomData;
use weft_ir::DType;

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
fn hsum8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// f16 → f32, exact, inlinable (half's runtime-dispatched conversion is a call
/// per scale, which dominated the block dots).
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
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
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

fn check_len(dtype: DType, row: &[u8], n: usize) {
    assert_eq!(
        dtype.row_bytes(n),
        Some(row.len()),
        "{dtype} row of {n} elements has the wrong byte length"
    );
}

/// Plain f32 rows (little-endian).
pub struct F32Kernel;

impl QuantKernel for F32Kernel {
    fn dtype(&self) -> DType {
        DType::F32
    }

    fn decode_row(&self, row: &[u8], out: &mut [f32]) {
        check_len(DType::F32, row, out.len());
        for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }

    fn dot(&self, row: &[u8], x: &[f32]) -> f32 {
        check_len(DType::F32, row, x.len());
        let mut acc = [0f32; 8];
        let (rc, xc) = (row.chunks_exact(32), x.chunks_exact(8));
        let (rr, xr) = (rc.remainder(), xc.remainder());
        for (r8, x8) in rc.zip(xc) {
            for l in 0..8 {
                let b = &r8[4 * l..4 * l + 4];
                acc[l] += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x8[l];
            }
        }
        let mut tail = 0f32;
        for (b, x) in rr.chunks_exact(4).zip(xr) {
            tail += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x;
        }
        hsum8(acc) + tail
    }
}

/// Elements converted per step by the f16/bf16 dots (a stack buffer, not a row).
const HALF_CHUNK: usize = 64;

/// IEEE half rows.
pub struct F16Kernel;

impl QuantKernel for F16Kernel {
    fn dtype(&self) -> DType {
        DType::F16
    }

    fn decode_row(&self, row: &[u8], out: &mut [f32]) {
        check_len(DType::F16, row, out.len());
        let mut h = [f16::ZERO; HALF_CHUNK];
        for (o, r) in out.chunks_mut(HALF_CHUNK).zip(row.chunks(2 * HALF_CHUNK)) {
            let h = &mut h[..o.len()];
            for (v, b) in h.iter_mut().zip(r.chunks_exact(2)) {
                *v = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
            }
            // half picks F16C at run time when the CPU has it; the conversion is exact either way.
            h.convert_to_f32_slice(o);
        }
    }

    fn dot(&self, row: &[u8], x: &[f32]) -> f32 {
        check_len(DType::F16, row, x.len());
        let mut buf = [0f32; HALF_CHUNK];
        let mut sum = 0f32;
        for (xc, r) in x.chunks(HALF_CHUNK).zip(row.chunks(2 * HALF_CHUNK)) {
            let b = &mut buf[..xc.len()];
            self.decode_row(r, b);
            sum += dot_f32(b, xc);
        }
        sum
    }
}

/// bfloat16 rows: the top half of an f32.
pub struct Bf16Kernel;

impl QuantKernel for Bf16Kernel {
    fn dtype(&self) -> DType {
        DType::BF16
    }

    fn decode_row(&self, row: &[u8], out: &mut [f32]) {
        check_len(DType::BF16, row, out.len());
        for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
            *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
        }
    }

    fn dot(&self, row: &[u8], x: &[f32]) -> f32 {
        check_len(DType::BF16, row, x.len());
        let mut buf = [0f32; HALF_CHUNK];
        let mut sum = 0f32;
        for (xc, r) in x.chunks(HALF_CHUNK).zip(row.chunks(2 * HALF_CHUNK)) {
            let b = &mut buf[..xc.len()];
            self.decode_row(r, b);
            sum += dot_f32(b, xc);
        }
        sum
    }
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

/// Elements decoded per step of a block dot (a stack buffer, never a whole row).
const DOT_CHUNK: usize = 256;

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

/// GGML Q8_0: f16 scale d, 32 × i8 q; value = q · d.
pub struct Q8_0;

impl BlockFormat for Q8_0 {
    const DTYPE: DType = DType::Q8_0;
    const BLOCK: usize = 32;
    const BYTES: usize = 34;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 0);
        let qs: &[u8; 32] = b[2..34].try_into().unwrap();
        let out: &mut [f32; 32] = out.try_into().unwrap();
        for (o, &q) in out.iter_mut().zip(qs) {
            *o = q as i8 as f32 * d;
        }
    }
}

/// The 32 4-bit values of a Q4 block in element order: element j is the low
/// nibble of byte j, element j + 16 the high nibble.
#[inline(always)]
fn nibbles(qs: &[u8; 16]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = qs[j] & 0x0F;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

/// GGML Q4_0: f16 scale d, 16 bytes of nibbles; value = d · (q − 8).
pub struct Q4_0;

impl BlockFormat for Q4_0 {
    const DTYPE: DType = DType::Q4_0;
    const BLOCK: usize = 32;
    const BYTES: usize = 18;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 0);
        let q = nibbles(b[2..18].try_into().unwrap());
        let out: &mut [f32; 32] = out.try_into().unwrap();
        for (o, &q) in out.iter_mut().zip(&q) {
            *o = d * (q as i8 - 8) as f32;
        }
    }
}

/// GGML Q4_1: f16 scale d, f16 minimum m, 16 bytes of nibbles in Q4_0 order;
/// value = d · q + m.
pub struct Q4_1;

impl BlockFormat for Q4_1 {
    const DTYPE: DType = DType::Q4_1;
    const BLOCK: usize = 32;
    const BYTES: usize = 20;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let q = nibbles(b[4..20].try_into().unwrap());
        let out: &mut [f32; 32] = out.try_into().unwrap();
        for (o, &q) in out.iter_mut().zip(&q) {
            // d·q is exact (11-bit × 4-bit mantissas), so one rounding, as in the reference.
            *o = d * q as f32 + m;
        }
    }
}
