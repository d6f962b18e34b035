//! Model metadata values, as GGUF key/values or HF `config.json` entries present them.

use serde::{Deserialize, Serialize};

/// One metadata value. GGUF's integer widths collapse to `Int`/`UInt`, floats to `Float`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetaValue {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetaValue::Int(v) => Some(*v as f64),
            MetaValue::UInt(v) => Some(*v as f64),
            MetaValue::Float(v) => Some(*v),
            MetaValue::Bool(b) => Some(*b as u8 as f64),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            MetaValue::Int(v) => u64::try_from(*v).ok(),
            MetaValue::UInt(v) => Some(*v),
            MetaValue::Float(v) if v.fract() == 0.0 && *v >= 0.0 => Some(*v as u64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            MetaValue::Bool(b) => Some(*b),
            MetaValue::Int(v) => Some(*v != 0),
            MetaValue::UInt(v) => Some(*v != 0),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short rendering for `inspect`: long arrays are summarised.
    pub fn summary(&self) -> String {
        match self {
            MetaValue::Array(a) if a.len() > 8 => format!("[{} values]", a.len()),
            MetaValue::Array(a) => format!(
                "[{}]",
                a.iter().map(|v| v.summary()).collect::<Vec<_>>().join(", ")
            ),
            MetaValue::Str(s) if s.len() > 80 => format!("{:?}…", &s[..s.floor_char_boundary(80)]),
            MetaValue::Str(s) => format!("{s:?}"),
            MetaValue::Bool(b) => b.to_string(),
            MetaValue::Int(v) => v.to_string(),
            MetaValue::UInt(v) => v.to_string(),
            MetaValue::Float(v) => v.to_string(),
        }
    }
}
