//! Safetensors reader: `u64` LE header length, a JSON header, then the data.

use std::collections::HashSet;
use std::path::Path;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::Value;
use weft_ir::DType;

use super::{blocked_bytes, LoadError, ParsedTensor, TensorInfo};

/// Headers beyond this are refused rather than parsed (the reference
/// implementation uses the same limit).
const MAX_HEADER: u64 = 100 << 20;

/// Bytes per element of a safetensors dtype, where known.
fn element_bytes(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// The header's entries in file order. A JSON object read into a map keeps the last of
/// two equal keys silently; a header that names a tensor twice is refused instead.
struct Header(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Header, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Header;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let mut seen = HashSet::new();
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if !seen.insert(k.clone()) {
                        return Err(A::Error::custom(format!(
                            "key '{k}' appears more than once"
                        )));
                    }
                    entries.push((k, v));
                }
                Ok(Header(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// Parses the header of a safetensors image; ranges are absolute in `buf`.
pub(crate) fn parse(path: &Path, buf: &[u8]) -> Result<Vec<ParsedTensor>, LoadError> {
    let file_len = buf.len() as u64;
    let Some(len_bytes) = buf.get(..8) else {
        return Err(LoadError::Truncated {
            path: path.to_path_buf(),
            what: "the safetensors header length".into(),
            start: 0,
            end: 8,
            len: file_len,
        });
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
    if header_len > MAX_HEADER {
        return Err(LoadError::corrupt(
            path,
            format!("safetensors header length {header_len} exceeds the {MAX_HEADER}-byte limit"),
        ));
    }
    let data_start = 8 + header_len;
    if data_start > file_len {
        return Err(LoadError::Truncated {
            path: path.to_path_buf(),
            what: "the safetensors JSON header".into(),
            start: 8,
            end: data_start,
            len: file_len,
        });
    }
    let Header(entries) =
        serde_json::from_slice(&buf[8..data_start as usize]).map_err(|e| LoadError::Json {
            path: path.to_path_buf(),
            msg: format!("safetensors header: {e}"),
        })?;

    let data_len = file_len - data_start;
    let mut out = Vec::with_capacity(entries.len());
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let bad = |why: String| LoadError::corrupt(path, format!("tensor '{name}': {why}"));
        let dtype = entry
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing string field 'dtype'".into()))?;
        let shape: Vec<usize> = entry
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing array field 'shape'".into()))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("'shape' must hold non-negative integers".into()))?;
        let offsets = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| bad("'data_offsets' must be [begin, end]".into()))?;
        let (begin, end) = offsets;
        if begin > end || end > data_len {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] lie outside the {data_len} data bytes after the header"
            )));
        }
        let stored = end - begin;
        if let Some(eb) = element_bytes(dtype) {
            let need = blocked_bytes(&shape, 1, eb)
                .map_err(|why| bad(format!("shape {shape:?}: {why}")))?;
            if need != stored {
                return Err(bad(format!(
                    "{dtype} {shape:?} needs {need} bytes, data_offsets give {stored}"
                )));
            }
        }
        out.push(ParsedTensor {
            info: TensorInfo {
                name: name.clone(),
                type_name: dtype.to_string(),
                dtype: DType::from_safetensors(dtype),
                shape,
                bytes: stored,
            },
            range: Some(((data_start + begin) as usize, stored as usize)),
        });
    }
    Ok(out)
}
