//! Model metadata values, as GGUF key/values or HF `config.json` entries present them.

use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

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
    /// A long array of scalars or strings (e.g. a tokenizer vocabulary) kept in
    /// one buffer rather than a `MetaValue` per element. Serialises as a list.
    #[serde(skip_deserializing)]
    Packed(PackedArray),
}

/// A homogeneous array stored compactly; cloning shares the buffer.
#[derive(Clone, PartialEq)]
pub enum PackedArray {
    Bool(Arc<[bool]>),
    /// 8-, 16- and 64-bit signed integers.
    Int(Arc<[i64]>),
    /// 32-bit signed integers (e.g. GGUF token types), kept at their width.
    I32(Arc<[i32]>),
    UInt(Arc<[u64]>),
    /// 32-bit floats (e.g. GGUF token scores), kept at their width.
    F32(Arc<[f32]>),
    F64(Arc<[f64]>),
    Str(StrList),
}

impl PackedArray {
    pub fn len(&self) -> usize {
        match self {
            PackedArray::Bool(v) => v.len(),
            PackedArray::Int(v) => v.len(),
            PackedArray::I32(v) => v.len(),
            PackedArray::UInt(v) => v.len(),
            PackedArray::F32(v) => v.len(),
            PackedArray::F64(v) => v.len(),
            PackedArray::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a standalone value.
    pub fn get(&self, i: usize) -> Option<MetaValue> {
        Some(match self {
            PackedArray::Bool(v) => MetaValue::Bool(*v.get(i)?),
            PackedArray::Int(v) => MetaValue::Int(*v.get(i)?),
            PackedArray::I32(v) => MetaValue::Int(*v.get(i)? as i64),
            PackedArray::UInt(v) => MetaValue::UInt(*v.get(i)?),
            PackedArray::F32(v) => MetaValue::Float(*v.get(i)? as f64),
            PackedArray::F64(v) => MetaValue::Float(*v.get(i)?),
            PackedArray::Str(v) => MetaValue::Str(v.get(i)?.to_string()),
        })
    }

    /// Every element as a standalone value (allocates one per element).
    pub fn iter(&self) -> impl Iterator<Item = MetaValue> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    pub fn as_strs(&self) -> Option<&StrList> {
        match self {
            PackedArray::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Element `i` as an integer, if this is an integer array.
    pub fn get_i64(&self, i: usize) -> Option<i64> {
        match self {
            PackedArray::Int(v) => v.get(i).copied(),
            PackedArray::I32(v) => v.get(i).map(|&x| x as i64),
            PackedArray::UInt(v) => v.get(i).and_then(|&x| i64::try_from(x).ok()),
            _ => None,
        }
    }

    /// Element `i` as a float, if this is a numeric array.
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            PackedArray::F32(v) => v.get(i).map(|&x| x as f64),
            PackedArray::F64(v) => v.get(i).copied(),
            PackedArray::Bool(v) => v.get(i).map(|&b| b as u8 as f64),
            _ => self.get_i64(i).map(|x| x as f64),
        }
    }
}

impl fmt::Debug for PackedArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            PackedArray::Bool(_) => "bool",
            PackedArray::Int(_) => "int",
            PackedArray::I32(_) => "i32",
            PackedArray::UInt(_) => "uint",
            PackedArray::F32(_) => "f32",
            PackedArray::F64(_) => "f64",
            PackedArray::Str(_) => "str",
        };
        write!(f, "Packed({} {kind} values)", self.len())
    }
}

impl Serialize for PackedArray {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for v in self.iter() {
            seq.serialize_element(&v)?;
        }
        seq.end()
    }
}

/// A list of strings in one buffer: element `i` is `data[ends[i-1]..ends[i]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct StrList {
    data: Arc<str>,
    ends: Arc<[u32]>,
}

impl StrList {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.data.get(start..end)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }
}

impl fmt::Debug for StrList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StrList({} strings)", self.len())
    }
}

/// Builds a [`StrList`] one string at a time.
#[derive(Default)]
pub struct StrListBuilder {
    data: String,
    ends: Vec<u32>,
}

impl StrListBuilder {
    pub fn with_capacity(strings: usize, bytes: usize) -> StrListBuilder {
        StrListBuilder {
            data: String::with_capacity(bytes),
            ends: Vec::with_capacity(strings),
        }
    }

    /// Appends `s`; `false` (and nothing appended) when the buffer would pass 4 GiB.
    pub fn push(&mut self, s: &str) -> bool {
        match u32::try_from(self.data.len() + s.len()) {
            Ok(end) => {
                self.data.push_str(s);
                self.ends.push(end);
                true
            }
            Err(_) => false,
        }
    }

    pub fn finish(self) -> StrList {
        StrList {
            data: Arc::from(self.data),
            ends: Arc::from(self.ends),
        }
    }
}

/// What a hyperparameter must be where a file states it. The family templates
/// (`check = "size"`) and the curated decoder check values through this one rule, so
/// both paths refuse the same files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// A whole number ≥ 1: a width, a head or layer count, a vocabulary.
    Size,
    /// A whole number ≥ 0 (0 meaning none: a sliding window, experts).
    Count,
    /// A finite number > 0: an epsilon, a rope base, a scaling factor.
    Positive,
    /// A finite number ≥ 0 (0 meaning off: a softcap).
    NonNegative,
    /// A number in [0, 1].
    Fraction,
    /// true or false (0 and 1 too: some writers store flags as integers).
    Flag,
}

impl Expect {
    fn admits(self, v: &MetaValue) -> bool {
        let x = match v {
            MetaValue::Bool(_) => return self == Expect::Flag,
            MetaValue::Int(_) | MetaValue::UInt(_) | MetaValue::Float(_) => v.as_f64(),
            _ => None,
        };
        // NaN fails every comparison below.
        x.is_some_and(|x| match self {
            Expect::Size => x >= 1.0 && x.is_finite() && x.fract() == 0.0,
            Expect::Count => x >= 0.0 && x.is_finite() && x.fract() == 0.0,
            Expect::Positive => x > 0.0 && x.is_finite(),
            Expect::NonNegative => x >= 0.0 && x.is_finite(),
            Expect::Fraction => (0.0..=1.0).contains(&x),
            Expect::Flag => x == 0.0 || x == 1.0,
        })
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expect::Size => "a whole number ≥ 1",
            Expect::Count => "a whole number ≥ 0",
            Expect::Positive => "a finite number > 0",
            Expect::NonNegative => "a finite number ≥ 0",
            Expect::Fraction => "a number in [0, 1]",
            Expect::Flag => "true or false",
        })
    }
}

impl MetaValue {
    /// Checks this value, or each element of an array, against `expect`;
    /// `Err` says what was expected and what was found.
    pub fn check(&self, expect: Expect) -> Result<(), String> {
        let Some(n) = self.array_len() else {
            return match expect.admits(self) {
                true => Ok(()),
                false => Err(format!("expected {expect}, found {}", self.summary())),
            };
        };
        for i in 0..n {
            let v = self.array_get(i).unwrap_or(MetaValue::Str(String::new()));
            if !expect.admits(&v) {
                return Err(format!(
                    "entry {i}: expected {expect}, found {}",
                    v.summary()
                ));
            }
        }
        Ok(())
    }

    /// One number that meets `expect` (a flag as 0 or 1).
    pub fn number(&self, expect: Expect) -> Result<f64, String> {
        if self.array_len().is_some() {
            return Err(format!(
                "expected {expect}, found the list {}",
                self.summary()
            ));
        }
        self.check(expect)?;
        Ok(self.as_f64().unwrap_or_default())
    }

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

    /// The elements of an `Array` (a `Packed` array has no `MetaValue`s to
    /// borrow: see [`MetaValue::array_len`] / [`MetaValue::array_get`]).
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Number of elements of an `Array` or `Packed` array.
    pub fn array_len(&self) -> Option<usize> {
        match self {
            MetaValue::Array(a) => Some(a.len()),
            MetaValue::Packed(p) => Some(p.len()),
            _ => None,
        }
    }

    /// Element `i` of an `Array` or `Packed` array.
    pub fn array_get(&self, i: usize) -> Option<MetaValue> {
        match self {
            MetaValue::Array(a) => a.get(i).cloned(),
            MetaValue::Packed(p) => p.get(i),
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
            MetaValue::Packed(p) if p.len() > 8 => format!("[{} values]", p.len()),
            MetaValue::Packed(p) => format!(
                "[{}]",
                p.iter().map(|v| v.summary()).collect::<Vec<_>>().join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperparameters_are_checked_by_kind() {
        use MetaValue::*;
        assert_eq!(UInt(4).number(Expect::Size), Ok(4.0));
        assert_eq!(Bool(true).number(Expect::Flag), Ok(1.0));
        for (v, e) in [
            (UInt(0), Expect::Size),
            (Bool(true), Expect::Size),
            (Float(2.5), Expect::Count),
            (Float(f64::NAN), Expect::Positive),
            (Float(-1e-6), Expect::Positive),
            (Float(f64::INFINITY), Expect::Positive),
            (Str("1e-5".into()), Expect::Positive),
            (Str("yes".into()), Expect::Flag),
            (Int(2), Expect::Flag),
            (Float(1.5), Expect::Fraction),
        ] {
            assert!(v.check(e).is_err(), "{v:?} passed as {e}");
        }
        let e = Str("yes".into()).number(Expect::Flag).unwrap_err();
        assert_eq!(e, "expected true or false, found \"yes\"");
        let per_layer = Array(vec![UInt(4), UInt(0)]);
        assert_eq!(
            per_layer.check(Expect::Size).unwrap_err(),
            "entry 1: expected a whole number ≥ 1, found 0"
        );
        assert!(per_layer.number(Expect::Count).is_err());
    }
}
