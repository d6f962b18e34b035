//! The f32 vector primitives of attention: a dot product (q·k per cached key) and an
//! axpy (the weighted sum of cached values), 32 lanes in flight so the FMA latency is
//! hidden on head widths of 64 and more.

use super::hsum;
use std::arch::x86_64::*;

/// An element a cache row holds: f32, or f16 bits (an f16 KV cache).
pub(in crate::simd) trait Lane: Copy {
    /// Eight elements from `p` as f32 lanes.
    ///
    /// # Safety
    /// AVX2 and F16C must be present; `p..p + 8` must be readable.
    unsafe fn load8(p: *const Self) -> __m256;
    fn get(self) -> f32;
}

impl Lane for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    fn get(self) -> f32 {
        self
    }
}

impl Lane for u16 {
    #[inline(always)]
    unsafe fn load8(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    fn get(self) -> f32 {
        half::f16::from_bits(self).to_f32()
    }
}

/// `Σ a[i]·b[i]`.
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn dot<B: Lane>(a: &[f32], b: &[B]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (u, s) in acc.iter_mut().enumerate() {
            let at = i + 8 * u;
            *s = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(at)), B::load8(pb.add(at)), *s);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), B::load8(pb.add(i)), acc[0]);
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum(v);
    while i < n {
        sum += *pa.add(i) * (*pb.add(i)).get();
        i += 1;
    }
    sum
}

/// `y[i] += a·x[i]`.
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd) unsafe fn axpy<X: Lane>(y: &mut [f32], a: f32, x: &[X]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_fmadd_ps(av, X::load8(px.add(i)), _mm256_loadu_ps(py.add(i)));
        _mm256_storeu_ps(py.add(i), v);
        i += 8;
    }
    while i < n {
        *py.add(i) += a * (*px.add(i)).get();
        i += 1;
    }
}
