//! Element types of weights, including GGML block-quantised layouts.
//!
//! A block-quantised row of `n` elements is `n / block_size` blocks of
//! `block_bytes` each; rows are never padded. Only the layout lives here; decoding
//! and dot products belong to the backends.

use serde::{Deserialize, Serialize};

/// Elements per super-block of the k-quant, IQ4_XS and ternary types.
const QK_K: usize = 256;

/// A weight element type that weft can read.
///
/// Variant names are the GGML type names (hence the upper-case `_K` ones).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    F32,
    F16,
    // snake_case alone would spell these "b_f16", "q2__k", "i_q4__n_l"; the alias
    // keeps reading plans written before the rename.
    #[serde(rename = "bf16", alias = "b_f16")]
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    #[serde(rename = "q2_k")]
    Q2_K,
    #[serde(rename = "q3_k")]
    Q3_K,
    #[serde(rename = "q4_k")]
    Q4_K,
    #[serde(rename = "q5_k")]
    Q5_K,
    #[serde(rename = "q6_k")]
    Q6_K,
    #[serde(rename = "iq4_nl")]
    IQ4_NL,
    #[serde(rename = "iq4_xs")]
    IQ4_XS,
    #[serde(rename = "tq1_0")]
    TQ1_0,
    #[serde(rename = "tq2_0")]
    TQ2_0,
}

impl DType {
    /// Every type weft reads.
    pub const ALL: [DType; 17] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q2_K,
        DType::Q3_K,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
        DType::IQ4_NL,
        DType::IQ4_XS,
        DType::TQ1_0,
        DType::TQ2_0,
    ];

    /// The GGML type id of a supported type.
    pub fn ggml_id(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q2_K => 10,
            DType::Q3_K => 11,
            DType::Q4_K => 12,
            DType::Q5_K => 13,
            DType::Q6_K => 14,
            DType::IQ4_NL => 20,
            DType::IQ4_XS => 23,
            DType::BF16 => 30,
            DType::TQ1_0 => 34,
            DType::TQ2_0 => 35,
        }
    }

    /// The supported type with this GGML id, if any (see [`ggml_type_name`] for the rest).
    pub fn from_ggml(id: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.ggml_id() == id)
    }

    /// Safetensors dtype strings weft reads.
    pub fn from_safetensors(s: &str) -> Option<DType> {
        match s {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        ggml_type_name(self.ggml_id())
    }

    /// Elements per block (1 for plain floats).
    pub fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::IQ4_NL => {
                32
            }
            DType::Q2_K
            | DType::Q3_K
            | DType::Q4_K
            | DType::Q5_K
            | DType::Q6_K
            | DType::IQ4_XS
            | DType::TQ1_0
            | DType::TQ2_0 => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 2 + 32,
            DType::Q4_0 => 2 + 16,
            DType::Q4_1 => 2 + 2 + 16,
            // d, 32 high bits, 16 bytes of low nibbles
            DType::Q5_0 => 2 + 4 + 16,
            DType::Q5_1 => 2 + 2 + 4 + 16,
            DType::IQ4_NL => 2 + 16,
            // The super-block types: 256 elements in sub-blocks of 16 or 32.
            // Q2_K: 4-bit scale and min per 16, 2-bit q, d, dmin
            DType::Q2_K => QK_K / 16 + QK_K / 4 + 2 + 2,
            // Q3_K: high-bit mask, 2-bit q, 16 packed 6-bit scales, d
            DType::Q3_K => QK_K / 8 + QK_K / 4 + 12 + 2,
            // Q4_K: d, dmin, 8 packed 6-bit scales and mins, 4-bit q
            DType::Q4_K => 2 + 2 + 12 + QK_K / 2,
            // Q5_K: Q4_K plus a high-bit mask
            DType::Q5_K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            // Q6_K: low nibbles, 2 high bits, i8 scale per 16, d
            DType::Q6_K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
            // IQ4_XS: d, high and low bits of 6-bit scales per 32, 4-bit codes
            DType::IQ4_XS => 2 + 2 + QK_K / 64 + QK_K / 2,
            // TQ1_0: base-3 packed trits (5 per byte, 4 per byte in qh), d
            DType::TQ1_0 => (QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2,
            // TQ2_0: 2-bit trits, d
            DType::TQ2_0 => QK_K / 4 + 2,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes of a row of `n` elements, or `None` when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        n.is_multiple_of(self.block_size())
            .then(|| n / self.block_size() * self.block_bytes())
    }

    /// Bytes of a tensor of this shape, or `None` when its rows are not whole blocks.
    pub fn tensor_bytes(self, shape: &[usize]) -> Option<usize> {
        let cols = *shape.last().unwrap_or(&1);
        let rows: usize = shape[..shape.len().saturating_sub(1)].iter().product();
        self.row_bytes(cols)?.checked_mul(rows)
    }

    /// Bits per weight of the stored form.
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_size() as f64
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The GGML name of any type id, supported or not, for error messages.
pub fn ggml_type_name(id: u32) -> &'static str {
    match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_layouts_agree() {
        for d in DType::ALL {
            assert_eq!(DType::from_ggml(d.ggml_id()), Some(d));
            assert_ne!(d.name(), "unknown");
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.name().to_lowercase()));
            assert_eq!(serde_json::from_str::<DType>(&json).unwrap(), d);
        }
        assert_eq!(
            serde_json::from_str::<DType>("\"b_f16\"").unwrap(),
            DType::BF16
        );
        // ggml's type_size table (ggml.c), element counts and bytes per block.
        for (d, size, bytes) in [
            (DType::Q5_0, 32, 22),
            (DType::Q5_1, 32, 24),
            (DType::Q2_K, 256, 84),
            (DType::Q3_K, 256, 110),
            (DType::Q4_K, 256, 144),
            (DType::Q5_K, 256, 176),
            (DType::Q6_K, 256, 210),
            (DType::IQ4_NL, 32, 18),
            (DType::IQ4_XS, 256, 136),
            (DType::TQ1_0, 256, 54),
            (DType::TQ2_0, 256, 66),
        ] {
            assert_eq!((d.block_size(), d.block_bytes()), (size, bytes), "{d}");
        }
        // Q8_K is an activation-side type in ggml, not a weight type weft reads.
        assert_eq!(DType::from_ggml(15), None);
    }
}
