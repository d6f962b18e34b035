//! AVX2 + FMA + F16C kernels. Every function here is compiled for those features and
//! reached only after `Isa::detect` found them.
//!
//! `fdot`: f32 activations, weight blocks decoded in registers (bit-exact with the
//! reference decoders) and FMA'd. `idot`: activations quantised to 8 bits, integer
//! dots with `maddubs`/`madd`, as llama.cpp's AVX2 path does.
//!
//! Helpers are `#[inline(always)]` without `#[target_feature]`: they are only called
//! from the `#[target_feature]` entry points, into which they inline, so the
//! intrinsics inside compile to the AVX2 instructions.

pub(super) mod attn;
mod fdot;
mod idot;
mod rows8;

use super::{ChunkFn, Needs};
use crate::q8::scales;
use std::arch::x86_64::*;
use weft_ir::DType;

pub(super) fn f32_kernel(dtype: DType) -> Option<ChunkFn> {
    fdot::kernel(dtype)
}

pub(super) fn q8_kernel(dtype: DType, vnni: bool) -> Option<(ChunkFn, Needs)> {
    idot::kernel(dtype, vnni)
}

/// The integer kernel over the rows8 layout ([`crate::repack`]).
pub(super) fn rows8_kernel(dtype: DType, vnni: bool) -> Option<(ChunkFn, Needs)> {
    rows8::kernel(dtype, vnni)
}

/// Horizontal sum of 8 lanes.
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The f16 at `p` as f32 (exact).
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let h = (p as *const u16).read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// 16 bytes of nibbles → 32 bytes 0..=15 in element order: the low nibbles of bytes
/// 0..16, then their high nibbles (the Q4_0 / Q4_1 / Q5 layout).
#[inline(always)]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    let q = _mm_loadu_si128(p as *const __m128i);
    let v = _mm256_set_m128i(_mm_srli_epi16::<4>(q), q);
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// The 32 bits of the little-endian u32 at `p` as bytes: byte j is 0x10 where bit j
/// is set (the fifth bit of a Q5 value), else 0.
#[inline(always)]
unsafe fn bit4_of_32(p: *const u8) -> __m256i {
    let qh = (p as *const u32).read_unaligned();
    let v = _mm256_set1_epi32(qh as i32);
    // Byte j takes byte j/8 of qh (the shuffle stays within 128-bit lanes, and each
    // lane holds all four bytes), then tests its bit j%8.
    let spread = _mm256_setr_epi64x(
        0,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let b = _mm256_shuffle_epi8(v, spread);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// The 8-byte groups of 32 bytes, each in the low half of an xmm.
#[inline(always)]
unsafe fn quarters(v: __m256i) -> [__m128i; 4] {
    let lo = _mm256_castsi256_si128(v);
    let hi = _mm256_extracti128_si256::<1>(v);
    [
        lo,
        _mm_unpackhi_epi64(lo, lo),
        hi,
        _mm_unpackhi_epi64(hi, hi),
    ]
}

/// Q4_K / Q5_K packed 6-bit scales and minimums (12 bytes at `p`) as 16 u8: the 8
/// scales, then the 8 minimums (ggml's `utmp` shuffle; same values as
/// `weft_quant`'s `scale_min`).
#[inline(always)]
unsafe fn kquant_scales_mins(p: *const u8) -> __m128i {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let u = |i: usize| (p.add(4 * i) as *const u32).read_unaligned();
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let sc_lo = u0 & KMASK1;
    let sc_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let m_lo = u1 & KMASK1;
    let m_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    _mm_setr_epi32(sc_lo as i32, sc_hi as i32, m_lo as i32, m_hi as i32)
}

/// Group s (= part % 4) of the 128-value half n (= part / 4) of a Q6_K block, values
/// 0..=63: nibble s/2 of ql byte `64n + 32·(s%2) + l`, crumb s of qh byte `32n + l`.
#[inline(always)]
unsafe fn q6k_values(b: *const u8, part: usize) -> __m256i {
    let (n, s) = (part / 4, part % 4);
    let ql = _mm256_loadu_si256(b.add(64 * n + 32 * (s % 2)) as *const __m256i);
    let qh = _mm256_loadu_si256(b.add(128 + 32 * n) as *const __m256i);
    let lo = _mm256_and_si256(
        _mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (s / 2) as i32)),
        _mm256_set1_epi8(0x0F),
    );
    // The crumb moved to bits 4..6 (16-bit shifts, then the byte mask).
    let hi = _mm256_and_si256(
        _mm256_slli_epi16::<4>(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * s as i32))),
        _mm256_set1_epi8(0x30),
    );
    _mm256_or_si256(lo, hi)
}

/// Quantises one row per 32 elements (see `crate::q8`): the same values as the
/// portable routine (same scales, round to nearest even).
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_row_q8(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    assert!(x.len() == q.len() && x.len() == 32 * d.len() && d.len() == s.len());
    for (b, (d, s)) in d.iter_mut().zip(s).enumerate() {
        // SAFETY: block b covers x[32b..32b+32] and q[32b..32b+32], in bounds by the
        // length check above.
        unsafe {
            let xp = x.as_ptr().add(32 * b);
            let mut v = [_mm256_setzero_ps(); 4];
            for (i, v) in v.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(xp.add(8 * i));
            }
            let (scale, sum) = quantize32(v, q.as_mut_ptr().add(32 * b));
            (*d, *s) = (scale, scale * sum as f32);
        }
    }
}

/// Quantises 32 values into `q`; returns the scale and `Σq`.
#[inline(always)]
unsafe fn quantize32(v: [__m256; 4], q: *mut i8) -> (f32, i32) {
    let (d, id) = scales(hsum_max_abs(&v));
    let id = _mm256_set1_ps(id);
    let mut i = [_mm256_setzero_si256(); 4];
    for (i, v) in i.iter_mut().zip(v) {
        *i = _mm256_cvtps_epi32(_mm256_mul_ps(v, id));
    }
    store_i32x32_as_i8(i, q);
    let s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    (d, hsum_i32(s))
}

#[inline(always)]
unsafe fn hsum_max_abs(v: &[__m256]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_setzero_ps();
    for &v in v {
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    }
    let h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_max_ss(h, _mm_movehdup_ps(h));
    _mm_cvtss_f32(h)
}

#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
    _mm_cvtsi128_si32(s)
}

/// Packs 4 × 8 i32 (each in −127..=127) into 32 i8 at `q`, in order.
#[inline(always)]
unsafe fn store_i32x32_as_i8(i: [__m256i; 4], q: *mut i8) {
    // packs work within 128-bit lanes; the final permute restores element order.
    let a = _mm256_packs_epi32(i[0], i[1]);
    let b = _mm256_packs_epi32(i[2], i[3]);
    let c = _mm256_packs_epi16(a, b);
    let c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(q as *mut __m256i, c);
}

/// Quantises one row per 256 elements with sums per 16 (see `crate::q8`).
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_row_q8k(x: &[f32], q: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    assert!(x.len() == q.len() && x.len() == 256 * d.len() && x.len() == 16 * bsums.len());
    for (b, d) in d.iter_mut().enumerate() {
        // SAFETY: block b covers x and q at 256b..256b+256 and bsums at 16b..16b+16,
        // in bounds by the length check above.
        unsafe {
            let xp = x.as_ptr().add(256 * b);
            let mut v = [_mm256_setzero_ps(); 32];
            for (i, v) in v.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(xp.add(8 * i));
            }
            let (s, id) = scales(hsum_max_abs(&v));
            *d = s;
            let id = _mm256_set1_ps(id);
            let qp = q.as_mut_ptr().add(256 * b);
            let bs = bsums.as_mut_ptr().add(16 * b);
            for g in 0..8 {
                let mut i = [_mm256_setzero_si256(); 4];
                for (j, i) in i.iter_mut().enumerate() {
                    *i = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * g + j], id));
                }
                store_i32x32_as_i8(i, qp.add(32 * g));
                *bs.add(2 * g) = hsum_i32(_mm256_add_epi32(i[0], i[1])) as i16;
                *bs.add(2 * g + 1) = hsum_i32(_mm256_add_epi32(i[2], i[3])) as i16;
            }
        }
    }
}
