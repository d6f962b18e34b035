//! 8-bit activations × weight blocks: integer dots, as llama.cpp's AVX2 path.
//!
//! `maddubs` multiplies unsigned weight bytes by signed activation bytes and adds
//! pairs into i16 (never saturating here: at most 2·63·127); `madd` widens to i32
//! (by ones, or by the sub-block scale). Offsets and minimums meet the activation
//! block sums instead of each value: `Σ (q − o)·x = Σ q·x − o·Σx`. A weight block is
//! unpacked once per tile and used for up to 4 activation rows.

// Index loops over the const tile sizes: LLVM unrolls them completely, so tile
// arrays live in registers (iterator adaptors like skip were left as loops, with the
// arrays on the stack).
#![allow(clippy::needless_range_loop)]

use super::{bit4_of_32, f16_at, hsum, kquant_scales_mins, nibbles32, q6k_values};
use crate::simd::{Acts, ChunkFn, Needs, OutPtr};
use std::arch::x86_64::*;
use weft_ir::DType;

/// Bytes ahead of the current block that decode tiles prefetch.
const PREFETCH: usize = 384;

/// One activation row in 8-bit blocks.
#[derive(Clone, Copy)]
struct XRow {
    /// The values.
    q: *const i8,
    /// Per block: `(d, d·Σq/8)` for the 32-element types, `d` for the k-quants.
    meta: *const f32,
    /// Sums of 16 values (k-quants).
    bs: *const i16,
}

/// A weight type dotted with 8-bit activation blocks.
trait IDot {
    const BLOCK: usize;
    const BYTES: usize;
    /// Unpacked parts per block (32 or 64 values each).
    const PARTS: usize;
    const NEEDS: Needs;
    /// The block's scales, decoded once per tile.
    type H: Copy;
    /// One unpacked part.
    type U: Copy;
    unsafe fn header(b: *const u8) -> Self::H;
    unsafe fn unpack(b: *const u8, h: &Self::H, part: usize) -> Self::U;
    /// `sumi` plus the part's integer products with the block's values at `q`.
    unsafe fn part(u: &Self::U, q: *const i8, part: usize, sumi: __m256i) -> __m256i;
    /// `acc` plus the block's value, from `sumi` and the activation block `b`.
    unsafe fn finish(h: &Self::H, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256;
}

pub(super) fn kernel(dtype: DType) -> Option<(ChunkFn, Needs)> {
    fn k<T: IDot>() -> Option<(ChunkFn, Needs)> {
        Some((chunk::<T> as ChunkFn, T::NEEDS))
    }
    match dtype {
        DType::Q8_0 => k::<Q8_0>(),
        DType::Q4_0 => k::<Q4_0>(),
        DType::Q4_1 => k::<Q4_1>(),
        DType::Q5_0 => k::<Q5_0>(),
        DType::Q5_1 => k::<Q5_1>(),
        DType::Q4_K => k::<Q4_K>(),
        DType::Q5_K => k::<Q5_K>(),
        DType::Q6_K => k::<Q6_K>(),
        _ => None,
    }
}

/// One task (see `fdot::chunk`: the same tiling over 8-bit rows).
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn chunk<T: IDot>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr) {
    let (m, k, n) = (x.m, x.k, out.cols());
    let nb = k / T::BLOCK;
    assert!(out.rows() == m && w.len() == n * rb && nb * T::BYTES <= rb && k % T::BLOCK == 0);
    // Every row's values, block metadata and sums, checked against m and k once.
    let rows: Vec<XRow> = match T::NEEDS {
        Needs::Q8 => {
            let q = x.q8.expect("idot: activations quantised per 32");
            assert!(q.m == m && q.k == k && q.q.len() == m * k && q.ds.len() == m * nb);
            (0..m)
                .map(|i| {
                    let (v, ds) = q.row(i);
                    XRow {
                        q: v.as_ptr(),
                        meta: ds.as_ptr() as *const f32,
                        bs: std::ptr::null(),
                    }
                })
                .collect()
        }
        Needs::Q8K => {
            let q = x.q8k.expect("idot: activations quantised per 256");
            assert!(q.m == m && q.k == k && q.d.len() == m * nb && q.bsums.len() == m * k / 16);
            (0..m)
                .map(|i| {
                    let (v, d, bs) = q.row(i);
                    XRow {
                        q: v.as_ptr(),
                        meta: d.as_ptr(),
                        bs: bs.as_ptr(),
                    }
                })
                .collect()
        }
        Needs::F32 => unreachable!("integer kernels read 8-bit rows"),
    };
    let mut i = 0;
    while i < m {
        let r = (m - i).min(4);
        let mut j = 0;
        while j < n {
            let c = if r == 1 && n - j >= 2 { 2 } else { 1 };
            let t = Tile {
                w: &w[j * rb..(j + c) * rb],
                rb,
                x: &rows[i..i + r],
                nb,
                out,
                i,
                j,
            };
            // SAFETY: c weight rows of whole blocks and r activation rows of nb blocks
            // each (checked above); the features are present (this function's).
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

struct Tile<'a> {
    w: &'a [u8],
    rb: usize,
    x: &'a [XRow],
    nb: usize,
    out: OutPtr,
    i: usize,
    j: usize,
}

impl Tile<'_> {
    #[inline(always)]
    unsafe fn run<T: IDot, const R: usize, const C: usize>(&self) {
        debug_assert!(self.w.len() == C * self.rb && self.x.len() == R);
        let mut x = [self.x[0]; R];
        for r in 1..R {
            x[r] = self.x[r];
        }
        let mut acc = [[[_mm256_setzero_ps(); 2]; R]; C];
        let mut b = 0;
        if R * C < 4 {
            // Small tiles alternate two accumulators: independent FMA chains.
            while b + 2 <= self.nb {
                self.block::<T, R, C>(&x, &mut acc, b, 0);
                self.block::<T, R, C>(&x, &mut acc, b + 1, 1);
                b += 2;
            }
        }
        while b < self.nb {
            self.block::<T, R, C>(&x, &mut acc, b, 0);
            b += 1;
        }
        for (c, acc) in acc.iter().enumerate() {
            for (r, acc) in acc.iter().enumerate() {
                self.out
                    .set(self.i + r, self.j + c, hsum(_mm256_add_ps(acc[0], acc[1])));
            }
        }
    }

    /// Block `b` into accumulator slot `p` (a constant at each call, so the
    /// accumulators stay in registers). A method, not a closure: closures do not
    /// inherit the caller's target features and might not inline.
    #[inline(always)]
    unsafe fn block<T: IDot, const R: usize, const C: usize>(
        &self,
        x: &[XRow; R],
        acc: &mut [[[__m256; 2]; R]; C],
        b: usize,
        p: usize,
    ) {
        let w = self.w.as_ptr();
        let mut wb = [w; C];
        for c in 0..C {
            wb[c] = w.add(c * self.rb + b * T::BYTES);
        }
        if R == 1 {
            for c in 0..C {
                _mm_prefetch::<_MM_HINT_T0>(wb[c].add(PREFETCH) as *const i8);
            }
        }
        let mut h = [T::header(wb[0]); C];
        for c in 1..C {
            h[c] = T::header(wb[c]);
        }
        let mut sumi = [[_mm256_setzero_si256(); R]; C];
        for part in 0..T::PARTS {
            for c in 0..C {
                let u = T::unpack(wb[c], &h[c], part);
                for r in 0..R {
                    let q = x[r].q.add(b * T::BLOCK);
                    sumi[c][r] = T::part(&u, q, part, sumi[c][r]);
                }
            }
        }
        for c in 0..C {
            for r in 0..R {
                acc[c][r][p] = T::finish(&h[c], x[r], b, sumi[c][r], acc[c][r][p]);
            }
        }
    }
}

/// Σ over pairs of u8 × i8 products, widened to 8 × i32.
#[inline(always)]
unsafe fn dot_u8_i8(u: __m256i, q: *const i8) -> __m256i {
    let p = _mm256_maddubs_epi16(u, _mm256_loadu_si256(q as *const __m256i));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// `acc + sumi·(dw·dx) + dm·s8`: the block's products, and its offset (`dm` =
/// −offset·dw) or minimum (`dm` = m) times the activation block's sum.
#[inline(always)]
unsafe fn finish32(dw: f32, dm: f32, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
    let meta = x.meta.add(2 * b);
    let dx = _mm256_broadcast_ss(&*meta);
    let s8 = _mm256_broadcast_ss(&*meta.add(1));
    let acc = _mm256_fmadd_ps(
        _mm256_cvtepi32_ps(sumi),
        _mm256_mul_ps(_mm256_set1_ps(dw), dx),
        acc,
    );
    _mm256_fmadd_ps(_mm256_set1_ps(dm), s8, acc)
}

#[allow(non_camel_case_types)]
struct Q8_0;
impl IDot for Q8_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 34;
    const PARTS: usize = 1;
    const NEEDS: Needs = Needs::Q8;
    type H = f32;
    type U = (__m256i, __m256i);
    #[inline(always)]
    unsafe fn header(b: *const u8) -> f32 {
        f16_at(b)
    }
    #[inline(always)]
    unsafe fn unpack(b: *const u8, _: &f32, _: usize) -> Self::U {
        // Signed × signed: |w| times x with w's sign (maddubs wants one side unsigned).
        let w = _mm256_loadu_si256(b.add(2) as *const __m256i);
        (w, _mm256_sign_epi8(w, w))
    }
    #[inline(always)]
    unsafe fn part(u: &Self::U, q: *const i8, _: usize, sumi: __m256i) -> __m256i {
        let x = _mm256_sign_epi8(_mm256_loadu_si256(q as *const __m256i), u.0);
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u.1, x), _mm256_set1_epi16(1));
        _mm256_add_epi32(sumi, p)
    }
    #[inline(always)]
    unsafe fn finish(d: &f32, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
        let dx = _mm256_broadcast_ss(&*x.meta.add(2 * b));
        _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(sumi),
            _mm256_mul_ps(_mm256_set1_ps(*d), dx),
            acc,
        )
    }
}

/// The 32-element types with 4- or 5-bit values: (fifth bit at, nibbles at, offset
/// or minimum).
macro_rules! legacy {
    ($name:ident, $bytes:expr, $qh:expr, $qs:expr, $min:expr) => {
        #[allow(non_camel_case_types)]
        struct $name;
        impl IDot for $name {
            const BLOCK: usize = 32;
            const BYTES: usize = $bytes;
            const PARTS: usize = 1;
            const NEEDS: Needs = Needs::Q8;
            /// (d, −offset·d or the minimum)
            type H = (f32, f32);
            type U = __m256i;
            #[inline(always)]
            unsafe fn header(b: *const u8) -> (f32, f32) {
                let d = f16_at(b);
                match $min {
                    Some(offset) => (d, -(offset as f32) * d),
                    None => (d, f16_at(b.add(2))),
                }
            }
            #[inline(always)]
            unsafe fn unpack(b: *const u8, _: &(f32, f32), _: usize) -> __m256i {
                let q = nibbles32(b.add($qs));
                match $qh {
                    Some(at) => _mm256_or_si256(q, bit4_of_32(b.add(at))),
                    None => q,
                }
            }
            #[inline(always)]
            unsafe fn part(u: &__m256i, q: *const i8, _: usize, sumi: __m256i) -> __m256i {
                _mm256_add_epi32(sumi, dot_u8_i8(*u, q))
            }
            #[inline(always)]
            unsafe fn finish(h: &(f32, f32), x: XRow, b: usize, s: __m256i, acc: __m256) -> __m256 {
                finish32(h.0, h.1, x, b, s, acc)
            }
        }
    };
}

// Offsets: Some(o) means value = d·(q − o); None: d·q + m.
legacy!(Q4_0, 18, None::<usize>, 2, Some(8));
legacy!(Q4_1, 20, None::<usize>, 4, None::<i32>);
legacy!(Q5_0, 22, Some(2), 6, Some(16));
legacy!(Q5_1, 24, Some(4), 8, None::<i32>);

/// Q4_K / Q5_K block scales: (d, dmin, the 8 scales in both lanes as i16, the 8
/// minimums each twice as i16 — lined up with pairs of 16-sums).
#[derive(Clone, Copy)]
struct KHeader {
    d: f32,
    dmin: f32,
    scales: __m256i,
    mins: __m256i,
}

#[inline(always)]
unsafe fn k_header(b: *const u8) -> KHeader {
    let sm = _mm256_cvtepu8_epi16(kquant_scales_mins(b.add(4)));
    let scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm));
    let mins = _mm256_broadcastsi128_si256(_mm256_extracti128_si256::<1>(sm));
    // Lane pair j of each 128-bit half takes minimum j (low half) or 4 + j (high half).
    let dup = _mm256_setr_epi8(
        0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, //
        8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15,
    );
    KHeader {
        d: f16_at(b),
        dmin: f16_at(b.add(2)),
        scales,
        mins: _mm256_shuffle_epi8(mins, dup),
    }
}

/// Scale `j` of a header's scales in every i16 lane.
#[inline(always)]
unsafe fn k_scale(scales: __m256i, j: usize) -> __m256i {
    _mm256_shuffle_epi8(scales, _mm256_set1_epi16((0x0100 + 0x0202 * j) as i16))
}

/// `acc + (d·dx)·sumi − (dmin·dx)·Σ_j m_j·(sum of sub-block j)`.
#[inline(always)]
unsafe fn k_finish(h: &KHeader, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
    let dx = _mm256_broadcast_ss(&*x.meta.add(b));
    let bs = _mm256_loadu_si256(x.bs.add(16 * b) as *const __m256i);
    let mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(h.mins, bs));
    let acc = _mm256_fmadd_ps(
        _mm256_cvtepi32_ps(sumi),
        _mm256_mul_ps(_mm256_set1_ps(h.d), dx),
        acc,
    );
    _mm256_fnmadd_ps(mins, _mm256_mul_ps(_mm256_set1_ps(h.dmin), dx), acc)
}

/// 64 values of a Q4_K / Q5_K block (low nibbles: sub-block 2c, high: 2c + 1) with
/// their scales.
#[derive(Clone, Copy)]
struct KPart {
    lo: __m256i,
    hi: __m256i,
    s_lo: __m256i,
    s_hi: __m256i,
}

#[inline(always)]
unsafe fn k_part(u: &KPart, q: *const i8, c: usize, sumi: __m256i) -> __m256i {
    let q = q.add(64 * c);
    let p_lo = _mm256_maddubs_epi16(u.lo, _mm256_loadu_si256(q as *const __m256i));
    let p_hi = _mm256_maddubs_epi16(u.hi, _mm256_loadu_si256(q.add(32) as *const __m256i));
    let p = _mm256_add_epi32(
        _mm256_madd_epi16(p_lo, u.s_lo),
        _mm256_madd_epi16(p_hi, u.s_hi),
    );
    _mm256_add_epi32(sumi, p)
}

#[allow(non_camel_case_types)]
struct Q4_K;
impl IDot for Q4_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 144;
    const PARTS: usize = 4;
    const NEEDS: Needs = Needs::Q8K;
    type H = KHeader;
    type U = KPart;
    #[inline(always)]
    unsafe fn header(b: *const u8) -> KHeader {
        k_header(b)
    }
    #[inline(always)]
    unsafe fn unpack(b: *const u8, h: &KHeader, c: usize) -> KPart {
        let q = _mm256_loadu_si256(b.add(16 + 32 * c) as *const __m256i);
        let m4 = _mm256_set1_epi8(0x0F);
        KPart {
            lo: _mm256_and_si256(q, m4),
            hi: _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
            s_lo: k_scale(h.scales, 2 * c),
            s_hi: k_scale(h.scales, 2 * c + 1),
        }
    }
    #[inline(always)]
    unsafe fn part(u: &KPart, q: *const i8, c: usize, sumi: __m256i) -> __m256i {
        k_part(u, q, c, sumi)
    }
    #[inline(always)]
    unsafe fn finish(h: &KHeader, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
        k_finish(h, x, b, sumi, acc)
    }
}

#[allow(non_camel_case_types)]
struct Q5_K;
impl IDot for Q5_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 176;
    const PARTS: usize = 4;
    const NEEDS: Needs = Needs::Q8K;
    type H = KHeader;
    type U = KPart;
    #[inline(always)]
    unsafe fn header(b: *const u8) -> KHeader {
        k_header(b)
    }
    #[inline(always)]
    unsafe fn unpack(b: *const u8, h: &KHeader, c: usize) -> KPart {
        let q = _mm256_loadu_si256(b.add(48 + 32 * c) as *const __m256i);
        let qh = _mm256_loadu_si256(b.add(16) as *const __m256i);
        let m4 = _mm256_set1_epi8(0x0F);
        // Fifth bits: bit 2c (low nibbles) and 2c + 1 (high) of qh byte l, to 0x10.
        let fifth = |bit: usize| {
            let bit = _mm256_set1_epi8((1u8 << bit) as i8);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
            _mm256_and_si256(set, _mm256_set1_epi8(0x10))
        };
        KPart {
            lo: _mm256_or_si256(_mm256_and_si256(q, m4), fifth(2 * c)),
            hi: _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
                fifth(2 * c + 1),
            ),
            s_lo: k_scale(h.scales, 2 * c),
            s_hi: k_scale(h.scales, 2 * c + 1),
        }
    }
    #[inline(always)]
    unsafe fn part(u: &KPart, q: *const i8, c: usize, sumi: __m256i) -> __m256i {
        k_part(u, q, c, sumi)
    }
    #[inline(always)]
    unsafe fn finish(h: &KHeader, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
        k_finish(h, x, b, sumi, acc)
    }
}

/// Q6_K block scales: d, the 16 scales as i16 (for the −32 offset against the
/// 16-sums), and scales 0..8 / 8..16 in both 128-bit lanes (for the parts).
#[derive(Clone, Copy)]
struct Q6Header {
    d: f32,
    sc16: __m256i,
    halves: [__m256i; 2],
}

#[allow(non_camel_case_types)]
struct Q6_K;
impl IDot for Q6_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 210;
    /// (half n, 32-value group s) = (part / 4, part % 4).
    const PARTS: usize = 8;
    const NEEDS: Needs = Needs::Q8K;
    type H = Q6Header;
    type U = (__m256i, __m256i);
    #[inline(always)]
    unsafe fn header(b: *const u8) -> Q6Header {
        let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(192) as *const __m128i));
        Q6Header {
            d: f16_at(b.add(208)),
            sc16,
            halves: [
                _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16)),
                _mm256_broadcastsi128_si256(_mm256_extracti128_si256::<1>(sc16)),
            ],
        }
    }
    #[inline(always)]
    unsafe fn unpack(b: *const u8, h: &Q6Header, part: usize) -> Self::U {
        let (n, s) = (part / 4, part % 4);
        // Values 0..16 take scale 8n + 2s, 16..32 scale 8n + 2s + 1: i16 lanes 2s and
        // 2s + 1 of the half's scales, one per 128-bit lane.
        let pick = _mm256_set_m128i(
            _mm_set1_epi16((0x0302 + 0x0404 * s) as i16),
            _mm_set1_epi16((0x0100 + 0x0404 * s) as i16),
        );
        (q6k_values(b, part), _mm256_shuffle_epi8(h.halves[n], pick))
    }
    #[inline(always)]
    unsafe fn part(u: &Self::U, q: *const i8, part: usize, sumi: __m256i) -> __m256i {
        let p = _mm256_maddubs_epi16(u.0, _mm256_loadu_si256(q.add(32 * part) as *const __m256i));
        _mm256_add_epi32(sumi, _mm256_madd_epi16(p, u.1))
    }
    #[inline(always)]
    unsafe fn finish(h: &Q6Header, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
        // Values are q − 32: take 32·Σ sc_j·(sum of 16-group j) off in integers.
        let bs = _mm256_loadu_si256(x.bs.add(16 * b) as *const __m256i);
        let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(h.sc16, bs));
        let dx = _mm256_broadcast_ss(&*x.meta.add(b));
        let s = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, off));
        _mm256_fmadd_ps(s, _mm256_mul_ps(_mm256_set1_ps(h.d), dx), acc)
    }
}
