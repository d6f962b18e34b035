//! The non-linear 4-bit types: IQ4_NL and IQ4_XS (codes index a fixed table).

use super::legacy::nibbles;
use super::{f16_at, BlockFormat, QK_K};
use weft_ir::DType;

/// The 16 levels a 4-bit IQ4 code stands for (ggml's `kvalues_iq4nl`).
const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// GGML IQ4_NL: f16 d, 16 bytes of nibbles in Q4_0 order; value = d · KVALUES[q].
#[allow(non_camel_case_types)]
pub struct IQ4_NL;

impl BlockFormat for IQ4_NL {
    const DTYPE: DType = DType::IQ4_NL;
    const BLOCK: usize = 32;
    const BYTES: usize = 18;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 0);
        let q = nibbles(b[2..18].try_into().unwrap());
        let out: &mut [f32; 32] = out.try_into().unwrap();
        for (o, &q) in out.iter_mut().zip(&q) {
            *o = d * KVALUES[q as usize] as f32;
        }
    }
}

/// GGML IQ4_XS: f16 d; u16 of high 2 bits and 4 bytes of low nibbles of eight
/// 6-bit scales (biased by 32), one per 32 elements; 128 bytes of codes, each
/// 32-element sub-block in IQ4_NL order. value = (d·(sc − 32)) · KVALUES[q].
#[allow(non_camel_case_types)]
pub struct IQ4_XS;

impl BlockFormat for IQ4_XS {
    const DTYPE: DType = DType::IQ4_XS;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 136;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 0);
        let sh = u16::from_le_bytes([b[2], b[3]]);
        let sl: &[u8; 4] = b[4..8].try_into().unwrap();
        let out: &mut [f32; QK_K] = out.try_into().unwrap();
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let low = (sl[ib / 2] >> (4 * (ib % 2))) & 0xF;
            let high = ((sh >> (2 * ib)) & 3) as u8;
            // Exact: 11-bit d × 6-bit scale × 8-bit level fits in 24 bits.
            let dl = d * ((low | high << 4) as i32 - 32) as f32;
            let q = nibbles(b[8 + 16 * ib..24 + 16 * ib].try_into().unwrap());
            for (o, &q) in o.iter_mut().zip(&q) {
                *o = dl * KVALUES[q as usize] as f32;
            }
        }
    }
}
