//! The ternary types of BitNet-style models: TQ1_0 and TQ2_0 (values −d, 0, d).

use super::{f16_at, BlockFormat, QK_K};
use weft_ir::DType;

/// GGML TQ1_0: 48 bytes of five trits each, 4 bytes of four trits each, f16 d.
///
/// A byte holds its trits as a base-3 fixed-point fraction: trit p is the top
/// base-3 digit of `byte · 3^p` (mod 256), read as `(x · 3) >> 8`. Bytes 0..32
/// give elements `32·p + l`, bytes 32..48 elements `160 + 16·p + l`, and the
/// last 4 bytes elements `240 + 4·p + l`. value = d · (trit − 1).
#[allow(non_camel_case_types)]
pub struct TQ1_0;

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

impl BlockFormat for TQ1_0 {
    const DTYPE: DType = DType::TQ1_0;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 54;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 52);
        let out: &mut [f32; QK_K] = out.try_into().unwrap();
        // (bytes, trits per byte, first element) of the three groups.
        let groups: [(&[u8], usize, usize); 3] = [
            (&b[0..32], 5, 0),
            (&b[32..48], 5, 160),
            (&b[48..52], 4, 240),
        ];
        for (bytes, trits, start) in groups {
            let n = bytes.len();
            for (p, &pow) in POW3[..trits].iter().enumerate() {
                let o = &mut out[start + n * p..start + n * (p + 1)];
                for (o, &byte) in o.iter_mut().zip(bytes) {
                    let x = byte.wrapping_mul(pow) as u16;
                    *o = d * (((x * 3) >> 8) as i32 - 1) as f32;
                }
            }
        }
    }
}

/// GGML TQ2_0: 64 bytes of 2-bit codes (Q2_K order: element `128·h + 32·s + l`
/// is bits `2s..2s+2` of byte `32·h + l`), f16 d; value = d · (code − 1).
#[allow(non_camel_case_types)]
pub struct TQ2_0;

impl BlockFormat for TQ2_0 {
    const DTYPE: DType = DType::TQ2_0;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 66;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let qs: &[u8; 64] = b[0..64].try_into().unwrap();
        let d = f16_at(b, 64);
        let out: &mut [f32; QK_K] = out.try_into().unwrap();
        for (j, o) in out.chunks_exact_mut(32).enumerate() {
            let (h, s) = (j / 4, j % 4);
            for (o, &q) in o.iter_mut().zip(&qs[32 * h..32 * h + 32]) {
                *o = d * (((q >> (2 * s)) & 3) as i32 - 1) as f32;
            }
        }
    }
}
