//! Models by Hub name, `ORG/REPO[:FILE]`: resolved through the Hugging Face cache in the
//! layout of the Hub's own tools (`models--ORG--REPO/{blobs,snapshots/<commit>,refs/main}`)
//! and downloaded from the Hub when missing, honouring `HF_ENDPOINT`, `HF_HOME`,
//! `HF_HUB_CACHE`, `HF_TOKEN` (else the token file) and `HF_HUB_OFFLINE` as they do.
//!
//! hf-hub (its sync API) lists a repository's files and names the cache's paths. The
//! transfer of a blob is ours: hf-hub moves a download into `blobs/` and links it into
//! the snapshot before anyone could check it, and appends whatever a resumed request
//! returns. Here a file is fetched into `blobs/<etag>.incomplete` (the Hub's tools' name
//! for it, so either can resume the other's partial file), resumed with an HTTP Range
//! request (a 206 whose Content-Range starts where the file ends, else from the start),
//! checked (its size, and its SHA-256 where the Hub gives one: the etag of LFS files),
//! and only then renamed to `blobs/<etag>` and linked into `snapshots/<commit>/`.

use crate::RuntimeError;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a pull reports as it goes (the CLI draws a progress bar from it).
#[derive(Clone, Copy, Debug)]
pub enum PullEvent<'a> {
    /// A line for the user.
    Message(&'a str),
    /// A file's transfer begins: `bytes` in all, the first `resumed` already on disk.
    Start {
        file: &'a str,
        bytes: u64,
        resumed: u64,
    },
    /// `done` bytes of the file are on disk.
    Advance { done: u64 },
    /// The transfer ended: `ok` when every byte came (verification follows).
    End { file: &'a str, ok: bool },
}

impl PullEvent<'_> {
    /// The event as one line of text (none for [`PullEvent::Advance`]).
    pub fn line(&self) -> Option<String> {
        match *self {
            PullEvent::Message(m) => Some(m.to_string()),
            PullEvent::Start {
                file,
                bytes,
                resumed: 0,
            } => Some(format!("downloading {file} ({})", human_bytes(bytes))),
            PullEvent::Start {
                file,
                bytes,
                resumed,
            } => Some(format!(
                "downloading {file} ({}), resuming at {}",
                human_bytes(bytes),
                human_bytes(resumed)
            )),
            // What follows an end (the check, or the retry) is reported as a message.
            PullEvent::Advance { .. } | PullEvent::End { .. } => None,
        }
    }
}

/// A size for people: `93.8 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{b} B"),
        _ => format!("{v:.1} {}", UNITS[u]),
    }
}

/// A model named on the Hub: `ORG/REPO`, optionally one file of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubSpec {
    /// `ORG/REPO`.
    pub repo: String,
    /// A path inside the repository (`sub/model.gguf`).
    pub file: Option<String>,
}

impl HubSpec {
    /// `ORG/REPO[:FILE]`, or `None` when `spec` does not have that shape.
    pub fn parse(spec: &str) -> Option<HubSpec> {
        let (repo, file) = match spec.split_once(':') {
            Some((r, f)) => (r, Some(f)),
            None => (spec, None),
        };
        let (org, name) = repo.split_once('/')?;
        if !valid_name(org) || !valid_name(name) || !file.is_none_or(valid_file) {
            return None;
        }
        Some(HubSpec {
            repo: repo.to_string(),
            file: file.map(str::to_string),
        })
    }

    /// The cache folder's name: `models--ORG--REPO`.
    pub fn folder(&self) -> String {
        hf_hub::Repo::model(self.repo.clone()).folder_name()
    }
}

impl std::fmt::Display for HubSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{file}", self.repo),
            None => write!(f, "{}", self.repo),
        }
    }
}

/// An organisation or repository name as the Hub allows them.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && !s.starts_with('.')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A relative path inside a repository: no empty, `.` or `..` component, no `\`.
fn valid_file(f: &str) -> bool {
    !f.is_empty()
        && !f.contains(['\\', ':', '\0'])
        && f.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> PathBuf {
    if let Some(h) = env("HF_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = env("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("huggingface");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface")
}

/// The Hub cache: `$HF_HUB_CACHE`, else `hf_home()/hub`.
pub fn hub_cache() -> PathBuf {
    env("HF_HUB_CACHE").map_or_else(|| hf_home().join("hub"), PathBuf::from)
}

/// `$HF_ENDPOINT` (without a trailing `/`), else `https://huggingface.co`.
pub fn endpoint() -> String {
    env("HF_ENDPOINT")
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| "https://huggingface.co".to_string())
}

/// `$HF_TOKEN`, else the token file (`$HF_TOKEN_PATH`, else `hf_home()/token`): the
/// token and where it came from.
fn token() -> Option<(String, String)> {
    if let Some(t) = env("HF_TOKEN") {
        return Some((t.trim().to_string(), "HF_TOKEN".into()));
    }
    let path = env("HF_TOKEN_PATH").map_or_else(|| hf_home().join("token"), PathBuf::from);
    let t = fs::read_to_string(&path).ok()?;
    Some((
        t.trim().to_string(),
        format!("the token in {}", path.display()),
    ))
    .filter(|(t, _)| !t.is_empty())
}

fn offline() -> bool {
    env("HF_HUB_OFFLINE").is_some_and(|v| {
        matches!(
            v.trim().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

fn hub_err(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Hub(msg.into())
}

fn io_err(what: &Path, e: std::io::Error) -> RuntimeError {
    hub_err(format!("{}: {e}", what.display()))
}

/// The tokenizer and generation files an HF-format pull takes when the repo has them.
const SIDE_FILES: [&str; 10] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
];

const INDEX: &str = "model.safetensors.index.json";

/// The quantisations a GGUF repo's file is picked by, in this order, when no file is named.
pub const PREFERRED_QUANTS: [&str; 5] = ["Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q8_0"];

/// What to fetch of a repository when no file is named.
#[derive(Debug, PartialEq, Eq)]
enum Layout {
    /// An HF-format model: config.json, tokenizer files, the weights (an index and the
    /// shards it names, or one safetensors file).
    Hf { files: Vec<String>, index: bool },
    /// One GGUF file, and why it was the one.
    Gguf { file: String, why: String },
}

fn is_gguf(f: &str) -> bool {
    f.to_ascii_lowercase().ends_with(".gguf")
}

/// A GGUF file that can be the model: not a vision projector, not a shard of a split one.
fn is_model_gguf(f: &str) -> bool {
    is_gguf(f) && !base_name(f).to_ascii_lowercase().contains("mmproj") && !is_split(f)
}

fn base_name(f: &str) -> &str {
    f.rsplit('/').next().unwrap_or(f)
}

/// A GGUF that is one shard of a split model (`…-00001-of-00003.gguf`).
fn is_split(f: &str) -> bool {
    let stem = &base_name(f)[..base_name(f).len().saturating_sub(5)];
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    parts.len() >= 3
        && parts[1] == "of"
        && [parts[0], parts[2]]
            .iter()
            .all(|p| p.len() == 5 && p.chars().all(|c| c.is_ascii_digit()))
}

/// Whether a GGUF file's name carries the quantisation `tag` as a word: after the start,
/// `-`, `.` or `_`, and before the extension, `-` or `.`.
fn has_quant(f: &str, tag: &str) -> bool {
    let name = base_name(f).to_ascii_uppercase();
    let stem = &name[..name.len().saturating_sub(5)];
    let tag = tag.to_ascii_uppercase();
    stem.match_indices(&tag).any(|(i, _)| {
        let before = stem[..i].chars().next_back();
        let after = stem[i + tag.len()..].chars().next();
        before.is_none_or(|c| matches!(c, '-' | '.' | '_'))
            && after.is_none_or(|c| matches!(c, '-' | '.'))
    })
}

/// Chooses what to fetch of a repository with these files (paths inside it).
fn choose(repo: &str, names: &[String]) -> Result<Layout, String> {
    let top: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.contains('/'))
        .collect();
    let safetensors: Vec<&str> = top
        .iter()
        .copied()
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    if top.contains(&"config.json") && (!safetensors.is_empty() || top.contains(&INDEX)) {
        let mut files = vec!["config.json".to_string()];
        files.extend(
            SIDE_FILES
                .iter()
                .filter(|f| top.contains(f))
                .map(|f| f.to_string()),
        );
        let index = top.contains(&INDEX);
        if index {
            files.push(INDEX.to_string());
        } else if top.contains(&"model.safetensors") {
            files.push("model.safetensors".to_string());
        } else if safetensors.len() == 1 {
            files.push(safetensors[0].to_string());
        } else {
            return Err(format!(
                "{repo} has {} safetensors files and no {INDEX} to say which are the model's: {}",
                safetensors.len(),
                safetensors.join(", ")
            ));
        }
        return Ok(Layout::Hf { files, index });
    }
    let ggufs: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| is_gguf(n) && !base_name(n).to_ascii_lowercase().contains("mmproj"))
        .collect();
    let whole: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| is_model_gguf(n))
        .collect();
    if whole.is_empty() {
        return Err(match ggufs.is_empty() {
            true => format!(
                "{repo} holds neither a GGUF file nor config.json with safetensors (its files: {})",
                names.join(", ")
            ),
            false => format!(
                "{repo} holds only split GGUF files, which weft does not read: {}",
                ggufs.join(", ")
            ),
        });
    }
    for tag in PREFERRED_QUANTS {
        let matching: Vec<&str> = whole
            .iter()
            .copied()
            .filter(|n| has_quant(n, tag))
            .collect();
        match matching.as_slice() {
            [] => continue,
            [one] => {
                return Ok(Layout::Gguf {
                    file: one.to_string(),
                    why: format!(
                        "the {tag} of its {} GGUF file{}",
                        whole.len(),
                        if whole.len() == 1 { "" } else { "s" }
                    ),
                })
            }
            several => {
                return Err(format!(
                    "{repo}: several GGUF files are {tag} ({}): name one as {repo}:FILE",
                    several.join(", ")
                ))
            }
        }
    }
    match whole.as_slice() {
        [one] => Ok(Layout::Gguf {
            file: one.to_string(),
            why: "its only GGUF file".into(),
        }),
        _ => Err(format!(
            "{repo} has {} GGUF files and none is {}: name one as {repo}:FILE ({})",
            whole.len(),
            PREFERRED_QUANTS.join(", "),
            whole.join(", ")
        )),
    }
}

/// The files under `dir` (following links), as `/`-separated paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // A link that a killed pull left under its temporary name is not a file.
            if name.ends_with(".weft-tmp") {
                continue;
            }
            let rel = match prefix {
                "" => name,
                p => format!("{p}/{name}"),
            };
            let path = e.path();
            if path.is_dir() {
                walk(&path, &rel, out);
            } else if path.is_file() {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}

/// The shards an index names (`weight_map` values), each checked as a path in the repo.
fn index_shards(index: &Path) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(index).map_err(|e| format!("{}: {e}", index.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| format!("{}: no weight_map object", index.display()))?;
    let mut shards: Vec<String> = Vec::new();
    for f in map.values() {
        let f = f
            .as_str()
            .filter(|f| valid_file(f))
            .ok_or_else(|| format!("{}: a weight_map value is not a file name", index.display()))?;
        if !shards.iter().any(|s| s == f) {
            shards.push(f.to_string());
        }
    }
    shards.sort();
    Ok(shards)
}

/// Where `spec` is in the cache, without asking the Hub: the file, or for a bare
/// `ORG/REPO`, a complete HF-format snapshot or the snapshot's only GGUF file.
pub fn cached(spec: &HubSpec) -> Option<PathBuf> {
    let repo_dir = hub_cache().join(spec.folder());
    let commit = fs::read_to_string(repo_dir.join("refs").join("main")).ok()?;
    let snapshot = repo_dir.join("snapshots").join(commit.trim());
    if let Some(f) = &spec.file {
        let p = snapshot.join(f);
        return p.is_file().then_some(p);
    }
    let names = files_under(&snapshot);
    match choose(&spec.repo, &names).ok()? {
        Layout::Hf { files, index } => {
            let mut need = files;
            if index {
                need.extend(index_shards(&snapshot.join(INDEX)).ok()?);
            }
            need.iter()
                .all(|f| snapshot.join(f).is_file())
                .then_some(snapshot)
        }
        // Only when it is the one the Hub would not pick differently: the snapshot's
        // only model GGUF (with several, the pull decides from the repo's full list).
        Layout::Gguf { file, .. } => {
            let models = names.iter().filter(|n| is_model_gguf(n)).count();
            (models == 1).then(|| snapshot.join(file))
        }
    }
}

/// Fetches `spec` from the Hub into the cache (files already there are not fetched
/// again) and returns what to open: the file, an HF-format snapshot folder, or the GGUF
/// file picked for a bare `ORG/REPO`.
pub fn pull(spec: &HubSpec, events: &mut dyn FnMut(PullEvent)) -> Result<PathBuf, RuntimeError> {
    let hub = Hub::from_env();
    if offline() {
        return Err(hub_err(format!(
            "{spec} is not in the Hugging Face cache ({}), and HF_HUB_OFFLINE is set",
            hub.cache.display()
        )));
    }
    let Some(file) = &spec.file else {
        return hub.pull_repo(spec, events);
    };
    let (commit, path) = hub.fetch(spec, "main", file, events)?;
    hub.write_ref(spec, &commit)?;
    Ok(path)
}

/// What is where: the Hub's cache and weft's own.
#[derive(Debug, Default)]
pub struct Listing {
    /// weft's cache of short-named models (`$WEFT_HOME/models`).
    pub weft_dir: PathBuf,
    pub weft: Vec<CachedModel>,
    /// The Hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`).
    pub hub_dir: PathBuf,
    pub hub: Vec<CachedModel>,
}

/// A cached model: a short name's file, or a Hub repository and its files.
#[derive(Debug)]
pub struct CachedModel {
    /// The name to run it by: a short name, or `ORG/REPO`.
    pub spec: String,
    /// Bytes on disk: the file, or the repository's complete blobs.
    pub bytes: u64,
    /// Bytes of interrupted downloads (`blobs/*.incomplete`), resumed by the next pull.
    pub partial_bytes: u64,
    pub path: PathBuf,
    /// The commit `refs/main` names (Hub repositories).
    pub revision: Option<String>,
    /// `ORG/REPO:FILE` and its size, for each file of each snapshot.
    pub files: Vec<(String, u64)>,
}

/// The models in weft's cache and in the Hub cache (model repositories only).
pub fn list(weft_models: &Path) -> Listing {
    let mut listing = Listing {
        weft_dir: weft_models.to_path_buf(),
        hub_dir: hub_cache(),
        ..Listing::default()
    };
    if let Ok(entries) = fs::read_dir(weft_models) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".gguf") else {
                continue;
            };
            if stem.starts_with('.') || !e.path().is_file() {
                continue;
            }
            listing.weft.push(CachedModel {
                spec: stem.to_string(),
                bytes: e.metadata().map_or(0, |m| m.len()),
                partial_bytes: 0,
                path: e.path(),
                revision: None,
                files: Vec::new(),
            });
        }
    }
    if let Ok(entries) = fs::read_dir(&listing.hub_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("models--") else {
                continue;
            };
            let repo = rest.split("--").collect::<Vec<_>>().join("/");
            listing.hub.push(cached_repo(&repo, &e.path()));
        }
    }
    listing.weft.sort_by(|a, b| a.spec.cmp(&b.spec));
    listing.hub.sort_by(|a, b| a.spec.cmp(&b.spec));
    listing
}

fn cached_repo(repo: &str, dir: &Path) -> CachedModel {
    let (mut bytes, mut partial_bytes) = (0, 0);
    if let Ok(blobs) = fs::read_dir(dir.join("blobs")) {
        for b in blobs.flatten() {
            let len = b.metadata().map_or(0, |m| m.len());
            match b.file_name().to_string_lossy().ends_with(".incomplete") {
                true => partial_bytes += len,
                false => bytes += len,
            }
        }
    }
    let mut files: Vec<(String, u64)> = Vec::new();
    if let Ok(snapshots) = fs::read_dir(dir.join("snapshots")) {
        for s in snapshots.flatten() {
            for f in files_under(&s.path()) {
                let spec = format!("{repo}:{f}");
                if !files.iter().any(|(g, _)| *g == spec) {
                    let len = fs::metadata(s.path().join(&f)).map_or(0, |m| m.len());
                    files.push((spec, len));
                }
            }
        }
    }
    files.sort();
    CachedModel {
        spec: repo.to_string(),
        bytes,
        partial_bytes,
        path: dir.to_path_buf(),
        revision: fs::read_to_string(dir.join("refs").join("main"))
            .ok()
            .map(|c| c.trim().to_string()),
        files,
    }
}

/// Removes `spec` from the Hub cache: the whole repository for `ORG/REPO`; for
/// `ORG/REPO:FILE`, the file from every snapshot and the blobs no snapshot links to any
/// more (the repository's folder too once no snapshot holds a file). Returns the bytes
/// freed.
pub fn remove(spec: &HubSpec) -> Result<u64, RuntimeError> {
    let cache = hub_cache();
    let dir = cache.join(spec.folder());
    let missing = || {
        hub_err(format!(
            "{spec} is not in the Hugging Face cache ({}); `weft list` shows what is",
            cache.display()
        ))
    };
    if !dir.is_dir() {
        return Err(missing());
    }
    let Some(file) = &spec.file else {
        let freed = cached_repo(&spec.repo, &dir);
        remove_repo(&cache, spec, &dir)?;
        return Ok(freed.bytes + freed.partial_bytes);
    };
    let mut found = false;
    for s in fs::read_dir(dir.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = s.path().join(file);
        if p.symlink_metadata().is_ok() {
            fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
            found = true;
            // Empty folders the file was in go too (not the snapshot itself).
            let mut up = p.parent();
            while let Some(d) = up.filter(|d| *d != s.path()) {
                if fs::remove_dir(d).is_err() {
                    break;
                }
                up = d.parent();
            }
        }
    }
    if !found {
        return Err(missing());
    }
    // Blobs still linked from some snapshot stay.
    let mut linked = std::collections::BTreeSet::new();
    let mut any_file = false;
    for s in fs::read_dir(dir.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in files_under(&s.path()) {
            any_file = true;
            if let Ok(target) = fs::read_link(s.path().join(&f)) {
                if let Some(name) = target.file_name() {
                    linked.insert(name.to_owned());
                }
            }
        }
    }
    if !any_file {
        let freed = cached_repo(&spec.repo, &dir);
        remove_repo(&cache, spec, &dir)?;
        return Ok(freed.bytes + freed.partial_bytes);
    }
    let mut freed = 0;
    for b in fs::read_dir(dir.join("blobs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = b.file_name();
        if name.to_string_lossy().ends_with(".incomplete") || linked.contains(&name) {
            continue;
        }
        freed += b.metadata().map_or(0, |m| m.len());
        fs::remove_file(b.path()).map_err(|e| io_err(&b.path(), e))?;
    }
    // Snapshots left without a file go.
    for s in fs::read_dir(dir.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if files_under(&s.path()).is_empty() {
            let _ = fs::remove_dir_all(s.path());
        }
    }
    Ok(freed)
}

fn remove_repo(cache: &Path, spec: &HubSpec, dir: &Path) -> Result<(), RuntimeError> {
    fs::remove_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let _ = fs::remove_dir_all(cache.join(".locks").join(spec.folder()));
    Ok(())
}

/// Where a file's bytes are, as a HEAD request on its `resolve` URL tells.
struct Remote {
    commit: String,
    etag: String,
    size: u64,
    /// The URL to GET (an LFS file's CDN location, or the resolve URL).
    url: String,
}

/// A transfer attempt that failed.
enum Failure {
    /// Worth another attempt from where the partial file ends.
    Retry(String),
    Fatal(Box<RuntimeError>),
}

/// Attempts after the first that resume an interrupted transfer in the same pull.
const RETRIES: u32 = 3;

/// Percent-encodes a repository path for a URL (each `/`-separated part).
fn encode_path(file: &str) -> String {
    let mut out = String::new();
    for b in file.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An etag or commit the Hub gave, fit to be a file name.
fn checked_id(v: &str) -> Option<String> {
    let v = v.trim().trim_start_matches("W/").trim_matches('"');
    (!v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| v.to_string())
}

fn is_sha256(etag: &str) -> bool {
    etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit())
}

/// SHA-256 of a file, lowercase hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

struct Hub {
    endpoint: String,
    cache: PathBuf,
    /// The token and where it came from.
    token: Option<(String, String)>,
    /// Follows no redirect (HEAD requests: an LFS file's redirect carries its metadata).
    head: ureq::Agent,
    /// Follows redirects (the transfer), dropping the token on the way.
    get: ureq::Agent,
}

impl Hub {
    fn from_env() -> Hub {
        let agent = |redirects| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(redirects)
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .user_agent(format!("weft/{}", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Hub {
            endpoint: endpoint(),
            cache: hub_cache(),
            token: token(),
            head: agent(0),
            get: agent(5),
        }
    }

    fn repo_dir(&self, spec: &HubSpec) -> PathBuf {
        self.cache.join(spec.folder())
    }

    /// A request with the token when it goes to the endpoint (not to a CDN).
    fn request(
        &self,
        agent: &ureq::Agent,
        head: bool,
        url: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let r = match head {
            true => agent.head(url),
            false => agent.get(url),
        };
        let r = r.header("Accept-Encoding", "identity");
        match &self.token {
            Some((t, _)) if origin(url) == origin(&self.endpoint) => {
                r.header("Authorization", format!("Bearer {t}"))
            }
            _ => r,
        }
    }

    /// One line for an HTTP error status about `what`.
    fn status_error(&self, what: &str, url: &str, status: u16, code: Option<&str>) -> RuntimeError {
        let reason = ureq::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let head = format!("{what}: HTTP {status} {reason} from {url}");
        let repo = what.split(':').next().unwrap_or(what);
        let why = match status {
            401 => match &self.token {
                None => format!(
                    "{repo} is private or gated, or does not exist; set HF_TOKEN to a token that may read it"
                ),
                Some((_, source)) => format!(
                    "{source} was refused: {repo} is private or gated, or does not exist"
                ),
            },
            403 => format!(
                "the token may not read {repo} (a gated model wants its terms accepted on its Hub page)"
            ),
            404 => match code {
                Some("RepoNotFound") => format!("repository {repo} not found"),
                Some("EntryNotFound") => match what.split_once(':') {
                    Some((_, f)) => format!("{repo} has no file {f}"),
                    None => "file not found".to_string(),
                },
                Some("RevisionNotFound") => format!("{repo} has no revision main"),
                _ => "repository or file not found".to_string(),
            },
            _ => return hub_err(head),
        };
        hub_err(format!("{head}: {why}"))
    }

    /// The commit, etag, size and download URL of `file` at `revision`.
    fn remote(&self, what: &str, revision: &str, file: &str) -> Result<Remote, RuntimeError> {
        let mut url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            what.split(':').next().unwrap_or(what),
            revision,
            encode_path(file)
        );
        for _ in 0..5 {
            let resp = self
                .request(&self.head, true, &url)
                .call()
                .map_err(|e| hub_err(format!("{what}: cannot reach {}: {e}", self.endpoint)))?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if status >= 400 {
                return Err(self.status_error(
                    what,
                    &url,
                    status,
                    header("x-error-code").as_deref(),
                ));
            }
            let location = header("location");
            // A relative redirect (a renamed repository) is followed; an absolute one
            // is an LFS file's CDN location, and this response carries its metadata.
            if (300..400).contains(&status) {
                match &location {
                    Some(l) if l.starts_with('/') => {
                        url = format!("{}{l}", origin(&url));
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        return Err(hub_err(format!(
                            "{what}: HTTP {status} from {url} without a Location"
                        )))
                    }
                }
            }
            let bad = |h: &str| {
                hub_err(format!(
                    "{what}: {url} answered without a usable {h} header (is HF_ENDPOINT a Hugging Face Hub?)"
                ))
            };
            let commit = header("x-repo-commit")
                .and_then(|c| checked_id(&c))
                .ok_or_else(|| bad("X-Repo-Commit"))?;
            let etag = header("x-linked-etag")
                .or_else(|| header("etag"))
                .and_then(|e| checked_id(&e))
                .ok_or_else(|| bad("ETag"))?;
            let size = header("x-linked-size")
                .or_else(|| header("content-length"))
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| bad("Content-Length"))?;
            let url = match location {
                Some(l) if (300..400).contains(&status) => l,
                _ => url,
            };
            return Ok(Remote {
                commit,
                etag,
                size,
                url,
            });
        }
        Err(hub_err(format!("{what}: too many redirects from {url}")))
    }

    /// Fetches one file of a repository at `revision` into the cache (unless its blob is
    /// there) and links it into its snapshot: the commit and the snapshot path.
    fn fetch(
        &self,
        spec: &HubSpec,
        revision: &str,
        file: &str,
        events: &mut dyn FnMut(PullEvent),
    ) -> Result<(String, PathBuf), RuntimeError> {
        let what = format!("{}:{file}", spec.repo);
        let remote = self.remote(&what, revision, file)?;
        let dir = self.repo_dir(spec);
        let blobs = dir.join("blobs");
        let blob = blobs.join(&remote.etag);
        let complete = |b: &Path| fs::metadata(b).is_ok_and(|m| m.len() == remote.size);
        if !complete(&blob) {
            fs::create_dir_all(&blobs).map_err(|e| io_err(&blobs, e))?;
            let locks = self.cache.join(".locks").join(spec.folder());
            fs::create_dir_all(&locks).map_err(|e| io_err(&locks, e))?;
            let lock_path = locks.join(format!("{}.lock", remote.etag));
            let lock = File::create(&lock_path).map_err(|e| io_err(&lock_path, e))?;
            if lock.try_lock().is_err() {
                events(PullEvent::Message(&format!(
                    "{what}: another download of it is under way; waiting for it"
                )));
                lock.lock().map_err(|e| io_err(&lock_path, e))?;
            }
            if !complete(&blob) {
                self.transfer(&what, file, &remote, &blob, events)?;
            }
        } else {
            events(PullEvent::Message(&format!(
                "{what}: already in the cache ({})",
                human_bytes(remote.size)
            )));
        }
        let pointer = dir.join("snapshots").join(&remote.commit).join(file);
        link(&blob, &pointer, file).map_err(|e| io_err(&pointer, e))?;
        Ok((remote.commit, pointer))
    }

    /// Downloads into `<blob>.incomplete`, resuming, then checks and renames it.
    fn transfer(
        &self,
        what: &str,
        file: &str,
        remote: &Remote,
        blob: &Path,
        events: &mut dyn FnMut(PullEvent),
    ) -> Result<(), RuntimeError> {
        let part = blob.with_file_name(format!("{}.incomplete", remote.etag));
        let mut retries = 0;
        loop {
            match self.transfer_once(what, file, remote, &part, events) {
                Ok(()) => break,
                Err(Failure::Fatal(e)) => return Err(*e),
                Err(Failure::Retry(why)) if retries < RETRIES => {
                    retries += 1;
                    events(PullEvent::Message(&format!(
                        "{what}: {why}; resuming (attempt {} of {})",
                        retries + 1,
                        RETRIES + 1
                    )));
                    std::thread::sleep(Duration::from_millis(250 * u64::from(retries)));
                }
                Err(Failure::Retry(why)) => {
                    let have = fs::metadata(&part).map_or(0, |m| m.len());
                    return Err(hub_err(format!(
                        "{what}: the download was interrupted ({why}) at {have} of {} bytes, {} times; \
                         the partial file {} is kept: run the pull again to resume",
                        remote.size,
                        RETRIES + 1,
                        part.display()
                    )));
                }
            }
        }
        let len = fs::metadata(&part).map_err(|e| io_err(&part, e))?.len();
        if len != remote.size {
            let _ = fs::remove_file(&part);
            return Err(hub_err(format!(
                "{what}: the download is {len} bytes, not the {} the Hub gives; it was removed",
                remote.size
            )));
        }
        if is_sha256(&remote.etag) {
            let got = sha256_file(&part).map_err(|e| io_err(&part, e))?;
            if !got.eq_ignore_ascii_case(&remote.etag) {
                let _ = fs::remove_file(&part);
                return Err(hub_err(format!(
                    "{what}: sha256 mismatch: the Hub gives {}, the download is {got}; it was removed",
                    remote.etag
                )));
            }
            events(PullEvent::Message(&format!(
                "{what}: {}, sha256 ok",
                human_bytes(len)
            )));
        } else {
            events(PullEvent::Message(&format!(
                "{what}: {} (the Hub gives no sha256 for it; size checked)",
                human_bytes(len)
            )));
        }
        fs::rename(&part, blob).map_err(|e| io_err(blob, e))
    }

    /// One request: appends to `part` from where it ends.
    fn transfer_once(
        &self,
        what: &str,
        file: &str,
        remote: &Remote,
        part: &Path,
        events: &mut dyn FnMut(PullEvent),
    ) -> Result<(), Failure> {
        let fatal = |e: std::io::Error| Failure::Fatal(Box::new(io_err(part, e)));
        let mut out = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(part)
            .map_err(fatal)?;
        let mut start = out.metadata().map_err(fatal)?.len();
        if start > remote.size {
            out.set_len(0).map_err(fatal)?;
            start = 0;
        }
        if start == remote.size {
            return Ok(());
        }
        let mut req = self.request(&self.get, false, &remote.url);
        if start > 0 {
            req = req.header("Range", format!("bytes={start}-"));
        }
        let resp = req
            .call()
            .map_err(|e| Failure::Retry(format!("the request failed: {e}")))?;
        let status = resp.status().as_u16();
        match status {
            206 => {
                let range = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let want = format!("bytes {start}-");
                if !range.starts_with(&want) || !range.ends_with(&format!("/{}", remote.size)) {
                    out.set_len(0).map_err(fatal)?;
                    return Err(Failure::Retry(format!(
                        "asked for bytes {start}-, got Content-Range '{range}'; starting over"
                    )));
                }
            }
            200 => {
                if start > 0 {
                    events(PullEvent::Message(&format!(
                        "{what}: the server ignored the range request; starting from byte 0"
                    )));
                    out.set_len(0).map_err(fatal)?;
                    start = 0;
                }
            }
            416 => {
                out.set_len(0).map_err(fatal)?;
                return Err(Failure::Retry(
                    "HTTP 416 for the rest; starting over".into(),
                ));
            }
            500..=599 | 408 | 429 => return Err(Failure::Retry(format!("HTTP {status}"))),
            _ => {
                let code = resp
                    .headers()
                    .get("x-error-code")
                    .and_then(|v| v.to_str().ok());
                return Err(Failure::Fatal(Box::new(self.status_error(
                    what,
                    &remote.url,
                    status,
                    code,
                ))));
            }
        }
        out.seek(SeekFrom::Start(start)).map_err(fatal)?;
        events(PullEvent::Start {
            file,
            bytes: remote.size,
            resumed: start,
        });
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = start;
        let cut = loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) => break Some(e.to_string()),
            };
            if done + n as u64 > remote.size {
                drop(out);
                let _ = fs::remove_file(part);
                events(PullEvent::End { file, ok: false });
                return Err(Failure::Fatal(Box::new(hub_err(format!(
                    "{what}: the server sent more than the {} bytes the Hub gives; the download was removed",
                    remote.size
                )))));
            }
            if let Err(e) = out.write_all(&buf[..n]) {
                events(PullEvent::End { file, ok: false });
                return Err(fatal(e));
            }
            done += n as u64;
            events(PullEvent::Advance { done });
        };
        out.sync_all().map_err(fatal)?;
        let ok = done == remote.size;
        events(PullEvent::End { file, ok });
        match (ok, cut) {
            (true, _) => Ok(()),
            (false, Some(e)) => Err(Failure::Retry(format!("{e} after {done} bytes"))),
            (false, None) => Err(Failure::Retry(format!(
                "the connection closed after {done} bytes"
            ))),
        }
    }

    /// `refs/main` ← `commit`, written through a temporary file and a rename.
    fn write_ref(&self, spec: &HubSpec, commit: &str) -> Result<(), RuntimeError> {
        let refs = self.repo_dir(spec).join("refs");
        fs::create_dir_all(&refs).map_err(|e| io_err(&refs, e))?;
        let tmp = refs.join(format!(".main.{}.tmp", std::process::id()));
        fs::write(&tmp, commit)
            .and_then(|_| fs::rename(&tmp, refs.join("main")))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                io_err(&refs.join("main"), e)
            })
    }

    /// A bare `ORG/REPO`: lists its files (hf-hub), picks what to fetch, fetches it at
    /// the listed commit.
    fn pull_repo(
        &self,
        spec: &HubSpec,
        events: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, RuntimeError> {
        let repo = &spec.repo;
        let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(self.cache.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.as_ref().map(|(t, _)| t.clone()))
            .with_progress(false)
            .with_user_agent("weft", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| hub_err(format!("{repo}: {e}")))?;
        let api_repo = api.repo(hf_hub::Repo::with_revision(
            repo.clone(),
            hf_hub::RepoType::Model,
            "main".into(),
        ));
        let info = api_repo.info().map_err(|e| {
            let url = format!("{}/api/models/{repo}/revision/main", self.endpoint);
            match e {
                hf_hub::api::sync::ApiError::RequestError(re) => match *re {
                    ureq::Error::StatusCode(404) => hub_err(format!(
                        "{repo}: HTTP 404 Not Found from {url}: repository {repo} not found"
                    )),
                    ureq::Error::StatusCode(s) => self.status_error(repo, &url, s, None),
                    other => hub_err(format!("{repo}: cannot reach {}: {other}", self.endpoint)),
                },
                other => hub_err(format!("{repo}: listing its files at {url}: {other}")),
            }
        })?;
        let commit = checked_id(&info.sha)
            .ok_or_else(|| hub_err(format!("{repo}: the Hub gave an unusable commit")))?;
        let names: Vec<String> = info
            .siblings
            .into_iter()
            .map(|s| s.rfilename)
            .filter(|f| valid_file(f))
            .collect();
        let layout = choose(repo, &names).map_err(hub_err)?;
        let snapshot = self.repo_dir(spec).join("snapshots").join(&commit);
        let path = match layout {
            Layout::Gguf { file, why } => {
                events(PullEvent::Message(&format!("{repo}: taking {file}, {why}")));
                self.fetch(spec, &commit, &file, events)?.1
            }
            Layout::Hf { files, index } => {
                events(PullEvent::Message(&format!(
                    "{repo}: an HF-format model; taking {}{}",
                    files.join(", "),
                    if index {
                        " and the shards it names"
                    } else {
                        ""
                    }
                )));
                for f in &files {
                    self.fetch(spec, &commit, f, events)?;
                }
                if index {
                    let shards = index_shards(&snapshot.join(INDEX))
                        .map_err(|e| hub_err(format!("{repo}: {e}")))?;
                    if let Some(s) = shards.iter().find(|s| !names.contains(s)) {
                        return Err(hub_err(format!(
                            "{repo}: {INDEX} names {s}, which the repository does not hold"
                        )));
                    }
                    for s in &shards {
                        self.fetch(spec, &commit, s, events)?;
                    }
                }
                snapshot
            }
        };
        self.write_ref(spec, &commit)?;
        Ok(path)
    }
}

/// Links `pointer` to `blob` (a relative symbolic link, as the Hub's tools make),
/// replacing what was there through a temporary name and a rename.
fn link(blob: &Path, pointer: &Path, file: &str) -> std::io::Result<()> {
    let parent = pointer.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let name = pointer.file_name().unwrap_or_default().to_string_lossy();
    let tmp = parent.join(format!(".{name}.{}.weft-tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    #[cfg(unix)]
    {
        // snapshots/<commit>/<file>: up two folders, and one for each of file's own.
        let mut target = PathBuf::new();
        for _ in 0..2 + file.matches('/').count() {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        std::os::unix::fs::symlink(&target, &tmp)?;
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        if fs::hard_link(blob, &tmp).is_err() {
            fs::copy(blob, &tmp)?;
        }
    }
    fs::rename(&tmp, pointer).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn specs() {
        let s = HubSpec::parse("bartowski/SmolLM2-135M-Instruct-GGUF:SmolLM2.Q4_K_M.gguf").unwrap();
        assert_eq!(s.repo, "bartowski/SmolLM2-135M-Instruct-GGUF");
        assert_eq!(s.file.as_deref(), Some("SmolLM2.Q4_K_M.gguf"));
        assert_eq!(s.folder(), "models--bartowski--SmolLM2-135M-Instruct-GGUF");
        assert_eq!(
            HubSpec::parse("org/repo:sub/f.gguf")
                .unwrap()
                .file
                .as_deref(),
            Some("sub/f.gguf")
        );
        for bad in [
            "smollm2-135m",
            "a/b/c",
            "./x",
            "/abs/x",
            "~/x",
            "org/repo:",
            "org/repo:../x",
            "org/repo:a//b",
            "org/..:x",
            "../repo",
            "org/re po",
        ] {
            assert_eq!(HubSpec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn picks_a_gguf() {
        let pick = |n: &[&str]| match choose("o/r", &names(n)) {
            Ok(Layout::Gguf { file, .. }) => Ok(file),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(
            pick(&["README.md", "m-Q8_0.gguf", "m-Q4_K_M.gguf", "m-f16.gguf"]).unwrap(),
            "m-Q4_K_M.gguf"
        );
        assert_eq!(
            pick(&["m.q4_k_m.gguf", "m.Q4_K_S.gguf"]).unwrap(),
            "m.q4_k_m.gguf"
        );
        // Q4_0 is not a prefix match of Q4_0_4_4; mmproj files are never the model.
        assert_eq!(
            pick(&["m-Q4_0_4_4.gguf", "m-Q8_0.gguf", "mmproj-Q4_0.gguf"]).unwrap(),
            "m-Q8_0.gguf"
        );
        assert_eq!(pick(&["only-F32.gguf"]).unwrap(), "only-F32.gguf");
        let e = pick(&["m-F16.gguf", "m-F32.gguf"]).unwrap_err();
        assert!(
            e.contains("m-F16.gguf, m-F32.gguf") && e.contains("o/r:FILE"),
            "{e}"
        );
        let e = pick(&[
            "m-Q4_K_M-00001-of-00002.gguf",
            "m-Q4_K_M-00002-of-00002.gguf",
        ])
        .unwrap_err();
        assert!(e.contains("split"), "{e}");
        let e = pick(&["README.md"]).unwrap_err();
        assert!(e.contains("neither"), "{e}");
    }

    #[test]
    fn picks_hf_files() {
        let l = choose(
            "o/r",
            &names(&[
                "config.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                INDEX,
                "tokenizer.json",
                "README.md",
                "onnx/model.onnx",
            ]),
        )
        .unwrap();
        assert_eq!(
            l,
            Layout::Hf {
                files: names(&["config.json", "tokenizer.json", INDEX]),
                index: true
            }
        );
        let l = choose("o/r", &names(&["config.json", "model.safetensors"])).unwrap();
        assert_eq!(
            l,
            Layout::Hf {
                files: names(&["config.json", "model.safetensors"]),
                index: false
            }
        );
        assert!(choose(
            "o/r",
            &names(&["config.json", "a.safetensors", "b.safetensors"])
        )
        .is_err());
    }

    #[test]
    fn sizes_and_urls() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(98362432), "93.8 MiB");
        assert_eq!(encode_path("sub dir/a+b.gguf"), "sub%20dir/a%2Bb.gguf");
        assert_eq!(origin("http://127.0.0.1:8080/a/b"), "http://127.0.0.1:8080");
        assert_eq!(checked_id("W/\"abc123\"").as_deref(), Some("abc123"));
        assert_eq!(checked_id("\"../x\""), None);
    }
}
