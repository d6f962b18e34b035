//! weft's file formats. Model loaders: a GGUF file or a Hugging Face directory (`config.json` +
//! safetensors), memory-mapped and exposed as zero-copy [`WeightView`]s.
//!
//! Every offset and length read from a file is checked against the file's size
//! with checked arithmetic before it is used, so a corrupt file gives one
//! [`LoadError`] naming the file and what was wrong, never a panic.

mod gguf;
mod hf;
mod safetensors;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use weft_ir::{ByteSource, DType, MetaValue, WeightProvider, WeightView};

/// Which kind of source a model came from (and so which names its keys and tensors use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A GGUF file: `general.architecture`, GGUF keys and tensor names.
    Gguf,
    /// A Hugging Face directory: `config.json` (`model_type`), HF tensor names.
    Hf,
}

/// One tensor of the source's table, supported or not.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// The format's own name of the stored type, e.g. `"Q4_K"` or `"BF16"`.
    pub type_name: String,
    /// `None` when weft cannot read this type.
    pub dtype: Option<DType>,
    /// Row-major, outermost first.
    pub shape: Vec<usize>,
    /// Stored size in bytes (0 when the type's layout is unknown).
    pub bytes: u64,
}

/// Where a tensor's bytes lie: which mapped file, and the absolute byte range.
#[derive(Clone, Debug)]
struct Location {
    file: usize,
    offset: usize,
    len: usize,
}

/// A memory-mapped file shared by every view into it.
pub(crate) struct MappedFile {
    path: PathBuf,
    map: Mmap,
}

impl ByteSource for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Drops the whole 4 KiB pages inside the range from memory (where the system's
    /// pages are larger, the hint is refused and nothing is dropped).
    fn release(&self, offset: usize, len: usize) {
        const PAGE: usize = 4096;
        let start = offset.next_multiple_of(PAGE);
        let end = offset.saturating_add(len).min(self.map.len()) / PAGE * PAGE;
        if start < end {
            // SAFETY: a read-only shared file mapping: dropped pages read back from the
            // file, unchanged (weft assumes loaded files are not modified). A failed
            // hint changes nothing.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }
}

impl MappedFile {
    pub(crate) fn open(path: &Path) -> Result<MappedFile, LoadError> {
        let file = File::open(path).map_err(|e| LoadError::io(path, e))?;
        // SAFETY: the map is read-only; weft assumes model files are not modified
        // while loaded (as every mmap-based loader does).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| LoadError::io(path, e))?;
        Ok(MappedFile {
            path: path.to_path_buf(),
            map,
        })
    }
}

/// What a format parser hands back: the table plus where each tensor lies.
pub(crate) struct ParsedTensor {
    pub info: TensorInfo,
    /// Absolute byte range in its file; `None` when the size is unknown.
    pub range: Option<(usize, usize)>,
}

/// An opened model: metadata, tensor table, and the mapped files behind them.
pub struct ModelSource {
    pub path: PathBuf,
    pub kind: SourceKind,
    pub architecture: String,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    pub file_bytes: u64,
    pub tokenizer_json: Option<PathBuf>,
    files: Vec<Arc<MappedFile>>,
    locations: Vec<Option<Location>>,
    index: HashMap<String, usize>,
}

impl fmt::Debug for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSource")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("architecture", &self.architecture)
            .field("tensors", &self.tensors.len())
            .field("file_bytes", &self.file_bytes)
            .finish()
    }
}

impl ModelSource {
    /// Opens a `.gguf` file, a Hugging Face model directory, or a bare `config.json`
    /// (metadata only: see [`ModelSource::config_only`]).
    pub fn open(path: &Path) -> Result<ModelSource, LoadError> {
        let meta = std::fs::metadata(path).map_err(|e| LoadError::io(path, e))?;
        if meta.is_dir() {
            return hf::open_dir(path);
        }
        if meta.is_file() {
            // Recognise GGUF by its magic, not its extension.
            let mut magic = [0u8; 4];
            let n = {
                use std::io::Read;
                let mut f = File::open(path).map_err(|e| LoadError::io(path, e))?;
                let mut got = 0;
                while got < 4 {
                    match f.read(&mut magic[got..]) {
                        Ok(0) => break,
                        Ok(k) => got += k,
                        Err(e) => return Err(LoadError::io(path, e)),
                    }
                }
                got
            };
            let is_gguf_name = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
            if (n == 4 && &magic == b"GGUF") || is_gguf_name {
                return gguf::open_file(path);
            }
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                return hf::open_config(path);
            }
            return Err(LoadError::UnknownFormat {
                path: path.to_path_buf(),
                found: format!("a file starting with {:02x?}", &magic[..n]),
            });
        }
        Err(LoadError::UnknownFormat {
            path: path.to_path_buf(),
            found: "neither a regular file nor a directory".into(),
        })
    }

    /// Assembles a source from what a format parser found; checks duplicates.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        path: &Path,
        kind: SourceKind,
        architecture: String,
        metadata: BTreeMap<String, MetaValue>,
        files: Vec<Arc<MappedFile>>,
        per_file: Vec<Vec<ParsedTensor>>,
        tokenizer_json: Option<PathBuf>,
    ) -> Result<ModelSource, LoadError> {
        let file_bytes = files.iter().map(|f| f.map.len() as u64).sum();
        let mut tensors = Vec::new();
        let mut locations = Vec::new();
        let mut index = HashMap::new();
        for (fi, parsed) in per_file.into_iter().enumerate() {
            check_overlaps(&files[fi].path, &parsed)?;
            for t in parsed {
                if index.insert(t.info.name.clone(), tensors.len()).is_some() {
                    return Err(LoadError::Corrupt {
                        path: files[fi].path.clone(),
                        msg: format!("tensor '{}' appears more than once", t.info.name),
                    });
                }
                locations.push(t.range.map(|(offset, len)| Location {
                    file: fi,
                    offset,
                    len,
                }));
                tensors.push(t.info);
            }
        }
        Ok(ModelSource {
            path: path.to_path_buf(),
            kind,
            architecture,
            metadata,
            tensors,
            file_bytes,
            tokenizer_json,
            files,
            locations,
            index,
        })
    }

    /// Where tensor `name` is. A multimodal HF checkpoint keeps its language model
    /// under `model.language_model.`: text-model names (`model.…`) find it there too.
    fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied().or_else(|| {
            let rest = name.strip_prefix("model.")?;
            let i = self.index.get(&format!("model.language_model.{rest}"))?;
            (self.kind == SourceKind::Hf).then_some(*i)
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.find(name).map(|i| &self.tensors[i])
    }

    /// A zero-copy view of a tensor's stored bytes.
    pub fn view(&self, name: &str) -> Result<WeightView, LoadError> {
        let i = self.find(name).ok_or_else(|| LoadError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        let info = &self.tensors[i];
        let unsupported = || LoadError::UnsupportedTensorType {
            path: self.path.clone(),
            name: name.to_string(),
            type_name: info.type_name.clone(),
        };
        let dtype = info.dtype.ok_or_else(unsupported)?;
        let loc = self.locations[i].as_ref().ok_or_else(unsupported)?;
        let file: Arc<dyn ByteSource> = self.files[loc.file].clone();
        Ok(WeightView::new(
            name,
            dtype,
            info.shape.clone(),
            file,
            loc.offset,
            loc.len,
        ))
    }

    /// A config.json without weights: good for shapes and budgets, not for running.
    pub fn config_only(&self) -> bool {
        self.files.is_empty()
    }

    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// FNV-1a 64 over (name, type_name, shape) of every tensor in name order,
    /// as 16 hex digits: identifies the tensor table independent of file order.
    pub fn tensor_table_hash(&self) -> String {
        let mut sorted: Vec<&TensorInfo> = self.tensors.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut h = Fnv::new();
        for t in sorted {
            h.write(t.name.as_bytes());
            h.write(&[0]);
            h.write(t.type_name.as_bytes());
            h.write(&[0]);
            h.write(&(t.shape.len() as u64).to_le_bytes());
            for &d in &t.shape {
                h.write(&(d as u64).to_le_bytes());
            }
        }
        format!("{:016x}", h.0)
    }
}

impl WeightProvider for ModelSource {
    fn weight(&self, name: &str) -> Option<WeightView> {
        self.view(name).ok()
    }
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Everything that can go wrong opening a model. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a model: expected a GGUF file or a Hugging Face directory with config.json, found {found}")]
    UnknownFormat { path: PathBuf, found: String },
    #[error("{path}: not a GGUF file: expected magic \"GGUF\", found {found:02x?}")]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{path}: unsupported GGUF version {version} (expected 2 or 3)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path}: truncated: {what} needs bytes {start}..{end} but the file has {len} bytes")]
    Truncated {
        path: PathBuf,
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    #[error("{path}: missing required key '{key}'")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: malformed JSON: {msg}")]
    Json { path: PathBuf, msg: String },
    #[error("{path}: no tensor named '{name}'")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: unsupported tensor type {type_name} in tensor '{name}'")]
    UnsupportedTensorType {
        path: PathBuf,
        name: String,
        type_name: String,
    },
}

impl LoadError {
    /// An I/O error on `path`; a missing file gets its own, plainer message.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> LoadError {
        if source.kind() == std::io::ErrorKind::NotFound {
            return LoadError::NotFound {
                path: path.to_path_buf(),
            };
        }
        LoadError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn corrupt(path: &Path, msg: impl Into<String>) -> LoadError {
        LoadError::Corrupt {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// Refuses tensors of one file whose bytes overlap: two weights must not alias each
/// other's data (neither format writes them so; a crafted file could).
fn check_overlaps(path: &Path, tensors: &[ParsedTensor]) -> Result<(), LoadError> {
    let mut ranges: Vec<(usize, usize, &str)> = tensors
        .iter()
        .filter_map(|t| {
            t.range
                .map(|(off, len)| (off, off + len, t.info.name.as_str()))
        })
        .filter(|(start, end, _)| start < end)
        .collect();
    ranges.sort_unstable();
    match ranges.windows(2).find(|w| w[1].0 < w[0].1) {
        Some([(a0, a1, a), (b0, b1, b)]) => Err(LoadError::corrupt(
            path,
            format!(
                "the data of tensors '{a}' (bytes {a0}..{a1}) and '{b}' (bytes {b0}..{b1}) overlap"
            ),
        )),
        _ => Ok(()),
    }
}

/// Bytes of `shape` (row-major) stored in blocks of `block` elements of
/// `block_bytes` each; `Err` says why not (rows not whole blocks, or overflow).
pub(crate) fn blocked_bytes(
    shape: &[usize],
    block: usize,
    block_bytes: usize,
) -> Result<u64, String> {
    let cols = *shape.last().unwrap_or(&1) as u64;
    if !cols.is_multiple_of(block as u64) {
        return Err(format!(
            "row length {cols} is not a multiple of the block size {block}"
        ));
    }
    let mut total = (cols / block as u64)
        .checked_mul(block_bytes as u64)
        .ok_or("size overflows")?;
    for &d in &shape[..shape.len().saturating_sub(1)] {
        total = total.checked_mul(d as u64).ok_or("size overflows")?;
    }
    Ok(total)
}
