//! weft's reference backend: the host executor ([`host`], shared with the fast CPU
//! backend, which brings its own [`Kernels`]) running small, scalar, obviously right
//! kernels. Every fast kernel and every pass is checked against it.

pub mod host;
pub mod ops;

pub use host::{bind_weight, decode_vector, vector_weights, HostExecutable, HostSession, Kernels};

use std::marker::PhantomData;
use std::sync::Arc;
use weft_backend::{Backend, BackendError, Executable, LowerOptions, MatKernel};
use weft_ir::{Plan, WeightProvider, WeightView};
use weft_quant::{dot_f32, kernel_for};

/// A host backend: the host executor with the kernels `K`.
pub struct Host<K>(PhantomData<fn() -> K>);

impl<K> Host<K> {
    pub const fn new() -> Self {
        Host(PhantomData)
    }
}

impl<K> Default for Host<K> {
    fn default() -> Self {
        Host::new()
    }
}

impl<K: Kernels> Backend for Host<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn declined_fusions(&self) -> &'static [&'static str] {
        K::DECLINED
    }

    fn lower(
        &self,
        plan: Plan,
        weights: &dyn WeightProvider,
        options: &LowerOptions,
    ) -> Result<Arc<dyn Executable>, BackendError> {
        host::lower::<K>(plan, weights, options)
    }
}

/// The reference backend.
pub const REFERENCE: Host<Scalar> = Host::new();

/// One thread, one output at a time, through the neutral quant crate's scalar decoders.
pub struct Scalar;

impl Kernels for Scalar {
    const NAME: &'static str = "reference";

    fn new(_options: &LowerOptions, _plan: &Plan) -> Result<Self, BackendError> {
        Ok(Scalar)
    }

    fn matmul(&self, x: &[f32], m: usize, ws: &[&WeightView], kernel: MatKernel, out: &mut [f32]) {
        let n: usize = ws.iter().map(|w| w.rows()).sum();
        let k = x.len() / m.max(1);
        let mut wrow = vec![0f32; k];
        let mut j = 0;
        for w in ws {
            let kern = kernel_for(w.dtype);
            for r in 0..w.rows() {
                let row = w.row(r);
                if kernel == MatKernel::DecodeReuse {
                    kern.decode_row(row, &mut wrow);
                }
                for (i, xi) in x.chunks_exact(k.max(1)).enumerate().take(m) {
                    out[i * n + j] = match kernel {
                        MatKernel::Dot => kern.dot(row, xi),
                        MatKernel::DecodeReuse => dot_f32(xi, &wrow),
                    };
                }
                j += 1;
            }
        }
    }

    fn gather_rows(&self, w: &WeightView, ids: &[u32], out: &mut [f32]) {
        let kern = kernel_for(w.dtype);
        for (o, &id) in out.chunks_exact_mut(w.cols().max(1)).zip(ids) {
            kern.decode_row(w.row(id as usize), o);
        }
    }
}
