//! Shared helpers of the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use weft_runtime::sampler::argmax;
use weft_runtime::{parity, BackendKind, Forward, Model, PassSelection};

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
/// empty) against a transformers reference file there (or at an absolute path; its
/// `last_logits` are a list, or the name of a raw f32 file beside it): last-position logits within
/// 1e-3·max|logit|, the reference's greedy tokens exactly, the same logits with every
/// pass off (1e-5 relative), and graph vs curated within 1e-4 relative with the same
/// greedy tokens for 16 steps.
pub fn check_against_reference(dir: &Path, weights: &str, reference: &str) {
    let path = dir.join(weights);
    let label = format!("{}/{weights}", dir.file_name().unwrap().to_string_lossy());
    let reference = dir.join(reference);
    let r = json(&reference);
    let input = ids(&r["input_ids"]);
    let want_logits = reference_logits(&reference, &r);
    let want_greedy = ids(&r["greedy"]);
    let model = open_shared(path.to_str().unwrap());
    let plan = model.compile(&PassSelection::all()).unwrap().plan;
    let mut graph = model
        .session(BackendKind::Cpu, plan, input.len() + want_greedy.len())
        .unwrap();

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
        .session(
            BackendKind::Cpu,
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

    // The same plan on the reference backend: within 1e-5 relative of the cpu backend.
    let plan = model.compile(&PassSelection::all()).unwrap().plan;
    let mut cpu = model
        .session(BackendKind::Cpu, plan.clone(), input.len() + 9)
        .unwrap();
    let mut reference = model
        .session(BackendKind::Reference, plan, input.len() + 9)
        .unwrap();
    let rep = parity::compare(&mut cpu, &mut reference, &input, 8, 1e-5).unwrap();
    eprintln!(
        "{label}: cpu vs reference backend max rel {:.2e}, tokens agree {}",
        rep.max_rel(),
        rep.tokens_agree()
    );
    assert!(
        rep.passed(),
        "{label}: cpu vs reference backend: rel {:.2e}, tokens agree {}",
        rep.max_rel(),
        rep.tokens_agree()
    );

    let mut graph = model
        .session(
            BackendKind::Cpu,
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
    let mut g = model
        .session(BackendKind::Cpu, plan, prompt.len() + steps)
        .unwrap();
    let logits = g.forward(prompt).unwrap().to_vec();
    let tokens = greedy_after(&mut g, &logits, steps);
    (logits, tokens)
}

/// A reference's `last_logits`: inline, or the name of a raw little-endian f32 file in the
/// reference file's directory.
pub fn reference_logits(reference: &Path, r: &serde_json::Value) -> Vec<f32> {
    match r["last_logits"].as_str() {
        Some(file) => read_f32(&reference.parent().expect("a file").join(file)),
        None => floats(&r["last_logits"]),
    }
}

/// SHA-256 (FIPS 180-4), streaming; the stand-in references record one per tensor.
pub struct Sha256 {
    state: [u32; 8],
    block: [u8; 64],
    filled: usize,
    total: u64,
}

const SHA256_K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

impl Default for Sha256 {
    fn default() -> Self {
        Sha256 {
            state: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: [0; 64],
            filled: 0,
            total: 0,
        }
    }
}

impl Sha256 {
    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.filled > 0 {
            let n = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled < 64 {
                return;
            }
            let block = self.block;
            self.compress(&block);
            self.filled = 0;
        }
        let mut blocks = data.chunks_exact(64);
        for b in &mut blocks {
            self.compress(b.try_into().unwrap());
        }
        let rest = blocks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.total.wrapping_mul(8);
        self.update(&[0x80]);
        while self.filled != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        let mut out = [0u8; 32];
        for (o, s) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&s.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(c.try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(SHA256_K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }
}

/// Lowercase hex of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut h = Sha256::default();
    h.update(data);
    hex(&h.finish())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
