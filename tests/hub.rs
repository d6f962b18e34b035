//! `weft pull`, `list`, `rm` and `run ORG/REPO[:FILE]` against a stand-in for the Hugging
//! Face Hub: a loopback HTTP server (test-only) serving files in the Hub's URL layout with
//! the headers its clients read (`/api/models/ORG/REPO/revision/REV` lists the files;
//! `/ORG/REPO/resolve/REV/FILE` answers with X-Repo-Commit, ETag and Content-Length, or
//! for an LFS file a redirect with X-Linked-Etag (its SHA-256) and X-Linked-Size to
//! `/cdn/SHA256`, which honours Range requests). It can cut a body short and advertise a
//! wrong SHA-256. weft runs as a child process with HF_ENDPOINT pointing at it and
//! HF_HOME and WEFT_HOME in a fresh temporary folder.

mod common;
use common::*;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct HubFile {
    name: String,
    bytes: Vec<u8>,
    /// Stored with LFS: served through a redirect to the CDN path, its SHA-256 the etag.
    lfs: bool,
    /// The SHA-256 the Hub claims (a wrong one for the mismatch test).
    claimed_sha: Option<String>,
}

impl HubFile {
    fn lfs(name: &str, bytes: Vec<u8>) -> HubFile {
        HubFile {
            name: name.into(),
            bytes,
            lfs: true,
            claimed_sha: None,
        }
    }

    fn git(name: &str, bytes: Vec<u8>) -> HubFile {
        HubFile {
            lfs: false,
            ..HubFile::lfs(name, bytes)
        }
    }

    fn sha(&self) -> String {
        sha256_hex(&self.bytes)
    }
}

struct HubRepo {
    id: String,
    commit: String,
    files: Vec<HubFile>,
    /// A private repository: only this bearer token may read it.
    token: Option<String>,
}

impl HubRepo {
    fn new(id: &str, files: Vec<HubFile>) -> HubRepo {
        HubRepo {
            id: id.into(),
            // A commit id of the Hub's shape, different for each repository.
            commit: sha256_hex(id.as_bytes())[..40].to_string(),
            files,
            token: None,
        }
    }
}

#[derive(Clone, Debug)]
struct Logged {
    method: String,
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

#[derive(Default)]
struct State {
    repos: Vec<HubRepo>,
    /// CDN bodies still to cut short, by SHA-256: each cut sends half of what was asked.
    cuts: HashMap<String, usize>,
    log: Vec<Logged>,
}

struct FakeHub {
    url: String,
    state: Arc<Mutex<State>>,
}

impl FakeHub {
    fn start(repos: Vec<HubRepo>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            repos,
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = answer(stream, &shared, addr);
                });
            }
        });
        FakeHub {
            url: format!("http://{addr}"),
            state,
        }
    }

    fn cut(&self, sha: &str, times: usize) {
        self.state.lock().unwrap().cuts.insert(sha.into(), times);
    }

    fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// The GET requests for a CDN body.
    fn cdn_gets(&self, sha: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.method == "GET" && l.path == format!("/cdn/{sha}"))
            .collect()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only half the body, then close.
    cut: bool,
}

fn reply(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
    Reply {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        body,
        cut: false,
    }
}

fn not_found(code: &str) -> Reply {
    reply(
        404,
        &[("X-Error-Code", code.into())],
        format!("{{\"error\":\"{code}\"}}").into_bytes(),
    )
}

/// A body, or the part of it a `Range: bytes=A-[B]` header asks for.
fn ranged(bytes: &[u8], range: Option<&str>, mut headers: Vec<(&str, String)>) -> Reply {
    let len = bytes.len();
    headers.push(("Accept-Ranges", "bytes".into()));
    let Some((a, b)) = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
    else {
        return reply(200, &headers, bytes.to_vec());
    };
    let a: usize = a.parse().unwrap();
    let b: usize = if b.is_empty() {
        len - 1
    } else {
        b.parse::<usize>().unwrap().min(len - 1)
    };
    if a >= len {
        headers.push(("Content-Range", format!("bytes */{len}")));
        return reply(416, &headers, Vec::new());
    }
    headers.push(("Content-Range", format!("bytes {a}-{b}/{len}")));
    reply(206, &headers, bytes[a..=b].to_vec())
}

fn route(state: &mut State, req: &Logged, base: &str) -> Reply {
    let path = req.path.as_str();
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let Some(file) = state
            .repos
            .iter()
            .flat_map(|r| &r.files)
            .find(|f| f.sha() == sha)
            .cloned()
        else {
            return not_found("EntryNotFound");
        };
        let mut r = ranged(&file.bytes, req.range.as_deref(), vec![]);
        if req.method == "GET" {
            if let Some(n) = state.cuts.get_mut(sha).filter(|n| **n > 0) {
                *n -= 1;
                r.cut = true;
            }
        }
        return r;
    }
    let (api, rest) = match path.strip_prefix("/api/models/") {
        Some(rest) => (true, rest),
        None => (false, path.trim_start_matches('/')),
    };
    let parts: Vec<&str> = rest.splitn(5, '/').collect();
    if parts.len() < 4 || parts[2] != if api { "revision" } else { "resolve" } {
        return not_found("NotFound");
    }
    let id = format!("{}/{}", parts[0], parts[1]);
    let Some(repo) = state.repos.iter().find(|r| r.id == id) else {
        return not_found("RepoNotFound");
    };
    if let Some(t) = &repo.token {
        if req.auth.as_deref() != Some(&format!("Bearer {t}")) {
            return reply(401, &[], b"{\"error\":\"Invalid credentials\"}".to_vec());
        }
    }
    if parts[3] != "main" && parts[3] != repo.commit {
        return not_found("RevisionNotFound");
    }
    let commit = ("X-Repo-Commit", repo.commit.clone());
    if api {
        let siblings: Vec<_> = repo
            .files
            .iter()
            .map(|f| serde_json::json!({ "rfilename": f.name }))
            .collect();
        let body = serde_json::json!({"id": repo.id, "sha": repo.commit, "siblings": siblings});
        return reply(
            200,
            &[("Content-Type", "application/json".into()), commit],
            body.to_string().into_bytes(),
        );
    }
    let Some(file) = parts
        .get(4)
        .and_then(|f| repo.files.iter().find(|x| x.name == *f))
    else {
        return not_found("EntryNotFound");
    };
    if file.lfs {
        let claimed = file.claimed_sha.clone().unwrap_or_else(|| file.sha());
        return reply(
            302,
            &[
                ("Location", format!("{base}/cdn/{}", file.sha())),
                ("X-Linked-Etag", format!("\"{claimed}\"")),
                ("X-Linked-Size", file.bytes.len().to_string()),
                // The ETag of the pointer file, which a client must not take.
                ("ETag", format!("\"{}\"", &sha256_hex(b"pointer")[..40])),
                commit,
            ],
            Vec::new(),
        );
    }
    // A git-stored file: its etag is its git blob id (any 40 hex digits here).
    ranged(
        &file.bytes,
        req.range.as_deref(),
        vec![("ETag", format!("\"{}\"", &file.sha()[..40])), commit],
    )
}

/// Reads one request, logs it, writes the reply and closes the connection.
fn answer(stream: TcpStream, state: &Mutex<State>, addr: SocketAddr) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let req = Logged {
        method,
        path: target.split('?').next().unwrap_or("").to_string(),
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
    };
    let r = {
        let mut st = state.lock().unwrap();
        st.log.push(req.clone());
        route(&mut st, &req, &format!("http://{addr}"))
    };
    let mut out = stream;
    let mut head = format!("HTTP/1.1 {} X\r\n", r.status);
    for (k, v) in &r.headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += &format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    );
    out.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        let n = if r.cut {
            r.body.len() / 2
        } else {
            r.body.len()
        };
        out.write_all(&r.body[..n])?;
    }
    out.flush()?;
    out.shutdown(std::net::Shutdown::Write)
}

/// A fresh folder for one test's HF_HOME and WEFT_HOME.
fn home(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs weft against `endpoint` with HF_HOME and WEFT_HOME under `home`: (code, stdout, stderr).
fn weft_at(
    endpoint: &str,
    home: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    c.args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home.join("hf"))
        .env("WEFT_HOME", home.join("weft"));
    for v in [
        "HF_TOKEN",
        "HF_HUB_CACHE",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("weft runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "weft panicked: {err}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

/// An endpoint where nothing listens: what weft does from the cache alone.
const NOWHERE: &str = "http://127.0.0.1:9";

fn family_gguf(name: &str) -> PathBuf {
    fixtures()
        .join("families")
        .join(name)
        .join("model-f16.gguf")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn repo_dir(home: &Path, repo: &str) -> PathBuf {
    home.join("hf")
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")))
}

/// Every file under a folder (links followed), relative paths.
fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

const RUN: [&str; 8] = [
    "--tokens",
    "1,2,3,4,5",
    "--max-tokens",
    "8",
    "--greedy",
    "--json",
    "--ignore-eos",
    "--threads=1",
];

/// The greedy tokens `weft run MODEL` gives.
fn run_tokens(endpoint: &str, home: &Path, model: &str) -> Vec<u32> {
    let (code, out, err) = weft_at(endpoint, home, &[&["run", model][..], &RUN].concat(), &[]);
    assert_eq!(code, 0, "weft run {model}: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let t = ids(&v["tokens"]);
    assert_eq!(t.len(), 8);
    t
}

const GGUF_REPO: &str = "test-org/tiny-qwen2-GGUF";
const GGUF_FILE: &str = "tiny-qwen2-f16.gguf";

fn gguf_repo() -> HubRepo {
    HubRepo::new(
        GGUF_REPO,
        vec![
            HubFile::lfs(GGUF_FILE, read(&family_gguf("qwen2"))),
            HubFile::git("README.md", b"# a tiny random qwen2\n".to_vec()),
        ],
    )
}

#[test]
fn run_by_hub_name_pulls_once_and_equals_the_file() {
    let hub = FakeHub::start(vec![gguf_repo()]);
    let home = home("run");
    let fixture = family_gguf("qwen2");
    let spec = format!("{GGUF_REPO}:{GGUF_FILE}");
    let want = run_tokens(NOWHERE, &home, fixture.to_str().unwrap());

    // Missing from the cache: `run` pulls it.
    assert_eq!(run_tokens(&hub.url, &home, &spec), want);
    let sha = sha256_hex(&read(&fixture));
    assert_eq!(hub.cdn_gets(&sha).len(), 1);

    // The Hub's layout: a blob named by its SHA-256, a relative link in the snapshot of
    // the commit, refs/main naming the commit.
    let dir = repo_dir(&home, GGUF_REPO);
    let commit = std::fs::read_to_string(dir.join("refs/main")).unwrap();
    assert_eq!(commit, HubRepo::new(GGUF_REPO, vec![]).commit);
    let pointer = dir.join("snapshots").join(&commit).join(GGUF_FILE);
    assert_eq!(
        std::fs::read_link(&pointer).unwrap(),
        Path::new("../../blobs").join(&sha)
    );
    assert_eq!(read(&dir.join("blobs").join(&sha)), read(&fixture));
    assert_eq!(files_in(&dir.join("blobs")), vec![sha.clone()]);

    // From the cache alone, with no Hub to reach.
    assert_eq!(run_tokens(NOWHERE, &home, &spec), want);

    // `pull` asks the Hub, finds the blob in the cache and fetches nothing.
    let (code, out, err) = weft_at(&hub.url, &home, &["pull", &spec], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), pointer.to_str().unwrap());
    assert!(err.contains("already in the cache"), "{err}");
    assert_eq!(hub.cdn_gets(&sha).len(), 1);
}

#[test]
fn pull_of_a_repo_picks_its_q4_k_m_or_lists_the_choices() {
    let q4 = read(&family_gguf("qwen2"));
    let hub = FakeHub::start(vec![
        HubRepo::new(
            "test-org/multi-GGUF",
            vec![
                HubFile::lfs("multi-Q8_0.gguf", read(&family_gguf("qwen3"))),
                HubFile::lfs("multi-Q4_K_M.gguf", q4.clone()),
                HubFile::lfs("multi-F16.gguf", read(&family_gguf("gemma3"))),
                HubFile::git("README.md", b"# three quantisations\n".to_vec()),
            ],
        ),
        HubRepo::new(
            "test-org/two-GGUF",
            vec![
                HubFile::lfs("two-F16.gguf", read(&family_gguf("qwen3"))),
                HubFile::lfs("two-F32.gguf", read(&family_gguf("gemma3"))),
            ],
        ),
    ]);
    let home = home("pick");
    let (code, out, err) = weft_at(&hub.url, &home, &["pull", "test-org/multi-GGUF"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().ends_with("/multi-Q4_K_M.gguf"), "{out}");
    assert!(err.contains("taking multi-Q4_K_M.gguf"), "{err}");
    assert_eq!(read(Path::new(out.trim())), q4);
    // Only the picked file came.
    let gets: Vec<_> = hub
        .log()
        .into_iter()
        .filter(|l| l.method == "GET" && l.path.starts_with("/cdn/"))
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    // The bare name now runs from the cache: the same tokens as the file.
    let want = run_tokens(NOWHERE, &home, family_gguf("qwen2").to_str().unwrap());
    assert_eq!(run_tokens(NOWHERE, &home, "test-org/multi-GGUF"), want);

    let (code, _, err) = weft_at(&hub.url, &home, &["pull", "test-org/two-GGUF"], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("two-F16.gguf, two-F32.gguf") && err.contains("test-org/two-GGUF:FILE"),
        "{err}"
    );
    assert!(!repo_dir(&home, "test-org/two-GGUF")
        .join("snapshots")
        .exists());
}

#[test]
fn pull_of_an_hf_format_repo_takes_config_tokenizer_and_shards() {
    let src = tiny("llama-gqa-untied-sharded");
    let git = |n: &str| HubFile::git(n, read(&src.join(n)));
    let lfs = |n: &str| HubFile::lfs(n, read(&src.join(n)));
    let hub = FakeHub::start(vec![HubRepo::new(
        "test-org/tiny-llama",
        vec![
            git("config.json"),
            git("tokenizer.json"),
            git("tokenizer_config.json"),
            git("model.safetensors.index.json"),
            lfs("model-00001-of-00002.safetensors"),
            lfs("model-00002-of-00002.safetensors"),
            git("reference.json"),
            HubFile::lfs("onnx/model.onnx", vec![7; 1000]),
        ],
    )]);
    let home = home("hf");
    let (code, out, err) = weft_at(&hub.url, &home, &["pull", "test-org/tiny-llama"], &[]);
    assert_eq!(code, 0, "{err}");
    let snapshot = PathBuf::from(out.trim());
    assert_eq!(
        files_in(&snapshot),
        vec![
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    );
    for f in files_in(&snapshot) {
        assert_eq!(read(&snapshot.join(&f)), read(&src.join(&f)), "{f}");
    }
    let want = run_tokens(NOWHERE, &home, src.to_str().unwrap());
    assert_eq!(run_tokens(NOWHERE, &home, "test-org/tiny-llama"), want);
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let hub = FakeHub::start(vec![gguf_repo()]);
    let bytes = read(&family_gguf("qwen2"));
    let sha = sha256_hex(&bytes);
    let spec = format!("{GGUF_REPO}:{GGUF_FILE}");

    // Cut once: the same pull resumes from where the body stopped.
    let home1 = home("resume1");
    hub.cut(&sha, 1);
    let (code, out, err) = weft_at(&hub.url, &home1, &["pull", &spec], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("resuming") && err.contains("sha256 ok"),
        "{err}"
    );
    let gets = hub.cdn_gets(&sha);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(
        gets[1].range.as_deref(),
        Some(format!("bytes={}-", bytes.len() / 2).as_str())
    );
    assert_eq!(sha256_hex(&read(Path::new(out.trim()))), sha);

    // Cut on every attempt of one pull: it fails, keeping the partial file in blobs/ and
    // nothing in the snapshot; the next pull resumes from the partial file.
    let home2 = home("resume2");
    hub.cut(&sha, 4);
    let (code, _, err) = weft_at(&hub.url, &home2, &["pull", &spec], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("run the pull again to resume"), "{err}");
    let dir = repo_dir(&home2, GGUF_REPO);
    assert!(files_in(&dir.join("snapshots")).is_empty());
    let part = dir.join("blobs").join(format!("{sha}.incomplete"));
    let have = std::fs::metadata(&part).unwrap().len() as usize;
    assert!(have > bytes.len() / 2 && have < bytes.len(), "{have}");
    assert_eq!(read(&part), bytes[..have]);

    let (code, out, err) = weft_at(&hub.url, &home2, &["pull", &spec], &[]);
    assert_eq!(code, 0, "{err}");
    let last = hub.cdn_gets(&sha).pop().unwrap();
    assert_eq!(last.range, Some(format!("bytes={have}-")));
    assert_eq!(read(Path::new(out.trim())), bytes);
    assert_eq!(files_in(&dir.join("blobs")), vec![sha]);
}

#[test]
fn a_wrong_sha256_is_an_error_and_leaves_no_file() {
    let mut file = HubFile::lfs(GGUF_FILE, read(&family_gguf("qwen2")));
    let claimed = sha256_hex(b"other bytes");
    file.claimed_sha = Some(claimed.clone());
    let hub = FakeHub::start(vec![HubRepo::new(GGUF_REPO, vec![file])]);
    let home = home("sha");
    let spec = format!("{GGUF_REPO}:{GGUF_FILE}");
    for args in [&["pull", &spec][..], &[&["run", &spec][..], &RUN].concat()] {
        let (code, _, err) = weft_at(&hub.url, &home, args, &[]);
        assert_ne!(code, 0);
        assert!(
            err.contains("sha256 mismatch") && err.contains(&claimed) && err.contains(&spec),
            "{err}"
        );
        let dir = repo_dir(&home, GGUF_REPO);
        assert!(files_in(&dir.join("snapshots")).is_empty());
        assert!(files_in(&dir.join("blobs")).is_empty());
        assert!(!dir.join("refs").exists());
    }
}

#[test]
fn missing_and_private_repositories_give_one_clear_line() {
    let mut private = HubRepo::new(
        "test-org/private",
        vec![HubFile::lfs("p.gguf", read(&family_gguf("qwen2")))],
    );
    private.token = Some("hf_secret".into());
    let hub = FakeHub::start(vec![gguf_repo(), private]);
    let home = home("errors");
    let fails = |args: &[&str], env: &[(&str, &str)], want: &[&str]| {
        let (code, out, err) = weft_at(&hub.url, &home, args, env);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        for w in want {
            assert!(err.contains(w), "{args:?}: {err} lacks {w}");
        }
    };
    fails(
        &["pull", "test-org/nope:model.gguf"],
        &[],
        &["404", "repository test-org/nope not found"],
    );
    fails(
        &["pull", "test-org/nope"],
        &[],
        &["404", "test-org/nope not found"],
    );
    fails(
        &["pull", &format!("{GGUF_REPO}:missing.gguf")],
        &[],
        &["404", "has no file missing.gguf"],
    );
    fails(
        &["pull", "test-org/private:p.gguf"],
        &[],
        &["401", "test-org/private", "set HF_TOKEN"],
    );
    fails(&["pull", "test-org/private"], &[], &["401", "set HF_TOKEN"]);
    fails(
        &["pull", "test-org/private:p.gguf"],
        &[("HF_TOKEN", "hf_wrong")],
        &["401", "HF_TOKEN was refused"],
    );
    assert!(!home
        .join("hf/hub/models--test-org--nope")
        .join("snapshots")
        .exists());

    // HF_TOKEN, else the token file under HF_HOME, as the Hub's tools read them.
    let (code, _, err) = weft_at(
        &hub.url,
        &home,
        &["pull", "test-org/private:p.gguf"],
        &[("HF_TOKEN", "hf_secret")],
    );
    assert_eq!(code, 0, "{err}");
    let home2 = self::home("token-file");
    std::fs::create_dir_all(home2.join("hf")).unwrap();
    std::fs::write(home2.join("hf/token"), "hf_secret\n").unwrap();
    let (code, _, err) = weft_at(&hub.url, &home2, &["pull", "test-org/private"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(hub
        .log()
        .iter()
        .any(|l| l.path.starts_with("/api/models/test-org/private")
            && l.auth.as_deref() == Some("Bearer hf_secret")));
}

#[test]
fn list_shows_and_rm_removes() {
    let gguf = read(&family_gguf("qwen2"));
    let hub = FakeHub::start(vec![
        gguf_repo(),
        // Two names for the same bytes: one blob, two links.
        HubRepo::new(
            "test-org/dup",
            vec![
                HubFile::lfs("a.gguf", gguf.clone()),
                HubFile::lfs("b.gguf", gguf.clone()),
            ],
        ),
    ]);
    let home = home("list");
    let spec = format!("{GGUF_REPO}:{GGUF_FILE}");
    for s in [spec.as_str(), "test-org/dup:a.gguf", "test-org/dup:b.gguf"] {
        let (code, _, err) = weft_at(&hub.url, &home, &["pull", s], &[]);
        assert_eq!(code, 0, "{err}");
    }
    std::fs::create_dir_all(home.join("weft/models")).unwrap();
    std::fs::write(home.join("weft/models/fake-short.gguf"), b"GGUF....").unwrap();

    let list = || {
        let (code, out, err) = weft_at(NOWHERE, &home, &["list", "--json"], &[]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    let v = list();
    assert_eq!(v["weft"][0]["model"], "fake-short");
    assert_eq!(v["weft"][0]["bytes"], 8);
    let hub_models: Vec<_> = v["hub"].as_array().unwrap().iter().collect();
    assert_eq!(hub_models.len(), 2);
    let dup = hub_models
        .iter()
        .find(|m| m["model"] == "test-org/dup")
        .unwrap();
    assert_eq!(dup["bytes"], gguf.len(), "one blob for both names");
    assert_eq!(dup["files"].as_array().unwrap().len(), 2);
    let tiny = hub_models.iter().find(|m| m["model"] == GGUF_REPO).unwrap();
    assert_eq!(tiny["files"][0]["model"], spec.as_str());
    assert_eq!(tiny["files"][0]["bytes"], gguf.len());
    let (_, text, _) = weft_at(NOWHERE, &home, &["list"], &[]);
    assert!(
        text.contains(&spec) && text.contains("fake-short") && text.contains("113.5 KiB"),
        "{text}"
    );

    // One name of the shared blob goes; the blob stays for the other.
    let sha = sha256_hex(&gguf);
    let dup_dir = repo_dir(&home, "test-org/dup");
    let (code, _, err) = weft_at(NOWHERE, &home, &["rm", "test-org/dup:a.gguf"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(dup_dir.join("blobs").join(&sha).is_file());
    assert_eq!(list()["hub"][0]["files"].as_array().unwrap().len(), 1);
    assert_eq!(run_tokens(NOWHERE, &home, "test-org/dup:b.gguf").len(), 8);
    // The last name goes: the repository's folder with it.
    let (code, _, err) = weft_at(NOWHERE, &home, &["rm", "test-org/dup:b.gguf"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("113.5 KiB freed"), "{err}");
    assert!(!dup_dir.exists());

    let (code, _, err) = weft_at(NOWHERE, &home, &["rm", GGUF_REPO], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!repo_dir(&home, GGUF_REPO).exists());
    let (code, _, err) = weft_at(NOWHERE, &home, &["rm", "fake-short"], &[]);
    assert_eq!(code, 0, "{err}");
    let v = list();
    assert_eq!(v["weft"].as_array().unwrap().len(), 0);
    assert_eq!(v["hub"].as_array().unwrap().len(), 0);

    for (gone, want) in [
        (GGUF_REPO, "not in the Hugging Face cache"),
        ("test-org/dup:a.gguf", "not in the Hugging Face cache"),
        ("fake-short", "not in weft's cache"),
        ("./some/file.gguf", "weft rm removes cached models"),
    ] {
        let (code, _, err) = weft_at(NOWHERE, &home, &["rm", gone], &[]);
        assert_eq!(code, 2, "{gone}");
        assert!(err.contains(want), "{gone}: {err}");
    }
}
