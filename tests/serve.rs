//! `weft serve` over real HTTP on a loopback port, with SmolLM2 (a short name, fetched
//! like the other tests' models): the OpenAI API's shapes, streamed text equal to the
//! whole answer at temperature 0 and to `weft run` on the same tokens, stop strings
//! across token boundaries, the prefix cache, the documented error statuses, 503 when
//! full, a client that leaves freeing its slot, and SIGTERM ending in-flight streams.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL: &str = "smollm2-135m";

/// A `weft serve` child on a free loopback port; killed when dropped.
struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["serve", MODEL, "--port", "0", "--ctx", "512"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weft runs");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "weft serve did not start listening:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Server { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s
    }

    /// One request on its own connection; (status, body).
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = self.connect();
        send(&mut s, method, path, body);
        let mut r = BufReader::new(s);
        let (status, chunked) = read_head(&mut r);
        let mut out = Vec::new();
        if chunked {
            while let Some(c) = read_chunk(&mut r) {
                out.extend(c);
            }
        } else {
            r.read_to_end(&mut out).unwrap();
        }
        (status, out)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.request("GET", path, b"");
        (status, parse(&body))
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, body) = self.request("POST", path, body.to_string().as_bytes());
        (status, parse(&body))
    }

    /// A streaming request: the `data:` payloads of its SSE events, in order.
    fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let (status, body) = self.request("POST", path, body.to_string().as_bytes());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        sse_data(&String::from_utf8(body).unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(s: &mut TcpStream, method: &str, path: &str, body: &[u8]) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A server that refuses a large body may close before reading all of it.
    let _ = s.write_all(body);
}

/// The status line and headers; whether the body is chunked.
fn read_head(r: &mut impl BufRead) -> (u16, bool) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
    let mut chunked = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        let h = h.to_ascii_lowercase();
        chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
    }
    (status, chunked)
}

/// The next chunk of a chunked body; `None` after the last.
fn read_chunk(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    let mut data = vec![0; size + 2];
    r.read_exact(&mut data).ok()?;
    data.truncate(size);
    (size > 0).then_some(data)
}

/// A long streaming completion.
fn long_request() -> Value {
    json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 400,
           "temperature": 0, "stream": true})
}

/// [`long_request`] sent and read up to its first chunk (a token has arrived, so the
/// generation holds a slot); the reader goes on from there.
fn long_stream(server: &Server) -> BufReader<TcpStream> {
    let mut s = server.connect();
    send(
        &mut s,
        "POST",
        "/v1/completions",
        long_request().to_string().as_bytes(),
    );
    let mut r = BufReader::new(s);
    assert_eq!(read_head(&mut r), (200, true));
    let first = read_chunk(&mut r).unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    r
}

fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// A streamed answer put together: (text, finish_reason, usage).
fn join_stream(events: &[String], chat: bool) -> (String, String, Value) {
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let mut text = String::new();
    let mut finish = None;
    let mut usage = Value::Null;
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(v.get("error").is_none(), "{v}");
        if !v["usage"].is_null() {
            usage = v["usage"].clone();
        }
        let Some(c) = v["choices"].as_array().and_then(|c| c.first()) else {
            continue;
        };
        let piece = match chat {
            true => &c["delta"]["content"],
            false => &c["text"],
        };
        text += piece.as_str().unwrap_or("");
        if let Some(f) = c["finish_reason"].as_str() {
            assert!(finish.is_none(), "two finish reasons: {events:?}");
            finish = Some(f.to_string());
        }
    }
    (text, finish.expect("a finish_reason"), usage)
}

fn chat_body(messages: Value, max_tokens: u32) -> Value {
    json!({"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": max_tokens})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn error_of(status: u16, body: &Value, want: u16) -> String {
    assert_eq!(status, want, "{body}");
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string(), "{body}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{body}"
    );
    e["message"].as_str().unwrap().to_string()
}

/// Four requests at once decode in shared passes (continuous batching), and each gets
/// the text it gets alone at temperature 0 (the cpu backend's batched rows are
/// bit-identical to a session's own).
#[test]
fn concurrent_requests_batch_their_decode_and_answer_as_alone() {
    let server = Server::start(&["--parallel", "4"]);
    let questions = [
        "What is the capital of France?",
        "Name three fruits.",
        "Why is the sky blue?",
        "What does a compiler do?",
    ];
    let body = |q: &str| json!({"model": MODEL, "prompt": q, "temperature": 0, "max_tokens": 24});
    let text = |v: &Value| v["choices"][0]["text"].as_str().unwrap().to_string();
    let alone: Vec<String> = questions
        .iter()
        .map(|q| {
            let (status, v) = server.post("/v1/completions", &body(q));
            assert_eq!(status, 200, "{v}");
            text(&v)
        })
        .collect();
    let (_, before) = server.get("/health");
    let mut decoded = 0;
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = questions
            .iter()
            .map(|q| {
                let (server, body) = (&server, body(q));
                scope.spawn(move || server.post("/v1/completions", &body))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (status, v) = h.join().unwrap();
                assert_eq!(status, 200, "{v}");
                decoded += v["usage"]["completion_tokens"].as_u64().unwrap() - 1;
                text(&v)
            })
            .collect()
    });
    assert_eq!(together, alone, "{}", server.log());
    let (_, after) = server.get("/health");
    let delta = |k: &str| {
        after["batched_decode"][k].as_u64().unwrap() - before["batched_decode"][k].as_u64().unwrap()
    };
    // Every decode step went through the batcher (a prompt tail of one token after a
    // prefix-cache hit does too), in fewer passes than steps.
    assert!(delta("steps") >= decoded && decoded > 0, "{after}");
    assert!(delta("passes") < delta("steps"), "{after}");
}

/// Every endpoint and check on one server (two slots), one request after another.
#[test]
fn openai_api_over_http() {
    let server = Server::start(&["--parallel", "2"]);

    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL, "{models}");
    let (status, health) = server.get("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    assert_eq!(health["slots"]["total"], 2);

    // Chat: the whole answer and the stream agree at temperature 0.
    let messages = json!([{"role": "user", "content": "What is the capital of France?"}]);
    let body = chat_body(messages.clone(), 24);
    let (status, whole) = server.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    let choice = &whole["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(text.contains("Paris"), "{text}");
    let usage = &whole["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    let streamed = server.stream(
        "/v1/chat/completions",
        &with(
            with(body.clone(), "stream", json!(true)),
            "stream_options",
            json!({"include_usage": true}),
        ),
    );
    let first: Value = serde_json::from_str(&streamed[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let (s_text, s_finish, s_usage) = join_stream(&streamed, true);
    assert_eq!(s_text, text);
    assert_eq!(s_finish, choice["finish_reason"].as_str().unwrap());
    assert_eq!(s_usage["completion_tokens"], usage["completion_tokens"]);
    assert_eq!(s_usage["prompt_tokens"], usage["prompt_tokens"]);

    // Greedy chat equals `weft run` on the same rendered and tokenized prompt.
    let model = open_shared(MODEL);
    let template = model.chat_template(None).unwrap();
    let rendered = template
        .render(
            &[weft_runtime::chat::Message::new(
                "user",
                "What is the capital of France?",
            )],
            true,
        )
        .unwrap();
    let ids = model.encode_chat(&rendered).unwrap();
    assert_eq!(usage["prompt_tokens"].as_u64().unwrap() as usize, ids.len());
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    let (code, out, err) = weft(&[
        "run",
        MODEL,
        "--tokens",
        &ids.join(","),
        "--greedy",
        "--max-tokens",
        "24",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let run: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(run["text"].as_str().unwrap(), text);

    // Completions: the same as `weft run --prompt`, whole and streamed.
    let prompt = "Once upon a time";
    let body = json!({"model": MODEL, "prompt": prompt, "temperature": 0, "max_tokens": 24});
    let (status, whole) = server.post("/v1/completions", &body);
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "text_completion");
    let full = whole["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(whole["choices"][0]["finish_reason"], "length");
    assert_eq!(whole["usage"]["completion_tokens"], 24);
    let (code, out, err) = weft(&[
        "run",
        MODEL,
        "--prompt",
        prompt,
        "--greedy",
        "--max-tokens",
        "24",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let run: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(run["text"].as_str().unwrap(), full);
    let (s_text, s_finish, _) = join_stream(
        &server.stream(
            "/v1/completions",
            &with(body.clone(), "stream", json!(true)),
        ),
        false,
    );
    assert_eq!(
        (s_text.as_str(), s_finish.as_str()),
        (full.as_str(), "length")
    );

    // Two requests at once (one slot each) give what each gave alone.
    let chat = chat_body(messages.clone(), 24);
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| server.post("/v1/chat/completions", &chat));
        let b = scope.spawn(|| {
            join_stream(
                &server.stream(
                    "/v1/completions",
                    &with(body.clone(), "stream", json!(true)),
                ),
                false,
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(
        a.1["choices"][0]["message"]["content"].as_str(),
        Some(text.as_str())
    );
    assert_eq!(b.0, full);

    // Stop strings: cut before the first occurrence, across token boundaries, whole
    // and streamed; a list may hold strings that never occur.
    let chars: Vec<(usize, char)> = full.char_indices().collect();
    let (from, to) = (chars[chars.len() / 3].0, chars[chars.len() / 3 + 5].0);
    let stop = &full[from..to];
    let want = &full[..full.find(stop).unwrap()];
    for stop_field in [json!(stop), json!(["never-in-the-text-#", stop])] {
        let body = with(body.clone(), "stop", stop_field);
        let (status, cut) = server.post("/v1/completions", &body);
        assert_eq!(status, 200, "{cut}");
        assert_eq!(
            cut["choices"][0]["text"].as_str().unwrap(),
            want,
            "stop {stop:?}"
        );
        assert_eq!(cut["choices"][0]["finish_reason"], "stop");
        assert!(cut["usage"]["completion_tokens"].as_u64().unwrap() < 24);
        let (s_text, s_finish, _) = join_stream(
            &server.stream("/v1/completions", &with(body, "stream", json!(true))),
            false,
        );
        assert_eq!((s_text.as_str(), s_finish.as_str()), (want, "stop"));
    }

    // Prefix cache: a second conversation with the same system prompt reuses its rows.
    let system = "You are a helpful assistant who answers briefly and precisely, in one sentence.";
    let ask = |question: &str| {
        let body = chat_body(
            json!([{"role": "system", "content": system}, {"role": "user", "content": question}]),
            8,
        );
        let (status, v) = server.post("/v1/chat/completions", &body);
        assert_eq!(status, 200, "{v}");
        v["usage"].clone()
    };
    let a = ask("Name a colour.");
    let b = ask("Name an animal.");
    let reused = b["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(reused > 15, "second request reused {reused} tokens: {b}");
    assert!(reused < b["prompt_tokens"].as_u64().unwrap(), "{a} {b}");
    let (_, health) = server.get("/health");
    assert!(
        health["prefix_cache"]["hits"].as_u64().unwrap() >= 1,
        "{health}"
    );
    assert!(
        health["prefix_cache"]["reused_tokens"].as_u64().unwrap() >= reused,
        "{health}"
    );

    // Bad requests: OpenAI error objects with the documented statuses.
    let user = json!([{"role": "user", "content": "hi"}]);
    let (s, b) = server.request("POST", "/v1/chat/completions", b"{not json");
    error_of(s, &parse(&b), 400);
    let (s, v) = server.post("/v1/chat/completions", &json!({"messages": "hi"}));
    error_of(s, &v, 400);
    let (s, v) = server.post("/v1/chat/completions", &chat_body(json!([]), 8));
    assert!(error_of(s, &v, 400).contains("empty"));
    let (s, v) = server.post(
        "/v1/chat/completions",
        &chat_body(json!([{"role": "wizard", "content": "hi"}]), 8),
    );
    assert!(error_of(s, &v, 400).contains("wizard"));
    for (key, value) in [
        ("temperature", json!(-1)),
        ("temperature", json!(2.5)),
        ("top_p", json!(0)),
        ("top_p", json!(1.5)),
        ("max_tokens", json!(0)),
        ("max_tokens", json!(-5)),
        ("n", json!(2)),
    ] {
        let (s, v) = server.post(
            "/v1/chat/completions",
            &with(chat_body(user.clone(), 8), key, value.clone()),
        );
        error_of(s, &v, 400);
        assert!(
            v["error"]["param"] == key || v["error"]["param"].is_null(),
            "{key}={value}: {v}"
        );
    }
    let (s, v) = server.post("/v1/chat/completions", &chat_body(user.clone(), 100_000));
    error_of(s, &v, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    let long = "word ".repeat(600);
    let (s, v) = server.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": long, "max_tokens": 4}),
    );
    assert!(error_of(s, &v, 400).contains("context"), "{v}");
    let (s, v) = server.post(
        "/v1/chat/completions",
        &with(chat_body(user.clone(), 8), "model", json!("gpt-4o")),
    );
    error_of(s, &v, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    let (s, v) = server.get("/v1/nothing-here");
    error_of(s, &v, 404);
    let (s, v) = server.get("/v1/models/gpt-4o");
    error_of(s, &v, 404);
    let big = format!(
        r#"{{"model":"{MODEL}","prompt":"{}"}}"#,
        "a".repeat(2 << 20)
    );
    let (s, b) = server.request("POST", "/v1/completions", big.as_bytes());
    error_of(s, &parse(&b), 413);

    // The server survived all of it, and logged one line per request.
    let (status, _) = server.get("/health");
    assert_eq!(status, 200);
    let log = server.log();
    assert!(
        log.contains("prompt tokens") && log.contains("reused") && log.contains("tok/s"),
        "{log}"
    );
}

/// One slot and a queue of one: while the first request streams, a second waits in the
/// queue and a third gets 503; once the first client goes away, its generation stops,
/// and the queued request gets the slot and its answer.
#[test]
fn full_server_queues_then_answers_503_and_a_client_that_leaves_frees_its_slot() {
    let server = Server::start(&["--parallel", "1", "--queue", "1"]);
    // A token has arrived: the generation holds the slot.
    let r = long_stream(&server);
    let short = json!({"model": MODEL, "prompt": "Hello", "max_tokens": 2, "temperature": 0});
    let queued = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| server.post("/v1/completions", &short));
        // Until the queued request is in, a third one may still find the queue place.
        let t0 = Instant::now();
        loop {
            let (_, health) = server.get("/health");
            if health["slots"]["waiting"] == 1 {
                assert_eq!(health["slots"]["busy"], 1, "{health}");
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "{health}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (s503, v) = server.post("/v1/completions", &short);
        error_of(s503, &v, 503);
        assert_eq!(v["error"]["code"], "server_busy");
        // The first client leaves: its generation stops at the next token.
        drop(r);
        waiting.join().unwrap()
    });
    assert_eq!(queued.0, 200, "{}", queued.1);
    assert_eq!(queued.1["usage"]["completion_tokens"], 2);
    let log = server.log();
    assert!(log.contains("cancelled"), "{log}");
    let (_, health) = server.get("/health");
    assert_eq!(health["requests"]["cancelled"], 1, "{health}");
    assert_eq!(health["requests"]["rejected_busy"], 1, "{health}");
    assert_eq!(health["slots"]["busy"], 0, "{health}");

    // Without streaming too: a client that leaves mid-generation cancels it (counted
    // only when the generation saw its client gone) and frees the slot.
    let busy = |want: u64| {
        let t0 = Instant::now();
        loop {
            let (_, health) = server.get("/health");
            if health["slots"]["busy"] == want {
                return t0.elapsed();
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "{health}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut s = server.connect();
    let whole = with(long_request(), "stream", json!(false));
    send(
        &mut s,
        "POST",
        "/v1/completions",
        whole.to_string().as_bytes(),
    );
    busy(1);
    drop(s);
    let freed = busy(0);
    let (_, health) = server.get("/health");
    assert_eq!(
        health["requests"]["cancelled"], 2,
        "{health} after {freed:?}"
    );
}

/// SIGTERM while a stream is generating: the stream ends with an error event and
/// `[DONE]`, and the server exits 0.
#[cfg(unix)]
#[test]
fn sigterm_ends_in_flight_streams_and_exits_cleanly() {
    let mut server = Server::start(&["--parallel", "1"]);
    let mut r = long_stream(&server);
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    while let Some(c) = read_chunk(&mut r) {
        rest += &String::from_utf8_lossy(&c);
    }
    let events = sse_data(&rest);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{rest}");
    let error: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(error["error"]["code"], "cancelled", "{rest}");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}: {}", server.log());
    assert!(server.log().contains("SIGTERM"), "{}", server.log());
}

/// The official `openai` Python client (pinned; the script installs it into a venv
/// under $WEFT_HOME from PyPI) runs a chat streamed and not, and a completion, against
/// the server: the same text each way at temperature 0, and errors as its exceptions.
#[test]
fn official_openai_python_client() {
    let server = Server::start(&["--parallel", "2"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join("serve")
        .join("openai_client_test.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--base-url", &format!("http://{}/v1", server.addr)])
        .args(["--model", MODEL])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{stderr}\nserver:\n{}",
        out.status,
        server.log()
    );
    assert!(
        stdout.contains("streamed chat text == non-streamed text"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("all passed"), "{stdout}");
}
