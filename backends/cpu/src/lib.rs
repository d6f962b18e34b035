//! weft's CPU backend: the host executor with kernels that use every core (rayon over
//! output rows, block dots straight from the stored weights, decode-once reuse for
//! prefill). The CPU-speed work (SIMD, repacked layouts, the cranelift JIT) lands here;
//! the reference backend stays the yardstick.

pub mod matmul;

use std::sync::Arc;
use weft_backend::{Backend, BackendError, Executable, LowerOptions, MatKernel, Route};
use weft_ir::{DType, Plan, WeightProvider, WeightView};
use weft_reference::{host, Kernels};

/// The CPU backend.
pub struct Cpu;

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        Parallel::NAME
    }

    fn declined_fusions(&self) -> &'static [&'static str] {
        Parallel::DECLINED
    }

    fn lower(
        &self,
        plan: Plan,
        weights: &dyn WeightProvider,
        options: &LowerOptions,
    ) -> Result<Arc<dyn Executable>, BackendError> {
        host::lower::<Parallel>(plan, weights, options)
    }
}

/// The CPU backend's kernels.
pub struct Parallel;

impl Kernels for Parallel {
    const NAME: &'static str = "cpu";

    fn new(_options: &LowerOptions) -> Result<Self, BackendError> {
        Ok(Parallel)
    }

    fn route(&self, dtype: DType, one_row: bool) -> Route {
        Route {
            dtype,
            decode: MatKernel::Dot,
            prefill: if one_row {
                MatKernel::Dot
            } else {
                MatKernel::DecodeReuse
            },
        }
    }

    fn matmul(&self, x: &[f32], m: usize, ws: &[&WeightView], kernel: MatKernel, out: &mut [f32]) {
        matmul::matmul_cat(x, m, ws, kernel, out)
    }

    fn gather_rows(&self, w: &WeightView, ids: &[u32], out: &mut [f32]) {
        matmul::gather_rows(w, ids, out)
    }
}
