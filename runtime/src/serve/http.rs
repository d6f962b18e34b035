//! The HTTP side: routes, request checks, and turning a generation's events into a
//! JSON response or an SSE stream.

use super::batch::Batcher;
use super::protocol::{Api, ApiError, Content, Prompt, Request, Responder};
use super::slots::Pool;
use super::worker::{self, Event, Job};
use super::Log;
use crate::chat::{ChatTemplate, Message};
use crate::{GenParams, Model, SamplerParams};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Most stop strings a request may give, and the longest one (bytes).
const MAX_STOPS: usize = 16;
const MAX_STOP_BYTES: usize = 1024;

/// What every handler shares.
pub(crate) struct App {
    pub model: Arc<Model>,
    pub template: Option<ChatTemplate>,
    /// The name clients ask for (`model` in requests, `/v1/models`).
    pub model_id: String,
    pub backend: &'static str,
    pub pool: Arc<Pool>,
    pub batcher: Batcher,
    /// KV positions of each slot.
    pub ctx: usize,
    pub closing: AtomicBool,
    pub next_id: AtomicU64,
    /// Unix seconds at start (ids are unique across restarts, `created` of the model).
    pub started: u64,
    pub log: Log,
}

pub(crate) fn router(app: Arc<App>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app)
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route", "unknown_url")
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        ..ApiError::invalid("this route does not take that method", None)
    }
}

async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&app)]}))
}

async fn model(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match id == app.model_id {
        true => Json(model_object(&app)).into_response(),
        false => unknown_model(&app.model_id, &id).into_response(),
    }
}

fn model_object(app: &App) -> Value {
    json!({"id": app.model_id, "object": "model", "created": app.started, "owned_by": "weft"})
}

fn unknown_model(model_id: &str, asked: &str) -> ApiError {
    ApiError::not_found(
        format!("the model '{asked}' does not exist: this server serves '{model_id}'"),
        "model_not_found",
    )
}

async fn health(State(app): State<Arc<App>>) -> Json<Value> {
    let (slots, busy, waiting) = app.pool.occupancy();
    let s = app.pool.stats();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let closing = app.closing.load(Ordering::Relaxed);
    Json(json!({
        "status": if closing { "shutting_down" } else { "ok" },
        "model": app.model_id,
        "backend": app.backend,
        "ctx": app.ctx,
        "slots": {"total": slots, "busy": busy, "waiting": waiting},
        "requests": {
            "generations": s.requests,
            "rejected_busy": s.rejected_busy,
            "cancelled": s.cancelled,
            "errors": s.errors,
        },
        "prefix_cache": {
            "hits": s.hits,
            "hit_rate": ratio(s.hits, s.requests),
            "prompt_tokens": s.prompt_tokens,
            "reused_tokens": s.reused_tokens,
            "prefilled_tokens": s.prefilled_tokens,
            "reused_fraction": ratio(s.reused_tokens, s.prompt_tokens),
            "prefill_secs": s.prefill_secs,
            "cold_prefill_tokens_per_s": s.cold_prefill_tokens as f64 / s.cold_prefill_secs.max(1e-9),
            "estimated_saved_secs": s.saved_secs(),
        },
        "batched_decode": {
            "passes": s.batched_passes,
            "steps": s.batched_rows,
            "mean_batch": ratio(s.batched_rows, s.batched_passes),
        },
        "completion_tokens": s.completion_tokens,
        "decode_secs": s.decode_secs,
    }))
}

async fn chat(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(app, Api::Chat, body).await
}

async fn completions(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    respond(app, Api::Completion, body).await
}

async fn respond(app: Arc<App>, api: Api, body: Result<Bytes, BytesRejection>) -> Response {
    let n = app.next_id.fetch_add(1, Ordering::Relaxed);
    let prefix = match api {
        Api::Chat => "chatcmpl",
        Api::Completion => "cmpl",
    };
    let id = format!("{prefix}-{:x}{n:06x}", app.started);
    match handle(&app, api, &id, body).await {
        Ok(r) => r,
        Err(e) => {
            (app.log)(&format!("{id}: {} {}", e.status.as_u16(), e.message));
            e.into_response()
        }
    }
}

/// A request's input, checked but not yet tokenized.
enum Input {
    Chat(Vec<Message>),
    Text(String),
    Tokens(Vec<u32>),
}

/// A request, checked.
struct Checked {
    input: Input,
    sampler: SamplerParams,
    max_tokens: Option<usize>,
    stops: Vec<String>,
    stream: bool,
    include_usage: bool,
}

async fn handle(
    app: &Arc<App>,
    api: Api,
    id: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| {
        let status = r.status();
        ApiError {
            status,
            code: (status == StatusCode::PAYLOAD_TOO_LARGE).then_some("request_too_large"),
            ..ApiError::invalid(r.body_text(), None)
        }
    })?;
    let checked = check_body(&app.model_id, app.template.is_some(), api, &body)?;
    if app.closing.load(Ordering::Relaxed) {
        return Err(shutting_down());
    }
    let admission = app.pool.admit().ok_or_else(|| {
        ApiError::unavailable(
            "every slot is busy and the queue is full: try again later",
            "server_busy",
        )
    })?;
    let prompt = {
        let app = Arc::clone(app);
        let input = checked.input;
        tokio::task::spawn_blocking(move || encode(&app, input))
            .await
            .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))??
    };
    let room = room(app.ctx, prompt.len(), checked.max_tokens)?;
    let lease = app
        .pool
        .acquire(admission, &prompt)
        .await
        .ok_or_else(shutting_down)?;
    let (tx, rx) = unbounded_channel();
    let job = Job {
        id: id.to_string(),
        prompt,
        params: GenParams {
            max_tokens: room,
            sampler: checked.sampler,
            stop_ids: app.model.stop_ids(),
            ignore_eos: false,
        },
        stops: checked.stops,
    };
    {
        let app = Arc::clone(app);
        tokio::task::spawn_blocking(move || {
            worker::run(
                lease,
                job,
                &app.model,
                &app.batcher,
                &app.closing,
                tx,
                &*app.log,
            )
        });
    }
    let responder = Responder {
        api,
        id: id.to_string(),
        created: unix_now(),
        model: app.model_id.clone(),
    };
    if checked.stream {
        let chunks = Chunks {
            rx,
            responder,
            include_usage: checked.include_usage,
            pending: VecDeque::new(),
            started: false,
            done: false,
        };
        return Ok(Sse::new(chunks).into_response());
    }
    collect(rx, &responder).await
}

fn shutting_down() -> ApiError {
    ApiError::unavailable("the server is shutting down", "shutting_down")
}

/// Parses a request body and checks everything that needs no tokenizer.
fn check_body(
    model_id: &str,
    has_template: bool,
    api: Api,
    body: &[u8],
) -> Result<Checked, ApiError> {
    let req: Request = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not a valid request: {e}"), None))?;
    check(model_id, has_template, api, req)
}

/// A request body parsed and checked as the server does before tokenizing, for a
/// server of model `model` with a chat template (the `request` fuzz target): `Ok`, or
/// the error's status and message.
pub fn check_request(chat: bool, body: &[u8]) -> Result<(), (u16, String)> {
    let api = if chat { Api::Chat } else { Api::Completion };
    check_body("model", true, api, body)
        .map(drop)
        .map_err(|e| (e.status.as_u16(), e.message))
}

/// Checks everything that needs no tokenizer.
fn check(model_id: &str, has_template: bool, api: Api, req: Request) -> Result<Checked, ApiError> {
    if let Some(m) = &req.model {
        if m != model_id {
            return Err(unknown_model(model_id, m));
        }
    }
    let input = match api {
        Api::Chat => {
            if req.prompt.is_some() {
                return Err(ApiError::invalid(
                    "'prompt' belongs to /v1/completions: the chat API takes 'messages'",
                    Some("prompt"),
                ));
            }
            let messages = req
                .messages
                .ok_or_else(|| ApiError::invalid("'messages' is required", Some("messages")))?;
            if messages.is_empty() {
                return Err(ApiError::invalid(
                    "'messages' is empty: give at least one message",
                    Some("messages"),
                ));
            }
            let mut out = Vec::with_capacity(messages.len());
            for (i, m) in messages.into_iter().enumerate() {
                let role = match m.role.as_str() {
                    "system" | "developer" => "system",
                    "user" => "user",
                    "assistant" => "assistant",
                    other => {
                        return Err(ApiError::invalid(
                            format!(
                                "messages[{i}]: unknown role '{other}' (known: system, developer, user, assistant)"
                            ),
                            Some("messages"),
                        ))
                    }
                };
                let content = match m.content {
                    Some(Content::Text(t)) => t,
                    Some(Content::Parts(parts)) => {
                        let mut text = String::new();
                        for p in parts {
                            match (p.kind.as_str(), p.text) {
                                ("text", Some(t)) => text += &t,
                                (kind, _) => {
                                    return Err(ApiError::invalid(
                                        format!("messages[{i}]: content parts of type '{kind}' are not supported (only text)"),
                                        Some("messages"),
                                    ))
                                }
                            }
                        }
                        text
                    }
                    None => {
                        return Err(ApiError::invalid(
                            format!("messages[{i}]: 'content' is required"),
                            Some("messages"),
                        ))
                    }
                };
                out.push(Message::new(role, &content));
            }
            if !has_template {
                return Err(ApiError::invalid(
                    format!(
                        "{model_id} has no chat template: use /v1/completions, or restart the server with --chat-template FILE"
                    ),
                    Some("messages"),
                ));
            }
            Input::Chat(out)
        }
        Api::Completion => {
            if req.messages.is_some() {
                return Err(ApiError::invalid(
                    "'messages' belongs to /v1/chat/completions: this API takes 'prompt'",
                    Some("messages"),
                ));
            }
            if req.echo == Some(true) {
                return Err(ApiError::invalid("'echo' is not supported", Some("echo")));
            }
            match req.prompt {
                None => return Err(ApiError::invalid("'prompt' is required", Some("prompt"))),
                Some(Prompt::Text(t)) => Input::Text(t),
                Some(Prompt::Texts(mut v)) if v.len() == 1 => Input::Text(v.remove(0)),
                Some(Prompt::Texts(v)) => {
                    return Err(ApiError::invalid(
                        format!(
                            "'prompt' has {} strings: this server takes one per request",
                            v.len()
                        ),
                        Some("prompt"),
                    ))
                }
                Some(Prompt::Tokens(t)) => Input::Tokens(t),
            }
        }
    };
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "'n' must be 1: one choice per request",
            Some("n"),
        ));
    }
    if req
        .logprobs
        .as_ref()
        .is_some_and(|l| !l.is_null() && *l != Value::Bool(false))
    {
        return Err(ApiError::invalid(
            "'logprobs' is not supported",
            Some("logprobs"),
        ));
    }
    let max_tokens = match req.max_completion_tokens.or(req.max_tokens) {
        Some(0) => {
            return Err(ApiError::invalid(
                "'max_tokens' must be at least 1",
                Some("max_tokens"),
            ))
        }
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        None => None,
    };
    let temperature = req.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("'temperature' must be in [0, 2], found {temperature}"),
            Some("temperature"),
        ));
    }
    let seed = match req.seed {
        Some(n) => n
            .as_u64()
            .or_else(|| n.as_i64().map(|i| i as u64))
            .ok_or_else(|| ApiError::invalid("'seed' must be an integer", Some("seed")))?,
        None => random_seed(),
    };
    let sampler = SamplerParams {
        greedy: temperature == 0.0,
        temperature: temperature as f32,
        top_k: 0,
        top_p: req.top_p.unwrap_or(1.0) as f32,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed,
    };
    sampler.validate().map_err(|e| {
        let param = match e.name {
            "top_p" => Some("top_p"),
            "temperature" => Some("temperature"),
            _ => None,
        };
        ApiError::invalid(e.to_string(), param)
    })?;
    let stops = req.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stops.len() > MAX_STOPS || stops.iter().any(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::invalid(
            format!("'stop' takes at most {MAX_STOPS} strings of at most {MAX_STOP_BYTES} bytes"),
            Some("stop"),
        ));
    }
    let stream = req.stream.unwrap_or(false);
    if req.stream_options.is_some() && !stream {
        return Err(ApiError::invalid(
            "'stream_options' is only allowed with 'stream': true",
            Some("stream_options"),
        ));
    }
    Ok(Checked {
        input,
        sampler,
        max_tokens,
        stops,
        stream,
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

/// A seed for a request that gave none.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The prompt's token ids (on a blocking thread: templates and tokenizers take time).
fn encode(app: &App, input: Input) -> Result<Vec<u32>, ApiError> {
    let prompt = match input {
        Input::Chat(messages) => {
            let template = app
                .template
                .as_ref()
                .ok_or_else(|| ApiError::internal("no chat template"))?;
            // A template that raises refuses this conversation (e.g. roles out of order).
            let text = template
                .render(&messages, true)
                .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?;
            app.model
                .encode_chat(&text)
                .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?
        }
        Input::Text(t) => app
            .model
            .encode(&t)
            .map_err(|e| ApiError::invalid(e.to_string(), Some("prompt")))?,
        Input::Tokens(t) => {
            let vocab = app.model.tokenizer.as_ref().map_or(0, |t| t.vocab_size());
            if let Some(bad) = t.iter().find(|&&id| id as usize >= vocab) {
                return Err(ApiError::invalid(
                    format!("'prompt' has token id {bad}, beyond the vocabulary's {vocab}"),
                    Some("prompt"),
                ));
            }
            t
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid("the prompt is empty", Some("prompt")));
    }
    Ok(prompt)
}

/// The most tokens a `prompt`-token request can generate in `ctx` positions (the last
/// token needs no position of its own): `asked` when it fits, else an error.
fn room(ctx: usize, prompt: usize, asked: Option<usize>) -> Result<usize, ApiError> {
    let too_long = |what: String| {
        ApiError::invalid(
            format!("this server's context is {ctx} tokens, but {what}"),
            Some("messages"),
        )
        .with_code("context_length_exceeded")
    };
    if prompt >= ctx {
        return Err(too_long(format!(
            "the prompt has {prompt}, which leaves no room to generate"
        )));
    }
    let room = ctx - prompt + 1;
    match asked {
        None => Ok(room),
        Some(n) if n <= room => Ok(n),
        Some(n) => Err(ApiError {
            param: Some("max_tokens"),
            ..too_long(format!(
                "the prompt has {prompt} and max_tokens asks for {n}: at most {room} fit"
            ))
        }),
    }
}

/// The whole answer of a non-streaming request.
async fn collect(
    mut rx: UnboundedReceiver<Event>,
    responder: &Responder,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text += &t,
            Event::Done { finish, usage } => {
                return Ok(Json(responder.complete(&text, finish, &usage)).into_response())
            }
            Event::Failed(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the generation ended without an answer"))
}

/// The SSE stream of a streaming request: a chunk per piece of text, the chunk with the
/// finish reason, the usage chunk when asked for, then `[DONE]`. Dropping it (the
/// client went away) drops the receiver, which stops the generation at its next token.
struct Chunks {
    rx: UnboundedReceiver<Event>,
    responder: Responder,
    include_usage: bool,
    pending: VecDeque<String>,
    /// The first chunk (chat: the one with the role) has been queued.
    started: bool,
    done: bool,
}

impl Chunks {
    fn push(&mut self, v: Value) {
        self.pending.push_back(v.to_string());
    }

    fn take(&mut self, ev: Option<Event>) {
        let chat = self.responder.api == Api::Chat;
        if !self.started {
            self.started = true;
            if chat {
                let first = self.responder.chunk(Some(""), true, None);
                self.push(first);
            }
        }
        match ev {
            Some(Event::Text(t)) => {
                let c = self.responder.chunk(Some(&t), false, None);
                self.push(c);
            }
            Some(Event::Done { finish, usage }) => {
                let last = self.responder.chunk(None, false, Some(finish));
                self.push(last);
                if self.include_usage {
                    let u = self.responder.usage_chunk(&usage);
                    self.push(u);
                }
                self.finish();
            }
            Some(Event::Failed(e)) => {
                self.push(e.body());
                self.finish();
            }
            None => {
                self.push(ApiError::internal("the generation ended without an answer").body());
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        self.pending.push_back("[DONE]".into());
        self.done = true;
    }
}

impl futures_util::Stream for Chunks {
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(data) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(SseEvent::default().data(data))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(ev) => self.take(ev),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_for_generation() {
        // 10 positions, a 4-token prompt: 6 more positions, and the last token needs none.
        assert_eq!(room(10, 4, None).unwrap(), 7);
        assert_eq!(room(10, 4, Some(7)).unwrap(), 7);
        assert_eq!(room(10, 4, Some(3)).unwrap(), 3);
        let e = room(10, 4, Some(8)).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, Some("context_length_exceeded"));
        assert_eq!(e.param, Some("max_tokens"));
        assert!(room(10, 10, None).is_err());
        assert!(room(10, 11, Some(1)).is_err());
    }
}
