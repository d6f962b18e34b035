//! Rope inverse frequencies and the scalings the files declare.

use super::spec::Keys;
use crate::CuratedError;
use weft_formats::ModelSource;
use weft_ir::{Expect, MetaValue};
use weft_quant::kernel_for;

pub(super) enum Scaling {
    None,
    Linear(f64),
    Llama3 {
        factor: f64,
        low: f64,
        high: f64,
        original: f64,
    },
    /// Gemma 4 full layers: a frequency per pair of the whole head, only the
    /// first `partial·dims/2` nonzero (the other pairs stay unrotated).
    Proportional {
        partial: f64,
        factor: f64,
    },
}

pub(super) fn inv_freq(theta: f64, rope_dim: usize, scaling: &Scaling) -> Vec<f64> {
    let mut f: Vec<f64> = (0..rope_dim / 2)
        .map(|i| theta.powf(-((2 * i) as f64) / rope_dim as f64))
        .collect();
    match *scaling {
        Scaling::None => {}
        Scaling::Linear(factor) => f.iter_mut().for_each(|v| *v /= factor),
        Scaling::Llama3 {
            factor,
            low,
            high,
            original,
        } => {
            for v in f.iter_mut() {
                let wavelen = std::f64::consts::TAU / *v;
                let scaled = *v / factor;
                *v = if wavelen < original / high {
                    *v
                } else if wavelen > original / low {
                    scaled
                } else {
                    let s = (original / wavelen - low) / (high - low);
                    (1.0 - s) * scaled + s * *v
                };
            }
        }
        Scaling::Proportional { partial, factor } => {
            // transformers: rope_angles = int(partial * head_dim // 2).
            let rotated = (partial * rope_dim as f64 / 2.0).floor() as usize;
            for (i, v) in f.iter_mut().enumerate() {
                *v = if i < rotated { *v / factor } else { 0.0 };
            }
        }
    }
    f
}

/// HF scaling, looked up under the first of `prefixes` that names a type.
pub(super) fn hf_scaling(k: &Keys, prefixes: &[&str]) -> Result<Scaling, CuratedError> {
    for p in prefixes {
        let kind = [format!("{p}.rope_type"), format!("{p}.type")]
            .iter()
            .find_map(|key| k.hf(key))
            .and_then(MetaValue::as_str);
        let Some(kind) = kind else { continue };
        let get = |name: &str, expect: Expect, default: f64| -> Result<f64, CuratedError> {
            Ok(k.hf_num(&[&format!("{p}.{name}")], expect)?
                .unwrap_or(default))
        };
        let factor = || get("factor", Expect::Positive, 1.0);
        return match kind {
            "default" => Ok(Scaling::None),
            "linear" => Ok(Scaling::Linear(factor()?)),
            "llama3" => Ok(Scaling::Llama3 {
                factor: factor()?,
                low: get("low_freq_factor", Expect::Positive, 1.0)?,
                high: get("high_freq_factor", Expect::Positive, 4.0)?,
                original: get("original_max_position_embeddings", Expect::Size, 8192.0)?,
            }),
            "proportional" => Ok(Scaling::Proportional {
                partial: get("partial_rotary_factor", Expect::Fraction, 1.0)?,
                factor: factor()?,
            }),
            other => Err(CuratedError::Model(format!(
                "{}: rope scaling '{other}' ({p}) is not handled",
                k.src.path.display()
            ))),
        };
    }
    Ok(Scaling::None)
}

/// GGUF scaling: only `linear` changes the frequencies here (llama3-style files
/// carry their divisors in `rope_freqs.weight`, see [`apply_freq_factors`]).
pub(super) fn gguf_scaling(k: &Keys) -> Result<Scaling, CuratedError> {
    let src = k.src;
    let kind = src
        .meta(&format!("{}.rope.scaling.type", src.architecture))
        .and_then(MetaValue::as_str);
    let factor = k
        .num("rope.scaling.factor", &[], Expect::Positive)?
        .unwrap_or(1.0);
    match kind {
        None | Some("none") => Ok(Scaling::None),
        Some("linear") => Ok(Scaling::Linear(factor)),
        Some(other) => Err(CuratedError::Model(format!(
            "{}: rope scaling '{other}' is not handled",
            src.path.display()
        ))),
    }
}

/// llama3-scaled GGUF files, and Gemma 4 ones for their full layers, store
/// per-frequency divisors as a 1-D tensor.
pub(super) fn apply_freq_factors(src: &ModelSource, f: &mut [f64]) -> Result<(), CuratedError> {
    if src.tensor("rope_freqs.weight").is_none() {
        return Ok(());
    }
    let w = src.view("rope_freqs.weight")?;
    if w.numel() != f.len() {
        return Err(CuratedError::Model(format!(
            "{}: rope_freqs.weight has {} values for {} frequencies",
            src.path.display(),
            w.numel(),
            f.len()
        )));
    }
    let mut d = vec![0.0; w.numel()];
    kernel_for(w.dtype).decode_row(w.bytes(), &mut d);
    for (v, d) in f.iter_mut().zip(d) {
        *v /= d as f64;
    }
    Ok(())
}
