//! Shape-true stand-ins for Qwen3-0.6B and Qwen2.5-Coder-1.5B: the published config.json
//! cut to 2 layers with the real widths (vocab 151936, Qwen3's head_dim 128 where
//! hidden/heads is 64), BF16 weights drawn by `synth (tests/synth)`, against transformers
//! run on the same weights (`scripts/standins/make_standins.py`).
//!
//! The weights are generated here, into `$WEFT_HOME/standins/<name>-<spec hash>/` (kept
//! for the next run), and first checked tensor by tensor against the sha256 the Python
//! generator recorded: a mismatch means the two generators disagree, and nothing after
//! it would mean anything. Then: graph logits within 1e-3·max|logit| of transformers',
//! its 16 greedy tokens exactly, and graph vs curated within 1e-4 with the same tokens.

mod common;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;
use weft_ir::DType;
mod synth;
use weft_runtime::weft_home;

#[test]
fn qwen3_0_6b_standin_matches_transformers() {
    standin("qwen3-0.6b");
}

#[test]
fn qwen2_5_coder_1_5b_standin_matches_transformers() {
    standin("qwen2.5-coder-1.5b");
}

/// What a stand-in's reference.json asks the generator for.
struct Spec {
    tensors: Vec<(String, Vec<usize>)>,
    seed: u64,
    dtype: DType,
    config: serde_json::Value,
    digests: serde_json::Value,
    /// Names the cache directory: a changed spec never reuses old weights.
    tag: String,
}

fn spec(r: &serde_json::Value) -> Spec {
    assert_eq!(
        r["generator"]["spec"].as_str(),
        Some(synth::SPEC_VERSION),
        "reference.json was made by another generator version"
    );
    let tensors = r["tensors"]
        .as_array()
        .expect("a tensor list")
        .iter()
        .map(|t| {
            let shape = t[1].as_array().expect("a shape");
            let shape = shape.iter().map(|d| d.as_u64().unwrap() as usize);
            (t[0].as_str().expect("a name").to_string(), shape.collect())
        })
        .collect();
    let dtype = match r["dtype"].as_str() {
        Some("BF16") => DType::BF16,
        Some("F32") => DType::F32,
        other => panic!("unexpected dtype {other:?}"),
    };
    let identity = serde_json::json!({
        "spec": r["generator"]["spec"],
        "seed": r["seed"],
        "dtype": r["dtype"],
        "config": r["config"],
        "tensors": r["tensors"],
    });
    Spec {
        tensors,
        seed: r["seed"].as_u64().expect("a seed"),
        dtype,
        config: r["config"].clone(),
        digests: r["sha256"].clone(),
        tag: sha256_hex(identity.to_string().as_bytes())[..16].to_string(),
    }
}

/// Writes the HF directory: the cut config and the synthetic weights.
fn generate(dir: &Path, s: &Spec) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    synth::write_safetensors(&dir.join("model.safetensors"), &s.tensors, s.seed, s.dtype)
        .unwrap_or_else(|e| panic!("generating {}: {e}", dir.display()));
    let tmp = dir.join(format!("config.json.tmp.{}", std::process::id()));
    let text = serde_json::to_string_pretty(&s.config).unwrap() + "\n";
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("config.json")).unwrap();
}

/// The first tensor whose layout or sha256 differs from the reference's, if any.
fn mismatch(file: &Path, s: &Spec) -> Option<String> {
    let header = || -> Result<(std::fs::File, serde_json::Value), String> {
        let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len).map_err(|e| e.to_string())?;
        let mut header = vec![0u8; u64::from_le_bytes(len).min(1 << 24) as usize];
        f.read_exact(&mut header).map_err(|e| e.to_string())?;
        let header = serde_json::from_slice(&header).map_err(|e| e.to_string())?;
        Ok((f, header))
    };
    let (mut f, header) = match header() {
        Ok(x) => x,
        Err(e) => return Some(format!("the header of {}: {e}", file.display())),
    };
    let width = if s.dtype == DType::BF16 { 2 } else { 4 };
    let mut offset = 0usize;
    let mut buf = vec![0u8; 1 << 22];
    for (name, shape) in &s.tensors {
        let bytes = shape.iter().product::<usize>() * width;
        let entry = &header[name];
        if entry["shape"] != serde_json::json!(shape)
            || entry["data_offsets"] != serde_json::json!([offset, offset + bytes])
        {
            return Some(format!("{name}: layout {entry} in the file"));
        }
        let mut h = Sha256::default();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len());
            if f.read_exact(&mut buf[..n]).is_err() {
                return Some(format!("{name}: the file ends early"));
            }
            h.update(&buf[..n]);
            left -= n;
        }
        let got = hex(&h.finish());
        if s.digests[name].as_str() != Some(got.as_str()) {
            return Some(format!(
                "{name}: sha256 {got}, reference {}",
                s.digests[name]
            ));
        }
        offset += bytes;
    }
    None
}

/// The stand-in's HF directory, generated when absent and checked against the Python
/// generator's digests.
fn standin_dir(name: &str, s: &Spec) -> PathBuf {
    let dir = weft_home()
        .join("standins")
        .join(format!("{name}-{}", s.tag));
    let file = dir.join("model.safetensors");
    let cached = file.is_file() && dir.join("config.json").is_file();
    if !cached {
        let t = Instant::now();
        generate(&dir, s);
        eprintln!(
            "{name}: generated {} ({:.0} MB) in {:.1}s",
            dir.display(),
            file.metadata().unwrap().len() as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let mut bad = mismatch(&file, s);
    if bad.is_some() && cached {
        eprintln!(
            "{name}: the cached weights differ from the reference ({}); regenerating",
            bad.unwrap()
        );
        generate(&dir, s);
        bad = mismatch(&file, s);
    }
    if let Some(why) = bad {
        panic!(
            "{name}: generator parity: synth (tests/synth) and scripts/standins/make_standins.py \
             disagree on {why}; the references cannot be trusted until they agree"
        );
    }
    eprintln!(
        "{name}: {} tensors, {:.0} MB of {:?} weights, sha256 match the Python generator \
         (checked in {:.1}s)",
        s.tensors.len(),
        file.metadata().unwrap().len() as f64 / 1e6,
        s.dtype,
        t.elapsed().as_secs_f64()
    );
    dir
}

fn standin(name: &str) {
    let t = Instant::now();
    let reference = fixtures()
        .join("standins")
        .join(name)
        .join("reference.json");
    let r = json(&reference);
    let s = spec(&r);
    let dir = standin_dir(name, &s);
    check_against_reference(&dir, "", reference.to_str().unwrap());
    eprintln!("{name}: done in {:.1}s", t.elapsed().as_secs_f64());
}

#[test]
fn sha256_of_known_inputs() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let long: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut h = Sha256::default();
    for c in long.chunks(7) {
        h.update(c);
    }
    let want = "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d"; // hashlib
    assert_eq!(hex(&h.finish()), want);
    assert_eq!(sha256_hex(&long), want);
}
