//! Opening a model (a path or a short name of a fetched one), compiling it into a
//! plan, and binding a plan to a backend.

use crate::chat::{ChatError, ChatTemplate};
use crate::engine::{BackendKind, Engine, GraphSession};
use crate::hub::{self, HubSpec, PullEvent};
use crate::quant_mix::QuantMix;
use crate::tokenizer::Tokenizer;
use crate::RuntimeError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use weft_backend::{activation_bytes, plan_memory, LowerOptions};
use weft_curated::Curated;
use weft_families::{Expanded, ModelInfo, SourceKind, TensorMeta};
use weft_formats::ModelSource;
use weft_ir::{DType, MetaValue, ModelStamp, Op, Plan, PLAN_FORMAT_VERSION};
use weft_passes::PassSelection;
use weft_reference::host::cache_rows;

/// The script that fetches short-named models: `$WEFT_FETCH_SCRIPT`, else
/// `scripts/fetch_model.py` in the executable's folder or up to three folders above it (a
/// build tree's `target/release/weft` finds the repository's), else
/// `share/weft/fetch_model.py` beside an installed `bin/weft`. Nothing of the build machine is compiled in.
pub fn fetch_script() -> Result<PathBuf, RuntimeError> {
    if let Some(p) = std::env::var_os("WEFT_FETCH_SCRIPT").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return match p.is_file() {
            true => Ok(p),
            false => Err(RuntimeError::Fetch(format!(
                "WEFT_FETCH_SCRIPT is {}, which is not a file",
                p.display()
            ))),
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| RuntimeError::Fetch(format!("cannot locate this executable: {e}")))?;
    // target/release/weft and target/release/deps/<test> are three and four folders
    // below the repository; no further up.
    for dir in exe.ancestors().skip(1).take(4) {
        for candidate in [
            dir.join("scripts").join("fetch_model.py"),
            dir.join("share").join("weft").join("fetch_model.py"),
        ] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(RuntimeError::Fetch(format!(
        "the script that fetches short-named models (scripts/fetch_model.py) is not in the \
         folders above {}: set WEFT_FETCH_SCRIPT to its path (or name the model as a file or \
         ORG/REPO[:FILE] on the Hub)",
        exe.display()
    )))
}

/// weft's cache: `$WEFT_HOME`, else `~/.cache/weft`.
pub fn weft_home() -> PathBuf {
    if let Some(h) = std::env::var_os("WEFT_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("weft")
}

/// Where a short-named model lives once fetched.
pub fn cached_model_path(name: &str) -> PathBuf {
    weft_home().join("models").join(format!("{name}.gguf"))
}

/// Runs the fetch script with `arg`; its stdout. Its progress and errors go to stderr.
fn run_fetch_script(arg: &str) -> Result<String, RuntimeError> {
    let script = fetch_script()?;
    let out = Command::new("python3")
        .arg(&script)
        .arg(arg)
        .env("WEFT_HOME", weft_home())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            RuntimeError::Fetch(format!("could not run python3 {}: {e}", script.display()))
        })?;
    if !out.status.success() {
        return Err(RuntimeError::Fetch(format!(
            "{} {arg} failed ({})",
            script.display(),
            out.status
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The short names the fetch script knows, in its order (the first is the default
/// model). The table lives in the script, so no model name is compiled in.
pub fn short_names() -> Result<Vec<String>, RuntimeError> {
    Ok(run_fetch_script("--list")?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Whether `spec` can only be a short name: a bare word, not a path of any kind.
pub fn is_short_name(spec: &str) -> bool {
    !spec.is_empty()
        && spec
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Resolves `spec` to a file or directory: a path as it is; a short name (fetched by
/// the fetch script when missing, which reports on stderr itself); `ORG/REPO[:FILE]`
/// through the Hugging Face cache, pulled from the Hub when missing (see [`hub`]).
/// `progress` hears what is happening, a line at a time.
///
/// [`hub`]: crate::hub
pub fn resolve(spec: &str, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, RuntimeError> {
    resolve_with(spec, &mut |e: PullEvent| {
        if let Some(line) = e.line() {
            progress(&line)
        }
    })
}

/// [`resolve`], reporting a download's progress as events (for a progress bar).
pub fn resolve_with(
    spec: &str,
    events: &mut dyn FnMut(PullEvent),
) -> Result<PathBuf, RuntimeError> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Some(hub_spec) = HubSpec::parse(spec) {
        if let Some(p) = hub::cached(&hub_spec) {
            return Ok(p);
        }
        events(PullEvent::Message(&format!(
            "{spec} is neither a file here nor in the Hugging Face cache ({}); pulling it from {}",
            hub::hub_cache().display(),
            hub::endpoint()
        )));
        return hub::pull(&hub_spec, events);
    }
    if !is_short_name(spec) {
        return Ok(path.to_path_buf());
    }
    let cached = cached_model_path(spec);
    if cached.exists() {
        return Ok(cached);
    }
    let known = short_names()?;
    if !known.iter().any(|k| k == spec) {
        return Err(RuntimeError::Fetch(format!(
            "'{spec}' is neither a file nor a directory, nor a model the fetch script knows ({}), nor ORG/REPO[:FILE] on the Hub",
            known.join(", ")
        )));
    }
    events(PullEvent::Message(&format!(
        "{spec} is not in the cache ({}); fetching it",
        cached.display()
    )));
    let fetched = PathBuf::from(run_fetch_script(spec)?.trim());
    if !fetched.exists() {
        return Err(RuntimeError::Fetch(format!(
            "the fetch script reported {}, which does not exist",
            fetched.display()
        )));
    }
    Ok(fetched)
}

/// The context a model was trained for: its template's `context` (0: not stated).
fn trained_context(hparams: &BTreeMap<String, MetaValue>) -> Option<usize> {
    let c = hparams.get("context").and_then(MetaValue::as_u64)?;
    (c > 0).then_some(c as usize)
}

/// Refuses sessions (and budgets) of more positions than the model was trained for.
pub(crate) fn check_context(
    hparams: &BTreeMap<String, MetaValue>,
    ctx: usize,
) -> Result<(), RuntimeError> {
    match trained_context(hparams) {
        Some(trained) if ctx > trained => Err(RuntimeError::ContextTooLong { ctx, trained }),
        _ => Ok(()),
    }
}

/// Adapts the loader's view of a model to what the family expander reads; for a bare
/// config.json, the quantisation whose stored types the template's tensors are assumed to have.
struct Info<'a>(&'a ModelSource, Option<QuantMix>);

impl ModelInfo for Info<'_> {
    fn source_kind(&self) -> SourceKind {
        match self.0.kind {
            weft_formats::SourceKind::Gguf => SourceKind::Gguf,
            weft_formats::SourceKind::Hf => SourceKind::Hf,
        }
    }

    fn assumed_dtype(
        &self,
        role: &str,
        layer: Option<usize>,
        n_layers: usize,
        shape: &[usize],
    ) -> Option<DType> {
        self.1.map(|m| m.dtype(role, layer, n_layers, shape))
    }

    fn architecture(&self) -> &str {
        &self.0.architecture
    }

    fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.0.meta(key)
    }

    fn tensor_meta(&self, name: &str) -> Option<TensorMeta> {
        self.0.tensor(name).map(|t| TensorMeta {
            dtype: t.dtype,
            type_name: t.type_name.clone(),
            shape: t.shape.clone(),
        })
    }

    fn origin(&self) -> String {
        self.0.path.display().to_string()
    }
}

/// A compiled model: the plan and what it took to make it.
pub struct Compiled {
    pub expanded: Expanded,
    /// The expanded graph as text, before any pass.
    pub expanded_text: String,
    /// Nodes of the expanded graph (weights included).
    pub nodes_expanded: usize,
    pub plan: Plan,
    pub compile_ms: f64,
}

impl Compiled {
    /// Bytes of the host backends' f32 activations at `seq` positions: `(arena, naive)`,
    /// the arena as their backend stage lays it out (`memory`), naive one buffer a value.
    pub fn activation_bytes(&self, seq: usize, memory: bool) -> (usize, usize) {
        let plan = memory.then(|| plan_memory(&self.plan, 4).0);
        activation_bytes(&self.plan, plan.as_ref(), seq, 4)
    }
}

/// Memory a plan needs, by kind (bytes). The KV cache is f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Weights in their stored types, each tensor the plan reads counted once.
    pub weight_bytes: u64,
    /// Keys and values for every attention layer at the given context, as the host
    /// backends keep them (a sliding-window layer's ring: window + 512 positions).
    pub kv_bytes: u64,
    /// Activation arena for a one-position (decode) step.
    pub arena_decode_bytes: u64,
    /// Activation arena for a prefill of the whole context in one step.
    pub arena_prefill_bytes: u64,
}

/// An opened model with its tokenizer (when the source has one).
pub struct Model {
    /// The path or short name it was opened from.
    pub spec: String,
    pub source: ModelSource,
    pub tokenizer: Option<Tokenizer>,
    /// For a bare config.json: the file type its tensors are assumed stored in.
    assumed: Option<QuantMix>,
}

impl Model {
    /// Opens a `.gguf` file, an HF directory, a short name or `ORG/REPO[:FILE]` on the
    /// Hub (fetched when missing).
    pub fn open(spec: &str, progress: &mut dyn FnMut(&str)) -> Result<Model, RuntimeError> {
        Model::open_with(spec, &mut |e: PullEvent| {
            if let Some(line) = e.line() {
                progress(&line)
            }
        })
    }

    /// [`Model::open`], reporting a download's progress as events (for a progress bar).
    pub fn open_with(spec: &str, events: &mut dyn FnMut(PullEvent)) -> Result<Model, RuntimeError> {
        let path = resolve_with(spec, events)?;
        let source = ModelSource::open(&path)?;
        let tokenizer = match (&source.kind, &source.tokenizer_json) {
            (weft_formats::SourceKind::Gguf, _) => Tokenizer::from_gguf(&source.metadata)?,
            (weft_formats::SourceKind::Hf, Some(p)) => Some(Tokenizer::from_file(p)?),
            (weft_formats::SourceKind::Hf, None) => None,
        };
        for w in tokenizer.iter().flat_map(|t| t.warnings()) {
            events(PullEvent::Message(w));
        }
        Ok(Model {
            spec: spec.to_string(),
            source,
            tokenizer,
            assumed: None,
        })
    }

    /// For a bare config.json: assume its tensors stored as `mix` (e.g. Q4_K_M), so that
    /// it compiles and [`Model::budget`] gives what such a file would need. Files with
    /// weights keep their own types.
    pub fn assume_quant(&mut self, mix: QuantMix) {
        self.assumed = Some(mix);
    }

    /// Which weights these are, as a plan records them.
    pub fn stamp(&self) -> ModelStamp {
        ModelStamp {
            source: self.spec.clone(),
            file_bytes: self.source.file_bytes,
            tensor_table_hash: self.source.tensor_table_hash(),
        }
    }

    /// The family template's graph for this model, before any pass.
    pub fn expand(&self) -> Result<Expanded, RuntimeError> {
        let assumed = match (self.source.config_only(), self.assumed) {
            (false, _) => None,
            (true, Some(m)) => Some(m),
            (true, None) => {
                return Err(RuntimeError::NoWeights(format!(
                    "{} (no quantisation to assume was given)",
                    self.source.path.display()
                )))
            }
        };
        Ok(weft_families::expand(&Info(&self.source, assumed))?)
    }

    /// Expands and runs the selected portable passes: a plan any backend can lower
    /// (unless it declines a fused form; see [`Model::compile_for`]).
    pub fn compile(&self, passes: &PassSelection) -> Result<Compiled, RuntimeError> {
        self.compile_with(passes, None, |_, _| {})
    }

    /// A plan for `backend`: the selected passes less the fusions it declines.
    pub fn compile_for(
        &self,
        passes: &PassSelection,
        backend: BackendKind,
    ) -> Result<Compiled, RuntimeError> {
        self.compile_with(passes, Some(backend), |_, _| {})
    }

    /// Like [`Model::compile_for`]; `after(pass, graph)` sees the graph after each pass.
    pub fn compile_with(
        &self,
        passes: &PassSelection,
        backend: Option<BackendKind>,
        after: impl FnMut(&str, &weft_ir::Graph),
    ) -> Result<Compiled, RuntimeError> {
        let t0 = Instant::now();
        let expanded = self.expand()?;
        let mut graph = expanded.graph.clone();
        weft_passes::infer_shapes(&mut graph)?;
        let expanded_text = graph.to_text();
        let nodes_expanded = graph.len();
        // The target backend's declined fusions stay unfused.
        let declines = backend.map_or(&[][..], |b| b.backend().declined_fusions());
        let (passes, declined) = passes.declining(declines);
        let mut plan = weft_passes::build_plan(
            graph,
            &passes,
            &expanded.family,
            self.stamp(),
            expanded.hparams.clone(),
            after,
        )?;
        plan.pass_log.splice(0..0, declined);
        Ok(Compiled {
            expanded,
            expanded_text,
            nodes_expanded,
            plan,
            compile_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The memory a plan for this model needs at `ctx` positions, computed from the
    /// tensor table and the plan without allocating anything.
    pub fn budget(&self, ctx: usize) -> Result<Budget, RuntimeError> {
        let plan = self.compile(&PassSelection::all())?.plan;
        check_context(&plan.hparams, ctx)?;
        // Each tensor the plan reads, once (tied weights count once).
        let mut read = std::collections::BTreeMap::new();
        for st in &plan.steps {
            if let weft_ir::Op::Weight {
                tensor,
                dtype,
                shape,
                ..
            } = &st.node.op
            {
                read.insert(
                    tensor.clone(),
                    dtype.tensor_bytes(shape).unwrap_or(0) as u64,
                );
            }
        }
        let kv_bytes = plan
            .kv_layout()
            .iter()
            .map(|l| {
                [cache_rows(l, ctx), l.n_kv_heads, l.head_dim, 4]
                    .iter()
                    .fold(2u64, |a, &d| a.saturating_mul(d as u64))
            })
            .fold(0u64, u64::saturating_add);
        // The f32 activations of the host backends, in their arena.
        let (memory, _) = plan_memory(&plan, 4);
        let arena = |seq| activation_bytes(&plan, Some(&memory), seq, 4).0 as u64;
        Ok(Budget {
            weight_bytes: read.values().fold(0, |a: u64, &b| a.saturating_add(b)),
            kv_bytes,
            arena_decode_bytes: arena(1),
            arena_prefill_bytes: arena(ctx),
        })
    }

    /// Checks that a plan was compiled for these weights.
    pub fn check_plan(&self, plan: &Plan) -> Result<(), RuntimeError> {
        if plan.format_version != PLAN_FORMAT_VERSION {
            return Err(RuntimeError::PlanMismatch(format!(
                "plan format version {} is not the version this weft reads ({PLAN_FORMAT_VERSION})",
                plan.format_version
            )));
        }
        let mine = self.stamp();
        if plan.model.tensor_table_hash != mine.tensor_table_hash
            || plan.model.file_bytes != mine.file_bytes
        {
            return Err(RuntimeError::PlanMismatch(format!(
                "the plan was compiled for {} ({} bytes, tensor table {}), but {} is {} bytes with tensor table {}",
                plan.model.source,
                plan.model.file_bytes,
                plan.model.tensor_table_hash,
                self.source.path.display(),
                mine.file_bytes,
                mine.tensor_table_hash
            )));
        }
        Ok(())
    }

    /// Runs more passes on a written plan (they add to what compile ran): a plan
    /// compiled with `--passes none` can be optimised at `exec`.
    pub fn reoptimize(
        &self,
        plan: &Plan,
        passes: &PassSelection,
        backend: BackendKind,
    ) -> Result<Plan, RuntimeError> {
        self.check_plan(plan)?;
        weft_backend::validate_plan(plan)?;
        let mut graph = plan.to_graph();
        weft_passes::infer_shapes(&mut graph)?;
        let (passes, declined) = passes.declining(backend.backend().declined_fusions());
        let mut out = weft_passes::build_plan(
            graph,
            &passes,
            &plan.family,
            plan.model.clone(),
            plan.hparams.clone(),
            |_, _| {},
        )?;
        out.pass_log.splice(0..0, declined);
        Ok(out)
    }

    /// Lowers a plan onto `backend` with this model's weights (checked against the
    /// plan's stamp); the engine opens sessions.
    pub fn engine(
        &self,
        plan: Plan,
        backend: BackendKind,
        options: &LowerOptions,
    ) -> Result<Engine, RuntimeError> {
        self.runnable()?;
        self.check_plan(&plan)?;
        // The plan is untrusted until the backend validates it: look the input up.
        let embed = plan.steps.iter().find_map(|st| match st.node.op {
            Op::TokenEmbed => st.inputs.first().and_then(|&w| plan.steps.get(w)),
            _ => None,
        });
        if let Some(Op::Weight { tensor, shape, .. }) = embed.map(|st| &st.node.op) {
            self.check_vocab(tensor, shape.first().copied().unwrap_or(0))?;
        }
        Ok(Engine::new(backend.backend().lower(
            plan,
            &self.source,
            options,
        )?))
    }

    /// One session of a plan on `backend` with room for `max_ctx` positions (an engine
    /// of its own; open an [`Engine`] to share the weights between sessions).
    pub fn session(
        &self,
        backend: BackendKind,
        plan: Plan,
        max_ctx: usize,
    ) -> Result<GraphSession, RuntimeError> {
        self.engine(plan, backend, &LowerOptions::default())?
            .session(max_ctx)
    }

    /// The hand-written decoder over the same weights.
    pub fn curated(&self, max_ctx: usize) -> Result<Curated, RuntimeError> {
        self.runnable()?;
        let curated = Curated::new(&self.source, max_ctx)?;
        let (tensor, rows) = curated.embedding();
        self.check_vocab(tensor, rows)?;
        Ok(curated)
    }

    /// The context the model was trained for, where its template reads one.
    pub fn trained_context(&self) -> Option<usize> {
        trained_context(&self.expand().ok()?.hparams)
    }

    /// Refuses a tokenizer that can produce ids past the embedding's `rows` (one
    /// smaller than the embedding is common: padded vocabularies).
    fn check_vocab(&self, tensor: &str, rows: usize) -> Result<(), RuntimeError> {
        match &self.tokenizer {
            Some(t) if t.vocab_size() > rows => Err(RuntimeError::VocabMismatch {
                tokens: t.vocab_size(),
                tensor: tensor.to_string(),
                rows,
            }),
            _ => Ok(()),
        }
    }

    fn runnable(&self) -> Result<(), RuntimeError> {
        match self.source.config_only() {
            true => Err(RuntimeError::NoWeights(
                self.source.path.display().to_string(),
            )),
            false => Ok(()),
        }
    }

    /// The token ids that end generation (EOS, end of turn), from the tokenizer.
    pub fn stop_ids(&self) -> Vec<u32> {
        self.tokenizer
            .as_ref()
            .map(|t| t.eos_ids())
            .unwrap_or_default()
    }

    /// The chat template to render conversations with: `file` when given, else the
    /// model's own (GGUF `tokenizer.chat_template`; an HF directory's
    /// `chat_template.jinja` or `tokenizer_config.json`), else its family's default.
    pub fn chat_template(&self, file: Option<&Path>) -> Result<ChatTemplate, RuntimeError> {
        let tok = self.tokenizer()?;
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or_default();
        let meta_id = |key: &str| match self.source.meta(key) {
            Some(v) => v.as_u64().map(|i| i as u32),
            None => None,
        };
        let bos = text(tok.bos_id());
        let eos = text(meta_id("tokenizer.ggml.eos_token_id").or(tok.eos_ids().first().copied()));
        if let Some(f) = file {
            return Ok(ChatTemplate::from_file(f, bos, eos)?);
        }
        let dir = &self.source.path;
        let (bos, eos) = match hf_special_tokens(dir) {
            Some((b, e)) => (b.unwrap_or(bos), e.unwrap_or(eos)),
            None => (bos, eos),
        };
        let own = match self.source.kind {
            weft_formats::SourceKind::Gguf => {
                self.source.meta("tokenizer.chat_template").and_then(|v| {
                    v.as_str()
                        .map(|s| (s.to_string(), "tokenizer.chat_template".into()))
                })
            }
            weft_formats::SourceKind::Hf => hf_chat_template(dir),
        };
        if let Some((source, origin)) = own {
            let origin = format!("{}: {origin}", dir.display());
            return Ok(ChatTemplate::new(source, origin, bos, eos));
        }
        let expanded = self.expand()?;
        match expanded.chat_template.filter(|t| !t.trim().is_empty()) {
            Some(t) => Ok(ChatTemplate::new(
                t,
                format!(
                    "the {} family's default ({})",
                    expanded.family, expanded.template_file
                ),
                bos,
                eos,
            )),
            None => Err(ChatError::NoTemplate {
                model: dir.display().to_string(),
                family: expanded.family,
            }
            .into()),
        }
    }

    fn tokenizer(&self) -> Result<&Tokenizer, RuntimeError> {
        self.tokenizer
            .as_ref()
            .ok_or_else(|| RuntimeError::NoTokenizer(self.source.path.display().to_string()))
    }

    /// Decodes token ids to text.
    pub fn decode(&self, ids: &[u32]) -> Result<String, RuntimeError> {
        Ok(self.tokenizer()?.decode(ids))
    }

    /// Encodes a rendered chat template (special-token texts become those tokens).
    pub fn encode_chat(&self, text: &str) -> Result<Vec<u32>, RuntimeError> {
        Ok(self.tokenizer()?.encode_chat(text)?)
    }

    /// Encodes text, or fails clearly when the model has no tokenizer.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, RuntimeError> {
        Ok(self.tokenizer()?.encode(text)?)
    }
}

/// An HF directory's `tokenizer_config.json`, if it has one.
fn tokenizer_config(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// An HF directory's chat template: `chat_template.jinja`, else `tokenizer_config.json`'s
/// `chat_template` (a string, or named templates of which `default` is taken).
fn hf_chat_template(dir: &Path) -> Option<(String, String)> {
    if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Some((t, "chat_template.jinja".into()));
    }
    let origin = "tokenizer_config.json chat_template".to_string();
    match tokenizer_config(dir)?.get("chat_template")? {
        serde_json::Value::String(t) => Some((t.clone(), origin)),
        serde_json::Value::Array(named) => named
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(|t| (t.to_string(), origin)),
        _ => None,
    }
}

/// `tokenizer_config.json`'s `bos_token` and `eos_token` (strings, or `{"content": …}`).
fn hf_special_tokens(dir: &Path) -> Option<(Option<String>, Option<String>)> {
    let config = tokenizer_config(dir)?;
    let token = |key: &str| match &config[key] {
        serde_json::Value::String(s) => Some(s.clone()),
        v => v["content"].as_str().map(str::to_string),
    };
    Some((token("bos_token"), token("eos_token")))
}
