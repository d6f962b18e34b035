//! The TOML form of a family template (see docs/families.md).

use serde::Deserialize;
use toml::Table;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub family: FamilyHeader,
    /// In order: a default may name the hyperparameters above it.
    pub hparams: toml::map::Map<String, toml::Value>,
    pub tensors: toml::map::Map<String, toml::Value>,
    pub body: Body,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyHeader {
    pub name: String,
    #[serde(default)]
    pub gguf_architectures: Vec<String>,
    #[serde(default)]
    pub hf_model_types: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    pub embed: Vec<Table>,
    pub layer: Vec<Table>,
    pub head: Vec<Table>,
}

/// One or several source keys (the first present wins).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Keys {
    One(String),
    Many(Vec<String>),
}

impl Keys {
    pub fn list(&self) -> Vec<&str> {
        match self {
            Keys::One(k) => vec![k.as_str()],
            Keys::Many(ks) => ks.iter().map(|s| s.as_str()).collect(),
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct HparamSpec {
    pub gguf: Option<Keys>,
    pub hf: Option<Keys>,
    pub gguf_default: Option<String>,
    pub hf_default: Option<String>,
    pub default: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub gguf: Option<String>,
    pub hf: Option<String>,
    /// Read this other tensor when absent, or when `tied_when` holds.
    pub tied: Option<String>,
    pub tied_when: Option<String>,
    #[serde(default)]
    pub optional: bool,
}
