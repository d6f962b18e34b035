//! The GPU backend against the reference backend: every family fixture (HF directory,
//! f32 and f16 GGUF) and both real models, the same plan on both, logits within
//! tolerance and the same greedy tokens. In CI this runs on Mesa's software Vulkan;
//! on a machine with no Vulkan driver at all it fails with the backend's one error.

mod common;
use common::*;
use weft_runtime::{
    generate, parity, BackendKind, Forward, GenParams, KvType, LowerOptions, PassSelection,
    RuntimeError, SamplerParams,
};

/// GPU vs reference on `spec` for the prompt and `steps` greedy steps.
fn gpu_vs_reference(spec: &str, prompt: &[u32], steps: usize, tolerance: f32) {
    gpu_vs_reference_with(spec, prompt, steps, tolerance, &LowerOptions::default())
}

/// [`gpu_vs_reference`], both backends lowered with `options`.
fn gpu_vs_reference_with(
    spec: &str,
    prompt: &[u32],
    steps: usize,
    tolerance: f32,
    options: &LowerOptions,
) {
    let model = open_shared(spec);
    let plan = model.compile(&PassSelection::all()).unwrap().plan;
    let ctx = prompt.len() + steps + 1;
    let open = |backend| {
        let engine = model.engine(plan.clone(), backend, options);
        let engine = engine.unwrap_or_else(|e| panic!("{spec} on {backend}: {e}"));
        let session = engine.session(ctx);
        session.unwrap_or_else(|e| panic!("{spec} on {backend}: {e}"))
    };
    let (mut gpu, mut reference) = (open(BackendKind::Gpu), open(BackendKind::Reference));
    let r = parity::compare(&mut gpu, &mut reference, prompt, steps, tolerance).unwrap();
    eprintln!(
        "{spec}: gpu vs reference max rel {:.2e}, tokens {:?} / {:?}",
        r.max_rel(),
        r.tokens_a,
        r.tokens_b
    );
    assert!(
        r.passed(),
        "{spec}: gpu vs reference: rel {:.2e}, tokens agree {}",
        r.max_rel(),
        r.tokens_agree()
    );
}

#[test]
fn every_family_fixture_matches_the_reference() {
    let dir = fixtures().join("families");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("reference.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 12, "family fixtures: {names:?}");
    for name in names {
        let input = ids(&json(&dir.join(&name).join("reference.json"))["input_ids"]);
        for source in ["", "model-f32.gguf", "model-f16.gguf"] {
            let path = dir.join(&name).join(source);
            if path.exists() {
                // Float weights: the kernels differ from the reference only in the
                // order of their sums.
                gpu_vs_reference(path.to_str().unwrap(), &input, 6, 1e-4);
            }
        }
    }
}

/// Both real models (Q4_1 and Q4_K_M, with a 262k-row embedding that is split across
/// bindings where the adapter's limit is 128 MiB).
#[test]
fn real_models_match_the_reference() {
    for name in ["smollm2-135m", "gemma3-270m"] {
        let model = open_shared(name);
        let prompt = model.encode("The capital of France is").unwrap();
        gpu_vs_reference(name, &prompt, 2, 2e-3);
    }
}

/// Decode past 64 keys: a one-row attention splits the keys into chunks that run side
/// by side and merges them (gemma3: sliding-window layers too; qwen3: grouped queries).
#[test]
fn long_decodes_split_attention_into_chunks() {
    let prompt: Vec<u32> = (0..150).map(|i| (i * 7 + 3) % 97).collect();
    for name in ["gemma3", "qwen3"] {
        let spec = fixtures().join("families").join(name);
        gpu_vs_reference(spec.to_str().unwrap(), &prompt, 4, 1e-4);
    }
}

/// An f16 KV cache (`--kv f16`, two halves a word on the GPU) against the reference's:
/// sliding windows and decode past 64 keys in chunks (gemma3), grouped queries (qwen3),
/// and a real model. Within 2e-3 of the largest logit, as the host backends' f16 caches
/// agree with each other (tests/seam.rs): a key 1e-6 from the reference's before
/// rounding may round to the neighbouring f16 value.
#[test]
fn an_f16_kv_cache_matches_the_reference() {
    let f16 = LowerOptions {
        kv: KvType::F16,
        ..LowerOptions::default()
    };
    let prompt: Vec<u32> = (0..150).map(|i| (i * 7 + 3) % 97).collect();
    for name in ["gemma3", "qwen3"] {
        let spec = fixtures().join("families").join(name);
        gpu_vs_reference_with(spec.to_str().unwrap(), &prompt, 4, 2e-3, &f16);
    }
    let model = open_shared("smollm2-135m");
    let prompt = model.encode("The capital of France is").unwrap();
    gpu_vs_reference_with("smollm2-135m", &prompt, 2, 2e-3, &f16);
    // And the GPU's f16 cache rounds: it is not its f32 cache.
    let plan = model.compile(&PassSelection::all()).unwrap().plan;
    let open = |options: &LowerOptions| {
        let engine = model
            .engine(plan.clone(), BackendKind::Gpu, options)
            .unwrap();
        engine.session(prompt.len() + 3).unwrap()
    };
    let (mut half, mut full) = (open(&f16), open(&LowerOptions::default()));
    let r = parity::compare(&mut half, &mut full, &prompt, 2, 2e-3).unwrap();
    eprintln!(
        "smollm2-135m: gpu f16 KV vs f32 KV: max rel {:.2e}",
        r.max_rel()
    );
    assert!(r.passed() && r.max_rel() > 0.0, "rel {:.2e}", r.max_rel());
}

/// A forward call longer than the session's arena runs in chunks, with the same
/// logits as one call on the reference backend.
#[test]
fn long_prompts_run_in_chunks() {
    let spec = fixtures().join("families/gemma4");
    let model = open_shared(spec.to_str().unwrap());
    let plan = model.compile(&PassSelection::all()).unwrap().plan;
    let tokens: Vec<u32> = (0..600).map(|i| (i * 7 + 3) % 97).collect();
    let mut gpu = model.session(BackendKind::Gpu, plan.clone(), 640).unwrap();
    let mut reference = model.session(BackendKind::Reference, plan, 640).unwrap();
    let (got, rows) = gpu.forward_all(&tokens).unwrap();
    assert_eq!(rows, tokens.len());
    let got = got.to_vec();
    let (want, _) = reference.forward_all(&tokens).unwrap();
    let rel = max_abs_diff(&got, want) / max_abs(want);
    assert!(rel <= 1e-4, "chunked prompt differs by {rel:.2e}");
}

/// `weft parity --backend gpu` on a random Q4_K_M model 256 wide (the narrowest the
/// K-quants take; scripts/gpu/random_gguf.py --shape small --scale 10), with the kernels a
/// GPU takes (WEFT_GPU_ROWS=2: several rows a workgroup, the GLU epilogue, subgroup sums)
/// on whatever adapter runs the tests. f32: within float reassociation of the curated
/// decoder, as every model. Int8 activations (x quantised per 32 values: each value moves
/// by up to 1/254 of its block's largest, the norms' own quantisation included): the
/// same greedy tokens and logits within 5e-3 of the largest (measured: 1.4e-3). Prompts of
/// 100 tokens (decode attention in chunks, then merged) and 20 (one chunk): int8 decode
/// quantises the attention's output in either kernel.
#[test]
fn gpu_kernels_run_a_q4_k_model() {
    let model = fixtures().join("q4k-small.gguf");
    for (activations, tolerance, n) in [
        ("f32", "1e-4", 100),
        ("int8", "5e-3", 100),
        ("int8", "5e-3", 20),
    ] {
        let prompt: String = (1..=n).map(|i| format!("{i},")).collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["parity", model.to_str().unwrap(), "--backend", "gpu"])
            .args(["--activations", activations, "--tolerance", tolerance])
            .args(["--tokens", prompt.trim_end_matches(','), "--steps", "4"])
            .env("WEFT_GPU_ROWS", "2")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{activations}: {text}");
        assert!(
            out.status.success() && text.contains("greedy tokens agree: true"),
            "{activations}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A sampled step's candidates selected on the GPU (`forward_top`, topk.wgsl after the
/// schedule) are the host's top-k of the same session's logits row at that position, in
/// the same order: a family fixture and a real model with a 262k vocabulary (several
/// rounds of the kernel).
#[test]
fn gpu_top_k_is_the_host_top_k_of_its_logits() {
    let fixture = fixtures().join("families/gemma3");
    for spec in [fixture.to_str().unwrap(), "gemma3-270m"] {
        let model = open_shared(spec);
        let plan = model.compile(&PassSelection::all()).unwrap().plan;
        let mut s = model.session(BackendKind::Gpu, plan, 32).unwrap();
        let mut token = 3;
        s.forward(&[1, 5, 9, 2]).unwrap();
        for _ in 0..3 {
            let row = s.forward(&[token]).unwrap().to_vec();
            let pos = s.position() - 1;
            for k in [1, 40, 104, 256] {
                s.truncate(pos).unwrap();
                let got = s.forward_top(&[token], k).unwrap();
                assert_eq!(got, weft_backend::top_k(&row, k), "{spec}, k {k}");
            }
            token = weft_backend::argmax(&row);
        }
        // Out of range: refused before anything runs.
        for k in [0, weft_backend::MAX_TOP_K + 1] {
            let at = s.position();
            assert!(s.forward_top(&[token], k).is_err(), "k {k}");
            assert_eq!(s.position(), at);
        }
    }
}

/// A model that only runs forward calls: generation samples each whole logits row.
struct RowsOnly<'a>(&'a mut dyn Forward);

impl Forward for RowsOnly<'_> {
    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
        self.0.forward(tokens)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError> {
        self.0.truncate(pos)
    }
    fn position(&self) -> usize {
        self.0.position()
    }
}

/// Sampled generation on the GPU, its steps sampling from candidates selected on the
/// device, gives the tokens that sampling each whole row (read back) gives, with a
/// repetition penalty and without.
#[test]
fn gpu_sampled_generation_reads_candidates_and_samples_alike() {
    let spec = fixtures().join("families/gemma3");
    let model = open_shared(spec.to_str().unwrap());
    let plan = model.compile(&PassSelection::all()).unwrap().plan;
    let mut s = model.session(BackendKind::Gpu, plan, 64).unwrap();
    for repeat_penalty in [1.0, 1.5] {
        let p = GenParams {
            max_tokens: 24,
            sampler: SamplerParams {
                temperature: 1.5,
                repeat_penalty,
                ..Default::default()
            },
            stop_ids: vec![],
            ignore_eos: true,
        };
        let top = generate(&mut s, &[1, 5, 9, 2], &p, |_| true).unwrap();
        let rows = generate(&mut RowsOnly(&mut s), &[1, 5, 9, 2], &p, |_| true).unwrap();
        assert_eq!(top.tokens, rows.tokens, "penalty {repeat_penalty}");
        eprintln!("penalty {repeat_penalty}: {:?}", top.tokens);
    }
}

/// `WEFT_GPU_SHADERS=DIR` reads a kernel file found under DIR in place of the built-in
/// copy: a broken attention.wgsl there is one clear error naming the kernel (no panic,
/// exit status 2), and the built-in text under that name runs the model as before.
#[test]
fn gpu_kernel_files_can_be_replaced() {
    let model = fixtures().join("families/gemma3");
    let dir = std::env::temp_dir().join(format!("weft-shaders-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |text: &str| {
        std::fs::write(dir.join("attention.wgsl"), text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["parity", model.to_str().unwrap(), "--backend", "gpu"])
            .args(["--tokens", "1,5,7", "--steps", "2"])
            .env("WEFT_GPU_SHADERS", &dir)
            .output()
            .unwrap()
    };
    let broken = run("not a kernel");
    let err = String::from_utf8_lossy(&broken.stderr);
    assert_eq!(broken.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the kernel 'attention' does not compile"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let builtin = include_str!("../backends/wgpu/shaders/attention.wgsl");
    let same = run(builtin);
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(same.status.success() && text.contains("PASS"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
