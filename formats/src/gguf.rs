//! GGUF v2/v3 reader: header, metadata, tensor table, aligned data section.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use weft_ir::{ggml_type_name, DType, MetaValue, PackedArray, StrListBuilder};

use super::{
    blocked_bytes, LoadError, MappedFile, ModelSource, ParsedTensor, SourceKind, TensorInfo,
};

const GGML_MAX_DIMS: u32 = 4;
/// Nested arrays deeper than this are rejected (real files nest at most once).
const MAX_ARRAY_DEPTH: usize = 8;
/// Scalar and string arrays at least this long (tokenizer vocabularies, scores,
/// merges) are kept as one [`PackedArray`] buffer, not a `MetaValue` per element.
const PACK_MIN_LEN: usize = 1024;

/// (block size, bytes per block) of a GGML type id, where known.
pub(crate) fn ggml_layout(id: u32) -> Option<(usize, usize)> {
    Some(match id {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        _ => return None,
    })
}

/// A bounds-checked little-endian cursor over the mapped file.
struct Reader<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], LoadError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(LoadError::Truncated {
                path: self.path.to_path_buf(),
                what: what(),
                start: self.pos as u64,
                end: (self.pos as u64).saturating_add(n as u64),
                len: self.buf.len() as u64,
            }),
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8, LoadError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16, LoadError> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().unwrap_or_default(),
        ))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, LoadError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, LoadError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().unwrap_or_default(),
        ))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, LoadError> {
        Ok(self.str(what)?.to_string())
    }

    /// A string borrowed from the mapped file.
    fn str(&mut self, what: &dyn Fn() -> String) -> Result<&'a str, LoadError> {
        let len = self.u64(what)?;
        // Bound by the bytes left, so a corrupt length never allocates.
        let n = usize::try_from(len)
            .ok()
            .filter(|&n| n <= self.remaining())
            .ok_or_else(|| LoadError::Truncated {
                path: self.path.to_path_buf(),
                what: format!("{} (string of {len} bytes)", what()),
                start: self.pos as u64,
                end: (self.pos as u64).saturating_add(len),
                len: self.buf.len() as u64,
            })?;
        let bytes = self.take(n, what)?;
        std::str::from_utf8(bytes).map_err(|_| {
            LoadError::corrupt(self.path, format!("{}: string is not valid UTF-8", what()))
        })
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit.
    fn check_count(
        &self,
        count: u64,
        min_size: usize,
        what: &dyn Fn() -> String,
    ) -> Result<usize, LoadError> {
        let need = count.checked_mul(min_size as u64);
        match need {
            Some(need) if need <= self.remaining() as u64 => Ok(count as usize),
            _ => Err(LoadError::corrupt(
                self.path,
                format!(
                    "{}: count {count} cannot fit in the {} bytes left in the file",
                    what(),
                    self.remaining()
                ),
            )),
        }
    }

    fn value(
        &mut self,
        ty: u32,
        depth: usize,
        what: &dyn Fn() -> String,
    ) -> Result<MetaValue, LoadError> {
        Ok(match ty {
            0 => MetaValue::UInt(self.u8(what)? as u64),
            1 => MetaValue::Int(self.u8(what)? as i8 as i64),
            2 => MetaValue::UInt(self.u16(what)? as u64),
            3 => MetaValue::Int(self.u16(what)? as i16 as i64),
            4 => MetaValue::UInt(self.u32(what)? as u64),
            5 => MetaValue::Int(self.u32(what)? as i32 as i64),
            6 => MetaValue::Float(f32::from_bits(self.u32(what)?) as f64),
            7 => match self.u8(what)? {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(LoadError::corrupt(
                        self.path,
                        format!("{}: bool value must be 0 or 1, found {b}", what()),
                    ))
                }
            },
            8 => MetaValue::Str(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(LoadError::corrupt(
                        self.path,
                        format!("{}: arrays nested deeper than {MAX_ARRAY_DEPTH}", what()),
                    ));
                }
                let elem = self.u32(what)?;
                let count = self.u64(what)?;
                let min = min_value_size(elem).ok_or_else(|| {
                    LoadError::corrupt(
                        self.path,
                        format!("{}: unknown array element type {elem}", what()),
                    )
                })?;
                let n = self.check_count(count, min, what)?;
                if n >= PACK_MIN_LEN && elem != 9 {
                    if let Some(p) = self.packed(elem, n, what)? {
                        return Ok(MetaValue::Packed(p));
                    }
                }
                let mut items = Vec::with_capacity(n);
                for i in 0..n {
                    let item_what = || format!("{}[{i}]", what());
                    items.push(self.value(elem, depth + 1, &item_what)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::UInt(self.u64(what)?),
            11 => MetaValue::Int(self.u64(what)? as i64),
            12 => MetaValue::Float(f64::from_bits(self.u64(what)?)),
            t => {
                return Err(LoadError::corrupt(
                    self.path,
                    format!(
                        "{}: unknown metadata value type {t} (expected 0..=12)",
                        what()
                    ),
                ))
            }
        })
    }
}

impl Reader<'_> {
    /// `n` values of scalar/string type `elem` as one buffer; `None` (nothing
    /// consumed) for a string array too large for 32-bit offsets.
    fn packed(
        &mut self,
        elem: u32,
        n: usize,
        what: &dyn Fn() -> String,
    ) -> Result<Option<PackedArray>, LoadError> {
        macro_rules! scalars {
            ($variant:ident, $read:ident, $conv:expr) => {{
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    let item_what = || format!("{}[{i}]", what());
                    v.push($conv(self.$read(&item_what)?));
                }
                PackedArray::$variant(v.into())
            }};
        }
        Ok(Some(match elem {
            0 => scalars!(UInt, u8, |x: u8| x as u64),
            1 => scalars!(Int, u8, |x: u8| x as i8 as i64),
            2 => scalars!(UInt, u16, |x: u16| x as u64),
            3 => scalars!(Int, u16, |x: u16| x as i16 as i64),
            4 => scalars!(UInt, u32, |x: u32| x as u64),
            5 => scalars!(I32, u32, |x: u32| x as i32),
            6 => scalars!(F32, u32, f32::from_bits),
            10 => scalars!(UInt, u64, |x: u64| x),
            11 => scalars!(Int, u64, |x: u64| x as i64),
            12 => scalars!(F64, u64, f64::from_bits),
            7 => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    let item_what = || format!("{}[{i}]", what());
                    v.push(match self.u8(&item_what)? {
                        0 => false,
                        1 => true,
                        b => {
                            return Err(LoadError::corrupt(
                                self.path,
                                format!("{}: bool value must be 0 or 1, found {b}", item_what()),
                            ))
                        }
                    });
                }
                PackedArray::Bool(v.into())
            }
            8 => {
                // Size the buffer exactly with a first pass, then copy once.
                let start = self.pos;
                let mut bytes = 0usize;
                for i in 0..n {
                    let item_what = || format!("{}[{i}]", what());
                    bytes += self.str(&item_what)?.len();
                }
                if bytes > u32::MAX as usize {
                    self.pos = start;
                    return Ok(None);
                }
                self.pos = start;
                let mut b = StrListBuilder::with_capacity(n, bytes);
                for i in 0..n {
                    let item_what = || format!("{}[{i}]", what());
                    b.push(self.str(&item_what)?);
                }
                PackedArray::Str(b.finish())
            }
            _ => return Ok(None),
        }))
    }
}

/// The fewest bytes one value of a GGUF type occupies.
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10 | 11 | 12 => 8,
        9 => 12,
        _ => return None,
    })
}

pub(crate) fn open_file(path: &Path) -> Result<ModelSource, LoadError> {
    let file = Arc::new(MappedFile::open(path)?);
    let (metadata, tensors) = parse(path, file.map.as_ref())?;
    let architecture = metadata
        .get("general.architecture")
        .ok_or_else(|| LoadError::MissingKey {
            path: path.to_path_buf(),
            key: "general.architecture".into(),
        })?
        .as_str()
        .ok_or_else(|| LoadError::corrupt(path, "key 'general.architecture': expected a string"))?
        .to_string();
    ModelSource::assemble(
        path,
        SourceKind::Gguf,
        architecture,
        metadata,
        vec![file],
        vec![tensors],
        None,
    )
}

/// Parses a whole GGUF image; every range is checked against `buf.len()`.
pub(crate) fn parse(
    path: &Path,
    buf: &[u8],
) -> Result<(BTreeMap<String, MetaValue>, Vec<ParsedTensor>), LoadError> {
    let mut r = Reader { path, buf, pos: 0 };
    let magic = r.take(4, &|| "the GGUF magic".into())?;
    if magic != b"GGUF" {
        return Err(LoadError::BadMagic {
            path: path.to_path_buf(),
            found: magic.to_vec(),
        });
    }
    let version = r.u32(&|| "the GGUF version".into())?;
    if version != 2 && version != 3 {
        return Err(LoadError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let n_tensors = r.u64(&|| "the tensor count".into())?;
    let n_kv = r.u64(&|| "the metadata count".into())?;
    // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes.
    let n_kv = r.check_count(n_kv, 13, &|| "metadata count".into())?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r.string(&|| format!("key of metadata entry {i}"))?;
        let what = || format!("metadata key '{key}'");
        let ty = r.u32(&what)?;
        let value = r.value(ty, 0, &what)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(LoadError::corrupt(
                path,
                format!("metadata key '{key}' appears more than once"),
            ));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => 32,
        Some(MetaValue::UInt(a)) if *a > 0 && a.is_power_of_two() && *a <= 1 << 30 => *a,
        Some(v) => {
            return Err(LoadError::corrupt(
                path,
                format!(
                    "key 'general.alignment': expected a power of two, found {}",
                    v.summary()
                ),
            ))
        }
    };

    // A tensor entry takes at least 8 (name) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
    let n_tensors = r.check_count(n_tensors, 24, &|| "tensor count".into())?;
    struct Raw {
        name: String,
        dims: Vec<u64>,
        ty: u32,
        offset: u64,
    }
    let mut raw = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = r.string(&|| format!("name of tensor {i}"))?;
        let what = || format!("tensor '{name}'");
        let n_dims = r.u32(&what)?;
        if n_dims > GGML_MAX_DIMS {
            return Err(LoadError::corrupt(
                path,
                format!("tensor '{name}' has {n_dims} dimensions, at most {GGML_MAX_DIMS} allowed"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64(&what)?);
        }
        let ty = r.u32(&what)?;
        let offset = r.u64(&what)?;
        raw.push(Raw {
            name,
            dims,
            ty,
            offset,
        });
    }

    let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
    let file_len = buf.len() as u64;
    if data_start > file_len && n_tensors > 0 {
        return Err(LoadError::Truncated {
            path: path.to_path_buf(),
            what: "the aligned start of the tensor data".into(),
            start: r.pos as u64,
            end: data_start,
            len: file_len,
        });
    }

    let mut tensors = Vec::with_capacity(raw.len());
    for t in raw {
        let name = t.name;
        // GGUF lists dims innermost first; weft's shapes are outermost first.
        let mut shape = Vec::with_capacity(t.dims.len());
        for &d in t.dims.iter().rev() {
            let d = usize::try_from(d)
                .ok()
                .filter(|&d| d <= i64::MAX as usize)
                .ok_or_else(|| {
                    LoadError::corrupt(path, format!("tensor '{name}': dimension {d} is too large"))
                })?;
            shape.push(d);
        }
        let mut numel: u64 = 1;
        for &d in &shape {
            numel = numel.checked_mul(d as u64).ok_or_else(|| {
                LoadError::corrupt(path, format!("tensor '{name}': shape {shape:?} overflows"))
            })?;
        }
        let type_name = ggml_type_name(t.ty);
        let type_name = if type_name == "unknown" {
            format!("type {}", t.ty)
        } else {
            type_name.to_string()
        };
        if !t.offset.is_multiple_of(alignment) {
            return Err(LoadError::corrupt(
                path,
                format!("tensor '{name}': data offset {} is not a multiple of the alignment {alignment}", t.offset),
            ));
        }
        let start = data_start.checked_add(t.offset).filter(|&s| s <= file_len).ok_or_else(|| {
            LoadError::corrupt(
                path,
                format!(
                    "tensor '{name}': data starts at byte {}+{} beyond the end of the file ({file_len} bytes)",
                    data_start, t.offset
                ),
            )
        })?;
        let (bytes, range) = match ggml_layout(t.ty) {
            Some((block, block_bytes)) => {
                let bytes = blocked_bytes(&shape, block, block_bytes).map_err(|why| {
                    LoadError::corrupt(
                        path,
                        format!("tensor '{name}': {type_name} shape {shape:?}: {why}"),
                    )
                })?;
                let end = start.checked_add(bytes).filter(|&e| e <= file_len).ok_or_else(|| {
                    LoadError::corrupt(
                        path,
                        format!(
                            "tensor '{name}': {type_name} {shape:?} needs bytes {start}..{} but the file has {file_len} bytes",
                            start as u128 + bytes as u128
                        ),
                    )
                })?;
                (bytes, Some((start as usize, (end - start) as usize)))
            }
            None => (0, None),
        };
        tensors.push(ParsedTensor {
            info: TensorInfo {
                name,
                type_name,
                dtype: DType::from_ggml(t.ty),
                shape,
                bytes,
            },
            range,
        });
    }
    Ok((metadata, tensors))
}
