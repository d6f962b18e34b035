//! Chat templates against transformers (fixtures by scripts/chat/make_chat_fixtures.py):
//! weft picks the same template (the file's own, else the family's default) and renders
//! every conversation to the same text, or refuses where the template raises; and a
//! multi-turn conversation reuses its KV cache and answers as a fresh run would.

mod common;
use common::*;
use weft_runtime::chat::{Conversation, Message};
use weft_runtime::{BackendKind, GenParams, Model, PassSelection, SamplerParams};

fn open(fixture: &serde_json::Value) -> &'static Model {
    let model = fixture["model"].as_str().unwrap();
    match model.strip_prefix("families/") {
        Some(dir) => open_shared(fixtures().join("families").join(dir).to_str().unwrap()),
        None => open_shared(model),
    }
}

fn messages(v: &serde_json::Value) -> Vec<Message> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn templates_render_as_transformers_does() {
    let dir = fixtures().join("chat");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "chat fixtures missing in {}",
        dir.display()
    );
    for path in files {
        let f = json(&path);
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let template = open(&f).chat_template(None).unwrap();
        assert_eq!(
            template.source(),
            f["template"].as_str().unwrap(),
            "{name}: template"
        );
        for (i, case) in f["cases"].as_array().unwrap().iter().enumerate() {
            let got = template.render(
                &messages(&case["messages"]),
                case["add_generation_prompt"].as_bool().unwrap(),
            );
            match (case["rendered"].as_str(), got) {
                (Some(want), Ok(got)) => assert_eq!(got, want, "{name} case {i}"),
                (None, Err(_)) => {}
                (want, got) => panic!("{name} case {i}: transformers {want:?}, weft {got:?}"),
            }
        }
    }
}

#[test]
fn a_model_without_any_template_is_a_clear_error() {
    let m = open_shared(fixtures().join("families/gpt2").to_str().unwrap());
    let e = m.chat_template(None).unwrap_err().to_string();
    assert!(e.contains("--chat-template") && e.contains("gpt2"), "{e}");
}

/// Two turns on one session: the second reuses the first's cache rows and gives what a
/// fresh session given the whole rendered conversation gives.
#[test]
fn turns_reuse_the_cache_and_match_a_fresh_run() {
    let model = open_shared("smollm2-135m");
    let template = model.chat_template(None).unwrap();
    let engine_session = |ctx| {
        let plan = model.compile(&PassSelection::all()).unwrap().plan;
        model.session(BackendKind::Cpu, plan, ctx).unwrap()
    };
    let params = GenParams {
        max_tokens: 12,
        sampler: SamplerParams::greedy(),
        stop_ids: model.stop_ids(),
        ignore_eos: false,
    };
    let mut c = Conversation::new(model, template.clone(), engine_session(512), None);
    c.say("What is the capital of France?", &params, |_| true)
        .unwrap();
    let second = c.say("And of Germany?", &params, |_| true).unwrap();
    assert!(
        second.generation.reused_tokens > 20,
        "{}",
        second.generation.reused_tokens
    );
    // The same prompt from scratch.
    let mut msgs = c.messages().to_vec();
    msgs.pop();
    let prompt = model
        .encode_chat(&template.render(&msgs, true).unwrap())
        .unwrap();
    assert_eq!(second.generation.prompt_tokens, prompt);
    let mut fresh = engine_session(512);
    let g = weft_runtime::generate(&mut fresh, &prompt, &params, |_| true).unwrap();
    assert_eq!(second.generation.tokens, g.tokens);
    assert_eq!(second.reply, c.messages().last().unwrap().content);
}

/// `weft chat` with piped stdin: one answer per line, the second turn reusing the cache;
/// `--stop` cuts an answer where the string appears, across token boundaries.
#[test]
fn chat_command_with_piped_stdin_and_stop_strings() {
    use std::io::Write;
    let run = |extra: &[&str]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["chat", "smollm2-135m", "--greedy", "--max-tokens", "16"])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"What is the capital of France?\n/reset\nAnd of Germany?\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (out, err) = run(&[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("Paris"), "{out}");
    assert!(err.contains("conversation reset"), "{err}");
    // After /reset the system prompt's rows are still in the cache.
    assert!(err.contains("reused from the cache"), "{err}");
    let (cut, _) = run(&["--stop", "Paris"]);
    let first = cut.lines().next().unwrap();
    assert!(
        !first.contains("Paris") && lines[0].starts_with(first),
        "{cut}"
    );
}

#[test]
fn run_stops_at_a_stop_string() {
    let args = [
        "run",
        "--prompt",
        "Once upon a time",
        "--greedy",
        "--max-tokens",
        "40",
        "--json",
    ];
    let (code, full, err) = weft(&args);
    assert_eq!(code, 0, "{err}");
    let full = json_value(&full)["text"].as_str().unwrap().to_string();
    let stop = &full[full.len() / 2..full.len() / 2 + 4];
    let (code, cut, err) = weft(&[&args[..], &["--stop", stop]].concat());
    assert_eq!(code, 0, "{err}");
    let cut = json_value(&cut)["text"].as_str().unwrap().to_string();
    assert_eq!(cut, full[..full.find(stop).unwrap()]);
}

fn json_value(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap()
}
