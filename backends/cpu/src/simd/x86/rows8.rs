//! 8-bit activations × the 32-element types and Q4_K in the rows8 layout
//! ([`crate::repack`]): lane r of every vector is weight row r of an 8-row group.
//!
//! Per block and activation row: each group of four activation values is broadcast
//! to all lanes and multiplied with the group's 32 weight bytes (`maddubs`, or
//! `vpdpbusd` with AVX-512 VNNI), which leaves every row's partial sum in its own
//! lane. The 4-bit types add all eight groups' i16 pair sums before widening (at most
//! 8·2·15·127 < 2¹⁵), the 5-bit types four (4·2·31·127 < 2¹⁵); Q8_0 widens every
//! group (|w| goes to `maddubs` unsigned, its sign onto x). The block's eight
//! scales are one vector, so the float work is two FMAs a block for eight outputs,
//! and the eight outputs are stored together: no horizontal sums anywhere.
//!
//! Q4_K (activations in blocks of 256 with 16-sums): a sub-block's eight groups
//! add in i16 (8·2·15·127 < 2¹⁵), then one `madd` by the sub-block's eight scales
//! (a row's scale in both i16 halves of its lane) widens and scales them; the
//! minimums meet the activation's sub-block sums, two sub-blocks a `madd`.
//!
//! Rows past the last whole group keep the stored layout and run the stored-layout
//! kernel.

#![allow(clippy::needless_range_loop)]

use super::bit4_of_32;
use super::idot::{self, legacy_task, rows, Legacy, Vnni, XRow, PREFETCH};
use crate::repack::Q4K_PACKED;
use crate::simd::{Acts, ChunkFn, Needs, OutPtr};
use std::arch::x86_64::*;
use weft_ir::DType;

/// Runs `$e` with `$R` the const activation-row count `$r` (1 to 4).
macro_rules! for_rows {
    ($r:expr, $R:ident => $e:expr) => {
        match $r {
            1 => {
                const $R: usize = 1;
                $e
            }
            2 => {
                const $R: usize = 2;
                $e
            }
            3 => {
                const $R: usize = 3;
                $e
            }
            _ => {
                const $R: usize = 4;
                $e
            }
        }
    };
}

/// The rows8 kernel for `dtype` (the 32-element types and Q4_K); `vnni` as in
/// [`super::idot`] (Q4_K has one kernel either way).
pub(super) fn kernel(dtype: DType, vnni: bool) -> Option<(ChunkFn, Needs)> {
    use super::idot::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
    macro_rules! k {
        ($T:ty) => {
            Some((
                match vnni {
                    true => chunk_rows8_vnni::<$T> as ChunkFn,
                    false => chunk_rows8::<$T> as ChunkFn,
                },
                Needs::Q8,
            ))
        };
    }
    match dtype {
        DType::Q4_0 => k!(Q4_0),
        DType::Q4_1 => k!(Q4_1),
        DType::Q5_0 => k!(Q5_0),
        DType::Q5_1 => k!(Q5_1),
        DType::Q8_0 => k!(Q8_0),
        // Integer dots by maddubs + madd with or without VNNI (the sub-block scale
        // goes in through the madd).
        DType::Q4_K => Some((chunk_q4k_rows8 as ChunkFn, Needs::Q8K)),
        _ => None,
    }
}

/// One task over rows8 bytes.
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn chunk_rows8<T: Legacy>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    rows8_task::<T>(w, rb, x, out)
}

/// [`chunk_rows8`] with AVX-512 VNNI's dots.
///
/// # Safety
/// AVX2, FMA, F16C, AVX-512 VNNI and VL must be present.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn chunk_rows8_vnni<T: Legacy>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    rows8_task::<Vnni<T>>(w, rb, x, out)
}

#[inline(always)]
unsafe fn rows8_task<T: Legacy>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    let (m, k, n) = (x.m, x.k, out.cols());
    let nb = k / 32;
    assert!(out.rows() == m && w.len() == n * rb && nb * T::BYTES == rb && k % 32 == 0);
    let groups = n / 8;
    if 8 * groups < n {
        // SAFETY: the task's own columns; the stored layout there.
        let tail = unsafe { out.columns(8 * groups, n - 8 * groups) };
        legacy_task::<T>(&w[8 * groups * rb..], rb, x, tail);
    }
    let xr = rows(x, Needs::Q8, 32);
    for (i, r, g) in tiles(m, groups) {
        let t = Group::new(w, 8 * rb, nb, &xr, out, (i, r, g));
        // SAFETY: 8 rows of nb whole blocks, r activation rows of nb blocks (checked
        // above); the features are the caller's.
        unsafe { for_rows!(r, R => t.run::<T, R>()) }
    }
}

/// The task's tiles `(i, r, g)`: activation rows i..i + r (four at a time) against
/// 8-row group g, activation rows outer (the task's weights stay in cache while the
/// activations stream past once). An iterator, so the kernels' bodies stay in their
/// entry functions and take their target features.
fn tiles(m: usize, groups: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..m)
        .step_by(4)
        .flat_map(move |i| (0..groups).map(move |g| (i, (m - i).min(4), g)))
}

/// One 8-row group against up to 4 activation rows.
struct Group<'a> {
    w: &'a [u8],
    nb: usize,
    x: &'a [XRow],
    out: OutPtr<'a>,
    i: usize,
    j: usize,
}

impl<'a> Group<'a> {
    /// Tile `(i, r, g)` of a task: group g of `gb` bytes, activation rows i..i + r.
    fn new(
        w: &'a [u8],
        gb: usize,
        nb: usize,
        xr: &'a [XRow],
        out: OutPtr<'a>,
        (i, r, g): (usize, usize, usize),
    ) -> Self {
        Group {
            w: &w[g * gb..(g + 1) * gb],
            nb,
            x: &xr[i..i + r],
            out,
            i,
            j: 8 * g,
        }
    }

    /// The tile's activation rows as an array.
    #[inline(always)]
    fn xrows<const R: usize>(&self) -> [XRow; R] {
        let mut x = [self.x[0]; R];
        x.copy_from_slice(&self.x[..R]);
        x
    }

    /// Packed block b's address (`bytes` a block), prefetching ahead for decode tiles.
    #[inline(always)]
    unsafe fn block<const R: usize>(&self, b: usize, bytes: usize) -> *const u8 {
        let p = self.w.as_ptr().add(b * bytes);
        if R == 1 {
            let mut off = 0;
            while off < bytes {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + off) as *const i8);
                off += 64;
            }
        }
        p
    }

    /// The eight outputs of each activation row.
    #[inline(always)]
    unsafe fn store<const R: usize>(&self, acc: &[__m256; R]) {
        for r in 0..R {
            let mut v = [0f32; 8];
            _mm256_storeu_ps(v.as_mut_ptr(), acc[r]);
            for (c, &s) in v.iter().enumerate() {
                self.out.set(self.i + r, self.j + c, s);
            }
        }
    }
}

/// The four activation values of group `at` (bytes) of a row, in every lane.
#[inline(always)]
unsafe fn x4(q: *const i8, at: usize) -> __m256i {
    _mm256_set1_epi32((q.add(at) as *const i32).read_unaligned())
}

/// `sum` plus the byte products of `w` (unsigned) and `x` summed in fours, per lane.
#[inline(always)]
unsafe fn dot4<T: Legacy>(sum: __m256i, w: __m256i, x: __m256i) -> __m256i {
    match T::VNNI {
        true => _mm256_dpbusd_epi32(sum, w, x),
        false => _mm256_add_epi32(
            sum,
            _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)),
        ),
    }
}

impl Group<'_> {
    #[inline(always)]
    unsafe fn run<T: Legacy, const R: usize>(&self) {
        let x = self.xrows::<R>();
        let zero = _mm256_setzero_si256();
        let ones = _mm256_set1_epi16(1);
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..self.nb {
            let p = self.block::<R>(b, 8 * T::BYTES);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let (dm, qh) = match T::OFFSET {
                Some(o) => (_mm256_mul_ps(d, _mm256_set1_ps(-o)), p.add(16)),
                None => (
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i)),
                    p.add(32),
                ),
            };
            let qs = if T::FIFTH { qh.add(32) } else { qh };
            let mut sumi = [zero; R];
            if T::SIGNED {
                // Q8_0: |w| times x with w's sign, one group a chunk.
                for c in 0..8 {
                    let v = _mm256_loadu_si256(qs.add(32 * c) as *const __m256i);
                    let va = _mm256_sign_epi8(v, v);
                    for r in 0..R {
                        let xs = _mm256_sign_epi8(x4(x[r].q, 32 * b + 4 * c), v);
                        sumi[r] = dot4::<T>(sumi[r], va, xs);
                    }
                }
            } else {
                // Pair sums held in i16 between widenings (not needed with VNNI).
                let mut p16 = [zero; R];
                for c in 0..4 {
                    let raw = _mm256_loadu_si256(qs.add(32 * c) as *const __m256i);
                    let mut lo = _mm256_and_si256(raw, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
                    if T::FIFTH {
                        lo = _mm256_or_si256(lo, bit4_of_32(qh.add(4 * c)));
                        hi = _mm256_or_si256(hi, bit4_of_32(qh.add(16 + 4 * c)));
                    }
                    for r in 0..R {
                        let xlo = x4(x[r].q, 32 * b + 4 * c);
                        let xhi = x4(x[r].q, 32 * b + 16 + 4 * c);
                        if T::VNNI {
                            sumi[r] = _mm256_dpbusd_epi32(sumi[r], lo, xlo);
                            sumi[r] = _mm256_dpbusd_epi32(sumi[r], hi, xhi);
                        } else {
                            let s = _mm256_add_epi16(
                                _mm256_maddubs_epi16(lo, xlo),
                                _mm256_maddubs_epi16(hi, xhi),
                            );
                            p16[r] = _mm256_add_epi16(p16[r], s);
                        }
                    }
                    // Widen before the i16 sums could overflow: after every
                    // two chunks (four groups) for 5-bit values, once for 4-bit.
                    if !T::VNNI && (c == 3 || (T::FIFTH && c == 1)) {
                        for r in 0..R {
                            sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p16[r], ones));
                            p16[r] = zero;
                        }
                    }
                }
            }
            for r in 0..R {
                let dx = _mm256_broadcast_ss(&*x[r].d.add(b));
                let sx = _mm256_broadcast_ss(&*x[r].s.add(b));
                let a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r]), _mm256_mul_ps(d, dx), acc[r]);
                acc[r] = _mm256_fmadd_ps(dm, sx, a);
            }
        }
        self.store(&acc);
    }
}

/// One Q4_K task over rows8 bytes.
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn chunk_q4k_rows8(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    let (m, k, n) = (x.m, x.k, out.cols());
    let nb = k / 256;
    let groups = n / 8;
    let gb = nb * Q4K_PACKED;
    assert!(out.rows() == m && nb * 144 == rb && k % 256 == 0);
    assert!(w.len() == groups * gb + (n - 8 * groups) * rb);
    if 8 * groups < n {
        // SAFETY: the task's own columns; the stored layout there, the features this
        // function's.
        unsafe {
            let tail = out.columns(8 * groups, n - 8 * groups);
            idot::chunk_q4k(&w[groups * gb..], rb, x, tail);
        }
    }
    let xr = rows(x, Needs::Q8K, 256);
    for (i, r, g) in tiles(m, groups) {
        let t = Group::new(w, gb, nb, &xr, out, (i, r, g));
        // SAFETY: 8 rows of nb whole packed blocks, r activation rows of nb blocks
        // (checked above); the features are this function's.
        unsafe { for_rows!(r, R => t.run_q4k::<R>()) }
    }
}

impl Group<'_> {
    #[inline(always)]
    unsafe fn run_q4k<const R: usize>(&self) {
        let x = self.xrows::<R>();
        let zero = _mm256_setzero_si256();
        let m4 = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        // From 8 bytes in both 128-bit halves: lane r gets byte r in both i16 halves.
        let both = _mm256_setr_epi8(
            0, -128, 0, -128, 1, -128, 1, -128, 2, -128, 2, -128, 3, -128, 3, -128, //
            4, -128, 4, -128, 5, -128, 5, -128, 6, -128, 6, -128, 7, -128, 7, -128,
        );
        // From 16 bytes (sub-blocks j, j + 1) in both halves: lane r gets byte r, then
        // byte 8 + r.
        let pair = _mm256_setr_epi8(
            0, -128, 8, -128, 1, -128, 9, -128, 2, -128, 10, -128, 3, -128, 11, -128, //
            4, -128, 12, -128, 5, -128, 13, -128, 6, -128, 14, -128, 7, -128, 15, -128,
        );
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..self.nb {
            let p = self.block::<R>(b, Q4K_PACKED);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i));
            let qs = p.add(160);
            let mut sumi = [zero; R];
            for j in 0..8 {
                let (c, high) = (j / 2, j % 2 == 1);
                let mut p16 = [zero; R];
                for kk in 0..8 {
                    let raw = _mm256_loadu_si256(qs.add(256 * c + 32 * kk) as *const __m256i);
                    let v = match high {
                        true => _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4),
                        false => _mm256_and_si256(raw, m4),
                    };
                    for r in 0..R {
                        let xv = x4(x[r].q, 256 * b + 32 * j + 4 * kk);
                        p16[r] = _mm256_add_epi16(p16[r], _mm256_maddubs_epi16(v, xv));
                    }
                }
                let sc = _mm_loadl_epi64(p.add(32 + 8 * j) as *const __m128i);
                let sc = _mm256_shuffle_epi8(_mm256_broadcastq_epi64(sc), both);
                for r in 0..R {
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p16[r], sc));
                }
            }
            // Minimums of sub-blocks 2i, 2i + 1 (lane r: row r's, as i16 halves).
            let mut mins = [zero; 4];
            for i in 0..4 {
                let mn = _mm_loadu_si128(p.add(96 + 16 * i) as *const __m128i);
                mins[i] = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(mn), pair);
            }
            for r in 0..R {
                // The activation's sub-block sums B_j (i32), then as i16 pairs
                // (B_2i, B_2i+1): elements 0, 1 of each half after the pack.
                let bs = _mm256_loadu_si256(x[r].bs.add(16 * b) as *const __m256i);
                let sums = _mm256_madd_epi16(bs, ones);
                let sums = _mm256_packs_epi32(sums, sums);
                let mut ms = zero;
                for (i, at) in [0, 1, 4, 5].into_iter().enumerate() {
                    let bj = _mm256_permutevar8x32_epi32(sums, _mm256_set1_epi32(at));
                    ms = _mm256_add_epi32(ms, _mm256_madd_epi16(mins[i], bj));
                }
                let dx = _mm256_broadcast_ss(&*x[r].d.add(b));
                let a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r]), _mm256_mul_ps(d, dx), acc[r]);
                acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dmin, dx), a);
            }
        }
        self.store(&acc);
    }
}
