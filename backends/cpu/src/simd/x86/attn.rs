//! Attention's row kernels (`crate::attention::RowOps`): one query head's scores
//! against a run of cached rows, e^(x − max) over a score row, and a weighted sum of
//! cached rows. Whole runs per call, so the per-key work is a few vector instructions
//! and not a function call; rows are fetched ahead of use because a head's rows are
//! strided through the cache (one KV head of each position), which the hardware
//! prefetchers follow too late. Head widths must be multiples of 8 (callers check).

// Index loops over the const tile sizes: unrolled, so the tiles live in registers.
#![allow(clippy::needless_range_loop)]

use super::hsum;
use crate::attention::ScoreRows;
use std::arch::x86_64::*;

/// An element a cache row holds: f32, or f16 bits (an f16 KV cache).
pub(in crate::simd) trait Lane: Copy {
    /// Eight elements from `p` as f32 lanes.
    ///
    /// # Safety
    /// AVX2 and F16C must be present; `p..p + 8` must be readable.
    unsafe fn load8(p: *const Self) -> __m256;
}

impl Lane for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
}

impl Lane for u16 {
    #[inline(always)]
    unsafe fn load8(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
}

/// Rows ahead that are fetched into cache.
const AHEAD: usize = 16;

/// Asks for row `at` (`len` elements) to be brought into cache: a hint, which reads
/// nothing and cannot fault, so addresses past the end are harmless.
#[inline(always)]
unsafe fn prefetch<L>(rows: *const L, at: usize, len: usize) {
    let p = rows.wrapping_add(at) as *const i8;
    for off in (0..len * std::mem::size_of::<L>()).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off));
    }
}

/// `out[h][j] = scale · q_h·row(first + j·stride)` for the heads of `q`: tiles of 2
/// heads × 4 keys, so each loaded key vector serves two heads and each query vector
/// four keys (6 loads per 8 FMAs). Each score's 8 lanes are added as
/// ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)) whatever its tile, so a score does not
/// depend on the heads or keys it ran with.
///
/// # Safety
/// AVX2, FMA and F16C must be present; the head width a multiple of 8.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn scores<L: Lane>(
    q: &[f32],
    rows: &[L],
    first: usize,
    stride: usize,
    scale: f32,
    out: ScoreRows,
) {
    let (heads, n, ld) = (out.heads(), out.n, out.ld);
    if heads == 0 || n == 0 {
        return;
    }
    let hd = q.len() / heads;
    assert!(
        hd.is_multiple_of(8)
            && q.len() == heads * hd
            && first + (n - 1) * stride + hd <= rows.len()
    );
    assert!(n <= ld || heads == 1);
    let po = out.out.as_mut_ptr();
    let t = Tile {
        q: q.as_ptr(),
        hd,
        rows: rows.as_ptr(),
        first,
        stride,
        scale,
        out: po,
        ld,
    };
    let mut j = 0;
    while j + 4 <= n {
        for u in 0..4 {
            prefetch(t.rows, first + (j + AHEAD + u) * stride, hd);
        }
        let mut h = 0;
        while h + 2 <= heads {
            t.run::<2, 4>(h, j);
            h += 2;
        }
        if h < heads {
            t.run::<1, 4>(h, j);
        }
        j += 4;
    }
    while j < n {
        for h in 0..heads {
            t.run::<1, 1>(h, j);
        }
        j += 1;
    }
}

/// One call's operands as raw pointers (checked by [`scores`]).
struct Tile<L> {
    q: *const f32,
    hd: usize,
    rows: *const L,
    first: usize,
    stride: usize,
    scale: f32,
    out: *mut f32,
    ld: usize,
}

impl<L: Lane> Tile<L> {
    /// Heads h.. (H of them) × keys j.. (J: 4 or 1).
    #[inline(always)]
    unsafe fn run<const H: usize, const J: usize>(&self, h: usize, j: usize) {
        let mut acc = [[_mm256_setzero_ps(); J]; H];
        for i in (0..self.hd).step_by(8) {
            let mut k = [_mm256_setzero_ps(); J];
            for u in 0..J {
                k[u] = L::load8(self.rows.add(self.first + (j + u) * self.stride + i));
            }
            for a in 0..H {
                let qv = _mm256_loadu_ps(self.q.add((h + a) * self.hd + i));
                for u in 0..J {
                    acc[a][u] = _mm256_fmadd_ps(qv, k[u], acc[a][u]);
                }
            }
        }
        let sv = _mm_set1_ps(self.scale);
        for a in 0..H {
            let o = self.out.add((h + a) * self.ld + j);
            match J {
                4 => {
                    let h01 = _mm256_hadd_ps(acc[a][0], acc[a][1]);
                    let h23 = _mm256_hadd_ps(acc[a][2], acc[a][3]);
                    let lo = _mm256_hadd_ps(h01, h23);
                    let s = _mm_add_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps::<1>(lo));
                    _mm_storeu_ps(o, _mm_mul_ps(s, sv));
                }
                _ => {
                    let v = _mm256_hadd_ps(acc[a][0], acc[a][0]);
                    let v = _mm256_hadd_ps(v, v);
                    let s = _mm_add_ss(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                    *o = _mm_cvtss_f32(_mm_mul_ss(s, sv));
                }
            }
        }
    }
}

/// `acc += Σ_j w[j] · row(first + j·stride)`, 64 columns at a time held in registers
/// over all the rows.
///
/// # Safety
/// AVX2, FMA and F16C must be present; `acc.len()` a multiple of 8.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn weighted_sum<L: Lane>(
    w: &[f32],
    rows: &[L],
    first: usize,
    stride: usize,
    acc: &mut [f32],
) {
    let (hd, n) = (acc.len(), w.len());
    assert!(hd % 8 == 0 && (n == 0 || first + (n - 1) * stride + hd <= rows.len()));
    let pr = rows.as_ptr();
    let pa = acc.as_mut_ptr();
    let mut c = 0;
    while c + 64 <= hd {
        let mut a = [_mm256_setzero_ps(); 8];
        for (u, a) in a.iter_mut().enumerate() {
            *a = _mm256_loadu_ps(pa.add(c + 8 * u));
        }
        for (j, &wj) in w.iter().enumerate() {
            if c == 0 {
                prefetch(pr, first + (j + AHEAD) * stride, hd);
            }
            let wv = _mm256_set1_ps(wj);
            let row = pr.add(first + j * stride + c);
            for (u, a) in a.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(wv, L::load8(row.add(8 * u)), *a);
            }
        }
        for (u, a) in a.iter().enumerate() {
            _mm256_storeu_ps(pa.add(c + 8 * u), *a);
        }
        c += 64;
    }
    // Head widths that are not a multiple of 64: the rest, 8 columns at a time.
    while c < hd {
        let mut a = _mm256_loadu_ps(pa.add(c));
        for (j, &wj) in w.iter().enumerate() {
            if c == 0 {
                prefetch(pr, first + (j + AHEAD) * stride, hd);
            }
            a = _mm256_fmadd_ps(
                _mm256_set1_ps(wj),
                L::load8(pr.add(first + j * stride + c)),
                a,
            );
        }
        _mm256_storeu_ps(pa.add(c), a);
        c += 8;
    }
}

/// `eˣ` in eight lanes: x = n·ln2 + r (ln2 in two parts, so n·ln2 is exact), eʳ by
/// Cephes' degree-6 `expf` polynomial, 2ⁿ built in the exponent bits; the JIT's `exp`
/// (`jit::math`) in AVX2. About 2 ulp. Inputs are clamped to where 2ⁿ is normal, so
/// e⁻¹⁰⁰ gives about 1e-38 where the reference gives 0 (a weight no sum can tell
/// from 0); NaN stays NaN (`min`/`max` return their second operand on NaN).
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    let x = _mm256_max_ps(
        _mm256_set1_ps(-87.336_55),
        _mm256_min_ps(_mm256_set1_ps(88.0), x),
    );
    let magic = _mm256_set1_ps(12_582_912.0 + 127.0);
    let t = _mm256_add_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        magic,
    );
    let n = _mm256_sub_ps(t, magic);
    let r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693_359_4)));
    let r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(-2.121_944_4e-4)));
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for k in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(k));
    }
    let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    let y = _mm256_add_ps(y, _mm256_set1_ps(1.0));
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(t)));
    _mm256_mul_ps(y, pow2)
}

/// `x[i] = e^(x[i] − m)`; returns their sum.
///
/// # Safety
/// AVX2 and FMA must be present.
#[target_feature(enable = "avx2,fma")]
pub(in crate::simd) unsafe fn exp_sum(x: &mut [f32], m: f32) -> f32 {
    let mv = _mm256_set1_ps(m);
    let mut sum = _mm256_setzero_ps();
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
        _mm256_storeu_ps(c.as_mut_ptr(), e);
        sum = _mm256_add_ps(sum, e);
    }
    let mut total = hsum(sum);
    // The tail through the same lanes, so every value gets the same function.
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut buf = [0f32; 8];
        buf[..tail.len()].copy_from_slice(tail);
        _mm256_storeu_ps(
            buf.as_mut_ptr(),
            exp8(_mm256_sub_ps(_mm256_loadu_ps(buf.as_ptr()), mv)),
        );
        tail.copy_from_slice(&buf[..tail.len()]);
        total += tail.iter().sum::<f32>();
    }
    total
}
