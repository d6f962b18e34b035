//! Seeded synthetic weights: the generator behind weft's shape-true stand-ins.
//!
//! A stand-in is a model's published `config.json` with weights drawn by this generator
//! (no real checkpoint is needed). The Python twin, `scripts/standins/make_standins.py`,
//! builds the transformers references from the same weights; the two must agree bit for
//! bit, and `tests/standins.rs` checks that through the sha256 of every tensor.
//!
//! # Spec (`weft-synth-1`, [`SPEC_VERSION`])
//!
//! - `key(name, seed) = fnv1a64(utf-8 bytes of the tensor name) XOR seed` (u64).
//! - Element `j` of a tensor, row-major over its HF shape (`[out, in]` for matrices),
//!   `j = 0, 1, ...`:
//!   `z = key + (j + 1) * 0x9E3779B97F4A7C15` (wrapping), then the splitmix64 finalizer
//!   `z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
//!   z ^= z >> 31` (all wrapping).
//! - `u = (z >> 40) as f32 / 2^24` (exact, in `[0, 1)`), `r = 2u - 1` (exact, in `[-1, 1)`).
//! - The value, in f32 with one rounding per operation, in this order:
//!   - a 1-D tensor whose name contains `norm`: `v = r * 0.1f32 + 1.0f32` (mul, then add);
//!   - any other 1-D tensor (biases): `v = r * 0.1f32`;
//!   - a 2-D tensor `[rows, cols]`: `v = r * s` with `s = sqrt(3 / cols)` computed in f64
//!     and cast to f32 once, so values are uniform with variance `1 / cols` and
//!     activations keep unit scale;
//!   - any other rank is an error.
//! - Stored as BF16 (what real checkpoints ship): round to nearest even of the f32 bits,
//!   `(bits + 0x7FFF + ((bits >> 16) & 1)) >> 16`; or as F32.
//! - [`write_safetensors`] writes the header
//!   `{"__metadata__":{"format":"pt"},"<name>":{"dtype":"BF16","shape":[..],"data_offsets":[s,e]},...}`
//!   (no spaces, tensors in the order given, padded with spaces to a multiple of 8 bytes),
//!   then the tensors' bytes in that order; the Python twin writes the same bytes.

use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use weft_ir::DType;

/// The generator's spec version, recorded by the references built from it.
pub const SPEC_VERSION: &str = "weft-synth-1";

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX1: u64 = 0xBF58_476D_1CE4_E5B9;
const MIX2: u64 = 0x94D0_49BB_1331_11EB;
/// Elements generated (and written) at once: bounds memory whatever the tensor's size.
const CHUNK: usize = 1 << 22;
/// Elements per rayon task within a chunk.
const TASK: usize = 1 << 15;

/// Why a tensor cannot be synthesised.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot synthesise tensor '{name}' of shape {shape:?}: only 1-D and 2-D tensors are defined")]
    Rank { name: String, shape: Vec<usize> },
    #[error("tensor '{name}' of shape {shape:?} has {numel} elements; elements {start}..{end} were asked for")]
    Range {
        name: String,
        shape: Vec<usize>,
        numel: usize,
        start: usize,
        end: usize,
    },
    #[error("synthetic weights are stored as BF16 or F32, not {0:?}")]
    DType(DType),
}

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The per-tensor key: `fnv1a64(name) XOR seed`.
pub fn key(name: &str, seed: u64) -> u64 {
    fnv1a64(name.as_bytes()) ^ seed
}

/// `r` in `[-1, 1)` for element `j` (0-based) of the tensor with this key.
fn unit(key: u64, j: u64) -> f32 {
    let mut z = key.wrapping_add(j.wrapping_add(1).wrapping_mul(GOLDEN));
    z ^= z >> 30;
    z = z.wrapping_mul(MIX1);
    z ^= z >> 27;
    z = z.wrapping_mul(MIX2);
    z ^= z >> 31;
    let u = (z >> 40) as f32 / 16_777_216.0;
    2.0 * u - 1.0
}

/// How a tensor's `r` becomes its value.
#[derive(Clone, Copy)]
enum Kind {
    Norm,
    Bias,
    Matrix(f32),
}

impl Kind {
    fn of(name: &str, shape: &[usize]) -> Result<Kind, SynthError> {
        match shape {
            [_] if name.contains("norm") => Ok(Kind::Norm),
            [_] => Ok(Kind::Bias),
            [_, cols] => Ok(Kind::Matrix((3.0f64 / *cols as f64).sqrt() as f32)),
            _ => Err(SynthError::Rank {
                name: name.to_string(),
                shape: shape.to_vec(),
            }),
        }
    }

    #[inline]
    fn value(self, r: f32) -> f32 {
        match self {
            Kind::Norm => r * 0.1f32 + 1.0f32,
            Kind::Bias => r * 0.1f32,
            Kind::Matrix(s) => r * s,
        }
    }
}

/// BF16 bits of `x`, rounded to nearest even.
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// Elements `start .. start + out.len()` of the tensor `name` (row-major over `shape`).
pub fn fill_range(
    name: &str,
    shape: &[usize],
    seed: u64,
    start: usize,
    out: &mut [f32],
) -> Result<(), SynthError> {
    let kind = Kind::of(name, shape)?;
    check_range(name, shape, start, start + out.len())?;
    let k = key(name, seed);
    out.par_chunks_mut(TASK).enumerate().for_each(|(c, o)| {
        let base = (start + c * TASK) as u64;
        for (i, v) in o.iter_mut().enumerate() {
            *v = kind.value(unit(k, base + i as u64));
        }
    });
    Ok(())
}

/// Elements `start..end` must lie inside the tensor.
fn check_range(name: &str, shape: &[usize], start: usize, end: usize) -> Result<(), SynthError> {
    let numel: usize = shape.iter().product();
    if end > numel {
        return Err(SynthError::Range {
            name: name.to_string(),
            shape: shape.to_vec(),
            numel,
            start,
            end,
        });
    }
    Ok(())
}

/// Every element of the tensor `name`; `out.len()` must be the product of `shape`.
pub fn fill(name: &str, shape: &[usize], seed: u64, out: &mut [f32]) -> Result<(), SynthError> {
    let numel: usize = shape.iter().product();
    if out.len() != numel {
        return Err(SynthError::Range {
            name: name.to_string(),
            shape: shape.to_vec(),
            numel,
            start: 0,
            end: out.len(),
        });
    }
    fill_range(name, shape, seed, 0, out)
}

/// Elements `start ..` of the tensor as stored bytes (`out.len()` a multiple of the width).
fn encode_range(
    name: &str,
    shape: &[usize],
    seed: u64,
    start: usize,
    dtype: DType,
    out: &mut [u8],
) -> Result<(), SynthError> {
    let width = dtype_width(dtype)?;
    let kind = Kind::of(name, shape)?;
    check_range(name, shape, start, start + out.len() / width)?;
    let k = key(name, seed);
    out.par_chunks_mut(TASK * width)
        .enumerate()
        .for_each(|(c, o)| {
            let base = (start + c * TASK) as u64;
            for (i, b) in o.chunks_exact_mut(width).enumerate() {
                let v = kind.value(unit(k, base + i as u64));
                if width == 2 {
                    b.copy_from_slice(&bf16_bits(v).to_le_bytes());
                } else {
                    b.copy_from_slice(&v.to_le_bytes());
                }
            }
        });
    Ok(())
}

fn dtype_width(dtype: DType) -> Result<usize, SynthError> {
    match dtype {
        DType::BF16 => Ok(2),
        DType::F32 => Ok(4),
        other => Err(SynthError::DType(other)),
    }
}

/// The safetensors header (length prefix included) for `tensors` stored as `dtype`.
pub fn safetensors_header(
    tensors: &[(String, Vec<usize>)],
    dtype: DType,
) -> Result<Vec<u8>, SynthError> {
    let width = dtype_width(dtype)?;
    let tag = if width == 2 { "BF16" } else { "F32" };
    let mut text = String::from(r#"{"__metadata__":{"format":"pt"}"#);
    let mut offset = 0usize;
    for (name, shape) in tensors {
        Kind::of(name, shape)?;
        let bytes = shape.iter().product::<usize>() * width;
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        text.push_str(&format!(
            r#",{}:{{"dtype":"{tag}","shape":[{}],"data_offsets":[{offset},{}]}}"#,
            serde_json::Value::from(name.as_str()),
            dims.join(","),
            offset + bytes
        ));
        offset += bytes;
    }
    text.push('}');
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    Ok(out)
}

/// Writes a safetensors file of `tensors` (in the order given) drawn with `seed`, stored
/// as `dtype` (BF16 or F32). Tensor by tensor and chunk by chunk, so memory stays bounded;
/// to a temporary file renamed into place at the end, so no half-written file survives.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>)],
    seed: u64,
    dtype: DType,
) -> Result<(), String> {
    let fail = |msg: String| format!("{}: {msg}", path.display());
    let header = safetensors_header(tensors, dtype).map_err(|e| fail(e.to_string()))?;
    let width = dtype_width(dtype).map_err(|e| fail(e.to_string()))?;
    let tmp = temp_path(path);
    let result = (|| -> Result<(), String> {
        let io = |what: &str, e: std::io::Error| fail(format!("writing {what}: {e}"));
        let mut file = std::fs::File::create(&tmp).map_err(|e| io("a temporary file", e))?;
        file.write_all(&header).map_err(|e| io("the header", e))?;
        let mut buf = vec![0u8; CHUNK * width];
        for (name, shape) in tensors {
            let numel: usize = shape.iter().product();
            let mut start = 0;
            while start < numel {
                let n = CHUNK.min(numel - start);
                let bytes = &mut buf[..n * width];
                encode_range(name, shape, seed, start, dtype, bytes)
                    .map_err(|e| fail(e.to_string()))?;
                file.write_all(bytes).map_err(|e| io(name, e))?;
                start += n;
            }
        }
        file.sync_all().map_err(|e| io("to disk", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("(renaming the temporary file)", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `<path>.tmp.<pid>` next to `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (f32 bits, bf16 bits) of element `j` of a tensor.
    fn bits(name: &str, shape: &[usize], seed: u64, j: usize) -> (u32, u16) {
        let mut v = [0f32];
        fill_range(name, shape, seed, j, &mut v).unwrap();
        (v[0].to_bits(), bf16_bits(v[0]))
    }

    // Constants printed by `make_standins.py --print-vectors` (the Python twin).
    #[test]
    fn matches_the_python_generator() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        let norm = "model.layers.0.input_layernorm.weight";
        assert_eq!(fnv1a64(norm.as_bytes()), 0xa202704edd64ce84);
        assert_eq!(key(norm, 6001), 0xa202704edd64d9f5);
        assert_eq!(bits(norm, &[1024], 6001, 0), (0x3f7a5f82, 0x3f7a));
        assert_eq!(bits(norm, &[1024], 6001, 1), (0x3f753d90, 0x3f75));
        assert_eq!(bits(norm, &[1024], 6001, 2), (0x3f6d2242, 0x3f6d));
        assert_eq!(bits(norm, &[1024], 6001, 1023), (0x3f8333fd, 0x3f83));

        let bias = "model.layers.1.self_attn.q_proj.bias";
        assert_eq!(key(bias, 1501), 0xdf75aefb3fdf82d8);
        assert_eq!(bits(bias, &[1536], 1501, 0), (0x3d7888ea, 0x3d79));
        assert_eq!(bits(bias, &[1536], 1501, 1), (0xbd3f0b20, 0xbd3f));
        assert_eq!(bits(bias, &[1536], 1501, 1535), (0x3d7d305d, 0x3d7d));

        let q = "model.layers.0.self_attn.q_proj.weight";
        let qs = [2048, 1024];
        assert_eq!(key(q, 6001), 0x3a296639dc11e9ca);
        assert_eq!(bits(q, &qs, 6001, 0), (0xbd0c1458, 0xbd0c));
        assert_eq!(bits(q, &qs, 6001, 1), (0x3c8e4f09, 0x3c8e));
        assert_eq!(bits(q, &qs, 6001, 1024), (0xbb752c53, 0xbb75));
        assert_eq!(bits(q, &qs, 6001, 2048 * 1024 - 1), (0x3d378927, 0x3d38));

        let e = "model.embed_tokens.weight";
        let es = [151936, 1536];
        assert_eq!(key(e, 1501), 0xa88fd795d5c6d48b);
        assert_eq!(bits(e, &es, 1501, 0), (0x3c8b1fd7, 0x3c8b));
        assert_eq!(bits(e, &es, 1501, 7), (0x3b2c0ed4, 0x3b2c));
        assert_eq!(bits(e, &es, 1501, 151936 * 1536 - 1), (0xbc3c35a9, 0xbc3c));

        assert_eq!(bits("", &[3, 5], 0, 0), (0x3ed128b9, 0x3ed1));
        assert_eq!(bits("", &[3, 5], 0, 14), (0xbf14d1e2, 0xbf15));
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f808000)), 0x3f80); // tie, even stays
        assert_eq!(bf16_bits(f32::from_bits(0x3f818000)), 0x3f82); // tie, odd rounds up
        assert_eq!(bf16_bits(f32::from_bits(0x3f80c000)), 0x3f81);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80e000)), 0x3f81);
        assert_eq!(bf16_bits(-2.5e-3), 0xbb24);
        assert_eq!(bf16_bits(3.0e38), 0x7f62);
    }

    #[test]
    fn chunks_and_parallel_tasks_give_the_same_values() {
        let shape = [3, 40_000];
        let mut all = vec![0f32; 120_000];
        fill("w", &shape, 9, &mut all).unwrap();
        let mut part = vec![0f32; 50_001];
        fill_range("w", &shape, 9, 33_333, &mut part).unwrap();
        assert_eq!(&all[33_333..83_334], &part[..]);
        let one = |j| bits("w", &shape, 9, j).0;
        assert_eq!(all[0].to_bits(), one(0));
        assert_eq!(all[119_999].to_bits(), one(119_999));
        // uniform in [-s, s) with s = sqrt(3 / cols)
        let s = (3.0f64 / 40_000.0).sqrt() as f32;
        assert!(all.iter().all(|v| (-s..s).contains(v)));
    }

    #[test]
    fn only_1d_and_2d_tensors_are_defined() {
        let mut v = vec![0f32; 8];
        let err = fill("x", &[2, 2, 2], 0, &mut v).unwrap_err();
        assert!(err.to_string().contains("only 1-D and 2-D"), "{err}");
        assert!(fill("x", &[9], 0, &mut v).is_err());
        assert!(fill_range("x", &[9], 0, 2, &mut v).is_err());
    }

    #[test]
    fn writes_a_safetensors_file_weft_reads() {
        let dir = std::env::temp_dir().join(format!("weft-synth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tensors = vec![
            ("a.norm.weight".to_string(), vec![5]),
            ("b.weight".to_string(), vec![3, 4]),
        ];
        for dtype in [DType::BF16, DType::F32] {
            let path = dir.join("model.safetensors");
            write_safetensors(&path, &tensors, 77, dtype).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            assert_eq!(n % 8, 0);
            let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
            let w = if dtype == DType::BF16 { 2 } else { 4 };
            assert_eq!(header["b.weight"]["data_offsets"][0], 5 * w);
            assert_eq!(bytes.len(), 8 + n + 17 * w);
            let data = &bytes[8 + n..];
            let mut want = vec![0f32; 12];
            fill("b.weight", &[3, 4], 77, &mut want).unwrap();
            for (i, v) in want.iter().enumerate() {
                let at = 5 * w + i * w;
                if w == 2 {
                    assert_eq!(data[at..at + 2], bf16_bits(*v).to_le_bytes());
                } else {
                    assert_eq!(data[at..at + 4], v.to_le_bytes());
                }
            }
            std::fs::write(dir.join("config.json"), r#"{"model_type": "test"}"#).unwrap();
            let src = weft_formats::ModelSource::open(&dir).unwrap();
            let t = src.tensor("b.weight").unwrap();
            assert_eq!((t.dtype, t.shape.clone()), (Some(dtype), vec![3, 4]));
        }
        let bad = write_safetensors(&dir.join("x.safetensors"), &tensors, 1, DType::F16);
        assert!(bad.is_err());
        assert!(!dir.join("x.safetensors").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
