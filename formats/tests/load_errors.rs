//! Loader tests on small hand-made GGUF files and HF directories: valid files
//! load, every kind of corruption gives an error (never a panic).

use std::path::{Path, PathBuf};

use weft_formats::{LoadError, ModelSource, SourceKind};
use weft_ir::{DType, MetaValue, WeightProvider};

/// A GGUF metadata value to write.
#[derive(Clone)]
enum V {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(&'static str),
    Arr(u32, Vec<V>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl V {
    fn ty(&self) -> u32 {
        match self {
            V::U8(_) => 0,
            V::I8(_) => 1,
            V::U16(_) => 2,
            V::I16(_) => 3,
            V::U32(_) => 4,
            V::I32(_) => 5,
            V::F32(_) => 6,
            V::Bool(_) => 7,
            V::Str(_) => 8,
            V::Arr(..) => 9,
            V::U64(_) => 10,
            V::I64(_) => 11,
            V::F64(_) => 12,
        }
    }
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            V::U8(v) => out.push(*v),
            V::I8(v) => out.push(*v as u8),
            V::U16(v) => out.extend(v.to_le_bytes()),
            V::I16(v) => out.extend(v.to_le_bytes()),
            V::U32(v) => out.extend(v.to_le_bytes()),
            V::I32(v) => out.extend(v.to_le_bytes()),
            V::F32(v) => out.extend(v.to_le_bytes()),
            V::Bool(v) => out.push(*v as u8),
            V::Str(s) => write_str(out, s),
            V::Arr(ty, items) => {
                out.extend(ty.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for i in items {
                    i.write(out);
                }
            }
            V::U64(v) => out.extend(v.to_le_bytes()),
            V::I64(v) => out.extend(v.to_le_bytes()),
            V::F64(v) => out.extend(v.to_le_bytes()),
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A tensor to write: name, GGML dims (innermost first), type id, data.
struct T {
    name: &'static str,
    dims: Vec<u64>,
    ty: u32,
    data: Vec<u8>,
}

/// Writes a GGUF image with data aligned to 32 bytes.
fn gguf(version: u32, kvs: &[(&str, V)], tensors: &[T]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(version.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        write_str(&mut out, k);
        out.extend(v.ty().to_le_bytes());
        v.write(&mut out);
    }
    let mut offset = 0u64;
    let mut offsets = Vec::new();
    for t in tensors {
        write_str(&mut out, t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + t.data.len() as u64).div_ceil(32) * 32;
    }
    while !tensors.is_empty() && !out.len().is_multiple_of(32) {
        out.push(0);
    }
    let data_start = out.len();
    for (t, off) in tensors.iter().zip(offsets) {
        out.resize(data_start + off as usize, 0);
        out.extend(&t.data);
    }
    out
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-load-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn valid_kvs() -> Vec<(&'static str, V)> {
    vec![
        ("general.architecture", V::Str("llama")),
        ("general.name", V::Str("tiny")),
        ("t.u8", V::U8(200)),
        ("t.i8", V::I8(-5)),
        ("t.u16", V::U16(60000)),
        ("t.i16", V::I16(-30000)),
        ("t.u32", V::U32(4_000_000_000)),
        ("t.i32", V::I32(-2_000_000_000)),
        ("t.f32", V::F32(0.5)),
        ("t.bool", V::Bool(true)),
        ("t.u64", V::U64(u64::MAX)),
        ("t.i64", V::I64(i64::MIN)),
        ("t.f64", V::F64(-2.25)),
        ("t.arr", V::Arr(8, vec![V::Str("a"), V::Str("bc")])),
        (
            "t.nested",
            V::Arr(
                9,
                vec![V::Arr(5, vec![V::I32(1), V::I32(-2)]), V::Arr(5, vec![])],
            ),
        ),
    ]
}

fn valid_tensors() -> Vec<T> {
    let mut q8 = Vec::new();
    for b in 0..2u8 {
        q8.extend([0x00, 0x3c]); // f16 scale 1.0
        q8.extend((0..32).map(|i| i + b));
    }
    vec![
        T {
            name: "w.f32",
            dims: vec![3, 2],
            ty: 0,
            data: f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        },
        T {
            name: "w.q8",
            dims: vec![32, 2],
            ty: 8,
            data: q8,
        },
        // Unknown type: its size cannot be checked, so it is not the last tensor.
        T {
            name: "w.weird",
            dims: vec![4],
            ty: 99,
            data: vec![0; 16],
        },
        T {
            name: "w.q8k",
            dims: vec![256, 1],
            ty: 15,
            data: vec![7; 292],
        },
    ]
}

#[test]
fn valid_gguf_loads() {
    let dir = scratch("valid");
    for version in [2, 3] {
        let path = write_file(
            &dir,
            "m.gguf",
            &gguf(version, &valid_kvs(), &valid_tensors()),
        );
        let m = ModelSource::open(&path).unwrap();
        assert_eq!(m.kind, SourceKind::Gguf);
        assert_eq!(m.architecture, "llama");
        assert_eq!(m.file_bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(m.tokenizer_json, None);
        assert_eq!(m.meta("general.name"), Some(&MetaValue::Str("tiny".into())));
        assert_eq!(m.meta("t.u8"), Some(&MetaValue::UInt(200)));
        assert_eq!(m.meta("t.i8"), Some(&MetaValue::Int(-5)));
        assert_eq!(m.meta("t.u16"), Some(&MetaValue::UInt(60000)));
        assert_eq!(m.meta("t.i16"), Some(&MetaValue::Int(-30000)));
        assert_eq!(m.meta("t.u32"), Some(&MetaValue::UInt(4_000_000_000)));
        assert_eq!(m.meta("t.i32"), Some(&MetaValue::Int(-2_000_000_000)));
        assert_eq!(m.meta("t.f32"), Some(&MetaValue::Float(0.5)));
        assert_eq!(m.meta("t.bool"), Some(&MetaValue::Bool(true)));
        assert_eq!(m.meta("t.u64"), Some(&MetaValue::UInt(u64::MAX)));
        assert_eq!(m.meta("t.i64"), Some(&MetaValue::Int(i64::MIN)));
        assert_eq!(m.meta("t.f64"), Some(&MetaValue::Float(-2.25)));
        assert_eq!(
            m.meta("t.arr"),
            Some(&MetaValue::Array(vec![
                MetaValue::Str("a".into()),
                MetaValue::Str("bc".into())
            ]))
        );
        assert_eq!(
            m.meta("t.nested"),
            Some(&MetaValue::Array(vec![
                MetaValue::Array(vec![MetaValue::Int(1), MetaValue::Int(-2)]),
                MetaValue::Array(vec![])
            ]))
        );

        let names: Vec<&str> = m.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["w.f32", "w.q8", "w.weird", "w.q8k"]);
        let f = m.view("w.f32").unwrap();
        assert_eq!(f.dtype, DType::F32);
        assert_eq!(f.shape, vec![2, 3]);
        assert_eq!(f.bytes(), &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[..]);
        let q = m.view("w.q8").unwrap();
        assert_eq!(q.dtype, DType::Q8_0);
        assert_eq!(q.shape, vec![2, 32]);
        assert_eq!(q.bytes().len(), 68);
        assert_eq!(q.row(1)[2], 1);
        assert!(m.weight("w.q8").is_some());

        let k = m.tensor("w.q8k").unwrap();
        assert_eq!(
            (k.type_name.as_str(), k.dtype, k.bytes),
            ("Q8_K", None, 292)
        );
        let err = m.view("w.q8k").unwrap_err().to_string();
        assert!(
            err.contains("unsupported tensor type Q8_K in tensor 'w.q8k'"),
            "{err}"
        );
        assert!(m.weight("w.q8k").is_none());
        let w = m.tensor("w.weird").unwrap();
        assert_eq!((w.dtype, w.shape.clone()), (None, vec![4]));
        assert!(m.view("w.weird").is_err());

        let err = m.view("nope").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("m.gguf"), "{err}");
        assert!(m.weight("nope").is_none());

        let h = m.tensor_table_hash();
        assert_eq!(h.len(), 16);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(h, ModelSource::open(&path).unwrap().tensor_table_hash());
    }
}

#[test]
fn table_hash_ignores_order_but_not_content() {
    let dir = scratch("hash");
    let a = ModelSource::open(&write_file(
        &dir,
        "a.gguf",
        &gguf(3, &valid_kvs(), &valid_tensors()),
    ))
    .unwrap();
    let mut rev = valid_tensors();
    rev.reverse();
    let b = ModelSource::open(&write_file(&dir, "b.gguf", &gguf(3, &valid_kvs(), &rev))).unwrap();
    assert_eq!(a.tensor_table_hash(), b.tensor_table_hash());
    let mut other = valid_tensors();
    other[0].dims = vec![2, 3];
    let c = ModelSource::open(&write_file(&dir, "c.gguf", &gguf(3, &valid_kvs(), &other))).unwrap();
    assert_ne!(a.tensor_table_hash(), c.tensor_table_hash());
}

#[test]
fn truncated_gguf_is_an_error_at_every_cut() {
    let dir = scratch("trunc");
    let full = gguf(3, &valid_kvs(), &valid_tensors());
    for cut in 0..full.len() {
        let path = write_file(&dir, "t.gguf", &full[..cut]);
        let res = ModelSource::open(&path);
        assert!(res.is_err(), "cut at {cut} of {} loaded", full.len());
        let msg = res.unwrap_err().to_string();
        assert!(msg.contains("t.gguf"), "cut {cut}: {msg}");
    }
}

fn open_err(name: &str, bytes: &[u8]) -> String {
    let dir = scratch(name);
    let path = write_file(&dir, "x.gguf", bytes);
    match ModelSource::open(&path) {
        Ok(_) => panic!("{name}: corrupt file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_magic_and_versions() {
    let mut bytes = gguf(3, &valid_kvs(), &valid_tensors());
    bytes[..4].copy_from_slice(b"GGML");
    let e = open_err("magic", &bytes);
    assert!(e.contains("not a GGUF file"), "{e}");
    for v in [1, 4, 0xffff_ffff] {
        let e = open_err("version", &gguf(v, &valid_kvs(), &valid_tensors()));
        assert!(e.contains(&format!("unsupported GGUF version {v}")), "{e}");
    }
    // A non-GGUF file without the extension is rejected by content.
    let dir = scratch("notmodel");
    let e = ModelSource::open(&write_file(&dir, "notes.txt", b"hello")).unwrap_err();
    assert!(matches!(e, LoadError::UnknownFormat { .. }), "{e}");
}

#[test]
fn tensor_size_not_matching_shape() {
    let mut ts = valid_tensors();
    ts[1].dims = vec![30, 2]; // Q8_0 rows must be multiples of 32
    let e = open_err("rowsize", &gguf(3, &valid_kvs(), &ts));
    assert!(
        e.contains("w.q8") && e.contains("multiple of the block size 32"),
        "{e}"
    );
    // Shape larger than the data present: the range runs past the end.
    let mut ts = valid_tensors();
    ts.truncate(1);
    ts[0].dims = vec![3, 200];
    let e = open_err("short", &gguf(3, &valid_kvs(), &ts));
    assert!(e.contains("w.f32") && e.contains("needs bytes"), "{e}");
    // Dimensions whose product overflows.
    let mut ts = valid_tensors();
    ts[0].dims = vec![1 << 40, 1 << 40];
    let e = open_err("overflow", &gguf(3, &valid_kvs(), &ts));
    assert!(e.contains("w.f32"), "{e}");
}

/// Rewrites the offset field of tensor `index` (0-based) in a GGUF image.
fn patch_offset(bytes: &mut [u8], kvs: &[(&str, V)], tensors: &[T], index: usize, offset: u64) {
    let mut pos = 24;
    for (k, v) in kvs {
        let mut tmp = Vec::new();
        write_str(&mut tmp, k);
        tmp.extend(v.ty().to_le_bytes());
        v.write(&mut tmp);
        pos += tmp.len();
    }
    for (i, t) in tensors.iter().enumerate() {
        pos += 8 + t.name.len() + 4 + 8 * t.dims.len() + 4;
        if i == index {
            bytes[pos..pos + 8].copy_from_slice(&offset.to_le_bytes());
            return;
        }
        pos += 8;
    }
}

#[test]
fn tensor_range_beyond_file() {
    let kvs = valid_kvs();
    let ts = valid_tensors();
    let mut bytes = gguf(3, &kvs, &ts);
    patch_offset(&mut bytes, &kvs, &ts, 1, 1 << 20);
    let e = open_err("beyond", &bytes);
    assert!(e.contains("w.q8") && e.contains("beyond the end"), "{e}");
    let mut bytes = gguf(3, &kvs, &ts);
    patch_offset(&mut bytes, &kvs, &ts, 1, u64::MAX - 31);
    let e = open_err("huge", &bytes);
    assert!(e.contains("w.q8"), "{e}");
    let mut bytes = gguf(3, &kvs, &ts);
    patch_offset(&mut bytes, &kvs, &ts, 1, 33);
    let e = open_err("misaligned", &bytes);
    assert!(e.contains("w.q8") && e.contains("alignment"), "{e}");
}

#[test]
fn absurd_counts_and_lengths() {
    // kv count far beyond the file.
    let mut bytes = gguf(3, &valid_kvs(), &valid_tensors());
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = open_err("kvcount", &bytes);
    assert!(e.contains("metadata count"), "{e}");
    // tensor count far beyond the file.
    let mut bytes = gguf(3, &valid_kvs(), &valid_tensors());
    bytes[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let e = open_err("tcount", &bytes);
    assert!(e.contains("tensor count"), "{e}");
    // first key's string length absurd.
    let mut bytes = gguf(3, &valid_kvs(), &valid_tensors());
    bytes[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let e = open_err("strlen", &bytes);
    assert!(e.contains("truncated"), "{e}");
    // an array claiming 2^60 elements.
    let kvs = vec![
        ("general.architecture", V::Str("llama")),
        ("big", V::Arr(4, vec![V::U32(1)])),
    ];
    let mut bytes = gguf(3, &kvs, &[]);
    let count_at = bytes.len() - 4 - 8;
    bytes[count_at..count_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let e = open_err("arrlen", &bytes);
    assert!(e.contains("'big'") && e.contains("cannot fit"), "{e}");
    // unknown value type.
    let kvs = vec![("general.architecture", V::Str("llama")), ("odd", V::U8(1))];
    let mut bytes = gguf(3, &kvs, &[]);
    let ty_at = bytes.len() - 1 - 4;
    bytes[ty_at..ty_at + 4].copy_from_slice(&77u32.to_le_bytes());
    let e = open_err("valtype", &bytes);
    assert!(
        e.contains("'odd'") && e.contains("unknown metadata value type 77"),
        "{e}"
    );
}

#[test]
fn missing_architecture_and_bad_alignment() {
    let kvs = vec![("general.name", V::Str("x"))];
    let e = open_err("noarch", &gguf(3, &kvs, &[]));
    assert!(e.contains("general.architecture"), "{e}");
    let kvs = vec![
        ("general.architecture", V::Str("llama")),
        ("general.alignment", V::U32(24)),
    ];
    let e = open_err("align", &gguf(3, &kvs, &[]));
    assert!(e.contains("general.alignment"), "{e}");
    let kvs = vec![
        ("general.architecture", V::Str("llama")),
        ("general.architecture", V::Str("llama")),
    ];
    let e = open_err("dupkey", &gguf(3, &kvs, &[]));
    assert!(e.contains("more than once"), "{e}");
}

#[test]
fn missing_path() {
    let e = ModelSource::open(Path::new("/definitely/not/here.gguf")).unwrap_err();
    assert!(matches!(e, LoadError::NotFound { .. }));
    assert!(e.to_string().contains("/definitely/not/here.gguf"));
}

// ---- Hugging Face directories ----

/// A safetensors image from (name, dtype, shape, data).
fn safetensors(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut data: Vec<u8> = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let begin = data.len();
        data.extend(bytes);
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

const CONFIG: &str = r#"{"model_type": "llama", "hidden_size": 4, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
  "rope_scaling": {"factor": 8.0, "rope_type": "llama3"}, "eos_token_id": [1, 2], "pad_token_id": null}"#;

#[test]
fn hf_dir_loads() {
    let dir = scratch("hf-ok");
    write_file(&dir, "config.json", CONFIG.as_bytes());
    write_file(&dir, "tokenizer.json", b"{}");
    let st = safetensors(&[
        (
            "model.norm.weight",
            "F32",
            vec![4],
            f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
        ),
        ("model.embed_tokens.weight", "BF16", vec![2, 4], vec![1; 16]),
        ("model.counts", "I64", vec![2], vec![0; 16]),
    ]);
    write_file(&dir, "model.safetensors", &st);
    let m = ModelSource::open(&dir).unwrap();
    assert_eq!(m.kind, SourceKind::Hf);
    assert_eq!(m.architecture, "llama");
    assert_eq!(m.file_bytes, st.len() as u64);
    assert_eq!(m.tokenizer_json, Some(dir.join("tokenizer.json")));
    assert_eq!(m.meta("hidden_size"), Some(&MetaValue::UInt(4)));
    assert_eq!(m.meta("rms_norm_eps"), Some(&MetaValue::Float(1e-5)));
    assert_eq!(m.meta("tie_word_embeddings"), Some(&MetaValue::Bool(true)));
    assert_eq!(m.meta("rope_scaling.factor"), Some(&MetaValue::Float(8.0)));
    assert_eq!(
        m.meta("rope_scaling.rope_type"),
        Some(&MetaValue::Str("llama3".into()))
    );
    assert_eq!(
        m.meta("eos_token_id"),
        Some(&MetaValue::Array(vec![
            MetaValue::UInt(1),
            MetaValue::UInt(2)
        ]))
    );
    assert_eq!(m.meta("pad_token_id"), None);
    let n = m.view("model.norm.weight").unwrap();
    assert_eq!((n.dtype, n.shape.clone()), (DType::F32, vec![4]));
    assert_eq!(n.bytes(), &f32_bytes(&[1.0, 2.0, 3.0, 4.0])[..]);
    let e = m.view("model.embed_tokens.weight").unwrap();
    assert_eq!(
        (e.dtype, e.shape.clone(), e.bytes().len()),
        (DType::BF16, vec![2, 4], 16)
    );
    let c = m.tensor("model.counts").unwrap();
    assert_eq!((c.type_name.as_str(), c.dtype), ("I64", None));
    let err = m.view("model.counts").unwrap_err().to_string();
    assert!(
        err.contains("unsupported tensor type I64 in tensor 'model.counts'"),
        "{err}"
    );
}

#[test]
fn hf_sharded_dir_loads() {
    let dir = scratch("hf-shards");
    write_file(&dir, "config.json", CONFIG.as_bytes());
    let a = safetensors(&[("a.weight", "F32", vec![1], f32_bytes(&[1.0]))]);
    let b = safetensors(&[("b.weight", "F16", vec![2], vec![0; 4])]);
    write_file(&dir, "model-00001-of-00002.safetensors", &a);
    write_file(&dir, "model-00002-of-00002.safetensors", &b);
    let index = r#"{"metadata": {}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors"}}"#;
    write_file(&dir, "model.safetensors.index.json", index.as_bytes());
    let m = ModelSource::open(&dir).unwrap();
    assert_eq!(m.file_bytes, (a.len() + b.len()) as u64);
    assert_eq!(m.tokenizer_json, None);
    assert_eq!(m.view("a.weight").unwrap().bytes(), &f32_bytes(&[1.0])[..]);
    assert_eq!(m.view("b.weight").unwrap().dtype, DType::F16);
    // An index that names a tensor its shard lacks.
    let index = r#"{"weight_map": {"a.weight": "model-00001-of-00002.safetensors",
        "c.weight": "model-00002-of-00002.safetensors"}}"#;
    write_file(&dir, "model.safetensors.index.json", index.as_bytes());
    let e = ModelSource::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("c.weight") && e.contains("model-00002-of-00002.safetensors"),
        "{e}"
    );
}

#[test]
fn hf_dir_without_config() {
    let dir = scratch("hf-noconfig");
    write_file(&dir, "model.safetensors", &safetensors(&[]));
    let e = ModelSource::open(&dir).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn hf_config_malformed() {
    let dir = scratch("hf-badconfig");
    write_file(&dir, "config.json", b"{\"model_type\": \"llama\",");
    write_file(&dir, "model.safetensors", &safetensors(&[]));
    let e = ModelSource::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("config.json") && e.contains("malformed JSON"),
        "{e}"
    );
    write_file(&dir, "config.json", b"{\"hidden_size\": 4}");
    let e = ModelSource::open(&dir).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("model_type"), "{e}");
}

#[test]
fn safetensors_bad_offsets_and_sizes() {
    let dir = scratch("hf-badst");
    write_file(&dir, "config.json", CONFIG.as_bytes());
    let good = safetensors(&[("x", "F32", vec![2], f32_bytes(&[1.0, 2.0]))]);

    // Offsets past the data.
    let text = String::from_utf8_lossy(&good).replace("[0,8]", "[0,9]");
    write_file(&dir, "model.safetensors", text.as_bytes());
    let e = ModelSource::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("'x'") && e.contains("data_offsets"),
        "{e}"
    );

    // Begin after end.
    let text = String::from_utf8_lossy(&good).replace("[0,8]", "[8,0]");
    write_file(&dir, "model.safetensors", text.as_bytes());
    assert!(ModelSource::open(&dir).is_err());

    // dtype x shape disagrees with the byte range.
    let text = String::from_utf8_lossy(&good).replace("[2]", "[3]");
    write_file(&dir, "model.safetensors", text.as_bytes());
    let e = ModelSource::open(&dir).unwrap_err().to_string();
    assert!(e.contains("'x'") && e.contains("needs 12 bytes"), "{e}");

    // Header length beyond the file, and every truncation.
    for cut in 0..good.len() {
        write_file(&dir, "model.safetensors", &good[..cut]);
        assert!(ModelSource::open(&dir).is_err(), "cut {cut} loaded");
    }
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    write_file(&dir, "model.safetensors", &huge);
    assert!(ModelSource::open(&dir).is_err());

    // Header that is not JSON.
    let mut bad = good.clone();
    bad[8] = b'!';
    write_file(&dir, "model.safetensors", &bad);
    let e = ModelSource::open(&dir).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("JSON"), "{e}");
}

#[test]
fn long_arrays_are_packed() {
    const N: usize = 1500;
    let strs: Vec<V> = (0..N)
        .map(|i| {
            let s: &'static str = Box::leak(format!("tok{i}\u{2581}").into_boxed_str());
            V::Str(if i == 7 { "" } else { s })
        })
        .collect();
    let mut kvs = valid_kvs();
    kvs.push(("t.strs", V::Arr(8, strs)));
    kvs.push((
        "t.i32s",
        V::Arr(5, (0..N).map(|i| V::I32(i as i32 - 3)).collect()),
    ));
    kvs.push((
        "t.f32s",
        V::Arr(6, (0..N).map(|i| V::F32(i as f32 * 0.5)).collect()),
    ));
    kvs.push(("t.u8s", V::Arr(0, (0..N).map(|i| V::U8(i as u8)).collect())));
    kvs.push((
        "t.bools",
        V::Arr(7, (0..N).map(|i| V::Bool(i % 3 == 0)).collect()),
    ));
    let dir = scratch("packed");
    let path = write_file(&dir, "p.gguf", &gguf(3, &kvs, &valid_tensors()));
    let m = ModelSource::open(&path).unwrap();

    let s = m.meta("t.strs").unwrap();
    assert!(matches!(s, MetaValue::Packed(_)), "{s:?}");
    assert_eq!(s.summary(), format!("[{N} values]"));
    assert_eq!(s.array_len(), Some(N));
    assert_eq!(s.array_get(0), Some(MetaValue::Str("tok0\u{2581}".into())));
    assert_eq!(s.array_get(7), Some(MetaValue::Str(String::new())));
    assert_eq!(
        s.array_get(N - 1),
        Some(MetaValue::Str(format!("tok{}\u{2581}", N - 1)))
    );
    assert_eq!(s.array_get(N), None);
    let MetaValue::Packed(p) = s else {
        unreachable!()
    };
    let list = p.as_strs().unwrap();
    assert_eq!(list.len(), N);
    assert_eq!(list.iter().nth(12), Some("tok12\u{2581}"));

    let i = m.meta("t.i32s").unwrap();
    assert_eq!(i.array_get(0), Some(MetaValue::Int(-3)));
    assert_eq!(i.array_get(N - 1), Some(MetaValue::Int(N as i64 - 4)));
    let f = m.meta("t.f32s").unwrap();
    assert_eq!(f.array_get(3), Some(MetaValue::Float(1.5)));
    let u = m.meta("t.u8s").unwrap();
    assert_eq!(u.array_get(300), Some(MetaValue::UInt(300 % 256)));
    let b = m.meta("t.bools").unwrap();
    assert_eq!(b.array_get(3), Some(MetaValue::Bool(true)));
    assert_eq!(b.array_get(4), Some(MetaValue::Bool(false)));
    // Packed arrays serialise as plain lists.
    let json = serde_json::to_value(i).unwrap();
    assert_eq!(json.as_array().unwrap().len(), N);
    assert_eq!(json[1], serde_json::json!(-2));

    // Corruption inside a long array is still one clear error.
    let mut bad = valid_kvs();
    let mut items: Vec<V> = (0..N).map(|_| V::Bool(true)).collect();
    items[N - 2] = V::U8(2);
    bad.push(("t.bools", V::Arr(7, items)));
    let msg = open_err("packed-bool", &gguf(3, &bad, &[]));
    assert!(msg.contains("t.bools") && msg.contains("found 2"), "{msg}");

    let mut bad = valid_kvs();
    let mut bytes = gguf(3, &bad, &[]);
    let at = bytes.len();
    bad.push(("t.strs", V::Arr(8, (0..N).map(|_| V::Str("ab")).collect())));
    bytes = gguf(3, &bad, &[]);
    // Break UTF-8 in the last string.
    let last = bytes.len() - 1;
    bytes[last] = 0xff;
    let msg = open_err("packed-utf8", &bytes);
    assert!(msg.contains("UTF-8"), "{msg}");
    for cut in [at + 30, bytes.len() - 1] {
        let msg = open_err("packed-trunc", &bytes[..cut]);
        assert!(msg.contains("x.gguf"), "cut {cut}: {msg}");
    }
}

#[test]
fn gguf_tensors_whose_data_overlap() {
    // w.q8's data moved onto w.f32's bytes (offset 0, aligned and inside the file).
    let kvs = valid_kvs();
    let ts = valid_tensors();
    let mut bytes = gguf(3, &kvs, &ts);
    patch_offset(&mut bytes, &kvs, &ts, 1, 0);
    let e = open_err("overlap", &bytes);
    assert!(
        e.contains("x.gguf")
            && e.contains("'w.f32'")
            && e.contains("'w.q8'")
            && e.contains("overlap"),
        "{e}"
    );
}

#[test]
fn safetensors_overlapping_offsets_and_duplicate_keys() {
    let dir = scratch("hf-overlap");
    write_file(&dir, "config.json", CONFIG.as_bytes());
    let good = safetensors(&[
        ("a", "F32", vec![2], f32_bytes(&[1.0, 2.0])),
        ("b", "F32", vec![2], f32_bytes(&[3.0, 4.0])),
    ]);
    write_file(&dir, "model.safetensors", &good);
    ModelSource::open(&dir).unwrap();

    // b's range moved onto half of a's (the same length, so only the overlap is wrong).
    write_file(
        &dir,
        "model.safetensors",
        &replace(&good, "[8,16]", "[4,12]"),
    );
    let e = ModelSource::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors")
            && e.contains("'a'")
            && e.contains("'b'")
            && e.contains("overlap"),
        "{e}"
    );

    // The same tensor named twice in the header (a JSON map would keep the last).
    write_file(
        &dir,
        "model.safetensors",
        &replace(&good, "\"b\":", "\"a\":"),
    );
    let e = ModelSource::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("'a' appears more than once"),
        "{e}"
    );
}

/// `bytes` with the first `from` replaced by `to` (of the same length: the header keeps its size).
fn replace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} not found"));
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to.as_bytes());
    out
}
