//! Plain float rows: f32, f16, bf16.

use super::{check_len, dot_f32, hsum8, QuantKernel};
use half::f16;
use half::slice::HalfFloatSliceExt;
use weft_ir::DType;

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

/// The dot of a 2-byte float row: convert a stack buffer's worth, then the f32 dot.
fn half_dot(k: &dyn QuantKernel, row: &[u8], x: &[f32]) -> f32 {
    let mut buf = [0f32; HALF_CHUNK];
    let mut sum = 0f32;
    for (xc, r) in x.chunks(HALF_CHUNK).zip(row.chunks(2 * HALF_CHUNK)) {
        let b = &mut buf[..xc.len()];
        k.decode_row(r, b);
        sum += dot_f32(b, xc);
    }
    sum
}

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
        half_dot(self, row, x)
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
        half_dot(self, row, x)
    }
}
