//! weft's model families: one TOML template per family, and the generic expander
//! that turns a template plus a model's metadata into an [`weft_ir::Graph`].
//!
//! Invariant: no family-specific Rust lives here. A template names neither a
//! backend nor a file path; the expander knows sources only by their key and tensor
//! names, which the template gives.

mod expand;
pub mod expr;
mod template;

pub use expand::{expand, expand_with, Expanded, MAX_LAYERS};
pub use template::Template;

use weft_ir::{DType, MetaValue};

/// Where a model's metadata and tensor names come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A GGUF file: `general.architecture`, GGUF keys and tensor names.
    Gguf,
    /// A Hugging Face directory: `config.json` (`model_type`), HF tensor names.
    Hf,
}

/// A tensor as the expander needs to know it.
#[derive(Clone, Debug)]
pub struct TensorMeta {
    /// `None`: a type weft cannot read (`type_name` says which).
    pub dtype: Option<DType>,
    pub type_name: String,
    pub shape: Vec<usize>,
}

/// What the expander reads of a model: implemented by the runtime's loaders.
pub trait ModelInfo {
    fn source_kind(&self) -> SourceKind;
    /// GGUF `general.architecture`, or HF `model_type`.
    fn architecture(&self) -> &str;
    fn meta(&self, key: &str) -> Option<&MetaValue>;
    fn tensor_meta(&self, name: &str) -> Option<TensorMeta>;
    /// For a source with metadata but no tensors (a bare config.json): the stored type
    /// to assume for a tensor the template declares (canonical `role`, its layer of
    /// `n_layers`, its shape). `None`: tensors must exist.
    fn assumed_dtype(
        &self,
        _role: &str,
        _layer: Option<usize>,
        _n_layers: usize,
        _shape: &[usize],
    ) -> Option<DType> {
        None
    }
    /// The file or directory, for error messages.
    fn origin(&self) -> String;
}

/// The built-in templates, by file name: every `*.toml` beside this crate's manifest
/// (listed by build.rs, in name order).
pub const TEMPLATES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/templates.rs"));

#[derive(Debug, thiserror::Error)]
pub enum FamilyError {
    #[error("template {file}: {message}")]
    Template { file: String, message: String },
    #[error("{origin}: no family template serves {what} '{arch}' (known: {known})")]
    UnknownArchitecture {
        origin: String,
        what: &'static str,
        arch: String,
        known: String,
    },
    #[error("{origin}: hyperparameter '{name}' (template {file}): {message}")]
    Hparam {
        origin: String,
        file: String,
        name: String,
        message: String,
    },
    #[error("{origin}: missing tensor '{tensor}' (template {file}, '{role}')")]
    MissingTensor {
        origin: String,
        file: String,
        role: String,
        tensor: String,
    },
    #[error("{origin}: tensor '{tensor}' has shape {found:?}, the template ({file}) expects {expected:?}")]
    Shape {
        origin: String,
        file: String,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{origin}: unsupported tensor type {type_name} in tensor '{tensor}'")]
    UnsupportedType {
        origin: String,
        type_name: String,
        tensor: String,
    },
    #[error("template {file}, {at}: {message}")]
    Op {
        file: String,
        at: String,
        message: String,
    },
}

/// Parses a template (its file name is used in messages), resolving `extends` among
/// the built-in templates.
pub fn parse_template(file: &str, text: &str) -> Result<Template, FamilyError> {
    let t: Template = toml::from_str(text).map_err(|e| FamilyError::Template {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    match t.family.extends.clone() {
        None => Ok(t),
        Some(parent) => {
            let (pfile, ptext) = TEMPLATES
                .iter()
                .find(|(f, _)| *f == parent)
                .ok_or_else(|| FamilyError::Template {
                    file: file.to_string(),
                    message: format!("extends unknown template '{parent}'"),
                })?;
            if *pfile == file {
                return Err(FamilyError::Template {
                    file: file.to_string(),
                    message: "extends itself".into(),
                });
            }
            Ok(t.over(parse_template(pfile, ptext)?))
        }
    }
}

/// The built-in template serving this model.
pub fn find_template(info: &dyn ModelInfo) -> Result<(&'static str, Template), FamilyError> {
    let arch = info.architecture();
    let mut known = Vec::new();
    for (file, text) in TEMPLATES {
        let t = parse_template(file, text)?;
        let serves = match info.source_kind() {
            SourceKind::Gguf => &t.family.gguf_architectures,
            SourceKind::Hf => &t.family.hf_model_types,
        };
        if serves.iter().any(|a| a == arch) {
            return Ok((file, t));
        }
        known.extend(serves.iter().cloned());
    }
    Err(FamilyError::UnknownArchitecture {
        origin: info.origin(),
        what: match info.source_kind() {
            SourceKind::Gguf => "general.architecture",
            SourceKind::Hf => "model_type",
        },
        arch: arch.to_string(),
        known: known.join(", "),
    })
}
