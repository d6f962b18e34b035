//! Bad input gets one clear error, never a panic: each case checks the CLI exits
//! non-zero with a message naming what is wrong.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A scratch copy of a tiny model directory, edited by `edit`.
fn scratch_dir(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-bad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny("llama-gqa-untied").join(f), dir.join(f)).unwrap();
    }
    edit(&dir);
    dir
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut cfg = json(&dir.join("config.json"));
    f(cfg.as_object_mut().unwrap());
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
}

fn fails_with(args: &[&str], needles: &[&str]) -> String {
    let (code, _, err) = weft(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(
            err.contains(n),
            "{args:?}: message {err:?} should mention {n:?}"
        );
    }
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "one error message: {err}"
    );
    err
}

#[test]
fn unknown_architecture() {
    let dir = scratch_dir("arch", |d| {
        edit_config(d, |c| {
            c.insert("model_type".into(), "frobnicator".into());
        })
    });
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &["model_type", "frobnicator", "llama"],
    );
}

#[test]
fn missing_tensor() {
    // One layer more than the file holds.
    let dir = scratch_dir("layers", |d| {
        edit_config(d, |c| {
            c.insert("num_hidden_layers".into(), 4.into());
        })
    });
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &["missing tensor", "model.layers.3."],
    );
}

#[test]
fn config_without_required_key() {
    let dir = scratch_dir("key", |d| {
        edit_config(d, |c| {
            c.remove("hidden_size");
        })
    });
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &["hidden", "hidden_size", "config.json"],
    );
}

#[test]
fn config_contradicting_the_weights() {
    let dir = scratch_dir("shape", |d| {
        edit_config(d, |c| {
            c.insert("num_attention_heads".into(), 8.into());
            c.insert("head_dim".into(), 8.into());
        })
    });
    // The template's declared shape catches it, naming the tensor and both shapes.
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &[
            "model.layers.0.self_attn.q_proj.weight",
            "has shape [48, 48]",
            "expects [64, 48]",
        ],
    );
}

/// A Gemma 4 whose later layers share K/V (E2B/E4B): the template says it does not
/// describe that, instead of running a wrong graph.
#[test]
fn family_feature_the_template_does_not_describe() {
    let dir = std::env::temp_dir().join(format!("weft-bad-kvshare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixtures().join("families").join("gemma4");
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    edit_config(&dir, |c| {
        c.insert("num_kv_shared_layers".into(), 2.into());
    });
    fails_with(
        &["run", dir.to_str().unwrap(), "--tokens", "1,2"],
        &["gemma4.toml", "kv_shared_layers == 0"],
    );
}

/// A bare config.json is priced by --budget but not run.
#[test]
fn config_json_without_weights_does_not_run() {
    let cfg = fixtures()
        .join("standins")
        .join("qwen2.5-coder-14b")
        .join("config.json");
    fails_with(
        &["run", cfg.to_str().unwrap(), "--tokens", "1,2"],
        &["config.json without weights"],
    );
    fails_with(
        &[
            "inspect",
            cfg.to_str().unwrap(),
            "--budget",
            "--quant",
            "Q9_Z",
        ],
        &["unknown quantisation 'Q9_Z'"],
    );
}

#[test]
fn truncated_gguf() {
    let src = std::fs::read(tiny("llama-tied").join("model-f32.gguf")).unwrap();
    let dir = std::env::temp_dir().join(format!("weft-bad-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for cut in [3, 40, 1000, src.len() / 2, src.len() - 1] {
        let p = dir.join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &src[..cut]).unwrap();
        fails_with(
            &["run", p.to_str().unwrap(), "--tokens", "1,2"],
            &[p.file_name().unwrap().to_str().unwrap()],
        );
    }
}

#[test]
fn gguf_tensor_size_not_matching_its_shape() {
    // Double the first dimension of token_embd.weight in the tensor table: the data
    // no longer fits. The table stores dims as u64 after the name.
    let mut b = std::fs::read(tiny("llama-tied").join("model-f32.gguf")).unwrap();
    let name = b"token_embd.weight";
    let at = b
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor name in table")
        + name.len();
    let n_dims = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(n_dims, 2);
    let d1 = at + 4 + 8;
    let v = u64::from_le_bytes(b[d1..d1 + 8].try_into().unwrap());
    b[d1..d1 + 8].copy_from_slice(&(v * 1000).to_le_bytes());
    let p = std::env::temp_dir().join(format!("weft-bad-size-{}.gguf", std::process::id()));
    std::fs::write(&p, &b).unwrap();
    fails_with(
        &["run", p.to_str().unwrap(), "--tokens", "1,2"],
        &["token_embd.weight"],
    );
}

#[test]
fn token_outside_vocabulary() {
    let p = tiny("llama-tied").join("model-f32.gguf");
    fails_with(
        &["run", p.to_str().unwrap(), "--tokens", "1,99999"],
        &["99999"],
    );
}

#[test]
fn text_prompt_without_tokenizer() {
    let dir = scratch_dir("notok", |_| {});
    fails_with(
        &["run", dir.to_str().unwrap(), "--prompt", "hi"],
        &["no tokenizer", "--tokens"],
    );
}

#[test]
fn missing_model_path() {
    fails_with(
        &["inspect", "/nonexistent/model.gguf"],
        &["/nonexistent/model.gguf"],
    );
}

/// A scratch copy of the tied GGUF with `edit` applied to its bytes.
fn scratch_gguf(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(tiny("llama-tied").join("model-f32.gguf")).unwrap();
    edit(&mut b);
    let p = std::env::temp_dir().join(format!("weft-bad-{name}-{}.gguf", std::process::id()));
    std::fs::write(&p, &b).unwrap();
    p
}

/// Where the value of GGUF metadata `key` starts (after its u32 type).
fn gguf_value_at(b: &[u8], key: &str) -> usize {
    let k = key.as_bytes();
    let at = b
        .windows(k.len())
        .position(|w| w == k)
        .unwrap_or_else(|| panic!("{key} in the file"));
    at + k.len() + 4
}

/// Overwrites the f32 metadata value of `key`.
fn set_f32(b: &mut [u8], key: &str, v: f32) {
    let at = gguf_value_at(b, key);
    assert_eq!(
        u32::from_le_bytes(b[at - 4..at].try_into().unwrap()),
        6,
        "{key} is f32"
    );
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Both paths (the compiled plan and the curated decoder) refuse `model` with `needles`.
fn both_paths_fail(model: &Path, needles: &[&str]) {
    let m = model.to_str().unwrap();
    fails_with(&["run", m, "--tokens", "1,2", "--max-tokens", "2"], needles);
    fails_with(
        &[
            "run",
            m,
            "--tokens",
            "1,2",
            "--max-tokens",
            "2",
            "--curated",
        ],
        needles,
    );
}

const HUGE: &str = "18446744073709551615";

/// `--ctx`, `--max-tokens`, `--steps`, `--seq` are checked against the trained context
/// (llama-tied: 2048) with both numbers named, before anything is allocated.
#[test]
fn sizes_past_the_trained_context() {
    let p = tiny("llama-tied").join("model-f32.gguf");
    let m = p.to_str().unwrap();
    for ctx in ["1000000000", HUGE, "2049"] {
        fails_with(&["run", m, "--tokens", "1,2", "--ctx", ctx], &[ctx, "2048"]);
        fails_with(
            &["run", m, "--tokens", "1,2", "--ctx", ctx, "--curated"],
            &[ctx, "2048"],
        );
        fails_with(&["inspect", m, "--budget", "--ctx", ctx], &[ctx, "2048"]);
        fails_with(&["compile", m, "--stats", "--seq", ctx], &[ctx, "2048"]);
    }
    fails_with(
        &["run", m, "--tokens", "1,2", "--max-tokens", "1000000000"],
        &["1000000002 positions", "--max-tokens 1000000000", "2048"],
    );
    fails_with(
        &["run", m, "--tokens", "1,2", "--max-tokens", HUGE],
        &[HUGE, "2048"],
    );
    fails_with(
        &["parity", m, "--tokens", "1,2", "--steps", "1000000000"],
        &["1000000003 positions", "--steps 1000000000", "2048"],
    );
    fails_with(
        &["parity", m, "--tokens", "1,2", "--steps", HUGE],
        &[HUGE, "2048"],
    );
    // The whole trained context is allowed.
    let (code, _, err) = weft(&[
        "run",
        m,
        "--tokens",
        "1,2",
        "--max-tokens",
        "2",
        "--ctx",
        "2048",
    ]);
    assert_eq!(code, 0, "{err}");
}

/// Without a stated context, a huge --ctx is refused where the KV cache is allocated,
/// saying how much it needed; budgets saturate rather than wrap.
#[test]
fn huge_context_without_a_trained_one() {
    let dir = scratch_dir("noctx", |d| {
        edit_config(d, |c| {
            c.remove("max_position_embeddings");
        })
    });
    let m = dir.to_str().unwrap();
    for ctx in [HUGE, "1099511627776"] {
        fails_with(
            &["run", m, "--tokens", "1,2", "--ctx", ctx],
            &["out of memory", "key cache", ctx, "bytes"],
        );
        fails_with(
            &["run", m, "--tokens", "1,2", "--ctx", ctx, "--curated"],
            &["out of memory", "key cache", ctx, "bytes"],
        );
    }
    let (code, out, err) = weft(&["inspect", m, "--budget", "--ctx", HUGE, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["kv_bytes"], u64::MAX, "{out}");
    assert_eq!(v["total_bytes"], u64::MAX, "{out}");
    let (code, out, err) = weft(&["compile", m, "--stats", "--seq", HUGE, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["arena_bytes"], usize::MAX as u64, "{out}");
}

/// A layer count no file can hold: refused by name before anything per layer is made.
#[test]
fn absurd_layer_counts() {
    let dir = scratch_dir("layers2e40", |d| {
        edit_config(d, |c| {
            c.insert("num_hidden_layers".into(), (1u64 << 40).into());
        })
    });
    both_paths_fail(&dir, &["1099511627776", "layers"]);
    let p = scratch_gguf("blocks", |b| {
        let at = gguf_value_at(b, "llama.block_count");
        b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    });
    both_paths_fail(&p, &["4294967295", "layers"]);
}

/// Hyperparameters out of range: one error naming the key, expected and found, on
/// both paths (the template's `check` and the curated decoder share one rule).
#[test]
fn hyperparameters_out_of_range() {
    use serde_json::json;
    for (key, value, found) in [
        ("hidden_size", json!(0), "found 0"),
        ("intermediate_size", json!(0), "found 0"),
        ("num_attention_heads", json!(0), "found 0"),
        ("num_key_value_heads", json!(0), "found 0"),
        ("vocab_size", json!(0), "found 0"),
        ("num_hidden_layers", json!(true), "found true"),
        ("num_hidden_layers", json!(2.5), "found 2.5"),
        ("rms_norm_eps", json!("1e-5"), "found \"1e-5\""),
        ("rms_norm_eps", json!(-1e-6), "expected a finite number > 0"),
        ("rms_norm_eps", json!(0), "expected a finite number > 0"),
        (
            "tie_word_embeddings",
            json!("yes"),
            "expected true or false, found \"yes\"",
        ),
        ("max_position_embeddings", json!(0), "found 0"),
    ] {
        let dir = scratch_dir(&format!("hp-{key}"), |d| {
            edit_config(d, |c| {
                c.insert(key.into(), value.clone());
            })
        });
        both_paths_fail(&dir, &[&format!("key '{key}'"), found]);
    }
    let dir = scratch_dir("hp-rope", |d| {
        edit_config(d, |c| {
            c["rope_parameters"]["rope_theta"] = json!(0.0);
        })
    });
    both_paths_fail(&dir, &["rope_parameters.rope_theta", "found 0"]);
    // GGUF floats can hold NaN and infinity.
    for (key, v) in [
        ("llama.attention.layer_norm_rms_epsilon", f32::NAN),
        ("llama.attention.layer_norm_rms_epsilon", -1e-6),
        ("llama.rope.freq_base", f32::NAN),
        ("llama.rope.freq_base", 0.0),
        ("llama.rope.freq_base", f32::INFINITY),
    ] {
        let p = scratch_gguf("hp-gguf", |b| set_f32(b, key, v));
        both_paths_fail(
            &p,
            &[&format!("key '{key}'"), "expected a finite number > 0"],
        );
    }
}

/// Logits that are not finite (here: NaN norm weights) stop generation with an error
/// naming the generation step and, on the graph path, the first graph step whose output
/// was not finite; parity fails rather than comparing NaN with NaN.
#[test]
fn non_finite_logits_stop_generation_and_fail_parity() {
    let src = tiny("llama-tied").join("model-f32.gguf");
    let norm = weft_formats::ModelSource::open(&src)
        .unwrap()
        .view("output_norm.weight")
        .unwrap()
        .bytes()
        .to_vec();
    let p = scratch_gguf("nan-norm", |b| {
        let at = b.windows(norm.len()).position(|w| w == norm).unwrap();
        b[at..at + norm.len()]
            .chunks_exact_mut(4)
            .for_each(|c| c.copy_from_slice(&f32::NAN.to_le_bytes()));
    });
    let logits = std::env::temp_dir().join(format!("weft-bad-nan-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&logits);
    let m = p.to_str().unwrap();
    for curated in [false, true] {
        let mut args = vec!["run", m, "--tokens", "1,2", "--logits-out"];
        args.push(logits.to_str().unwrap());
        if curated {
            args.push("--curated");
        }
        let err = fails_with(&args, &["generation step 0", "not finite", "NaN"]);
        assert!(!logits.exists(), "no logits file is written");
        if !curated {
            // The graph path reruns the call checking each step: the final norm is named.
            assert!(
                err.contains("the first non-finite value came from step") && err.contains("norm"),
                "{err}"
            );
        }
    }
    let (code, out, err) = weft(&["parity", m, "--tokens", "1,2", "--steps", "2"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("non-finite logits") && out.contains("FAIL"),
        "{out}"
    );
}

#[test]
fn sampler_values_out_of_range() {
    let p = tiny("llama-tied").join("model-f32.gguf");
    let m = p.to_str().unwrap();
    for (flag, value, says) in [
        (
            "--temperature",
            "nan",
            "temperature must be finite and ≥ 0, found NaN",
        ),
        ("--temperature", "-1", "temperature"),
        ("--top-p", "2", "top_p must be in (0, 1], found 2"),
        ("--top-p", "0", "top_p"),
        ("--min-p", "nan", "min_p must be in [0, 1], found NaN"),
        (
            "--repeat-penalty",
            "0",
            "repeat_penalty must be finite and > 0, found 0",
        ),
        ("--repeat-penalty", "inf", "repeat_penalty"),
    ] {
        let arg = format!("{flag}={value}");
        fails_with(&["run", m, "--tokens", "1,2", &arg], &[says]);
    }
}

/// A tokenizer that can produce ids the embedding has no rows for is refused; one
/// smaller than the embedding (a padded vocabulary) is fine.
#[test]
fn tokenizer_larger_than_the_embedding() {
    let dir = scratch_dir("tok-big", |d| {
        let src = tiny("llama-gqa-untied").join("tokenizer.json");
        let mut t = json(&src);
        let added = t["added_tokens"].as_array_mut().unwrap();
        for id in 300..310 {
            added.push(serde_json::json!({"id": id, "content": format!("<extra_{id}>"),
                "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}));
        }
        std::fs::write(d.join("tokenizer.json"), t.to_string()).unwrap();
    });
    both_paths_fail(
        &dir,
        &["310 tokens", "model.embed_tokens.weight", "300 rows"],
    );
    let dir = scratch_dir("tok-small", |d| {
        // The tied model's tokenizer: 288 tokens over this model's 300 rows.
        let src = tiny("llama-tied").join("tokenizer.json");
        std::fs::copy(src, d.join("tokenizer.json")).unwrap();
    });
    let (code, _, err) = weft(&[
        "run",
        dir.to_str().unwrap(),
        "--prompt",
        "hi",
        "--max-tokens",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
}

/// Outputs are checked before any work: never an input, never into a missing folder;
/// writes leave no temporary file and touch no file of the user's.
#[test]
fn outputs_are_checked_before_work_and_written_atomically() {
    let dir = scratch_dir("writes", |_| {});
    let gguf = dir.join("x.gguf");
    std::fs::copy(tiny("llama-tied").join("model-f32.gguf"), &gguf).unwrap();
    let before = std::fs::read(&gguf).unwrap();
    let g = gguf.to_str().unwrap();
    fails_with(
        &["compile", g, "-o", g],
        &["would overwrite the input", "x.gguf"],
    );
    assert_eq!(
        std::fs::read(&gguf).unwrap(),
        before,
        "the model is untouched"
    );
    let config = dir.join("config.json");
    fails_with(
        &[
            "compile",
            dir.to_str().unwrap(),
            "-o",
            config.to_str().unwrap(),
        ],
        &["would overwrite the input"],
    );
    fails_with(
        &["compile", g, "-o", "/nonexistent-weft/plan.json"],
        &["-o", "/nonexistent-weft", "does not exist"],
    );
    // --logits-out into a missing folder: refused before anything is generated.
    let (code, out, err) = weft(&[
        "run",
        g,
        "--tokens",
        "1,2",
        "--logits-out",
        "/nonexistent-weft/l.json",
    ]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "nothing generated: {out}");
    assert!(
        err.contains("--logits-out") && err.contains("does not exist"),
        "{err}"
    );
    fails_with(
        &["run", g, "--tokens", "1,2", "--logits-out", g],
        &["would overwrite the input"],
    );

    // A user's own file with the old temporary name is left alone; nothing is left over.
    let mine = dir.join("plan.tmp-weft");
    std::fs::write(&mine, "mine").unwrap();
    for out in ["plan.json", "plan.txt"] {
        let (code, _, err) = weft(&["compile", g, "-o", dir.join(out).to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "mine");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "config.json",
            "model.safetensors",
            "plan.json",
            "plan.tmp-weft",
            "plan.txt",
            "x.gguf"
        ]
    );
}
