//! The k-quants: 256-element super-blocks with per-sub-block scales (ggml's
//! Q2_K, Q3_K, Q4_K, Q5_K, Q6_K).
//!
//! Every scale is an f16 super-scale times a small integer, computed first in
//! f32 as the reference does (exact: at most 11 + 8 bits). Only the "− min"
//! of Q2_K, Q4_K and Q5_K rounds, so that subtraction is kept as the last step.

use super::{f16_at, BlockFormat, QK_K};
use weft_ir::DType;

/// Bit `shift..shift+2` of `byte`.
#[inline(always)]
fn crumb(byte: u8, shift: usize) -> u8 {
    (byte >> shift) & 3
}

/// GGML Q2_K: 16 bytes of (4-bit min << 4 | 4-bit scale), one per 16 elements;
/// 64 bytes of 2-bit q; f16 d; f16 dmin. value = (d·sc)·q − dmin·m.
///
/// Element `128·h + 32·s + l` is bits `2s..2s+2` of q byte `32·h + l`.
#[allow(non_camel_case_types)]
pub struct Q2_K;

impl BlockFormat for Q2_K {
    const DTYPE: DType = DType::Q2_K;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 84;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let scales: &[u8; 16] = b[0..16].try_into().unwrap();
        let qs: &[u8; 64] = b[16..80].try_into().unwrap();
        let d = f16_at(b, 80);
        let dmin = f16_at(b, 82);
        let out: &mut [f32; QK_K] = out.try_into().unwrap();
        for (sub, o) in out.chunks_exact_mut(16).enumerate() {
            let (h, s, half) = (sub / 8, (sub / 2) % 4, sub % 2);
            let dl = d * (scales[sub] & 0xF) as f32;
            let ml = dmin * (scales[sub] >> 4) as f32;
            let q = &qs[32 * h + 16 * half..][..16];
            for (o, &q) in o.iter_mut().zip(q) {
                *o = dl * crumb(q, 2 * s) as f32 - ml;
            }
        }
    }
}

/// GGML Q3_K: 32 bytes of high-bit mask; 64 bytes of 2-bit low q (Q2_K order);
/// 12 bytes of 16 packed 6-bit scales (biased by 32); f16 d.
/// value = (d·(sc − 32))·(low − 4·(1 − high)).
#[allow(non_camel_case_types)]
pub struct Q3_K;

impl BlockFormat for Q3_K {
    const DTYPE: DType = DType::Q3_K;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 110;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let hmask: &[u8; 32] = b[0..32].try_into().unwrap();
        let qs: &[u8; 64] = b[32..96].try_into().unwrap();
        let sb: &[u8; 12] = b[96..108].try_into().unwrap();
        let d = f16_at(b, 108);
        let out: &mut [f32; QK_K] = out.try_into().unwrap();
        for (sub, o) in out.chunks_exact_mut(16).enumerate() {
            // Low 4 bits: nibbles of bytes 0..8 (low nibbles first); high 2 bits:
            // crumb sub/4 of byte 8 + sub%4.
            let low = (sb[sub % 8] >> (4 * (sub / 8))) & 0xF;
            let high = crumb(sb[8 + sub % 4], 2 * (sub / 4));
            let dl = d * ((low | high << 4) as i32 - 32) as f32;
            let (h, s, half) = (sub / 8, (sub / 2) % 4, sub % 2);
            let at = 32 * h + 16 * half;
            // The high bit sits in mask bit sub/2 of byte l; set means no −4.
            let bit = sub / 2;
            for ((o, &q), &m) in o.iter_mut().zip(&qs[at..at + 16]).zip(&hmask[16 * half..]) {
                let q = crumb(q, 2 * s) as i32 - if (m >> bit) & 1 == 0 { 4 } else { 0 };
                *o = dl * q as f32;
            }
        }
    }
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K / Q5_K block: bytes 0..4
/// hold scales 0..4, bytes 4..8 mins 0..4 (low 6 bits each); scales and mins
/// 4..8 are the nibbles of bytes 8..12 plus the top 2 bits of bytes 0..8.
#[inline(always)]
pub fn scale_min(sb: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (sb[j] & 63, sb[j + 4] & 63)
    } else {
        (
            (sb[j + 4] & 0xF) | ((sb[j - 4] >> 6) << 4),
            (sb[j + 4] >> 4) | ((sb[j] >> 6) << 4),
        )
    }
}

/// GGML Q4_K: f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins (one
/// pair per 32 elements), 128 bytes of nibbles. value = (d·sc)·q − dmin·m.
///
/// Element `64·c + 32·h + l` is nibble h of byte `32·c + l`.
#[allow(non_camel_case_types)]
pub struct Q4_K;

impl BlockFormat for Q4_K {
    const DTYPE: DType = DType::Q4_K;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 144;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let sb: &[u8; 12] = b[4..16].try_into().unwrap();
        let qs: &[u8; 128] = b[16..144].try_into().unwrap();
        let out: &mut [f32; QK_K] = out.try_into().unwrap();
        for (j, o) in out.chunks_exact_mut(32).enumerate() {
            let (sc, m) = scale_min(sb, j);
            let dl = d * sc as f32;
            let ml = dmin * m as f32;
            let (c, h) = (j / 2, j % 2);
            for (o, &q) in o.iter_mut().zip(&qs[32 * c..32 * c + 32]) {
                *o = dl * ((q >> (4 * h)) & 0xF) as f32 - ml;
            }
        }
    }
}

/// GGML Q5_K: Q4_K with a fifth bit per element from 32 bytes of high-bit mask
/// (bit j/32 of byte j%32) between the scales and the nibbles.
#[allow(non_camel_case_types)]
pub struct Q5_K;

impl BlockFormat for Q5_K {
    const DTYPE: DType = DType::Q5_K;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 176;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let sb: &[u8; 12] = b[4..16].try_into().unwrap();
        let qh: &[u8; 32] = b[16..48].try_into().unwrap();
        let qs: &[u8; 128] = b[48..176].try_into().unwrap();
        let out: &mut [f32; QK_K] = out.try_into().unwrap();
        // Both sub-blocks of a 32-byte group per step (ggml's loop).
        for c in 0..4 {
            let (s1, m1) = scale_min(sb, 2 * c);
            let (s2, m2) = scale_min(sb, 2 * c + 1);
            let (d1, m1) = (d * s1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * s2 as f32, dmin * m2 as f32);
            let q: &[u8; 32] = qs[32 * c..32 * c + 32].try_into().unwrap();
            let (lo, hi) = out[64 * c..64 * c + 64].split_at_mut(32);
            for (((lo, hi), &q), &h) in lo.iter_mut().zip(hi).zip(q).zip(qh) {
                let h = h >> (2 * c);
                *lo = d1 * ((q & 0xF) | (h & 1) << 4) as f32 - m1;
                *hi = d2 * ((q >> 4) | (h & 2) << 3) as f32 - m2;
            }
        }
    }
}

/// GGML Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 i8
/// scales (one per 16 elements), f16 d. value = (d·sc)·(q − 32).
///
/// Element `128·h + 32·s + l`: low nibble `s/2` of byte `64·h + 32·(s%2) + l`,
/// high crumb s of byte `32·h + l`.
#[allow(non_camel_case_types)]
pub struct Q6_K;

impl BlockFormat for Q6_K {
    const DTYPE: DType = DType::Q6_K;
    const BLOCK: usize = QK_K;
    const BYTES: usize = 210;

    #[inline(always)]
    fn decode_block(b: &[u8], out: &mut [f32]) {
        let ql: &[u8; 128] = b[0..128].try_into().unwrap();
        let qh: &[u8; 64] = b[128..192].try_into().unwrap();
        let scales: &[u8; 16] = b[192..208].try_into().unwrap();
        let d = f16_at(b, 208);
        let out: &mut [f32; QK_K] = out.try_into().unwrap();
        // Four outputs per step with constant shifts (ggml's loop), 16 steps per
        // scale: variable shifts per sub-block kept LLVM from vectorising.
        for n in 0..2 {
            let ql: &[u8; 64] = ql[64 * n..64 * n + 64].try_into().unwrap();
            let qh: &[u8; 32] = qh[32 * n..32 * n + 32].try_into().unwrap();
            let y: &mut [f32; 128] = (&mut out[128 * n..128 * n + 128]).try_into().unwrap();
            for half in 0..2 {
                // Exact: 11-bit d × 8-bit scale × 6-bit q fits in 24 bits.
                let dl = |k: usize| d * scales[8 * n + half + 2 * k] as i8 as f32;
                let (d0, d1, d2, d3) = (dl(0), dl(1), dl(2), dl(3));
                for l in 16 * half..16 * half + 16 {
                    let (a, c, h) = (ql[l], ql[l + 32], qh[l]);
                    y[l] = d0 * (((a & 0xF) | (h & 3) << 4) as i32 - 32) as f32;
                    y[l + 32] = d1 * (((c & 0xF) | ((h >> 2) & 3) << 4) as i32 - 32) as f32;
                    y[l + 64] = d2 * (((a >> 4) | ((h >> 4) & 3) << 4) as i32 - 32) as f32;
                    y[l + 96] = d3 * (((c >> 4) | (h >> 6) << 4) as i32 - 32) as f32;
                }
            }
        }
    }
}
