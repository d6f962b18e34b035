//! The TOML form of a family template (see docs/families.md).

use serde::Deserialize;
use toml::Table;
use weft_ir::Expect;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub family: FamilyHeader,
    /// In order: a default may name the hyperparameters above it.
    #[serde(default)]
    pub hparams: toml::map::Map<String, toml::Value>,
    #[serde(default)]
    pub tensors: toml::map::Map<String, toml::Value>,
    /// Per-layer values, in order: expressions over the hyperparameters and `i`.
    #[serde(default)]
    pub layer_vars: toml::map::Map<String, toml::Value>,
    #[serde(default)]
    pub body: Body,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyHeader {
    pub name: String,
    /// A template this one builds on: its hparams, tensors and layer_vars are taken,
    /// entries named here replace theirs in place, and body sections given here replace
    /// the parent's.
    pub extends: Option<String>,
    #[serde(default)]
    pub gguf_architectures: Vec<String>,
    #[serde(default)]
    pub hf_model_types: Vec<String>,
    /// Conditions over the hyperparameters that a model must meet: features of the
    /// family the template does not describe (an error names the failed one).
    #[serde(default)]
    pub requires: Vec<String>,
    /// The family's default chat template (Jinja), for model files that carry none,
    /// as llama.cpp keeps built-in ones. Inherited through `extends`.
    pub chat_template: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[serde(default)]
    pub embed: Vec<Table>,
    #[serde(default)]
    pub layer: Vec<Table>,
    #[serde(default)]
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
    /// What a value the source states must be (`size`, `count`, `positive`,
    /// `fraction`, `flag`): a file's 0 hidden size is an error naming the key, where
    /// the template's own default of 0 may still mean "take it from the tensor".
    pub check: Option<Expect>,
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
    /// Expected shape, `[rows, cols]` (out, in) or `[len]`, as expressions: checked
    /// against files, and the shape assumed when a model is only a config.json.
    pub shape: Option<Vec<String>>,
    /// HF stores this matrix `[in, out]` (GPT-2's Conv1D): the backend reads it transposed.
    #[serde(default)]
    pub hf_transposed: bool,
}

impl Template {
    /// This template laid over its parent (see [`FamilyHeader::extends`]).
    pub fn over(self, parent: Template) -> Template {
        let merge = |mut base: toml::map::Map<String, toml::Value>,
                     top: toml::map::Map<String, toml::Value>| {
            for (k, v) in top {
                base.insert(k, v);
            }
            base
        };
        let pick =
            |mine: Vec<Table>, theirs: Vec<Table>| if mine.is_empty() { theirs } else { mine };
        let mut requires = parent.family.requires;
        requires.extend(self.family.requires);
        Template {
            family: FamilyHeader {
                extends: None,
                requires,
                chat_template: self.family.chat_template.or(parent.family.chat_template),
                ..self.family
            },
            hparams: merge(parent.hparams, self.hparams),
            tensors: merge(parent.tensors, self.tensors),
            layer_vars: merge(parent.layer_vars, self.layer_vars),
            body: Body {
                embed: pick(self.body.embed, parent.body.embed),
                layer: pick(self.body.layer, parent.body.layer),
                head: pick(self.body.head, parent.body.head),
            },
        }
    }
}
