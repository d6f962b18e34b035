//! weft's CPU backend: the host executor with kernels that use every core and the
//! machine's vector units. Matmuls split output rows over rayon; each task runs a
//! SIMD kernel picked at lowering by runtime feature detection ([`simd`]), with
//! register tiles of several activation rows for prefill. Types without a SIMD
//! kernel, and machines without the instructions, take the portable path (the
//! neutral quant crate's block dots). The reference backend stays the yardstick.
//!
//! Two activation modes (`LowerOptions.activations`): `F32` (exact: weight blocks
//! decoded in registers, bit-exact with the reference decoders, FMA with the f32
//! activations) and `Int8` (each activation row quantised once per matmul into 8-bit
//! blocks, integer dots, as llama.cpp does; see [`q8`]).
//!
//! Elementwise steps and norms run as native code that [`jit`] compiles for the plan
//! at lowering (`LowerOptions.jit`; off, the host interprets them).

pub mod attention;
pub mod jit;
pub mod matmul;
pub mod q8;
pub mod repack;
pub mod simd;

pub use simd::Isa;

use weft_backend::{Activations, BackendError, LowerOptions, MatKernel};
use weft_ir::{Plan, WeightView};
use weft_reference::ops::{AttnShape, KvRows};
use weft_reference::{Host, Kernels};

/// The CPU backend.
pub const CPU: Host<Parallel> = Host::new();

/// The CPU backend's kernels: the instruction set found at lowering and the
/// activation mode asked for.
pub struct Parallel {
    pub config: matmul::Config,
    /// Attention's row kernels for the instruction set found.
    row_ops: attention::RowOps,
    /// The plan's compiled kernels; `Err`: why there are none.
    jit: Result<jit::Jit, String>,
    /// Matmul weights kept in a layout of the kernels' own.
    packed: repack::Packed,
}

impl Kernels for Parallel {
    const NAME: &'static str = "cpu";

    fn new(options: &LowerOptions, plan: &Plan) -> Result<Self, BackendError> {
        let isa = Isa::detect();
        Ok(Parallel {
            config: matmul::Config {
                isa,
                activations: options.activations,
            },
            row_ops: simd::row_ops(isa),
            jit: match options.jit {
                true => jit::Jit::for_plan(plan),
                false => Err("off".into()),
            },
            packed: repack::Packed::default(),
        })
    }

    /// Packs the weights the kernels read faster packed, unless `WEFT_REPACK=0` (the
    /// stored layout throughout: for measuring what packing buys).
    fn prepare(&mut self, matmul_weights: &[&WeightView]) {
        if std::env::var_os("WEFT_REPACK").is_some_and(|v| v == "0") {
            return;
        }
        self.packed = repack::Packed::for_weights(&self.config, matmul_weights.iter().copied());
    }

    fn run_compiled(&self, step: usize, ins: &[&[f32]], out: &mut [f32]) -> bool {
        self.jit.as_ref().is_ok_and(|j| j.run(step, ins, out))
    }

    fn matmul(&self, x: &[f32], m: usize, ws: &[&WeightView], kernel: MatKernel, out: &mut [f32]) {
        matmul::matmul_with(&self.config, &self.packed, x, m, ws, kernel, out)
    }

    fn gather_rows(&self, w: &WeightView, ids: &[u32], out: &mut [f32]) {
        matmul::gather_rows(&self.packed, w, ids, out)
    }

    fn attention(
        &self,
        q: &[f32],
        k: KvRows,
        v: KvRows,
        s: AttnShape,
        pos0: usize,
        out: &mut [f32],
    ) {
        attention::attention(self.row_ops, q, k, v, s, pos0, out, attention::CHUNK)
    }

    fn run_steps<R: Send>(&self, steps: impl FnOnce() -> R + Send) -> R {
        // On a pool worker (the caller blocks once per forward, not once per matmul).
        rayon::join(steps, || ()).0
    }

    fn describe(&self) -> String {
        let act = match self.config.activations {
            Activations::F32 => "f32",
            Activations::Int8 => "int8",
        };
        let jit = match &self.jit {
            Ok(j) => {
                let (steps, functions) = j.counts();
                format!("jit: {steps} steps in {functions} functions")
            }
            Err(why) => format!("jit {why}"),
        };
        let packed = match self.packed.count() {
            (0, _) => String::new(),
            (n, bytes) => format!(
                ", {n} weights packed rows8 ({:.1} MiB)",
                bytes as f64 / 1048576.0
            ),
        };
        format!(
            "{} ({}, activations {act}, {jit}{packed})",
            Self::NAME,
            self.config.isa.name()
        )
    }
}
