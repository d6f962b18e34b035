//! Hugging Face model directory: `config.json` + one or more safetensors files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use weft_ir::MetaValue;

use super::{safetensors, LoadError, MappedFile, ModelSource, SourceKind};

fn read_json(path: &Path) -> Result<Value, LoadError> {
    let text = std::fs::read(path).map_err(|e| LoadError::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| LoadError::Json {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// Flattens a JSON object into dotted keys; `null`s are dropped.
pub(crate) fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, MetaValue>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Null => {}
        v => {
            if let Some(m) = to_meta(v) {
                out.insert(prefix.to_string(), m);
            }
        }
    }
}

fn to_meta(v: &Value) -> Option<MetaValue> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => MetaValue::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                MetaValue::UInt(u)
            } else if let Some(i) = n.as_i64() {
                MetaValue::Int(i)
            } else {
                MetaValue::Float(n.as_f64()?)
            }
        }
        Value::String(s) => MetaValue::Str(s.clone()),
        Value::Array(a) => MetaValue::Array(a.iter().filter_map(to_meta).collect()),
        // Objects inside arrays have no dotted-key form; keep them as JSON text.
        Value::Object(_) => MetaValue::Str(v.to_string()),
    })
}

/// A config.json alone: metadata without tensors, for what needs only shapes
/// (memory budgets of models too big or too far away to fetch).
pub(crate) fn open_config(config_path: &Path) -> Result<ModelSource, LoadError> {
    let (architecture, metadata) = read_config(config_path)?;
    ModelSource::assemble(
        config_path,
        SourceKind::Hf,
        architecture,
        metadata,
        vec![],
        vec![],
        None,
    )
}

/// config.json's model type and its keys, dotted. A multimodal config's `text_config`
/// is laid over the top level: its keys describe the language model.
fn read_config(config_path: &Path) -> Result<(String, BTreeMap<String, MetaValue>), LoadError> {
    let config = read_json(config_path)?;
    if !config.is_object() {
        return Err(LoadError::Json {
            path: config_path.to_path_buf(),
            msg: "expected a JSON object at the top level".into(),
        });
    }
    let mut metadata = BTreeMap::new();
    flatten("", &config, &mut metadata);
    if let Some(text) = config.get("text_config").filter(|t| t.is_object()) {
        flatten("", text, &mut metadata);
    }
    let architecture = match config.get("model_type") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(LoadError::corrupt(
                config_path,
                "key 'model_type': expected a string",
            ))
        }
        None => {
            return Err(LoadError::MissingKey {
                path: config_path.to_path_buf(),
                key: "model_type".into(),
            })
        }
    };

    Ok((architecture, metadata))
}

pub(crate) fn open_dir(dir: &Path) -> Result<ModelSource, LoadError> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(LoadError::UnknownFormat {
            path: dir.to_path_buf(),
            found: format!("a directory without {}", config_path.display()),
        });
    }
    let (architecture, metadata) = read_config(&config_path)?;
    let weight_files = find_weight_files(dir)?;
    let mut files = Vec::with_capacity(weight_files.len());
    let mut per_file = Vec::with_capacity(weight_files.len());
    for (path, expected) in weight_files {
        let file = Arc::new(MappedFile::open(&path)?);
        let parsed = safetensors::parse(&path, &file.map)?;
        let present: BTreeSet<&str> = parsed.iter().map(|t| t.info.name.as_str()).collect();
        if let Some(missing) = expected.iter().find(|n| !present.contains(n.as_str())) {
            return Err(LoadError::corrupt(
                &path,
                format!("model.safetensors.index.json maps tensor '{missing}' to this file, but it is not in it"),
            ));
        }
        files.push(file);
        per_file.push(parsed);
    }
    let tokenizer = dir.join("tokenizer.json");
    let tokenizer_json = tokenizer.is_file().then_some(tokenizer);
    ModelSource::assemble(
        dir,
        SourceKind::Hf,
        architecture,
        metadata,
        files,
        per_file,
        tokenizer_json,
    )
}

/// The safetensors files of a directory, each with the tensors an index
/// promises it holds (empty when there is no index).
fn find_weight_files(dir: &Path) -> Result<Vec<(PathBuf, Vec<String>)>, LoadError> {
    let index_path = dir.join("model.safetensors.index.json");
    if index_path.is_file() {
        let index = read_json(&index_path)?;
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| LoadError::MissingKey {
                path: index_path.clone(),
                key: "weight_map".into(),
            })?;
        let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| {
                LoadError::corrupt(
                    &index_path,
                    format!("weight_map['{tensor}']: expected a file name"),
                )
            })?;
            // Shard names are plain file names; refuse paths that leave the directory.
            if file.contains('/') || file.contains('\\') || file == ".." {
                return Err(LoadError::corrupt(
                    &index_path,
                    format!("weight_map['{tensor}']: bad file name '{file}'"),
                ));
            }
            by_file
                .entry(file.to_string())
                .or_default()
                .push(tensor.clone());
        }
        let mut out = Vec::new();
        for (file, tensors) in by_file {
            let path = dir.join(&file);
            if !path.is_file() {
                return Err(LoadError::corrupt(
                    &index_path,
                    format!(
                        "shard '{file}' (holding '{}') is missing from the directory",
                        tensors[0]
                    ),
                ));
            }
            out.push((path, tensors));
        }
        return Ok(out);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![(single, Vec::new())]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LoadError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(vec![(found.remove(0), Vec::new())]),
        0 => Err(LoadError::UnknownFormat {
            path: dir.to_path_buf(),
            found: "config.json but no model.safetensors, model.safetensors.index.json or *.safetensors".into(),
        }),
        n => Err(LoadError::corrupt(
            dir,
            format!("{n} *.safetensors files but no model.safetensors.index.json to say which to use"),
        )),
    }
}
