//! weft's CPU backend: the host executor with kernels that use every core (rayon over
//! output rows, block dots straight from the stored weights, decode-once reuse for
//! prefill). The CPU-speed work (SIMD, repacked layouts, the cranelift JIT) lands here;
//! the reference backend stays the yardstick.

pub mod matmul;

use weft_backend::{BackendError, LowerOptions, MatKernel};
use weft_ir::WeightView;
use weft_reference::{Host, Kernels};

/// The CPU backend.
pub const CPU: Host<Parallel> = Host::new();

/// The CPU backend's kernels.
pub struct Parallel;

impl Kernels for Parallel {
    const NAME: &'static str = "cpu";

    fn new(_options: &LowerOptions) -> Result<Self, BackendError> {
        Ok(Parallel)
    }

    fn matmul(&self, x: &[f32], m: usize, ws: &[&WeightView], kernel: MatKernel, out: &mut [f32]) {
        matmul::matmul_cat(x, m, ws, kernel, out)
    }

    fn gather_rows(&self, w: &WeightView, ids: &[u32], out: &mut [f32]) {
        matmul::gather_rows(w, ids, out)
    }
}
