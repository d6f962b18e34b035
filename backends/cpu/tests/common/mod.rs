//! Shared by the quant tests.

use weft_ir::DType;

/// Byte offsets of the f16 fields of one block: the scale d, then (where the
/// type has one) the minimum or the scale of the minimums.
pub fn f16_fields(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 | DType::IQ4_NL | DType::IQ4_XS => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        DType::TQ1_0 => &[52],
        DType::TQ2_0 => &[64],
        DType::F32 | DType::F16 | DType::BF16 => &[],
    }
}
