//! f32 activations × weight blocks decoded in registers.
//!
//! Each type decodes one block into 8-float vectors, bit-exact with the reference
//! decoder (the same float operations: every `scale · q` is exact, and the one
//! rounding `+ min` / `− min` is a single FMA), and hands each vector to the tile,
//! which FMAs it with up to 4 activation rows. Only the order of the sum differs from
//! the reference, so results agree to float rounding of the dot.

use super::{bit4_of_32, f16_at, hsum, kquant_scales_mins, nibbles32, quarters};
use crate::simd::{Acts, ChunkFn, OutPtr};
use std::arch::x86_64::*;
use weft_ir::DType;

/// A weight type decoded in registers.
trait Decode {
    /// Elements and bytes per block.
    const BLOCK: usize;
    const BYTES: usize;
    /// Decodes the block at `b` (`BYTES` readable bytes) and calls `f(v, w)` for each
    /// vector `w` of elements `8v..8v + 8`, in order.
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, f: F);
    /// Element `i` of a row whose length is not a multiple of `BLOCK` (the float
    /// types only: every other row is whole blocks).
    fn scalar(_row: &[u8], _i: usize) -> f32 {
        unreachable!("rows of block types are whole blocks")
    }
}

pub(super) fn kernel(dtype: DType) -> Option<ChunkFn> {
    Some(match dtype {
        DType::F32 => chunk::<F32> as ChunkFn,
        DType::F16 => chunk::<F16>,
        DType::BF16 => chunk::<Bf16>,
        DType::Q8_0 => chunk::<Q8_0>,
        DType::Q4_0 => chunk::<Q4_0>,
        DType::Q4_1 => chunk::<Q4_1>,
        DType::Q5_0 => chunk::<Q5_0>,
        DType::Q5_1 => chunk::<Q5_1>,
        DType::Q4_K => chunk::<Q4_K>,
        DType::Q5_K => chunk::<Q5_K>,
        DType::Q6_K => chunk::<Q6_K>,
        _ => return None,
    })
}

/// One task: every activation row against `out.cols()` weight rows of `rb` bytes.
///
/// Activation rows go 4 at a time (each decoded weight vector feeds 4 FMAs); with
/// one row left (decode), two weight rows go side by side. Activation groups are the
/// outer loop, so the task's weight rows stay in cache while x streams past once.
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn chunk<T: Decode>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr) {
    let (m, k, n) = (x.m, x.k, out.cols());
    assert!(
        x.x.len() == m * k && out.rows() == m,
        "fdot: activations are not [m, k]"
    );
    assert!(
        w.len() == n * rb && rb * T::BLOCK >= k * T::BYTES,
        "fdot: weight rows"
    );
    assert!(k / T::BLOCK * T::BYTES <= rb, "fdot: blocks past the row");
    let mut i = 0;
    while i < m {
        let r = (m - i).min(4);
        let mut j = 0;
        while j < n {
            let c = if r == 1 && n - j >= 2 { 2 } else { 1 };
            let t = Tile {
                w: &w[j * rb..(j + c) * rb],
                rb,
                x: &x.x[i * k..(i + r) * k],
                k,
                out,
                i,
                j,
            };
            // SAFETY: the tile's slices hold c weight rows and r activation rows
            // (sliced above, so in bounds); the features are present (this function's).
            unsafe {
                match (r, c) {
                    (1, 2) => t.run::<T, 1, 2>(),
                    (1, _) => t.run::<T, 1, 1>(),
                    (2, _) => t.run::<T, 2, 1>(),
                    (3, _) => t.run::<T, 3, 1>(),
                    _ => t.run::<T, 4, 1>(),
                }
            }
            j += c;
        }
        i += r;
    }
}

/// R activation rows × C weight rows.
struct Tile<'a> {
    w: &'a [u8],
    rb: usize,
    x: &'a [f32],
    k: usize,
    out: OutPtr,
    i: usize,
    j: usize,
}

impl Tile<'_> {
    /// Needs `w.len() == C·rb`, `x.len() == R·k`, and the features.
    #[inline(always)]
    unsafe fn run<T: Decode, const R: usize, const C: usize>(&self) {
        debug_assert!(self.w.len() == C * self.rb && self.x.len() == R * self.k);
        let nb = self.k / T::BLOCK;
        // Two accumulators per output when the tile is small, so that the FMA
        // latency is covered by independent chains.
        let mut acc = [[[_mm256_setzero_ps(); 2]; R]; C];
        let (w, x) = (self.w.as_ptr(), self.x.as_ptr());
        for b in 0..nb {
            for (c, acc) in acc.iter_mut().enumerate() {
                T::decode(w.add(c * self.rb + b * T::BYTES), |v, wv| {
                    let p = if R * C >= 4 { 0 } else { v & 1 };
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xv = _mm256_loadu_ps(x.add(r * self.k + b * T::BLOCK + 8 * v));
                        acc[p] = _mm256_fmadd_ps(wv, xv, acc[p]);
                    }
                });
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            for (r, acc) in acc.iter().enumerate() {
                let mut s = hsum(_mm256_add_ps(acc[0], acc[1]));
                if nb * T::BLOCK < self.k {
                    let row = &self.w[c * self.rb..(c + 1) * self.rb];
                    let xr = &self.x[r * self.k..(r + 1) * self.k];
                    for (i, xv) in xr.iter().enumerate().skip(nb * T::BLOCK) {
                        s += T::scalar(row, i) * xv;
                    }
                }
                self.out.set(self.i + r, self.j + c, s);
            }
        }
    }
}

struct F32;
impl Decode for F32 {
    const BLOCK: usize = 32;
    const BYTES: usize = 128;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        for v in 0..4 {
            f(v, _mm256_loadu_ps(b.add(32 * v) as *const f32));
        }
    }
    fn scalar(row: &[u8], i: usize) -> f32 {
        f32::from_le_bytes(row[4 * i..4 * i + 4].try_into().unwrap())
    }
}

struct F16;
impl Decode for F16 {
    const BLOCK: usize = 32;
    const BYTES: usize = 64;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        for v in 0..4 {
            f(
                v,
                _mm256_cvtph_ps(_mm_loadu_si128(b.add(16 * v) as *const __m128i)),
            );
        }
    }
    fn scalar(row: &[u8], i: usize) -> f32 {
        half::f16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32()
    }
}

struct Bf16;
impl Decode for Bf16 {
    const BLOCK: usize = 32;
    const BYTES: usize = 64;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        for v in 0..4 {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(b.add(16 * v) as *const __m128i));
            f(v, _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h)));
        }
    }
    fn scalar(row: &[u8], i: usize) -> f32 {
        f32::from_bits((u16::from_le_bytes([row[2 * i], row[2 * i + 1]]) as u32) << 16)
    }
}

/// `q` (i8 × 8 in the low half) as floats.
#[inline(always)]
unsafe fn i8x8(q: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))
}

/// `q` (u8 × 8 in the low half) as floats.
#[inline(always)]
unsafe fn u8x8(q: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q))
}

#[allow(non_camel_case_types)]
struct Q8_0;
impl Decode for Q8_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 34;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        // q · d, as the reference.
        let d = _mm256_set1_ps(f16_at(b));
        for v in 0..4 {
            let q = _mm_loadl_epi64(b.add(2 + 8 * v) as *const __m128i);
            f(v, _mm256_mul_ps(i8x8(q), d));
        }
    }
}

#[allow(non_camel_case_types)]
struct Q4_0;
impl Decode for Q4_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 18;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        // d · (q − 8): exact.
        let d = _mm256_set1_ps(f16_at(b));
        let q = _mm256_sub_epi8(nibbles32(b.add(2)), _mm256_set1_epi8(8));
        for (v, q) in quarters(q).into_iter().enumerate() {
            f(v, _mm256_mul_ps(i8x8(q), d));
        }
    }
}

#[allow(non_camel_case_types)]
struct Q4_1;
impl Decode for Q4_1 {
    const BLOCK: usize = 32;
    const BYTES: usize = 20;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        // d · q is exact, so one FMA rounds once, as the reference's d·q + m.
        let d = _mm256_set1_ps(f16_at(b));
        let mn = _mm256_set1_ps(f16_at(b.add(2)));
        for (v, q) in quarters(nibbles32(b.add(4))).into_iter().enumerate() {
            f(v, _mm256_fmadd_ps(u8x8(q), d, mn));
        }
    }
}

#[allow(non_camel_case_types)]
struct Q5_0;
impl Decode for Q5_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 22;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        let d = _mm256_set1_ps(f16_at(b));
        let q = _mm256_or_si256(nibbles32(b.add(6)), bit4_of_32(b.add(2)));
        let q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        for (v, q) in quarters(q).into_iter().enumerate() {
            f(v, _mm256_mul_ps(i8x8(q), d));
        }
    }
}

#[allow(non_camel_case_types)]
struct Q5_1;
impl Decode for Q5_1 {
    const BLOCK: usize = 32;
    const BYTES: usize = 24;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        let d = _mm256_set1_ps(f16_at(b));
        let mn = _mm256_set1_ps(f16_at(b.add(2)));
        let q = _mm256_or_si256(nibbles32(b.add(8)), bit4_of_32(b.add(4)));
        for (v, q) in quarters(q).into_iter().enumerate() {
            f(v, _mm256_fmadd_ps(u8x8(q), d, mn));
        }
    }
}

/// The sub-block scales `d·sc` and minimums `dmin·m` of a Q4_K / Q5_K block (exact
/// products, as the reference computes them).
#[inline(always)]
unsafe fn kquant_dl_ml(b: *const u8) -> ([f32; 8], [f32; 8]) {
    let sm = kquant_scales_mins(b.add(4));
    let d = _mm256_set1_ps(f16_at(b));
    let dmin = _mm256_set1_ps(f16_at(b.add(2)));
    let mut dl = [0f32; 8];
    let mut ml = [0f32; 8];
    _mm256_storeu_ps(dl.as_mut_ptr(), _mm256_mul_ps(d, u8x8(sm)));
    _mm256_storeu_ps(
        ml.as_mut_ptr(),
        _mm256_mul_ps(dmin, u8x8(_mm_unpackhi_epi64(sm, sm))),
    );
    (dl, ml)
}

#[allow(non_camel_case_types)]
struct Q4_K;
impl Decode for Q4_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 144;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        let (dl, ml) = kquant_dl_ml(b);
        let mask = _mm256_set1_epi8(0x0F);
        for c in 0..4 {
            // Element 64c + l: low nibble of byte 32c + l; 64c + 32 + l: its high nibble.
            let q = _mm256_loadu_si256(b.add(16 + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(q, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask);
            for (h, q) in [lo, hi].into_iter().enumerate() {
                let (s, m) = (_mm256_set1_ps(dl[2 * c + h]), _mm256_set1_ps(ml[2 * c + h]));
                for (g, q) in quarters(q).into_iter().enumerate() {
                    // (d·sc)·q exact, then the one rounding of − dmin·m.
                    f(8 * c + 4 * h + g, _mm256_fmsub_ps(u8x8(q), s, m));
                }
            }
        }
    }
}

#[allow(non_camel_case_types)]
struct Q5_K;
impl Decode for Q5_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 176;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        let (dl, ml) = kquant_dl_ml(b);
        let mask = _mm256_set1_epi8(0x0F);
        let qh = _mm256_loadu_si256(b.add(16) as *const __m256i);
        let sixteen = _mm256_set1_epi8(0x10);
        for c in 0..4 {
            let q = _mm256_loadu_si256(b.add(48 + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(q, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask);
            for (h, q) in [lo, hi].into_iter().enumerate() {
                // Fifth bit: bit 2c + h of qh byte l.
                let bit = _mm256_set1_epi8((1u8 << (2 * c + h)) as i8);
                let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
                let q = _mm256_or_si256(q, _mm256_and_si256(set, sixteen));
                let (s, m) = (_mm256_set1_ps(dl[2 * c + h]), _mm256_set1_ps(ml[2 * c + h]));
                for (g, q) in quarters(q).into_iter().enumerate() {
                    f(8 * c + 4 * h + g, _mm256_fmsub_ps(u8x8(q), s, m));
                }
            }
        }
    }
}

/// The four 32-byte vectors of 6-bit values (0..=63) of one 128-element half of a
/// Q6_K block: vector s holds elements `32s..32s + 32` of the half.
#[inline(always)]
unsafe fn q6k_half(ql: *const u8, qh: *const u8) -> [__m256i; 4] {
    let ql0 = _mm256_loadu_si256(ql as *const __m256i);
    let ql1 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
    let qh = _mm256_loadu_si256(qh as *const __m256i);
    let (m4, m2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
    // Crumb s of qh, moved to bits 4..6 (16-bit shifts, then the byte mask).
    let h0 = _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m2);
    let h1 = _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m2);
    let h2 = _mm256_and_si256(qh, m2);
    let h3 = _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2);
    [
        _mm256_or_si256(_mm256_and_si256(ql0, m4), h0),
        _mm256_or_si256(_mm256_and_si256(ql1, m4), h1),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), h2),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4), h3),
    ]
}

#[allow(non_camel_case_types)]
struct Q6_K;
impl Decode for Q6_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 210;
    #[inline(always)]
    unsafe fn decode<F: FnMut(usize, __m256)>(b: *const u8, mut f: F) {
        // d·sc (exact), one per 16 elements.
        let d = _mm256_set1_ps(f16_at(b.add(208)));
        let sc = _mm_loadu_si128(b.add(192) as *const __m128i);
        let mut dl = [0f32; 16];
        _mm256_storeu_ps(dl.as_mut_ptr(), _mm256_mul_ps(d, i8x8(sc)));
        _mm256_storeu_ps(
            dl.as_mut_ptr().add(8),
            _mm256_mul_ps(d, i8x8(_mm_unpackhi_epi64(sc, sc))),
        );
        let thirty_two = _mm256_set1_epi8(32);
        for n in 0..2 {
            let q = q6k_half(b.add(64 * n), b.add(128 + 32 * n));
            for (s, q) in q.into_iter().enumerate() {
                let q = _mm256_sub_epi8(q, thirty_two);
                for (g, q) in quarters(q).into_iter().enumerate() {
                    let s16 = _mm256_set1_ps(dl[8 * n + 2 * s + g / 2]);
                    f(16 * n + 4 * s + g, _mm256_mul_ps(i8x8(q), s16));
                }
            }
        }
    }
}
