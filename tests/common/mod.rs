//! Shared helpers of the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use weft_runtime::sampler::argmax;
use weft_runtime::{parity, Forward, Model, PassSelection};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

pub fn tiny(name: &str) -> PathBuf {
    fixtures().join("tiny").join(name)
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an id list")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("a float list")
        .iter()
        .map(|x| x.as_f64().expect("a float") as f32)
        .collect()
}

/// Raw little-endian f32 values.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Opens a model once per test binary (short names are fetched on first use; the
/// lock keeps two tests from fetching at once).
pub fn open_shared(spec: &str) -> &'static Model {
    static MODELS: OnceLock<Mutex<Vec<(String, &'static Model)>>> = OnceLock::new();
    let mut models = MODELS.get_or_init(Default::default).lock().unwrap();
    if let Some((_, m)) = models.iter().find(|(s, _)| s == spec) {
        return m;
    }
    let m: &'static Model = Box::leak(Box::new(
        Model::open(spec, &mut |msg| eprintln!("{msg}"))
            .unwrap_or_else(|e| panic!("opening {spec}: {e}")),
    ));
    models.push((spec.to_string(), m));
    m
}

/// Runs the weft binary; returns (exit code, stdout, stderr).
pub fn weft(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("weft runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit vectors differ in length");
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// A model in `dir` (the directory itself, or a weights file in it when `weights` is not
/// empty) against a transformers reference file there: last-position logits within
/// 1e-3·max|logit|, the reference's greedy tokens exactly, the same logits with every
/// pass off (1e-5 relative), and graph vs curated within 1e-4 relative with the same
/// greedy tokens for 16 steps.
pub fn check_against_reference(dir: &Path, weights: &str, reference: &str) {
    let path = dir.join(weights);
    let label = format!("{}/{weights}", dir.file_name().unwrap().to_string_lossy());
    let r = json(&dir.join(reference));
    let input = ids(&r["input_ids"]);
    let want_logits = floats(&r["last_logits"]);
    let want_greedy = ids(&r["greedy"]);
    let model = open_shared(path.to_str().unwrap());
    let plan = model.compile(&PassSelection::all()).unwrap().plan;
    let mut graph = model.cpu(plan, input.len() + want_greedy.len()).unwrap();

    let logits = graph.forward(&input).unwrap().to_vec();
    let rel = max_abs_diff(&logits, &want_logits) / max_abs(&want_logits);
    eprintln!("{label}: max |Δlogit| / max|logit| vs transformers = {rel:.2e}");
    assert!(
        rel <= 1e-3,
        "{label}: logits differ from transformers by {rel:.2e} (relative)"
    );
    assert_eq!(
        greedy_after(&mut graph, &logits, want_greedy.len()),
        want_greedy,
        "{label}: greedy tokens differ from transformers"
    );
    // Every pass off must give the same logits.
    let mut bare = model
        .cpu(
            model.compile(&PassSelection::none()).unwrap().plan,
            input.len() + 1,
        )
        .unwrap();
    let off = bare.forward(&input).unwrap().to_vec();
    let rel_off = max_abs_diff(&logits, &off) / max_abs(&logits);
    assert!(
        rel_off <= 1e-5,
        "{label}: passes on vs off differ by {rel_off:.2e}"
    );

    let mut graph = model
        .cpu(
            model.compile(&PassSelection::all()).unwrap().plan,
            input.len() + 17,
        )
        .unwrap();
    let mut curated = model.curated(input.len() + 17).unwrap();
    let rep = parity::compare(&mut graph, &mut curated, &input, 16, 1e-4).unwrap();
    eprintln!(
        "{label}: graph vs curated max rel {:.2e}, tokens agree {}",
        rep.max_rel(),
        rep.tokens_agree()
    );
    assert!(
        rep.passed(),
        "{label}: graph vs curated: rel {:.2e}, tokens agree {}",
        rep.max_rel(),
        rep.tokens_agree()
    );
}

/// Greedy continuation of `n` tokens, the first chosen from `logits` (already computed).
pub fn greedy_after(model: &mut dyn Forward, logits: &[f32], n: usize) -> Vec<u32> {
    let mut tokens = vec![argmax(logits)];
    while tokens.len() < n {
        let l = model.forward(&[*tokens.last().unwrap()]).unwrap();
        tokens.push(argmax(l));
    }
    tokens
}

/// How many leading greedy steps weft is held to llama.cpp: the steps before llama.cpp's
/// first top-1/top-2 gap below 1.0 (its 8-bit activations and f16 KV cache move logits
/// by up to about 1, so a smaller gap is its noise, not a fact about the model).
pub fn llama_cpp_decided_steps(gaps: &[f32]) -> usize {
    gaps.iter().position(|g| *g < 1.0).unwrap_or(gaps.len())
}

/// Compiles `model` with every pass, runs `prompt` and `steps` greedy steps: the
/// last-prompt-position logits and the greedy tokens.
pub fn greedy_run(model: &Model, prompt: &[u32], steps: usize) -> (Vec<f32>, Vec<u32>) {
    let plan = model.compile(&PassSelection::all()).unwrap().plan;
    let mut g = model.cpu(plan, prompt.len() + steps).unwrap();
    let logits = g.forward(prompt).unwrap().to_vec();
    let tokens = greedy_after(&mut g, &logits, steps);
    (logits, tokens)
}
