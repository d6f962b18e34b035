//! weft's runtime: model loading, tokenizer, executor, sampler, curated decoder.
//!
//! This is the library API that the CLI (and later the server) is a thin layer
//! over: open a [`Model`], compile a plan, bind it to a backend, and [`generate`]
//! through the one generic loop, getting each token through a callback.
//!
//! Invariant: nothing here prints; progress reaches the caller through callbacks.

pub mod curated;
mod executor;
pub mod load;
mod model;
pub mod parity;
pub mod quant_mix;
pub mod sampler;
pub mod synth;
pub mod tokenizer;

pub use executor::{generate, Forward, GenParams, Generation, StopReason};
pub use model::{cached_model_path, resolve, weft_home, Budget, Compiled, Model, SHORT_NAMES};
pub use sampler::SamplerParams;
pub use weft_passes::PassSelection;

/// Every error the runtime reports; each names what it is about.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error(transparent)]
    Family(#[from] weft_families::FamilyError),
    #[error(transparent)]
    Pass(#[from] weft_passes::PassError),
    #[error(transparent)]
    Cpu(#[from] weft_cpu::CpuError),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("fetch: {0}")]
    Fetch(String),
    #[error("plan does not match the model: {0}")]
    PlanMismatch(String),
    #[error("curated decoder: {0}")]
    Curated(String),
    #[error("{0} has no tokenizer: give token ids (--tokens 1,2,3) instead of text")]
    NoTokenizer(String),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("{0} is a config.json without weights: it can be inspected (--budget), not run")]
    NoWeights(String),
}
