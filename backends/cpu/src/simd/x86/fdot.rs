//! f32 activations × weight blocks decoded in registers.
//!
//! Each type decodes one block into 8-float vectors, bit-exact with the reference
//! decoder (the same float operations: every `scale · q` is exact, and the one
//! rounding `+ min` / `− min` is a single FMA), and hands each vector to the tile,
//! which FMAs it with up to 4 activation rows. Only the order of the sum differs from
//! the reference, so results agree to float rounding of the dot.

// Index loops over the const tile sizes: LLVM unrolls them completely, so tile
// arrays live in registers.
#![allow(clippy::needless_range_loop)]

use super::{bit4_of_32, f16_at, hsum, kquant_scales_mins, nibbles32, q6k_values, quarters};
use crate::simd::{check_fdot_task, tiles8, Acts, ChunkFn, Decode, FTile, OutPtr};
use std::arch::x86_64::*;
use weft_ir::DType;

/// Bytes ahead of the current block that decode tiles prefetch, every cache line of
/// what they read (weights stream from memory once per token; the hardware prefetcher
/// alone left the loads waiting). 1024 over 384 with every line: +17% SmolLM2 and +8%
/// Gemma 3 int8 decode on a 2-core EPYC.
const PREFETCH: usize = 1024;

pub(super) fn kernel(dtype: DType) -> Option<ChunkFn> {
    fdot_kernel!(dtype, chunk)
}

/// One task: every activation row against `out.cols()` weight rows of `rb` bytes, in
/// the tiles of [`tiles8`]. Each output has one accumulator and takes its vectors in
/// the same order whatever the tile, so a row's result does not depend on the batch it
/// came in (a truncated and resumed session equals a fresh one, bit for bit); eight
/// outputs per tile keep eight FMA chains in flight.
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn chunk<T: Decode<Part = [__m256; 4]>>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    check_fdot_task::<T>(w, rb, x, &out);
    for tile in tiles8(x.m, out.cols()) {
        let t = FTile::new(w, rb, x, out, tile);
        // SAFETY: the tile's slices hold c weight rows and r activation rows (sliced
        // by FTile::new, so in bounds); the features are present (this function's).
        unsafe { run_tile!(t, T, (tile.1, tile.3)) }
    }
}

impl FTile<'_> {
    /// Needs `w.len() == C·rb`, `x.len() == R·k`, and the features.
    #[inline(always)]
    unsafe fn run<T: Decode<Part = [__m256; 4]>, const R: usize, const C: usize>(&self) {
        debug_assert!(self.w.len() == C * self.rb && self.x.len() == R * self.k);
        let nb = self.k / T::BLOCK;
        let mut acc = [[_mm256_setzero_ps(); R]; C];
        let w = self.w.as_ptr();
        for b in 0..nb {
            if R == 1 {
                for c in 0..C {
                    // Every cache line of this block, PREFETCH ahead.
                    let at = c * self.rb + b * T::BYTES + PREFETCH;
                    let mut off = 0;
                    while off < T::BYTES {
                        _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(at + off) as *const i8);
                        off += 64;
                    }
                }
            }
            let mut h = [T::header(w.add(b * T::BYTES)); C];
            for c in 1..C {
                h[c] = T::header(w.add(c * self.rb + b * T::BYTES));
            }
            for part in 0..T::PARTS {
                self.part::<T, R, C>(&h, &mut acc, b, part);
            }
        }
        for c in 0..C {
            for r in 0..R {
                self.store::<T>(r, c, nb, hsum(acc[c][r]));
            }
        }
    }

    /// Part `part` of block `b` of every weight row, FMA'd with every activation row.
    #[inline(always)]
    unsafe fn part<T: Decode<Part = [__m256; 4]>, const R: usize, const C: usize>(
        &self,
        h: &[T::H; C],
        acc: &mut [[__m256; R]; C],
        b: usize,
        part: usize,
    ) {
        let (w, x) = (self.w.as_ptr(), self.x.as_ptr());
        let at = b * T::BLOCK + 32 * part;
        for c in 0..C {
            let wv = T::part(w.add(c * self.rb + b * T::BYTES), &h[c], part);
            for r in 0..R {
                let xr = x.add(r * self.k + at);
                for v in 0..4 {
                    let xv = _mm256_loadu_ps(xr.add(8 * v));
                    acc[c][r] = _mm256_fmadd_ps(wv[v], xv, acc[c][r]);
                }
            }
        }
    }
}

/// Float rows: no header; one block = one part of 32 values.
macro_rules! float_type {
    ($name:ident, $bytes:expr, $tail:expr, |$b:ident, $v:ident| $load:expr) => {
        struct $name;
        impl Decode for $name {
            const BLOCK: usize = 32;
            const BYTES: usize = $bytes;
            type H = ();
            type Part = [__m256; 4];
            #[inline(always)]
            unsafe fn header(_: *const u8) {}
            #[inline(always)]
            unsafe fn part($b: *const u8, _: &(), _: usize) -> [__m256; 4] {
                let mut w = [_mm256_setzero_ps(); 4];
                for ($v, w) in w.iter_mut().enumerate() {
                    *w = $load;
                }
                w
            }
            const TAIL: Option<&'static dyn weft_quant::QuantKernel> = Some(&$tail);
        }
    };
}

float_type!(F32, 128, weft_quant::F32Kernel, |b, v| _mm256_loadu_ps(
    b.add(32 * v) as *const f32
));
float_type!(F16, 64, weft_quant::F16Kernel, |b, v| _mm256_cvtph_ps(
    _mm_loadu_si128(b.add(16 * v) as *const __m128i)
));
float_type!(Bf16, 64, weft_quant::Bf16Kernel, |b, v| {
    let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(b.add(16 * v) as *const __m128i));
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
});

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

/// 32 signed bytes times `d` (exact: 8-bit × 11-bit).
#[inline(always)]
unsafe fn scaled_i8(q: __m256i, d: __m256) -> [__m256; 4] {
    let g = quarters(q);
    [
        _mm256_mul_ps(i8x8(g[0]), d),
        _mm256_mul_ps(i8x8(g[1]), d),
        _mm256_mul_ps(i8x8(g[2]), d),
        _mm256_mul_ps(i8x8(g[3]), d),
    ]
}

/// 32 unsigned bytes as `d·q + m` (d·q exact, so one rounding, as the reference's
/// `d·q + m`), or `d·q − m` with `m` negated by the caller.
#[inline(always)]
unsafe fn scaled_u8_plus(q: __m256i, d: __m256, m: __m256) -> [__m256; 4] {
    let g = quarters(q);
    [
        _mm256_fmadd_ps(u8x8(g[0]), d, m),
        _mm256_fmadd_ps(u8x8(g[1]), d, m),
        _mm256_fmadd_ps(u8x8(g[2]), d, m),
        _mm256_fmadd_ps(u8x8(g[3]), d, m),
    ]
}

#[allow(non_camel_case_types)]
struct Q8_0;
impl Decode for Q8_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 34;
    type H = ();
    type Part = [__m256; 4];
    #[inline(always)]
    unsafe fn header(_: *const u8) {}
    #[inline(always)]
    unsafe fn part(b: *const u8, _: &(), _: usize) -> [__m256; 4] {
        // q · d, as the reference.
        let d = _mm256_set1_ps(f16_at(b));
        let mut w = [_mm256_setzero_ps(); 4];
        for (v, w) in w.iter_mut().enumerate() {
            let q = _mm_loadl_epi64(b.add(2 + 8 * v) as *const __m128i);
            *w = _mm256_mul_ps(i8x8(q), d);
        }
        w
    }
}

/// The 32-element types with 4- or 5-bit values: (fifth bit at, nibbles at, offset
/// or minimum). `d·(q − o)` is exact; `d·q + m` rounds once, as the reference.
macro_rules! legacy {
    ($name:ident, $bytes:expr, $qh:expr, $qs:expr, $offset:expr) => {
        #[allow(non_camel_case_types)]
        struct $name;
        impl Decode for $name {
            const BLOCK: usize = 32;
            const BYTES: usize = $bytes;
            type H = ();
            type Part = [__m256; 4];
            #[inline(always)]
            unsafe fn header(_: *const u8) {}
            #[inline(always)]
            unsafe fn part(b: *const u8, _: &(), _: usize) -> [__m256; 4] {
                let d = _mm256_set1_ps(f16_at(b));
                let mut q = nibbles32(b.add($qs));
                if let Some(at) = $qh {
                    q = _mm256_or_si256(q, bit4_of_32(b.add(at)));
                }
                match $offset {
                    Some(o) => scaled_i8(_mm256_sub_epi8(q, _mm256_set1_epi8(o)), d),
                    None => scaled_u8_plus(q, d, _mm256_set1_ps(f16_at(b.add(2)))),
                }
            }
        }
    };
}

legacy!(Q4_0, 18, None::<usize>, 2, Some(8));
legacy!(Q4_1, 20, None::<usize>, 4, None::<i8>);
legacy!(Q5_0, 22, Some(2), 6, Some(16));
legacy!(Q5_1, 24, Some(4), 8, None::<i8>);

/// Q4_K / Q5_K sub-block scales `d·sc` and minimums `−dmin·m` (exact products, as
/// the reference computes them; negated so that one FMA adds them).
#[derive(Clone, Copy)]
struct KScales {
    dl: [f32; 8],
    ml: [f32; 8],
}

#[inline(always)]
unsafe fn k_scales(b: *const u8) -> KScales {
    let sm = kquant_scales_mins(b.add(4));
    let d = _mm256_set1_ps(f16_at(b));
    let dmin = _mm256_set1_ps(-f16_at(b.add(2)));
    let mut h = KScales {
        dl: [0.0; 8],
        ml: [0.0; 8],
    };
    _mm256_storeu_ps(h.dl.as_mut_ptr(), _mm256_mul_ps(d, u8x8(sm)));
    _mm256_storeu_ps(
        h.ml.as_mut_ptr(),
        _mm256_mul_ps(dmin, u8x8(_mm_unpackhi_epi64(sm, sm))),
    );
    h
}

/// Nibble `part % 2` of the 32 bytes at `p` (element `64c + 32h + l` of a Q4_K /
/// Q5_K block is nibble h of byte `32c + l`, part = 2c + h).
#[inline(always)]
unsafe fn k_nibbles(p: *const u8, part: usize) -> __m256i {
    let q = _mm256_loadu_si256(p as *const __m256i);
    let q = _mm256_srl_epi16(q, _mm_cvtsi32_si128(4 * (part % 2) as i32));
    _mm256_and_si256(q, _mm256_set1_epi8(0x0F))
}

#[allow(non_camel_case_types)]
struct Q4_K;
impl Decode for Q4_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 144;
    type H = KScales;
    type Part = [__m256; 4];
    #[inline(always)]
    unsafe fn header(b: *const u8) -> KScales {
        k_scales(b)
    }
    #[inline(always)]
    unsafe fn part(b: *const u8, h: &KScales, part: usize) -> [__m256; 4] {
        let q = k_nibbles(b.add(16 + 32 * (part / 2)), part);
        // (d·sc)·q exact, then the one rounding of − dmin·m.
        scaled_u8_plus(q, _mm256_set1_ps(h.dl[part]), _mm256_set1_ps(h.ml[part]))
    }
}

#[allow(non_camel_case_types)]
struct Q5_K;
impl Decode for Q5_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 176;
    type H = KScales;
    type Part = [__m256; 4];
    #[inline(always)]
    unsafe fn header(b: *const u8) -> KScales {
        k_scales(b)
    }
    #[inline(always)]
    unsafe fn part(b: *const u8, h: &KScales, part: usize) -> [__m256; 4] {
        let q = k_nibbles(b.add(48 + 32 * (part / 2)), part);
        // Fifth bit: bit `part` of qh byte l.
        let qh = _mm256_loadu_si256(b.add(16) as *const __m256i);
        let bit = _mm256_set1_epi8((1u8 << part) as i8);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
        let q = _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
        scaled_u8_plus(q, _mm256_set1_ps(h.dl[part]), _mm256_set1_ps(h.ml[part]))
    }
}

#[allow(non_camel_case_types)]
struct Q6_K;
impl Decode for Q6_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 210;
    /// d·sc (exact), one per 16 values.
    type H = [f32; 16];
    type Part = [__m256; 4];
    #[inline(always)]
    unsafe fn header(b: *const u8) -> [f32; 16] {
        let d = _mm256_set1_ps(f16_at(b.add(208)));
        let sc = _mm_loadu_si128(b.add(192) as *const __m128i);
        let mut dl = [0f32; 16];
        _mm256_storeu_ps(dl.as_mut_ptr(), _mm256_mul_ps(d, i8x8(sc)));
        _mm256_storeu_ps(
            dl.as_mut_ptr().add(8),
            _mm256_mul_ps(d, i8x8(_mm_unpackhi_epi64(sc, sc))),
        );
        dl
    }
    #[inline(always)]
    unsafe fn part(b: *const u8, dl: &[f32; 16], part: usize) -> [__m256; 4] {
        // Part p = 4n + s covers values 32p.., scales 2p (first 16) and 2p + 1.
        let q = _mm256_sub_epi8(q6k_values(b, part), _mm256_set1_epi8(32));
        let g = quarters(q);
        let (s0, s1) = (
            _mm256_set1_ps(dl[2 * part]),
            _mm256_set1_ps(dl[2 * part + 1]),
        );
        [
            _mm256_mul_ps(i8x8(g[0]), s0),
            _mm256_mul_ps(i8x8(g[1]), s0),
            _mm256_mul_ps(i8x8(g[2]), s1),
            _mm256_mul_ps(i8x8(g[3]), s1),
        ]
    }
}
