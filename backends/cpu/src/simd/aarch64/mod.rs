//! NEON kernels (every aarch64 Linux target has NEON). Every function here is reached
//! only through `Isa::Neon`, which detection returns.
//!
//! `fdot`: f32 activations, weight blocks decoded in registers (bit-exact with the
//! reference decoders) and FMA'd, four floats a vector. `idot`: activations quantised
//! to 8 bits, integer dots for the 32-element types.

mod fdot;
mod idot;

use super::{ChunkFn, Needs};
use std::arch::aarch64::*;
use std::arch::asm;
use weft_ir::DType;

pub(super) fn f32_kernel(dtype: DType) -> Option<ChunkFn> {
    fdot::kernel(dtype)
}

pub(super) fn q8_kernel(dtype: DType) -> Option<(ChunkFn, Needs)> {
    idot::kernel(dtype)
}

/// Four f16 (bits) as f32, exact. `fcvtl` is base ARMv8 floating point; Rust's f16
/// vector intrinsics are not stable.
#[inline(always)]
unsafe fn f16x4(h: uint16x4_t) -> float32x4_t {
    let r: float32x4_t;
    // SAFETY: a register-to-register conversion (no memory, no flags).
    unsafe {
        asm!("fcvtl {r:v}.4s, {h:v}.4h", r = lateout(vreg) r, h = in(vreg) h,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// The f16 at `p` as f32 (exact).
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let h = (p as *const u16).read_unaligned();
    vgetq_lane_f32::<0>(f16x4(vdup_n_u16(h)))
}

/// The 32 values of a Q4_0 / Q4_1 / Q5_0 / Q5_1 block at `b` as bytes 0..=31, elements
/// 0..16 then 16..32: the nibbles at byte `qs` (low ones first), with the fifth bits
/// (a little-endian u32) at byte `qh` where the type has them.
#[inline(always)]
unsafe fn legacy_values(b: *const u8, qs: usize, qh: Option<usize>) -> (uint8x16_t, uint8x16_t) {
    let q = vld1q_u8(b.add(qs));
    let (lo, hi) = (vandq_u8(q, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(q));
    let Some(at) = qh else {
        return (lo, hi);
    };
    let (l5, h5) = bit4_of_32(b.add(at));
    (vorrq_u8(lo, l5), vorrq_u8(hi, h5))
}

/// Bit `j` of the little-endian u32 at `p` as byte j of two vectors (j < 16, then
/// j ≥ 16): 0x10 where set (the fifth bit of a Q5 value), else 0.
#[inline(always)]
unsafe fn bit4_of_32(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let qh = vreinterpretq_u8_u32(vdupq_n_u32((p as *const u32).read_unaligned()));
    // Byte j takes byte j / 8 of qh, then tests its bit j % 8.
    const SPREAD: [u8; 32] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    ];
    const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let bits = vld1q_u8(BITS.as_ptr());
    let five = vdupq_n_u8(0x10);
    let at = |h: usize| {
        let b = vqtbl1q_u8(qh, vld1q_u8(SPREAD.as_ptr().add(16 * h)));
        vandq_u8(vtstq_u8(b, bits), five)
    };
    (at(0), at(1))
}
