//! The stored types a model would have after quantisation, for memory budgets of
//! models weft only has a config.json of. The K-quant mixes follow llama.cpp's
//! `llama-quantize` rules (its per-tensor choices for each file type), keyed on the
//! canonical tensor roles every template uses (`embed`, `head`, `wv`, `w_down`).

use std::fmt;
use std::str::FromStr;
use weft_ir::DType;

/// A file type: one stored type for every matrix, or a K-quant mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantMix {
    /// Every matrix in this type (F32, F16, BF16, Q8_0, Q4_0, ...).
    Uniform(DType),
    /// Q4_K with Q6_K for the head and for V/down projections of some layers.
    Q4KM,
    /// Q5_K with Q6_K for the head and for V/down projections of some layers.
    Q5KM,
}

impl FromStr for QuantMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "Q4_K_M" => Ok(QuantMix::Q4KM),
            "Q5_K_M" => Ok(QuantMix::Q5KM),
            other => DType::ALL
                .into_iter()
                .find(|d| d.name() == other)
                .map(QuantMix::Uniform)
                .ok_or_else(|| {
                    let all: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
                    format!(
                        "unknown quantisation '{s}' (Q4_K_M, Q5_K_M or one type: {})",
                        all.join(", ")
                    )
                }),
        }
    }
}

impl fmt::Display for QuantMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantMix::Uniform(d) => f.write_str(d.name()),
            QuantMix::Q4KM => f.write_str("Q4_K_M"),
            QuantMix::Q5KM => f.write_str("Q5_K_M"),
        }
    }
}

/// llama.cpp's "use more bits" layers: the first and last eighth, and every third between.
fn more_bits(layer: usize, n_layers: usize) -> bool {
    let eighth = n_layers / 8;
    layer < eighth || layer >= 7 * n_layers / 8 || (layer - eighth) % 3 == 2
}

impl QuantMix {
    /// The type of tensor `role` (of `layer` of `n_layers`) with `shape` ([rows, cols] or [len]).
    pub fn dtype(
        self,
        role: &str,
        layer: Option<usize>,
        n_layers: usize,
        shape: &[usize],
    ) -> DType {
        // Vectors (norms, biases, scalars) stay f32 in every file type.
        if shape.len() < 2 {
            return DType::F32;
        }
        let base = match self {
            QuantMix::Uniform(d) => return fit(d, shape),
            QuantMix::Q4KM => DType::Q4_K,
            QuantMix::Q5KM => DType::Q5_K,
        };
        let more = layer.is_some_and(|i| more_bits(i, n_layers));
        let t = match role {
            "head" => DType::Q6_K,
            "wv" | "w_down" if more => DType::Q6_K,
            _ => base,
        };
        fit(t, shape)
    }
}

/// llama.cpp's fallback when rows do not split into the type's blocks.
fn fit(t: DType, shape: &[usize]) -> DType {
    let cols = shape[shape.len() - 1];
    if cols.is_multiple_of(t.block_size()) {
        return t;
    }
    let alt = match t {
        DType::Q4_K | DType::Q2_K | DType::Q3_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        _ => DType::F16,
    };
    if cols.is_multiple_of(alt.block_size()) {
        alt
    } else {
        DType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_follows_llama_quantize() {
        let m = QuantMix::Q4KM;
        // 48 layers: more bits for 0..6, 42..48 and 8, 11, ..., 41.
        let more: Vec<usize> = (0..48).filter(|&i| more_bits(i, 48)).collect();
        assert_eq!(more.len(), 24);
        assert!(more.contains(&8) && !more.contains(&7) && more.contains(&41));
        assert_eq!(m.dtype("wv", Some(8), 48, &[1024, 5120]), DType::Q6_K);
        assert_eq!(m.dtype("wv", Some(9), 48, &[1024, 5120]), DType::Q4_K);
        assert_eq!(m.dtype("wq", Some(0), 48, &[5120, 5120]), DType::Q4_K);
        assert_eq!(m.dtype("head", None, 48, &[152064, 5120]), DType::Q6_K);
        assert_eq!(m.dtype("attn_norm", Some(0), 48, &[5120]), DType::F32);
        // Rows of 640 values are not whole Q4_K blocks but whole Q5_0 ones; 1000 neither.
        assert_eq!(m.dtype("wq", Some(0), 48, &[64, 640]), DType::Q5_0);
        assert_eq!(m.dtype("wq", Some(0), 48, &[64, 1000]), DType::F16);
        assert_eq!(
            "q8_0".parse::<QuantMix>(),
            Ok(QuantMix::Uniform(DType::Q8_0))
        );
        assert!("Q9".parse::<QuantMix>().is_err());
    }
}
