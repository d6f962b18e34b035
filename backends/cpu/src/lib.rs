//! weft's CPU backend: kernels behind [`quant::QuantKernel`] (one per stored weight
//! type), reference kernels for the other ops, and the lowering of a plan into a
//! [`CpuProgram`].

pub mod matmul;
pub mod ops;
mod program;
pub mod quant;

pub use program::{CpuError, CpuProgram};

/// Fused forms (see `Pass::produces`) this backend cannot run; compiling for it leaves
/// those fusions out. The CPU runs every fused op the passes make.
pub const DECLINED_FUSIONS: &[&str] = &[];
