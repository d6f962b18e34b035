//! The command-line contract scripts rely on (see README): JSON shapes, plans that
//! round-trip, exit codes.

mod common;
use common::*;

fn tied_gguf() -> String {
    tiny("llama-tied")
        .join("model-f32.gguf")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn run_json_contract() {
    let (code, out, err) = weft(&[
        "run",
        &tied_gguf(),
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "5",
        "--greedy",
        "--json",
        "--ignore-eos",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object on stdout");
    assert!(!ids(&v["prompt_tokens"]).is_empty());
    assert_eq!(ids(&v["tokens"]).len(), 5);
    assert!(v["text"].is_string());
    assert!(v["timings"]["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["timings"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn tokens_without_tokenizer_give_null_text() {
    let dir = std::env::temp_dir().join(format!("weft-cli-notok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny("llama-gqa-untied").join(f), dir.join(f)).unwrap();
    }
    let (code, out, err) = weft(&[
        "run",
        dir.to_str().unwrap(),
        "--tokens",
        "0,5,7",
        "--max-tokens",
        "3",
        "--greedy",
        "--json",
        "--ignore-eos",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["text"].is_null());
    assert_eq!(ids(&v["prompt_tokens"]), vec![0, 5, 7]);
    assert_eq!(ids(&v["tokens"]).len(), 3);
}

#[test]
fn compile_then_exec_equals_run_and_checks_weights() {
    let dir = std::env::temp_dir().join(format!("weft-cli-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("plan.json");
    let (code, _, err) = weft(&["compile", &tied_gguf(), "-o", plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let p = json(&plan);
    assert_eq!(p["format_version"], 2);
    assert!(p["pass_log"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains("aliases")));
    let args = [
        "--tokens",
        "0,5,9,77",
        "--max-tokens",
        "6",
        "--greedy",
        "--json",
        "--ignore-eos",
    ];
    let (_, ran, _) = weft(&[&["run", &tied_gguf()][..], &args].concat());
    let (code, execd, err) = weft(&[&["exec", plan.to_str().unwrap()][..], &args].concat());
    assert_eq!(code, 0, "{err}");
    let tokens =
        |s: &str| ids(&serde_json::from_str::<serde_json::Value>(s.trim()).unwrap()["tokens"]);
    assert_eq!(tokens(&ran), tokens(&execd));
    // The same plan on other weights is refused, naming both.
    let other = tiny("llama-odd").join("model-f32.gguf");
    let (code, _, err) = weft(
        &[
            &[
                "exec",
                plan.to_str().unwrap(),
                "--weights",
                other.to_str().unwrap(),
            ][..],
            &args,
        ]
        .concat(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("tensor table"), "{err}");
}

#[test]
fn logits_out_and_passes_none_agree() {
    let dir = std::env::temp_dir().join(format!("weft-cli-logits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    for (file, passes) in [(&a, "all"), (&b, "none")] {
        let (code, _, err) = weft(&[
            "run",
            &tied_gguf(),
            "--tokens",
            "3,1,4,1,5",
            "--max-tokens",
            "1",
            "--passes",
            passes,
            "--logits-out",
            file.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
    }
    let la = floats(&json(&a)["logits"]);
    assert_eq!(la.len(), 288);
    assert_eq!(la, floats(&json(&b)["logits"]));
}

#[test]
fn inspect_json_contract() {
    let (code, out, err) = weft(&["inspect", &tied_gguf(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["family"], "llama");
    assert_eq!(v["architecture"], "llama");
    assert!(v["file_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["hparams"]["n_layers"], 2);
    let t = &v["tensors"].as_array().unwrap()[0];
    assert!(t["name"].is_string() && t["dtype"].is_string() && t["shape"].is_array());
}

#[test]
fn dumps() {
    for (kind, needle) in [
        ("expanded", "= matmul("),
        ("optimized", "= attention("),
        ("dot", "digraph"),
    ] {
        let (code, out, err) = weft(&["compile", &tied_gguf(), "--dump", kind]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(needle), "{kind}");
    }
}

#[test]
fn parity_exit_status() {
    let (code, out, err) = weft(&["parity", &tied_gguf(), "--tokens", "0,5,9", "--steps", "4"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("PASS"));
    // An impossible tolerance must fail: proves the exit status follows the comparison.
    let (code, out, _) = weft(&[
        "parity",
        &tied_gguf(),
        "--tokens",
        "0,5,9",
        "--steps",
        "4",
        "--tolerance",
        "0",
    ]);
    if !out.contains("0.000e0") {
        assert_eq!(code, 1, "{out}");
    }
}

#[test]
fn gpu_backend_generates_what_the_cpu_backend_does() {
    let run = |backend: &str| {
        let args = ["run", &tied_gguf(), "--tokens", "1,2", "--max-tokens", "5"];
        let (code, out, err) =
            weft(&[&args[..], &["--greedy", "--json", "--backend", backend]].concat());
        assert_eq!(code, 0, "{backend}: {err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["tokens"].clone()
    };
    assert_eq!(run("gpu"), run("cpu"));
}

/// Without a Vulkan driver the GPU backend is one clear error, not a panic.
#[test]
fn gpu_backend_without_a_driver_is_a_clear_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["run", &tied_gguf(), "--tokens", "1,2", "--backend", "gpu"])
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // An error exit, not success and not a panic (101).
    assert!(!matches!(out.status.code(), Some(0) | Some(101)), "{err}");
    assert!(err.contains("no usable GPU adapter"), "{err}");
}

#[test]
fn plan_of_another_format_version_is_refused() {
    let dir = std::env::temp_dir().join(format!("weft-cli-version-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("plan.json");
    let (code, _, err) = weft(&["compile", &tied_gguf(), "-o", plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut p = json(&plan);
    p["format_version"] = 99.into();
    std::fs::write(&plan, p.to_string()).unwrap();
    let (code, _, err) = weft(&["exec", plan.to_str().unwrap(), "--tokens", "1,2"]);
    assert_ne!(code, 0);
    assert!(err.contains("format version 99"), "{err}");
}

#[test]
fn stats_json_contract() {
    let (code, out, err) = weft(&["compile", &tied_gguf(), "--stats", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for k in [
        "nodes_expanded",
        "nodes_optimized",
        "arena_bytes",
        "naive_bytes",
        "compile_ms",
    ] {
        assert!(v[k].is_number(), "{k} in {v}");
    }
    assert!(v["nodes_optimized"].as_u64() < v["nodes_expanded"].as_u64());
    assert!(v["arena_bytes"].as_u64() < v["naive_bytes"].as_u64());
}

#[test]
fn exec_can_optimise_an_unoptimised_plan() {
    let dir = std::env::temp_dir().join(format!("weft-cli-execpasses-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("plan.json");
    let (code, _, err) = weft(&[
        "compile",
        &tied_gguf(),
        "--passes",
        "none",
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    for (file, extra) in [(&a, vec![]), (&b, vec!["--passes", "all"])] {
        let args = [
            &[
                "exec",
                plan.to_str().unwrap(),
                "--tokens",
                "3,1,4",
                "--max-tokens",
                "1",
                "--logits-out",
                file.to_str().unwrap(),
            ][..],
            &extra[..],
        ]
        .concat();
        let (code, _, err) = weft(&args);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(floats(&json(&a)["logits"]), floats(&json(&b)["logits"]));
}

#[test]
fn passes_flag_takes_removals_and_groups() {
    let (code, out, err) = weft(&[
        "compile",
        &tied_gguf(),
        "--passes",
        "-fusion,-cse",
        "--dump",
        "optimized",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("glu(") && !out.contains("add_rms_norm(") && out.contains("silu("),
        "{out}"
    );
    let (code, _, err) = weft(&["compile", &tied_gguf(), "--passes", "-fusoin", "--stats"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown pass 'fusoin'"), "{err}");
}

#[test]
fn budget_counts_weights_kv_and_arena_without_running() {
    let (code, out, err) = weft(&[
        "inspect",
        &tied_gguf(),
        "--budget",
        "--ctx",
        "100",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // llama-tied: 2 layers, 4 kv heads of 16, f32 cache: 2 (k, v) × 100 × 64 × 4 bytes per layer.
    assert_eq!(v["kv_bytes"], 2 * 2 * 100 * 64 * 4);
    // The tied head is the embedding: its bytes count once. Every tensor is F32.
    let (_, inspect, _) = weft(&["inspect", &tied_gguf(), "--json"]);
    let t: serde_json::Value = serde_json::from_str(inspect.trim()).unwrap();
    let all: u64 = t["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            x["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
                * 4
        })
        .sum();
    assert_eq!(v["weight_bytes"].as_u64().unwrap(), all);
    assert!(v["arena_prefill_bytes"].as_u64() > v["arena_decode_bytes"].as_u64());
}

/// The fetch script of the short names is found at run time (beside the executable, or
/// by WEFT_FETCH_SCRIPT), never through a path compiled in: a wrong WEFT_FETCH_SCRIPT is
/// named in the error.
#[test]
fn fetch_script_comes_from_the_environment_or_beside_the_executable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["run", "--tokens", "1"])
        .env("WEFT_FETCH_SCRIPT", "/nonexistent/fetch_model.py")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("WEFT_FETCH_SCRIPT is /nonexistent/fetch_model.py"),
        "{err}"
    );
    // No path to the script under the build tree (as `concat!(env!("CARGO_MANIFEST_DIR"),
    // "/../scripts/fetch_model.py")` once put there) is in the executable.
    let binary = std::fs::read(env!("CARGO_BIN_EXE_weft")).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    for compiled in [
        format!("{root}/runtime/../scripts"),
        format!("{root}/scripts/fetch_model.py"),
    ] {
        let c = compiled.as_bytes();
        assert!(
            !binary.windows(c.len()).any(|w| w == c),
            "the executable holds {compiled}"
        );
    }
}

/// Output piped into a reader that has gone (`weft inspect … | head -1` once head is
/// done) ends the process quietly (SIGPIPE), not with a panic on the write.
#[test]
fn a_closed_stdout_pipe_is_no_panic() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["inspect", &tied_gguf()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The read end closes before the first write: that write fails whatever its size.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // SIGPIPE is 13 on Linux.
    assert_eq!(out.status.signal(), Some(13), "{:?}: {err}", out.status);
}
