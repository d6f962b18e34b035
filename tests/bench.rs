//! `weft bench`: the JSON contract scripts rely on, the table, and bad input. Timings
//! are only checked to be positive finite numbers, never against a speed.

mod common;
use common::*;

fn tied_gguf() -> String {
    tiny("llama-tied")
        .join("model-f32.gguf")
        .to_str()
        .unwrap()
        .to_string()
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

/// `-d D` fills D positions before each run: the tests are named `ppN@dD`, `tgN@dD`, and
/// a depth past the model's context is refused before anything runs.
#[test]
fn bench_at_a_depth() {
    let model = tied_gguf();
    let args = ["bench", &model, "-p", "4", "-n", "2", "-r", "1", "-d", "5"];
    let (code, out, err) = weft(&[&args[..], &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object on stdout");
    assert_eq!(keys(&v["results"]), ["pp4@d5", "tg2@d5"]);
    let (code, _, err) = weft(&["bench", &model, "-n", "2", "-d", "100000000"]);
    assert_ne!(code, 0);
    assert!(err.contains("context length"), "{err}");
}

#[test]
fn bench_json_contract() {
    let model = tied_gguf();
    let (code, out, err) = weft(&[
        "bench",
        &model,
        "-p",
        "4,8",
        "-n",
        "4",
        "-r",
        "2",
        "--json",
        "--threads",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object on stdout");
    assert_eq!(
        keys(&v),
        ["backend", "model", "peak_rss_bytes", "results", "threads"]
    );
    assert_eq!(v["model"], model.as_str());
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["threads"], 2);
    assert_eq!(keys(&v["results"]), ["pp4", "pp8", "tg4"]);
    for (test, x) in v["results"].as_object().unwrap() {
        let x = x
            .as_f64()
            .unwrap_or_else(|| panic!("{test}: {x} is not a number"));
        assert!(x.is_finite() && x > 0.0, "{test}: {x} tok/s");
    }
    if cfg!(target_os = "linux") {
        assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0, "{v}");
    }
    // Progress on stderr: the warm-up and every repetition of every test.
    for needle in ["pp4 warm-up", "pp8 run 2/2", "tg4 run 1/2"] {
        assert!(
            err.contains(needle),
            "stderr should mention {needle:?}: {err}"
        );
    }
}

#[test]
fn bench_table_on_an_hf_directory_and_the_reference_backend() {
    let dir = tiny("llama-gqa-untied");
    let (code, out, err) = weft(&[
        "bench",
        dir.to_str().unwrap(),
        "-p",
        "3",
        "-n",
        "2",
        "-r",
        "1",
        "--backend",
        "reference",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 4, "header, rule, pp3, tg2: {out}");
    assert!(rows[0].contains("tok/s"), "{out}");
    assert!(
        rows[2].contains("| pp3 ") && rows[2].contains("reference"),
        "{out}"
    );
    assert!(rows[3].contains("| tg2 "), "{out}");
    assert!(out.contains("peak RSS"), "{out}");
}

/// Exit status 2 with one `error:` line naming the problem.
fn refused(args: &[&str], needle: &str) {
    let (code, out, err) = weft(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(out.is_empty(), "{args:?} printed {out}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: one error line: {err}");
    assert!(
        errors[0].contains(needle),
        "{args:?}: {err} should say {needle:?}"
    );
}

#[test]
fn bench_refuses_bad_sizes() {
    let model = tied_gguf();
    refused(
        &["bench", &model, "-p", "0"],
        "-p (prompt tokens) must be at least 1",
    );
    refused(
        &["bench", &model, "-n", "4,0"],
        "-n (generated tokens) must be at least 1",
    );
    refused(
        &["bench", &model, "-r", "0"],
        "-r (repetitions) must be at least 1",
    );
    // The tiny model's context length is 2048.
    refused(
        &["bench", &model, "-p", "4096", "-n", "4"],
        "pp4096 needs 4096 positions",
    );
    refused(
        &["bench", &model, "-p", "4", "-n", "2048"],
        "tg2048 needs 2049 positions",
    );
}
