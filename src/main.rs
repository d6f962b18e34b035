//! The weft command line: a thin layer over `weft_runtime`.
//!
//! Invariant: only this crate prints. Results go to stdout, progress and errors to stderr.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_ir::Plan;
use weft_runtime::bench::{self, BenchEvent, BenchResult, BenchSpec};
use weft_runtime::chat::{Conversation, Message};
use weft_runtime::hub::{self, human_bytes, HubSpec, PullEvent};
use weft_runtime::quant_mix::QuantMix;
use weft_runtime::serve::{serve, ServeConfig};
use weft_runtime::tokenizer::StreamDecoder;
use weft_runtime::StopStrings;
use weft_runtime::{
    generate, parity, Activations, BackendKind, Forward, GenParams, KvType, LowerOptions, Model,
    PassSelection, SamplerParams,
};

/// weft compiles transformer language models into execution plans and runs them.
#[derive(Parser)]
#[command(name = "weft", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Compute threads (default: one per physical core).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Compile MODEL and generate from a prompt (compile + exec in one step).
    Run {
        /// A .gguf file, an HF directory (config.json + safetensors), ORG/REPO[:FILE] on
        /// the Hugging Face Hub (from its cache, pulled when missing; see `weft pull`), or
        /// a short name that scripts/fetch_model.py knows (--list), fetched into
        /// $WEFT_HOME when missing. Default: the first short name it lists.
        model: Option<String>,
        /// Optional passes: all, none, a list (tie-alias,dce) or removals (-dce).
        #[arg(long, allow_hyphen_values = true, default_value = "all")]
        passes: String,
        /// Generate with the hand-written curated decoder instead of the compiled plan
        /// (same generation loop; for cross-checks and memory comparisons).
        #[arg(long)]
        curated: bool,
        #[command(flatten)]
        gen: GenArgs,
    },
    /// Compile MODEL into a plan (the optimised graph and the pass log; weights by name).
    Compile {
        /// A .gguf file, an HF directory, or a short name.
        model: String,
        /// Where to write the plan (JSON).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print a graph instead of (or as well as) writing the plan.
        #[arg(long, value_enum)]
        dump: Option<Dump>,
        /// Print the graph (text) as it stands after the named pass.
        #[arg(long, value_name = "PASS")]
        dump_after: Option<String>,
        /// Print compile statistics: node counts, activation arena vs naive bytes, time.
        #[arg(long)]
        stats: bool,
        /// Positions per step at which --stats sizes activations (1: a decode step).
        #[arg(long, default_value_t = 1)]
        seq: usize,
        /// With --stats: one JSON object.
        #[arg(long)]
        json: bool,
        /// Optional passes: all, none, a list (tie-alias,cse,…,memory), or removals (-fuse-matmul,-cse).
        #[arg(long, allow_hyphen_values = true, default_value = "all")]
        passes: String,
        /// The backend the plan is for: its declined fusions stay unfused, and
        /// --dump lowered shows its backend stage.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
    },
    /// Chat with MODEL in the terminal: one line is one user turn, the answer streams
    /// back, and the KV cache carries over between turns (only the new turn is
    /// prefilled). `/reset` forgets the turns, `/exit` (or end of input) leaves. Works with
    /// piped stdin too.
    Chat {
        /// A .gguf file, an HF directory, or a short name (default: the first short name).
        model: Option<String>,
        /// A system message that opens the conversation.
        #[arg(long)]
        system: Option<String>,
        /// A Jinja chat template to use instead of the model's own (or its family's).
        #[arg(long, value_name = "FILE")]
        chat_template: Option<PathBuf>,
        /// Print the rendered prompt of each turn on stderr.
        #[arg(long)]
        show_prompt: bool,
        #[arg(long, allow_hyphen_values = true, default_value = "all")]
        passes: String,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Serve MODEL over HTTP with the OpenAI API: POST /v1/chat/completions and
    /// /v1/completions (streamed with SSE or not), GET /v1/models and GET /health (slots
    /// and prefix-cache figures). Up to --parallel requests generate at once, each on its
    /// own session of one shared engine; a new request takes the free session whose cache
    /// shares the longest prefix with its prompt and prefills only the rest. Up to --queue
    /// more wait; beyond that the answer is 503. SIGINT or SIGTERM shuts down, cancelling
    /// in-flight generations.
    Serve {
        /// A .gguf file, an HF directory, or a short name (default: the first short name).
        model: Option<String>,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// 0 picks a free port (the "listening on" line on stderr names it).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Requests generating at once (one session, with its own KV cache, each).
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Requests that may wait for a free session before new ones get 503.
        #[arg(long, default_value_t = 64)]
        queue: usize,
        /// KV-cache positions of each session (default: 4096, or the trained context if smaller).
        #[arg(long)]
        ctx: Option<usize>,
        /// The name clients give as "model" (default: the model's file name without extension).
        #[arg(long)]
        alias: Option<String>,
        /// Largest request body in bytes (larger ones get 413).
        #[arg(long, default_value_t = 1 << 20)]
        body_limit: usize,
        /// A Jinja chat template to use instead of the model's own (or its family's).
        #[arg(long, value_name = "FILE")]
        chat_template: Option<PathBuf>,
        #[arg(long, allow_hyphen_values = true, default_value = "all")]
        passes: String,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        #[command(flatten)]
        kernels: KernelArgs,
    },
    /// Download a model from the Hugging Face Hub into its cache (the layout of the
    /// Hub's own tools: $HF_HOME/hub, HF_ENDPOINT and HF_TOKEN honoured), resuming an
    /// interrupted download and checking SHA-256 where the Hub gives it. Prints the path
    /// to run on stdout.
    ///
    /// ORG/REPO:FILE fetches that file. A bare ORG/REPO fetches an HF-format model
    /// (config.json, tokenizer files, the safetensors and their index), or of a repo of
    /// GGUF files the Q4_K_M (else Q4_K_S, Q4_0, Q5_K_M, Q8_0, else the only one), and
    /// says which. A short name is fetched by scripts/fetch_model.py.
    Pull {
        /// ORG/REPO[:FILE], or a short name.
        model: String,
    },
    /// List the cached models: weft's own ($WEFT_HOME/models) and the Hugging Face
    /// cache's, with their sizes.
    List {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove a cached model: a short name's file, a Hub repository (ORG/REPO), or one
    /// file of it (ORG/REPO:FILE; its blob goes unless another snapshot links to it).
    Rm {
        /// A short name, ORG/REPO or ORG/REPO:FILE.
        model: String,
    },
    /// Run a plan written by `weft compile`.
    Exec {
        /// The plan file.
        plan: PathBuf,
        /// Weights to run it on (default: what the plan was compiled from). Must match
        /// the plan's recorded size and tensor table.
        #[arg(long)]
        weights: Option<String>,
        /// Run these passes on the plan before executing (they add to what compile ran;
        /// a plan compiled with --passes none can be optimised here).
        #[arg(long, allow_hyphen_values = true)]
        passes: Option<String>,
        #[command(flatten)]
        gen: GenArgs,
    },
    /// Print a model's metadata, tensors and which family template applies.
    /// MODEL may be a bare config.json with --budget: its tensors are then the template's
    /// shapes in the stored types of --quant.
    Inspect {
        /// The model (not needed with --gpu).
        #[arg(required_unless_present = "gpu")]
        model: Option<String>,
        /// Print the GPU adapter that `--backend gpu` uses, its features and limits.
        #[arg(long)]
        gpu: bool,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Print the memory a plan needs (weights in their stored types, f32 KV cache at
        /// --ctx, activation arena) without allocating it.
        #[arg(long)]
        budget: bool,
        /// Context length for --budget.
        #[arg(long, default_value_t = 4096)]
        ctx: usize,
        /// For a bare config.json: the file type to assume, as llama-quantize would make it
        /// (Q4_K_M, Q5_K_M, or one type for every matrix: Q8_0, F16, BF16, ...).
        #[arg(long, default_value = "Q4_K_M")]
        quant: String,
    },
    /// Run the graph executor and the curated decoder on the same tokens and compare.
    /// Exits 1 unless logits agree within 1e-4 relative and greedy tokens are identical.
    Parity {
        model: String,
        #[arg(long, conflicts_with = "tokens")]
        prompt: Option<String>,
        /// Comma-separated token ids.
        #[arg(long, value_delimiter = ',')]
        tokens: Option<Vec<u32>>,
        /// Greedy steps compared after the prompt.
        #[arg(long, default_value_t = 8)]
        steps: usize,
        #[arg(long, allow_hyphen_values = true, default_value = "all")]
        passes: String,
        /// Largest allowed max|Δlogit| / max|logit|.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f32,
        #[arg(long)]
        json: bool,
        /// The backend the graph side runs on.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        #[command(flatten)]
        kernels: KernelArgs,
    },
    /// Time prompt processing and token generation, as llama-bench does.
    ///
    /// For each -p size N, `ppN` is N tokens in one step on an empty sequence; for each
    /// -n length N, `tgN` is N one-token decode steps after a one-token prefill (only the
    /// N steps are timed). Each test gets a fresh session, runs once untimed, then -r
    /// timed times (rewound to position 0 in between). Token ids are pseudo-random with a
    /// fixed seed, so no tokenizer is needed. Sizes must be at least 1 and fit the
    /// model's context length. The table shows the median tokens/s ± the standard
    /// deviation, the min and the max, then the process's peak RSS (VmHWM).
    Bench {
        /// A .gguf file, an HF directory, or a short name.
        model: String,
        /// Prompt sizes, comma-separated (one pp test each).
        #[arg(
            short = 'p',
            long = "n-prompt",
            value_name = "N,...",
            value_delimiter = ',',
            default_value = "512"
        )]
        prompts: Vec<usize>,
        /// Generation lengths, comma-separated (one tg test each).
        #[arg(
            short = 'n',
            long = "n-gen",
            value_delimiter = ',',
            default_value = "128"
        )]
        gens: Vec<usize>,
        /// Timed repetitions of each test.
        #[arg(
            short = 'r',
            long = "repetitions",
            value_name = "N",
            default_value_t = 5
        )]
        reps: usize,
        /// Positions filled, untimed, before each run (llama-bench's -d): the tests
        /// are then named ppN@dD and tgN@dD.
        #[arg(short = 'd', long = "n-depth", value_name = "D", default_value_t = 0)]
        depth: usize,
        /// One JSON object on stdout: {"model", "backend", "threads", "results":
        /// {"ppN": median tok/s, "tgN": ...}, "peak_rss_bytes"}.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        #[command(flatten)]
        kernels: KernelArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Dump {
    /// The graph as the template expands it.
    Expanded,
    /// The graph after the passes.
    Optimized,
    /// The optimised graph as Graphviz DOT.
    Dot,
    /// The plan after --backend's stage: each step's kernels and arena slot (needs weights).
    Lowered,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum BackendArg {
    /// The scalar interpreter every other backend is checked against.
    Reference,
    /// The fast CPU backend.
    Cpu,
    /// The GPU backend (wgpu over Vulkan; Mesa's software Vulkan where there is no GPU).
    Gpu,
}

impl BackendArg {
    fn kind(self) -> Result<BackendKind> {
        match self {
            BackendArg::Reference => Ok(BackendKind::Reference),
            BackendArg::Cpu => Ok(BackendKind::Cpu),
            BackendArg::Gpu => Ok(BackendKind::Gpu),
        }
    }
}

#[derive(Args)]
struct GenArgs {
    /// Prompt text (needs a tokenizer).
    #[arg(long, conflicts_with = "tokens")]
    prompt: Option<String>,
    /// Prompt as comma-separated token ids (works without a tokenizer).
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    /// Keep generating past end-of-sequence, up to --max-tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object (prompt_tokens, tokens, text, timings) instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Write the logits at the last prompt position to FILE as {"logits": [...]}.
    #[arg(long)]
    logits_out: Option<PathBuf>,
    #[command(flatten)]
    sample: SampleArgs,
}

/// How tokens are chosen, and where they are computed.
#[derive(Args)]
struct SampleArgs {
    /// Most tokens to generate (per turn, in chat).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Always take the most likely token.
    #[arg(long)]
    greedy: bool,
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// 0 disables.
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// 1.0 disables.
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// End the generated text at STRING (repeatable; found across token boundaries).
    #[arg(long = "stop", value_name = "STRING")]
    stop: Vec<String>,
    /// KV-cache positions (default: prompt + max tokens; in chat, 4096 or the trained context if smaller).
    #[arg(long)]
    ctx: Option<usize>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendArg,
    #[command(flatten)]
    kernels: KernelArgs,
}

impl SampleArgs {
    fn sampler(&self) -> SamplerParams {
        SamplerParams {
            greedy: self.greedy,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
        }
    }

    fn lower_options(&self, passes: &PassSelection) -> LowerOptions {
        self.kernels.options(passes.memory())
    }
}

impl GenArgs {
    /// Checks --logits-out before any work (see [`check_output`]).
    fn check_output(&self, inputs: &[&Path]) -> Result<()> {
        match &self.logits_out {
            Some(out) => check_output("--logits-out", out, inputs),
            None => Ok(()),
        }
    }
}

/// How the backend's kernels compute.
#[derive(Args, Clone, Copy)]
struct KernelArgs {
    /// What quantised matmuls multiply with: f32 activations (exact), or int8 blocks
    /// for integer dot products (cpu backend; gpu: the Q4_K / Q6_K decode matvecs and
    /// the prefill GEMM over Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and Q6_K, which on GPUs with
    /// f16 cooperative matrices runs on tensor cores instead: f16 activations and
    /// weights, summed in f32).
    #[arg(long, value_enum, default_value = "f32")]
    activations: ActivationsArg,
    /// Interpret the elementwise ops and norms that the cpu backend otherwise
    /// compiles to native code at load (to measure what the JIT buys).
    #[arg(long)]
    no_jit: bool,
    /// What the KV cache stores: f32 (exact), or f16, half the memory (every
    /// backend).
    #[arg(long, value_enum, default_value = "f32")]
    kv: KvArg,
}

impl KernelArgs {
    fn options(&self, memory: bool) -> LowerOptions {
        LowerOptions {
            memory,
            activations: self.activations.into(),
            jit: !self.no_jit,
            kv: match self.kv {
                KvArg::F32 => KvType::F32,
                KvArg::F16 => KvType::F16,
            },
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum KvArg {
    F32,
    F16,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum ActivationsArg {
    F32,
    Int8,
}

impl From<ActivationsArg> for Activations {
    fn from(a: ActivationsArg) -> Activations {
        match a {
            ActivationsArg::F32 => Activations::F32,
            ActivationsArg::Int8 => Activations::Int8,
        }
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    // Output piped into a reader that stops early (`weft inspect … | head`) ends the
    // process quietly, as other command-line tools do, instead of a panic on the next
    // write. Not for serve, whose clients may hang up mid-answer.
    if !matches!(cli.command, Command::Serve { .. }) {
        // SAFETY: restores the default disposition of one signal; no thread has
        // started yet.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let threads = weft_runtime::set_threads(cli.threads)?;
    match cli.command {
        Command::Pull { model } => {
            let mut view = PullView::new();
            let path = if let Some(spec) = HubSpec::parse(&model) {
                hub::pull(&spec, &mut |e| view.event(e))?
            } else if weft_runtime::is_short_name(&model) {
                weft_runtime::resolve_with(&model, &mut |e| view.event(e))?
            } else {
                bail!("{model}: give ORG/REPO[:FILE] (a model on the Hugging Face Hub) or a short name")
            };
            println!("{}", path.display());
            Ok(())
        }
        Command::List { json } => {
            list(json);
            Ok(())
        }
        Command::Rm { model } => {
            let freed = if let Some(spec) = HubSpec::parse(&model) {
                hub::remove(&spec)?
            } else if weft_runtime::is_short_name(&model) {
                let path = weft_runtime::cached_model_path(&model);
                let bytes = std::fs::metadata(&path)
                    .map_err(|_| {
                        anyhow!(
                            "{model} is not in weft's cache ({}); `weft list` shows what is",
                            path.display()
                        )
                    })?
                    .len();
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                bytes
            } else {
                bail!("{model}: weft rm removes cached models: give a short name, ORG/REPO or ORG/REPO:FILE (`weft list` shows them)")
            };
            eprintln!("weft: removed {model} ({} freed)", human_bytes(freed));
            Ok(())
        }
        Command::Bench {
            model,
            prompts,
            gens,
            reps,
            depth,
            json,
            backend,
            kernels,
        } => {
            let spec = BenchSpec {
                prompts,
                gens,
                reps,
                depth,
            };
            spec.check(None)?;
            let backend = backend.kind()?;
            let model = open(&model)?;
            spec.check(model.trained_context())?;
            let options = kernels.options(true);
            let plan = model.compile_for(&PassSelection::all(), backend)?.plan;
            let engine = model.engine(plan, backend, &options)?;
            let results =
                bench::bench(&engine, &spec, model.trained_context(), &mut |e| match e {
                    BenchEvent::Warmup { test } => {
                        eprintln!("weft: bench {} warm-up", test.name())
                    }
                    BenchEvent::Run {
                        test,
                        rep,
                        reps,
                        tokens_per_s,
                    } => eprintln!(
                        "weft: bench {} run {rep}/{reps}: {tokens_per_s:.2} tok/s",
                        test.name()
                    ),
                })?;
            print_bench(&model, engine.backend(), threads, &results, json);
            Ok(())
        }
        Command::Run {
            model,
            passes,
            curated,
            gen,
        } => {
            let selection = PassSelection::parse(&passes)?;
            let model = open(&model_or_default(model)?)?;
            gen.check_output(&[&model.source.path])?;
            if curated {
                return run_forward(&model, &gen, |ctx| Ok(model.curated(ctx)?));
            }
            let compiled = model.compile_for(&selection, gen.sample.backend.kind()?)?;
            eprintln!(
                "weft: compiled {} ({} steps) in {:.1} ms",
                compiled.plan.family,
                compiled.plan.steps.len(),
                compiled.compile_ms
            );
            run_plan(&model, compiled.plan, &selection, &gen)
        }
        Command::Chat {
            model,
            system,
            chat_template,
            show_prompt,
            passes,
            sample,
        } => {
            let selection = PassSelection::parse(&passes)?;
            let model = open(&model_or_default(model)?)?;
            chat(
                &model,
                system,
                chat_template.as_deref(),
                show_prompt,
                &selection,
                &sample,
            )
        }
        Command::Serve {
            model,
            host,
            port,
            parallel,
            queue,
            ctx,
            alias,
            body_limit,
            chat_template,
            passes,
            backend,
            kernels,
        } => {
            let selection = PassSelection::parse(&passes)?;
            let backend = backend.kind()?;
            if parallel == 0 {
                bail!("--parallel must be at least 1");
            }
            let spec = model_or_default(model)?;
            let model = open(&spec)?;
            let ctx = ctx.unwrap_or_else(|| model.trained_context().map_or(4096, |t| t.min(4096)));
            check_trained_context(&model, ctx, || format!("--ctx {ctx}"))?;
            // A model without a template still serves /v1/completions.
            let template = match model.chat_template(chat_template.as_deref()) {
                Ok(t) => {
                    eprintln!("weft: chat template from {}", t.origin());
                    Some(t)
                }
                Err(e) if chat_template.is_none() => {
                    eprintln!("weft: {e}; /v1/chat/completions will answer 400");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            let plan = model.compile_for(&selection, backend)?.plan;
            let options = kernels.options(selection.memory());
            let engine = model.engine(plan, backend, &options)?;
            let config = ServeConfig {
                host,
                port,
                parallel,
                queue,
                ctx,
                body_limit,
                model_id: alias.unwrap_or_else(|| served_name(&spec)),
                ..ServeConfig::default()
            };
            serve(
                model,
                &engine,
                template,
                &config,
                Arc::new(|m: &str| eprintln!("weft: {m}")),
            )?;
            Ok(())
        }
        Command::Exec {
            plan,
            weights,
            passes,
            gen,
        } => {
            let text = std::fs::read_to_string(&plan)
                .with_context(|| format!("reading plan {}", plan.display()))?;
            let mut plan_v: Plan = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a weft plan", plan.display()))?;
            let model = open(weights.as_deref().unwrap_or(&plan_v.model.source))?;
            gen.check_output(&[&model.source.path, &plan])?;
            let selection = match passes {
                Some(p) => {
                    let selection = PassSelection::parse(&p)?;
                    plan_v = model.reoptimize(&plan_v, &selection, gen.sample.backend.kind()?)?;
                    selection
                }
                None => PassSelection::all(),
            };
            run_plan(&model, plan_v, &selection, &gen)
        }
        Command::Compile {
            model,
            output,
            dump,
            dump_after,
            stats,
            seq,
            json,
            passes,
            backend,
        } => {
            let selection = PassSelection::parse(&passes)?;
            let backend = backend.kind()?;
            if let Some(p) = &dump_after {
                if !selection.contains(p) {
                    bail!("--dump-after {p}: that pass does not run with --passes {passes}");
                }
            }
            let model = open(&model)?;
            if let Some(out) = &output {
                check_output("-o", out, &[&model.source.path])?;
            }
            if stats {
                check_trained_context(&model, seq, || format!("--seq {seq}"))?;
            }
            let compiled = model.compile_with(&selection, Some(backend), |pass, graph| {
                if dump_after.as_deref() == Some(pass) {
                    print!("{}", graph.to_text());
                }
            })?;
            if stats {
                let (arena, naive) = compiled.activation_bytes(seq, selection.memory());
                if json {
                    println!(
                        "{}",
                        json!({"nodes_expanded": compiled.nodes_expanded, "nodes_optimized": compiled.plan.steps.len(),
                               "arena_bytes": arena, "naive_bytes": naive, "compile_ms": compiled.compile_ms, "seq": seq})
                    );
                } else {
                    println!(
                        "nodes: {} expanded, {} optimised",
                        compiled.nodes_expanded,
                        compiled.plan.steps.len()
                    );
                    println!("activations at seq={seq}: arena {arena} bytes, naive {naive} bytes");
                    println!("compile: {:.2} ms", compiled.compile_ms);
                }
            }
            match dump {
                Some(Dump::Expanded) => print!("{}", compiled.expanded_text),
                Some(Dump::Optimized) => print!("{}", compiled.plan.to_text()),
                Some(Dump::Dot) => print!("{}", compiled.plan.to_dot()),
                Some(Dump::Lowered) => {
                    let options = LowerOptions {
                        memory: selection.memory(),
                        ..LowerOptions::default()
                    };
                    let engine = model.engine(compiled.plan.clone(), backend, &options)?;
                    print!("{}", engine.lowered_text())
                }
                None => {}
            }
            if let Some(out) = output {
                write_atomic(
                    &out,
                    serde_json::to_string_pretty(&compiled.plan)?.as_bytes(),
                )?;
                eprintln!(
                    "weft: wrote {} ({} steps, compiled in {:.1} ms)",
                    out.display(),
                    compiled.plan.steps.len(),
                    compiled.compile_ms
                );
            } else if dump.is_none() && dump_after.is_none() && !stats {
                bail!("nothing to do: give -o plan.json, --dump, --dump-after or --stats");
            }
            Ok(())
        }
        Command::Inspect {
            model,
            gpu,
            json,
            budget,
            ctx,
            quant,
        } => {
            if gpu {
                println!("{}", weft_runtime::gpu_report()?);
                if model.is_none() {
                    return Ok(());
                }
            }
            let mut model = open(model.as_deref().unwrap_or_default())?;
            if model.source.config_only() {
                let mix: QuantMix = quant.parse().map_err(|e: String| anyhow!(e))?;
                eprintln!(
                    "weft: {} has no weights: assuming {mix} stored types",
                    model.spec
                );
                model.assume_quant(mix);
            }
            if !budget {
                return inspect(&model, json);
            }
            let b = model.budget(ctx)?;
            let total = b
                .weight_bytes
                .saturating_add(b.kv_bytes)
                .saturating_add(b.arena_prefill_bytes);
            if json {
                println!(
                    "{}",
                    json!({"ctx": ctx, "weight_bytes": b.weight_bytes, "kv_bytes": b.kv_bytes,
                           "arena_decode_bytes": b.arena_decode_bytes, "arena_prefill_bytes": b.arena_prefill_bytes,
                           "total_bytes": total})
                );
            } else {
                let gib = |x: u64| x as f64 / (1u64 << 30) as f64;
                println!(
                    "weights (stored types):  {:>14} bytes  {:8.3} GiB",
                    b.weight_bytes,
                    gib(b.weight_bytes)
                );
                println!(
                    "KV cache (f32, ctx {ctx}): {:>14} bytes  {:8.3} GiB",
                    b.kv_bytes,
                    gib(b.kv_bytes)
                );
                println!(
                    "arena, decode step:      {:>14} bytes",
                    b.arena_decode_bytes
                );
                println!(
                    "arena, prefill of ctx:   {:>14} bytes  {:8.3} GiB",
                    b.arena_prefill_bytes,
                    gib(b.arena_prefill_bytes)
                );
                println!(
                    "total (prefill of ctx):  {:>14} bytes  {:8.3} GiB",
                    total,
                    gib(total)
                );
            }
            Ok(())
        }
        Command::Parity {
            model,
            prompt,
            tokens,
            steps,
            passes,
            tolerance,
            json,
            backend,
            kernels,
        } => {
            let selection = PassSelection::parse(&passes)?;
            let backend = backend.kind()?;
            let model = open(&model)?;
            let prompt = prompt_tokens(&model, prompt.as_deref(), tokens)?;
            let ctx = prompt.len().saturating_add(steps).saturating_add(1);
            check_trained_context(&model, ctx, || {
                format!(
                    "{ctx} positions (the prompt's {} plus --steps {steps} plus 1)",
                    prompt.len()
                )
            })?;
            let plan = model.compile_for(&selection, backend)?.plan;
            let options = kernels.options(selection.memory());
            let mut graph = model.engine(plan, backend, &options)?.session(ctx)?;
            let mut curated = model.curated(ctx)?;
            let r = parity::compare(&mut graph, &mut curated, &prompt, steps, tolerance)?;
            if json {
                println!(
                    "{}",
                    json!({"max_rel_diff": r.max_rel(), "rel_diffs": r.rel_diffs, "tokens_graph": r.tokens_a,
                           "tokens_curated": r.tokens_b, "tokens_agree": r.tokens_agree(), "passed": r.passed()})
                );
            } else {
                println!("prompt tokens: {}", prompt.len());
                println!(
                    "max |Δlogit| / max|logit|: {:.3e} (tolerance {:.0e})",
                    r.max_rel(),
                    tolerance
                );
                println!(
                    "greedy tokens agree: {} ({} positions)",
                    r.tokens_agree(),
                    r.tokens_a.len()
                );
                if let Some(k) = r.non_finite {
                    println!("non-finite logits at compared position {k} (0: the prompt's end)");
                }
                println!("{}", if r.passed() { "PASS" } else { "FAIL" });
            }
            if !r.passed() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// MODEL, or the first short name the fetch script knows.
fn model_or_default(model: Option<String>) -> Result<String> {
    match model {
        Some(m) => Ok(m),
        None => weft_runtime::short_names()?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the fetch script knows no model; give MODEL")),
    }
}

/// The name a served model answers to: a short name as given, a path's file name
/// without its extension.
fn served_name(spec: &str) -> String {
    let path = Path::new(spec);
    match path.exists() {
        true => path
            .file_stem()
            .map_or(spec.to_string(), |s| s.to_string_lossy().into_owned()),
        false => spec.to_string(),
    }
}

/// The chat loop: lines from stdin, answers streamed to stdout.
fn chat(
    model: &Model,
    system: Option<String>,
    template: Option<&Path>,
    show_prompt: bool,
    passes: &PassSelection,
    sample: &SampleArgs,
) -> Result<()> {
    use std::io::{BufRead, IsTerminal};
    let template = model.chat_template(template)?;
    eprintln!("weft: chat template from {}", template.origin());
    let backend = sample.backend.kind()?;
    let plan = model.compile_for(passes, backend)?.plan;
    let ctx = sample
        .ctx
        .unwrap_or_else(|| model.trained_context().map_or(4096, |t| t.min(4096)));
    check_trained_context(model, ctx, || format!("--ctx {ctx}"))?;
    let session = model
        .engine(plan, backend, &sample.lower_options(passes))?
        .session(ctx)?;
    let mut conversation =
        Conversation::new(model, template.clone(), session, system).with_stops(&sample.stop);
    let params = GenParams {
        max_tokens: sample.max_tokens,
        sampler: sample.sampler(),
        stop_ids: model.stop_ids(),
        ignore_eos: false,
    };
    let tok = model
        .tokenizer
        .as_ref()
        .ok_or_else(|| anyhow!("{} has no tokenizer: it cannot chat", model.spec))?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("weft: /reset forgets the conversation, /exit leaves");
    }
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                conversation.reset();
                eprintln!("weft: conversation reset");
                continue;
            }
            _ => {}
        }
        if show_prompt {
            let mut next = conversation.messages().to_vec();
            next.push(Message::new("user", &line));
            eprintln!("{}", template.render(&next, true)?);
        }
        let mut stream = StreamDecoder::new();
        let mut stops = StopStrings::new(&sample.stop);
        let mut stdout = std::io::stdout().lock();
        let stop_ids = model.stop_ids();
        let turn = conversation.say(&line, &params, |id| {
            if stop_ids.contains(&id) {
                return true;
            }
            let (piece, stopped) = stops.push(&stream.push(tok, id));
            write!(stdout, "{piece}")
                .and_then(|_| stdout.flush())
                .is_ok()
                && !stopped
        })?;
        let (tail, _) = stops.push(&stream.finish());
        if writeln!(stdout, "{tail}{}", stops.finish()).is_err() {
            break; // stdout closed: the reader is gone
        }
        let g = &turn.generation;
        eprintln!(
            "weft: {} prompt tokens ({} reused from the cache), {} generated; prefill {:.1} tok/s, decode {:.1} tok/s",
            g.prompt_tokens.len(),
            g.reused_tokens,
            g.tokens.len(),
            g.prefill_tokens_per_s(),
            g.decode_tokens_per_s()
        );
    }
    Ok(())
}

/// `weft bench`'s report: a llama-bench-like table, or one JSON object.
fn print_bench(model: &Model, backend: &str, threads: usize, results: &[BenchResult], json: bool) {
    let peak = bench::peak_rss_bytes();
    if json {
        let figures: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|r| (r.test.name(), json!(r.median())))
            .collect();
        println!(
            "{}",
            json!({"model": model.spec, "backend": backend, "threads": threads,
                   "results": figures, "peak_rss_bytes": peak})
        );
        return;
    }
    let name = Path::new(&model.spec)
        .file_name()
        .map_or(model.spec.clone(), |f| f.to_string_lossy().into_owned());
    let rows: Vec<[String; 7]> = results
        .iter()
        .map(|r| {
            [
                name.clone(),
                backend.to_string(),
                threads.to_string(),
                r.test.name(),
                format!("{:.2} ± {:.2}", r.median(), r.stddev()),
                format!("{:.2}", r.min()),
                format!("{:.2}", r.max()),
            ]
        })
        .collect();
    let head = [
        "model",
        "backend",
        "threads",
        "test",
        "tok/s (median)",
        "min",
        "max",
    ];
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Text columns left-aligned, figures right-aligned (as llama-bench's markdown).
    let right = [false, false, true, false, true, true, true];
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for ((c, w), r) in cells.iter().zip(&width).zip(right) {
            let pad = " ".repeat(w - c.chars().count());
            s += &if r {
                format!(" {pad}{c} |")
            } else {
                format!(" {c}{pad} |")
            };
        }
        s
    };
    println!("{}", line(&head.map(String::from)));
    let rule: Vec<String> = width
        .iter()
        .zip(right)
        .map(|(w, r)| match r {
            true => format!("{}:", "-".repeat(w - 1)),
            false => "-".repeat(*w),
        })
        .collect();
    println!("{}", line(&rule));
    for row in &rows {
        println!("{}", line(row));
    }
    match peak {
        Some(b) => println!(
            "\npeak RSS: {:.1} MiB ({b} bytes)",
            b as f64 / (1u64 << 20) as f64
        ),
        None => println!("\npeak RSS: not reported on this system"),
    }
}

fn open(spec: &str) -> Result<Model> {
    eprintln!("weft: opening {spec}");
    let mut view = PullView::new();
    Ok(Model::open_with(spec, &mut |e| view.event(e))?)
}

/// Shows a pull: an indicatif bar on stderr when it is a terminal, else a line per file.
struct PullView {
    tty: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl PullView {
    fn new() -> PullView {
        use std::io::IsTerminal;
        PullView {
            tty: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    fn event(&mut self, e: PullEvent) {
        match (e, &self.bar) {
            (PullEvent::Advance { done }, Some(bar)) => bar.set_position(done),
            (
                PullEvent::Start {
                    file,
                    bytes,
                    resumed,
                },
                _,
            ) if self.tty => {
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(bytes),
                    indicatif::ProgressDrawTarget::stderr(),
                );
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(file.to_string());
                bar.set_position(resumed);
                if resumed > 0 {
                    bar.reset_eta();
                }
                self.bar = Some(bar);
            }
            // The check or the retry that follows says how it went.
            (PullEvent::End { .. }, Some(bar)) => {
                bar.finish_and_clear();
                self.bar = None;
            }
            (e, bar) => {
                if let Some(line) = e.line() {
                    match bar {
                        Some(bar) => bar.suspend(|| eprintln!("weft: {line}")),
                        None => eprintln!("weft: {line}"),
                    }
                }
            }
        }
    }
}

/// `weft list`: weft's cache and the Hub's, as text or one JSON object.
fn list(json_out: bool) {
    let l = hub::list(&weft_runtime::weft_home().join("models"));
    if json_out {
        let model = |m: &hub::CachedModel| {
            json!({"model": m.spec, "bytes": m.bytes, "partial_bytes": m.partial_bytes,
                   "path": m.path, "revision": m.revision,
                   "files": m.files.iter().map(|(f, b)| json!({"model": f, "bytes": b})).collect::<Vec<_>>()})
        };
        println!(
            "{}",
            json!({"weft_cache": l.weft_dir, "hub_cache": l.hub_dir,
                   "weft": l.weft.iter().map(model).collect::<Vec<_>>(),
                   "hub": l.hub.iter().map(model).collect::<Vec<_>>()})
        );
        return;
    }
    let width = l
        .weft
        .iter()
        .chain(&l.hub)
        .flat_map(|m| std::iter::once(m.spec.len()).chain(m.files.iter().map(|(f, _)| f.len() + 2)))
        .max()
        .unwrap_or(0);
    println!("weft's cache ({}):", l.weft_dir.display());
    if l.weft.is_empty() {
        println!("  (empty)");
    }
    for m in &l.weft {
        println!("  {:<width$}  {:>10}", m.spec, human_bytes(m.bytes));
    }
    println!("Hugging Face cache ({}):", l.hub_dir.display());
    if l.hub.is_empty() {
        println!("  (no models)");
    }
    for m in &l.hub {
        let mut note = match &m.revision {
            Some(r) => format!("main = {}", &r[..r.len().min(12)]),
            None => "no refs/main".to_string(),
        };
        if m.partial_bytes > 0 {
            note += &format!(", {} of unfinished downloads", human_bytes(m.partial_bytes));
        }
        println!(
            "  {:<width$}  {:>10}  ({note})",
            m.spec,
            human_bytes(m.bytes)
        );
        for (f, b) in &m.files {
            println!("    {:<w$}  {:>10}", f, human_bytes(*b), w = width - 2);
        }
    }
}

fn prompt_tokens(
    model: &Model,
    prompt: Option<&str>,
    tokens: Option<Vec<u32>>,
) -> Result<Vec<u32>> {
    match (prompt, tokens) {
        (_, Some(t)) => Ok(t),
        (Some(p), None) => Ok(model.encode(p)?),
        (None, None) => bail!("give a prompt: --prompt TEXT or --tokens 1,2,3"),
    }
}

/// Refuses an output path before any work: its folder must exist, and it must not be
/// an input (a model file, a file of a model directory, a plan).
fn check_output(flag: &str, out: &Path, inputs: &[&Path]) -> Result<()> {
    let folder = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!(
            "{flag} {}: the folder {} does not exist",
            out.display(),
            folder.display()
        );
    }
    if out.is_dir() {
        bail!("{flag} {}: that is a folder, not a file", out.display());
    }
    // Not there yet: no input can be it.
    let Ok(target) = std::fs::canonicalize(out) else {
        return Ok(());
    };
    for input in inputs.iter().filter_map(|i| std::fs::canonicalize(i).ok()) {
        if target == input || (input.is_dir() && target.parent() == Some(&input)) {
            bail!(
                "{flag} {} would overwrite the input {}",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Refuses `ctx` positions beyond the model's trained context before any work;
/// `asked` says how many were asked for and by which flags.
fn check_trained_context(model: &Model, ctx: usize, asked: impl FnOnce() -> String) -> Result<()> {
    match model.trained_context() {
        Some(trained) if ctx > trained => bail!(
            "{}: more than the {trained} positions {} was trained for",
            asked(),
            model.spec
        ),
        _ => Ok(()),
    }
}

/// Writes through a temporary file beside `path` and a rename, so no half-written file
/// is left. The temporary name is unique (pid, a counter, a random number) and created
/// new, so no file of the user's is touched; it is removed on every error.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(
        ".{name}.{}-{n}-{random:016x}.tmp-weft",
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("writing {}", path.display()))?;
    let written = file
        .write_all(bytes)
        .and_then(|_| file.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

fn run_plan(model: &Model, plan: Plan, passes: &PassSelection, gen: &GenArgs) -> Result<()> {
    let options = gen.sample.lower_options(passes);
    let engine = model.engine(plan, gen.sample.backend.kind()?, &options)?;
    run_forward(model, gen, |ctx| Ok(engine.session(ctx)?))
}

/// Generates with the forward `make(ctx)` builds, streaming or printing JSON.
fn run_forward<F: Forward>(
    model: &Model,
    gen: &GenArgs,
    make: impl FnOnce(usize) -> Result<F>,
) -> Result<()> {
    let prompt = prompt_tokens(model, gen.prompt.as_deref(), gen.tokens.clone())?;
    let ctx = gen
        .sample
        .ctx
        .unwrap_or(prompt.len().saturating_add(gen.sample.max_tokens));
    check_trained_context(model, ctx, || match gen.sample.ctx {
        Some(_) => format!("--ctx {ctx}"),
        None => format!(
            "{ctx} positions (the prompt's {} plus --max-tokens {})",
            prompt.len(),
            gen.sample.max_tokens
        ),
    })?;
    if prompt.len() > ctx {
        bail!(
            "the prompt has {} tokens, more than --ctx {ctx}",
            prompt.len()
        );
    }
    // The last token needs no cache position of its own, so a full cache still yields one.
    let max_tokens = gen
        .sample
        .max_tokens
        .min((ctx - prompt.len()).saturating_add(1));
    if max_tokens < gen.sample.max_tokens {
        eprintln!("weft: --ctx {ctx} leaves room for {max_tokens} generated token(s)");
    }
    let params = GenParams {
        max_tokens,
        sampler: gen.sample.sampler(),
        stop_ids: model.stop_ids(),
        ignore_eos: gen.ignore_eos,
    };
    params.sampler.validate()?;
    let mut program = make(ctx)?;
    let tok = model.tokenizer.as_ref();
    let mut stream = StreamDecoder::new();
    let mut stdout = std::io::stdout().lock();
    if !gen.json {
        if let Some(p) = gen.prompt.as_deref() {
            write!(stdout, "{p}")?;
            stdout.flush()?;
        }
    }
    let mut stops = StopStrings::new(&gen.sample.stop);
    let result = generate(&mut program, &prompt, &params, |id| {
        let Some(t) = tok else { return true };
        let (piece, stopped) = stops.push(&stream.push(t, id));
        // A closed stdout (a pager quit) ends generation rather than erroring mid-token.
        let written = gen.json
            || write!(stdout, "{piece}")
                .and_then(|_| stdout.flush())
                .is_ok();
        written && !stopped
    })?;
    let stop_ids = model.stop_ids();
    let shown: Vec<u32> = result
        .tokens
        .iter()
        .copied()
        .filter(|t| gen.ignore_eos || !stop_ids.contains(t))
        .collect();
    if let Some(path) = &gen.logits_out {
        write_atomic(
            path,
            serde_json::to_string(&json!({ "logits": result.prompt_logits }))?.as_bytes(),
        )?;
    }
    if gen.json {
        let text = tok.map(|t| stops.cut(&t.decode(&shown)).to_string());
        let out = json!({
            "prompt_tokens": result.prompt_tokens,
            "tokens": result.tokens,
            "text": text,
            "timings": {
                "prefill_tokens_per_s": result.prefill_tokens_per_s(),
                "decode_tokens_per_s": result.decode_tokens_per_s(),
                "time_to_first_token_ms": result.prefill_secs * 1e3,
            },
        });
        writeln!(stdout, "{out}")?;
    } else {
        if tok.is_some() {
            let (tail, _) = stops.push(&stream.finish());
            write!(stdout, "{tail}{}", stops.finish())?;
        } else {
            write!(stdout, "{:?}", result.tokens)?;
        }
        writeln!(stdout)?;
        eprintln!(
            "weft: {} prompt tokens, {} generated; time to first token {:.0} ms, prefill {:.1} tok/s, decode {:.1} tok/s",
            result.prompt_tokens.len(),
            result.tokens.len(),
            result.prefill_secs * 1e3,
            result.prefill_tokens_per_s(),
            result.decode_tokens_per_s()
        );
    }
    Ok(())
}

fn inspect(model: &Model, json_out: bool) -> Result<()> {
    let src = &model.source;
    let family = model.expand().map(|e| e.family);
    let expanded = model.expand().ok();
    if json_out {
        let tensors: Vec<_> = src
            .tensors
            .iter()
            .map(|t| json!({"name": t.name, "dtype": t.type_name, "shape": t.shape}))
            .collect();
        let hparams = expanded
            .as_ref()
            .map(|e| serde_json::to_value(&e.hparams))
            .transpose()?;
        println!(
            "{}",
            json!({
                "family": family.as_ref().ok(),
                "family_error": family.as_ref().err().map(|e| e.to_string()),
                "architecture": src.architecture,
                "file_bytes": src.file_bytes,
                "hparams": hparams,
                "tensors": tensors,
            })
        );
        return Ok(());
    }
    println!("path:         {}", src.path.display());
    println!("architecture: {}", src.architecture);
    match &family {
        Ok(f) => println!("family:       {f}"),
        Err(e) => println!("family:       none ({e})"),
    }
    println!("file bytes:   {}", src.file_bytes);
    if let Some(e) = &expanded {
        println!("hparams:");
        for (k, v) in &e.hparams {
            println!("  {k} = {}", v.summary());
        }
    }
    println!("metadata ({} keys):", src.metadata.len());
    for (k, v) in &src.metadata {
        println!("  {k} = {}", v.summary());
    }
    println!("tensors ({}):", src.tensors.len());
    for t in &src.tensors {
        println!("  {:<48} {:<6} {:?}", t.name, t.type_name, t.shape);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed write (here: the rename onto a folder) leaves no temporary file.
    #[test]
    fn write_atomic_cleans_up_when_it_fails() {
        let dir = std::env::temp_dir().join(format!("weft-write-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("plan.json").join("inside")).unwrap();
        let e = write_atomic(&dir.join("plan.json"), b"{}").unwrap_err();
        assert!(format!("{e:#}").contains("plan.json"), "{e:#}");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the folder is left: {left:?}");
        write_atomic(&dir.join("ok.json"), b"{}").unwrap();
        assert_eq!(std::fs::read(dir.join("ok.json")).unwrap(), b"{}");
    }
}
