//! f32 activations × weight blocks decoded in NEON registers: the aarch64 twin of
//! `x86::fdot`, with four-float vectors.
//!
//! Each type decodes 32 values into eight vectors, bit-exact with the reference
//! decoder (every `scale · q` is exact; the one rounding of `+ min` / `− min` is a
//! single FMA), and the tile FMAs each with up to 8 activation rows. Every output has
//! one accumulator and takes its vectors in the same order whatever the tile, so a
//! row's result does not depend on the batch it came in.

// Index loops over the const tile sizes: LLVM unrolls them completely, so tile
// arrays live in registers.
#![allow(clippy::needless_range_loop)]

use super::{f16_at, f16x4, legacy_values};
use crate::simd::{check_fdot_task, tiles8, Acts, ChunkFn, Decode, FTile, OutPtr};
use std::arch::aarch64::*;
use weft_ir::DType;
use weft_quant::kquant_scale_min as scale_min;

pub(super) fn kernel(dtype: DType) -> Option<ChunkFn> {
    fdot_kernel!(dtype, chunk)
}

/// One task: every activation row against `out.cols()` weight rows of `rb` bytes, in
/// the tiles of [`tiles8`].
///
/// # Safety
/// NEON must be present (it is on every aarch64 Linux target).
#[target_feature(enable = "neon")]
unsafe fn chunk<T: Decode<Part = [float32x4_t; 8]>>(
    w: &[u8],
    rb: usize,
    x: &Acts<'_>,
    out: OutPtr<'_>,
) {
    check_fdot_task::<T>(w, rb, x, &out);
    for tile in tiles8(x.m, out.cols()) {
        let t = FTile::new(w, rb, x, out, tile);
        // SAFETY: the tile's slices hold c weight rows and r activation rows (sliced
        // by FTile::new, so in bounds); the features are present (this function's).
        unsafe { run_tile!(t, T, (tile.1, tile.3)) }
    }
}

impl FTile<'_> {
    /// Needs `w.len() == C·rb` and `x.len() == R·k`.
    #[inline(always)]
    unsafe fn run<T: Decode<Part = [float32x4_t; 8]>, const R: usize, const C: usize>(&self) {
        debug_assert!(self.w.len() == C * self.rb && self.x.len() == R * self.k);
        let nb = self.k / T::BLOCK;
        let mut acc = [[vdupq_n_f32(0.0); R]; C];
        let (w, x) = (self.w.as_ptr(), self.x.as_ptr());
        for b in 0..nb {
            let mut h = [T::header(w.add(b * T::BYTES)); C];
            for c in 1..C {
                h[c] = T::header(w.add(c * self.rb + b * T::BYTES));
            }
            for part in 0..T::PARTS {
                let at = b * T::BLOCK + 32 * part;
                for c in 0..C {
                    let wv = T::part(w.add(c * self.rb + b * T::BYTES), &h[c], part);
                    for r in 0..R {
                        let xr = x.add(r * self.k + at);
                        for v in 0..8 {
                            acc[c][r] = vfmaq_f32(acc[c][r], wv[v], vld1q_f32(xr.add(4 * v)));
                        }
                    }
                }
            }
        }
        for c in 0..C {
            for r in 0..R {
                self.store::<T>(r, c, nb, vaddvq_f32(acc[c][r]));
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
            type Part = [float32x4_t; 8];
            #[inline(always)]
            unsafe fn header(_: *const u8) {}
            #[inline(always)]
            unsafe fn part($b: *const u8, _: &(), _: usize) -> [float32x4_t; 8] {
                let mut w = [vdupq_n_f32(0.0); 8];
                for ($v, w) in w.iter_mut().enumerate() {
                    *w = $load;
                }
                w
            }
            const TAIL: Option<&'static dyn weft_quant::QuantKernel> = Some(&$tail);
        }
    };
}

float_type!(F32, 128, weft_quant::F32Kernel, |b, v| vld1q_f32(
    b.add(16 * v) as *const f32
));
float_type!(F16, 64, weft_quant::F16Kernel, |b, v| f16x4(vld1_u16(
    b.add(8 * v) as *const u16
)));
float_type!(Bf16, 64, weft_quant::Bf16Kernel, |b, v| {
    vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(b.add(8 * v) as *const u16)))
});

/// 16 signed bytes as four float vectors, times `d` (exact: 8-bit × 11-bit).
#[inline(always)]
unsafe fn scaled_i8(q: int8x16_t, d: float32x4_t) -> [float32x4_t; 4] {
    let (lo, hi) = (vmovl_s8(vget_low_s8(q)), vmovl_high_s8(q));
    [
        vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d),
        vmulq_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d),
        vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d),
        vmulq_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d),
    ]
}

/// 16 unsigned bytes as `d·q + m` (d·q exact, so one rounding, as the reference's
/// `d·q + m`), or `d·q − m` with `m` negated by the caller.
#[inline(always)]
unsafe fn scaled_u8_plus(q: uint8x16_t, d: float32x4_t, m: float32x4_t) -> [float32x4_t; 4] {
    let (lo, hi) = (vmovl_u8(vget_low_u8(q)), vmovl_high_u8(q));
    [
        vfmaq_f32(m, vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), d),
        vfmaq_f32(m, vcvtq_f32_u32(vmovl_high_u16(lo)), d),
        vfmaq_f32(m, vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), d),
        vfmaq_f32(m, vcvtq_f32_u32(vmovl_high_u16(hi)), d),
    ]
}

/// Two groups of four vectors as one part.
#[inline(always)]
fn join(a: [float32x4_t; 4], b: [float32x4_t; 4]) -> [float32x4_t; 8] {
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
}

#[allow(non_camel_case_types)]
struct Q8_0;
impl Decode for Q8_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 34;
    type H = ();
    type Part = [float32x4_t; 8];
    #[inline(always)]
    unsafe fn header(_: *const u8) {}
    #[inline(always)]
    unsafe fn part(b: *const u8, _: &(), _: usize) -> [float32x4_t; 8] {
        // q · d, as the reference.
        let d = vdupq_n_f32(f16_at(b));
        let q = b.add(2) as *const i8;
        join(scaled_i8(vld1q_s8(q), d), scaled_i8(vld1q_s8(q.add(16)), d))
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
            type Part = [float32x4_t; 8];
            #[inline(always)]
            unsafe fn header(_: *const u8) {}
            #[inline(always)]
            unsafe fn part(b: *const u8, _: &(), _: usize) -> [float32x4_t; 8] {
                let d = vdupq_n_f32(f16_at(b));
                let (lo, hi) = legacy_values(b, $qs, $qh);
                match $offset {
                    Some(o) => {
                        let o = vdupq_n_s8(o);
                        let lo = vsubq_s8(vreinterpretq_s8_u8(lo), o);
                        let hi = vsubq_s8(vreinterpretq_s8_u8(hi), o);
                        join(scaled_i8(lo, d), scaled_i8(hi, d))
                    }
                    None => {
                        let m = vdupq_n_f32(f16_at(b.add(2)));
                        join(scaled_u8_plus(lo, d, m), scaled_u8_plus(hi, d, m))
                    }
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
    let sb = &*(b.add(4) as *const [u8; 12]);
    let (d, dmin) = (f16_at(b), -f16_at(b.add(2)));
    let mut h = KScales {
        dl: [0.0; 8],
        ml: [0.0; 8],
    };
    for j in 0..8 {
        let (sc, m) = scale_min(sb, j);
        h.dl[j] = d * sc as f32;
        h.ml[j] = dmin * m as f32;
    }
    h
}

/// Nibble `part % 2` of the 32 bytes at `p` (element `64c + 32h + l` of a Q4_K /
/// Q5_K block is nibble h of byte `32c + l`, part = 2c + h), as two vectors.
#[inline(always)]
unsafe fn k_nibbles(p: *const u8, part: usize) -> (uint8x16_t, uint8x16_t) {
    let (a, b) = (vld1q_u8(p), vld1q_u8(p.add(16)));
    match part % 2 {
        0 => (vandq_u8(a, vdupq_n_u8(0x0F)), vandq_u8(b, vdupq_n_u8(0x0F))),
        _ => (vshrq_n_u8::<4>(a), vshrq_n_u8::<4>(b)),
    }
}

#[allow(non_camel_case_types)]
struct Q4_K;
impl Decode for Q4_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 144;
    type H = KScales;
    type Part = [float32x4_t; 8];
    #[inline(always)]
    unsafe fn header(b: *const u8) -> KScales {
        k_scales(b)
    }
    #[inline(always)]
    unsafe fn part(b: *const u8, h: &KScales, part: usize) -> [float32x4_t; 8] {
        let (lo, hi) = k_nibbles(b.add(16 + 32 * (part / 2)), part);
        // (d·sc)·q exact, then the one rounding of − dmin·m.
        let (d, m) = (vdupq_n_f32(h.dl[part]), vdupq_n_f32(h.ml[part]));
        join(scaled_u8_plus(lo, d, m), scaled_u8_plus(hi, d, m))
    }
}

#[allow(non_camel_case_types)]
struct Q5_K;
impl Decode for Q5_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 176;
    type H = KScales;
    type Part = [float32x4_t; 8];
    #[inline(always)]
    unsafe fn header(b: *const u8) -> KScales {
        k_scales(b)
    }
    #[inline(always)]
    unsafe fn part(b: *const u8, h: &KScales, part: usize) -> [float32x4_t; 8] {
        let (lo, hi) = k_nibbles(b.add(48 + 32 * (part / 2)), part);
        // Fifth bit: bit `part` of qh byte l.
        let bit = vdupq_n_u8(1u8 << part);
        let five = vdupq_n_u8(0x10);
        let fifth = |qh: uint8x16_t| vandq_u8(vtstq_u8(qh, bit), five);
        let lo = vorrq_u8(lo, fifth(vld1q_u8(b.add(16))));
        let hi = vorrq_u8(hi, fifth(vld1q_u8(b.add(32))));
        let (d, m) = (vdupq_n_f32(h.dl[part]), vdupq_n_f32(h.ml[part]));
        join(scaled_u8_plus(lo, d, m), scaled_u8_plus(hi, d, m))
    }
}

#[allow(non_camel_case_types)]
struct Q6_K;
impl Decode for Q6_K {
    const BLOCK: usize = 256;
    const BYTES: usize = 210;
    /// d·sc (exact), one per 16 values.
    type H = [f32; 16];
    type Part = [float32x4_t; 8];
    #[inline(always)]
    unsafe fn header(b: *const u8) -> [f32; 16] {
        let d = f16_at(b.add(208));
        let mut dl = [0f32; 16];
        for (i, dl) in dl.iter_mut().enumerate() {
            *dl = d * (*b.add(192 + i) as i8) as f32;
        }
        dl
    }
    #[inline(always)]
    unsafe fn part(b: *const u8, dl: &[f32; 16], part: usize) -> [float32x4_t; 8] {
        // Part p = 4n + s covers values 32p.. (scales 2p, then 2p + 1): nibble s / 2 of
        // ql bytes 64n + 32·(s % 2) + l, crumb s of qh bytes 32n + l, minus 32.
        let (n, s) = (part / 4, part % 4);
        let mut g = [vdupq_n_s8(0); 2];
        for (h, g) in g.iter_mut().enumerate() {
            let ql = vld1q_u8(b.add(64 * n + 32 * (s % 2) + 16 * h));
            let qh = vld1q_u8(b.add(128 + 32 * n + 16 * h));
            let lo = match s / 2 {
                0 => vandq_u8(ql, vdupq_n_u8(0x0F)),
                _ => vshrq_n_u8::<4>(ql),
            };
            let crumb = vandq_u8(vshlq_u8(qh, vdupq_n_s8(-2 * s as i8)), vdupq_n_u8(3));
            let q = vorrq_u8(lo, vshlq_n_u8::<4>(crumb));
            *g = vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32));
        }
        let (s0, s1) = (vdupq_n_f32(dl[2 * part]), vdupq_n_f32(dl[2 * part + 1]));
        join(scaled_i8(g[0], s0), scaled_i8(g[1], s1))
    }
}
