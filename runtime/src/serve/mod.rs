//! `weft serve`: an OpenAI-compatible HTTP server (axum on tokio) over one [`Engine`].
//!
//! - `protocol`: the wire format (requests, the error object, response and chunk JSON);
//! - `slots`: N sessions on the engine, admission (N running + Q queued, else 503) and
//!   the prefix cache (a request takes the free slot sharing its longest token prefix,
//!   truncates to it and prefills only the rest);
//! - `worker`: one generation on a slot, on a blocking thread, streaming text through a
//!   channel; a closed channel (the client went away) or shutdown stops it at the next
//!   token;
//! - `batch`: continuous batching: the decode steps of all running generations go
//!   through one thread that runs them as one matrix-matrix pass;
//! - `http`: routes, request checks, JSON responses and SSE streams.

mod batch;
mod http;
mod protocol;
mod slots;
mod worker;

pub use http::check_request;

use crate::chat::ChatTemplate;
use crate::{Engine, Model, RuntimeError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the server's log lines go (the CLI prints them on stderr).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub host: String,
    /// 0: any free port (the log's "listening on" line says which).
    pub port: u16,
    /// Slots: requests generating at once, each with its own session (KV cache).
    pub parallel: usize,
    /// Requests that may wait for a slot; beyond them, 503.
    pub queue: usize,
    /// KV positions of each slot.
    pub ctx: usize,
    /// Largest request body (bytes); beyond it, 413.
    pub body_limit: usize,
    /// The name clients give as `model`.
    pub model_id: String,
    /// How long shutdown waits for cancelled generations to let go of their slots.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            parallel: 4,
            queue: 64,
            ctx: 4096,
            body_limit: 1 << 20,
            model_id: "model".into(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Serve(format!("{what}: {e}"))
}

/// Serves `model` (its tokenizer; `template` for the chat API, which answers 400
/// without one) on `engine` until SIGINT or SIGTERM. Opens the `parallel` sessions
/// first, so a context that does not fit in memory fails here, before listening; then
/// reports "listening on http://ADDR" through `log`, and one line per request.
pub fn serve(
    model: Model,
    engine: &Engine,
    template: Option<ChatTemplate>,
    config: &ServeConfig,
    log: Log,
) -> Result<(), RuntimeError> {
    if config.parallel == 0 {
        return Err(RuntimeError::Serve("--parallel must be at least 1".into()));
    }
    if config.ctx < 2 {
        return Err(RuntimeError::Serve(format!(
            "--ctx {} leaves no room: a session needs at least 2 positions (a prompt token and a generated one)",
            config.ctx
        )));
    }
    if model.tokenizer.is_none() {
        return Err(RuntimeError::NoTokenizer(model.spec.clone()));
    }
    let sessions = (0..config.parallel)
        .map(|_| engine.session(config.ctx))
        .collect::<Result<Vec<_>, _>>()?;
    let pool = slots::Pool::new(sessions, config.queue);
    let batcher = batch::Batcher::start(engine.clone(), Arc::clone(&pool))?;
    let app = Arc::new(http::App {
        model: Arc::new(model),
        template,
        model_id: config.model_id.clone(),
        backend: engine.backend(),
        pool: Arc::clone(&pool),
        batcher,
        ctx: config.ctx,
        closing: AtomicBool::new(false),
        next_id: AtomicU64::new(0),
        started: http::unix_now(),
        log: Arc::clone(&log),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        // The compute runs on the blocking threads (and the rayon pool): two threads
        // are plenty for the sockets.
        .worker_threads(2)
        .max_blocking_threads(config.parallel + 8)
        .enable_all()
        .build()
        .map_err(|e| fail("starting the async runtime", e))?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .map_err(|e| fail(&format!("binding {}:{}", config.host, config.port), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| fail("reading the bound address", e))?;
        log(&format!(
            "listening on http://{addr} ({} slots of {} positions, queue {}, model '{}')",
            config.parallel, config.ctx, config.queue, config.model_id
        ));
        let router = http::router(Arc::clone(&app), config.body_limit);
        let app2 = Arc::clone(&app);
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let why = shutdown_signal().await;
                (app2.log)(&format!(
                    "{why}: shutting down (in-flight generations are cancelled)"
                ));
                app2.closing.store(true, Ordering::Relaxed);
                app2.pool.close();
            })
            .await
            .map_err(|e| fail("serving", e))
    });
    // Cancelled generations stop at their next token; a long prefill may still run.
    rt.shutdown_timeout(config.shutdown_grace);
    log("stopped");
    result
}

/// Resolves on SIGINT or SIGTERM, naming which.
async fn shutdown_signal() -> &'static str {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                "SIGTERM"
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        s = interrupt => s,
        s = terminate => s,
    }
}
