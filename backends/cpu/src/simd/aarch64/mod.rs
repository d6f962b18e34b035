//! NEON kernels (every aarch64 Linux target has NEON). Every function here is reached
//! only through `Isa::Neon`, which detection returns.
//!
//! `fdot`: f32 activations, weight blocks decoded in registers (bit-exact with the
//! reference decoders) and FMA'd, four floats a vector.

mod fdot;

use super::ChunkFn;
use std::arch::aarch64::*;
use std::arch::asm;
use weft_ir::DType;

pub(super) fn f32_kernel(dtype: DType) -> Option<ChunkFn> {
    fdot::kernel(dtype)
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
