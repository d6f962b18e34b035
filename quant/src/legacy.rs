//! The 32-element block types: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.

use super::{f16_at, BlockFormat};
use weft_ir::DType;

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
pub(super) fn nibbles(qs: &[u8; 16]) -> [u8; 32] {
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

/// The 32 fifth bits of a Q5 block, element j is bit j of the little-endian u32.
#[inline(always)]
fn with_high_bits(low: [u8; 32], qh: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = low;
    for (j, q) in q.iter_mut().enumerate() {
        *q |= (((qh >> j) & 1) as u8) << 4;
    }
    q
}

/// GGML Q5_0: f16 scale d, 32 high bits (u32), 16 bytes of low nibbles in Q4_0
/// order; value = d · (q − 16).
pub struct Q5_0;

impl BlockFormat for Q5_0 {
    const DTYPE: DType = DType::Q5_0;
    const BLOCK: usize = 32;
    const BYTES: usize = 22;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 0);
        let q = with_high_bits(nibbles(b[6..22].try_into().unwrap()), &b[2..6]);
        let out: &mut [f32; 32] = out.try_into().unwrap();
        for (o, &q) in out.iter_mut().zip(&q) {
            *o = d * (q as i32 - 16) as f32;
        }
    }
}

/// GGML Q5_1: f16 scale d, f16 minimum m, 32 high bits, 16 bytes of low
/// nibbles; value = d · q + m.
pub struct Q5_1;

impl BlockFormat for Q5_1 {
    const DTYPE: DType = DType::Q5_1;
    const BLOCK: usize = 32;
    const BYTES: usize = 24;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let q = with_high_bits(nibbles(b[8..24].try_into().unwrap()), &b[4..8]);
        let out: &mut [f32; 32] = out.try_into().unwrap();
        for (o, &q) in out.iter_mut().zip(&q) {
            // d·q exact (11 × 5 bits), then the one rounding of the reference's + m.
            *o = d * q as f32 + m;
        }
    }
}
