//! weft's runtime: open a [`Model`], compile it into a plan, lower the plan onto a
//! backend as an [`Engine`] (weights mapped once, shared), open [`GraphSession`]s on it,
//! and [`generate`] through the one generic loop, getting each token through a callback.
//!
//! This is the library API that the CLI and the server ([`serve`]) are thin layers over.
//! Invariant: nothing here prints; progress reaches the caller through callbacks.

pub mod bench;
pub mod chat;
mod engine;
mod executor;
pub mod hub;
mod model;
pub mod parity;
pub mod quant_mix;
pub mod sampler;
pub mod serve;
mod stop;
mod threads;
pub mod tokenizer;

pub use engine::{BackendKind, Engine, GraphSession};
pub use executor::{generate, generate_from, Forward, GenParams, Generation, StopReason};
pub use hub::{HubSpec, PullEvent};
pub use model::{
    cached_model_path, fetch_script, is_short_name, resolve, resolve_with, short_names, weft_home,
    Budget, Compiled, Model,
};
pub use sampler::SamplerParams;
pub use stop::StopStrings;
pub use threads::{physical_cores, set_threads};
pub use weft_backend::{Activations, KvType, Logits, LowerOptions};
pub use weft_curated as curated;
pub use weft_formats as load;
pub use weft_passes::PassSelection;

/// The GPU adapter `--backend gpu` uses: its name, features and limits.
pub fn gpu_report() -> Result<String, RuntimeError> {
    Ok(weft_wgpu::gpu()?.report())
}

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
    Backend(#[from] weft_backend::BackendError),
    #[error(transparent)]
    Curated(#[from] curated::CuratedError),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error(transparent)]
    Chat(#[from] chat::ChatError),
    #[error("fetch: {0}")]
    Fetch(String),
    /// A Hub download or the Hub cache; the message names the repository and file.
    #[error("{0}")]
    Hub(String),
    #[error("plan does not match the model: {0}")]
    PlanMismatch(String),
    #[error("{0} has no tokenizer: give token ids (--tokens 1,2,3) instead of text")]
    NoTokenizer(String),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("{0} is a config.json without weights: it can be inspected (--budget), not run")]
    NoWeights(String),
    #[error("unknown backend '{0}' (known: reference, cpu, gpu)")]
    UnknownBackend(String),
    #[error("threads: {0}")]
    Threads(String),
    #[error("bench: {0}")]
    Bench(String),
    #[error("{ctx} positions are more than the {trained} the model was trained for (its context length)")]
    ContextTooLong { ctx: usize, trained: usize },
    #[error(
        "the tokenizer has {tokens} tokens, but the embedding '{tensor}' has {rows} rows: \
         every id the tokenizer can produce needs a row"
    )]
    VocabMismatch {
        tokens: usize,
        tensor: String,
        rows: usize,
    },
    #[error(
        "the logits of generation step {step} (0 is the prompt) are not finite: {value} for \
         token {id}; {}",
        match origin {
            Some(o) => format!("the first non-finite value came from {o}"),
            None => "weights that are not finite, or values beyond f32's range".to_string(),
        }
    )]
    NonFinite {
        step: usize,
        id: usize,
        value: f32,
        /// The graph step whose output was first not finite, where the backend can tell.
        origin: Option<String>,
    },
    #[error(transparent)]
    Sampler(#[from] sampler::SamplerError),
    #[error("serve: {0}")]
    Serve(String),
}
