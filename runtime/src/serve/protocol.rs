//! The OpenAI wire format: request bodies as clients send them, the error object, and
//! the JSON of responses and stream chunks.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

/// An error as OpenAI reports it: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request is malformed or a value is out of range.
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn not_found(message: impl Into<String>, code: &'static str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some(code),
        }
    }

    /// 503: every slot is busy and the queue is full, or the server is shutting down.
    pub fn unavailable(message: impl Into<String>, code: &'static str) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: Some(code),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// The body of `/v1/chat/completions` and `/v1/completions` (each reads its own input
/// field and refuses the other's). Fields this server does not know are ignored, as
/// OpenAI's own server ignores what it does not use.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Request {
    pub model: Option<String>,
    pub messages: Option<Vec<InMessage>>,
    pub prompt: Option<Prompt>,
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens` in the chat API.
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Any JSON integer (OpenAI's is signed); its 64 bits seed the sampler.
    pub seed: Option<serde_json::Number>,
    pub stop: Option<Stop>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    pub logprobs: Option<Value>,
    pub echo: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// `stop`: one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// `prompt`: a string, a list of one string, or token ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a string, or a list of parts of which only text is understood.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// What one generation came to, as the response's `usage` and `finish_reason` say it.
#[derive(Clone, Debug)]
pub(crate) struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Leading prompt tokens whose KV rows came from the prefix cache.
    pub cached_tokens: usize,
}

impl Usage {
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        })
    }
}

/// Which API a response belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Chat,
    Completion,
}

/// Writes the JSON of one response (or of the chunks of one stream).
#[derive(Clone, Debug)]
pub(crate) struct Responder {
    pub api: Api,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Responder {
    /// A whole (non-streamed) response.
    pub fn complete(&self, text: &str, finish: &str, usage: &Usage) -> Value {
        let choice = match self.api {
            Api::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish,
            }),
            Api::Completion => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": finish,
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage.json(),
        })
    }

    /// A stream chunk carrying `text` (chat: the first carries the role too), or the
    /// last one with its `finish_reason`.
    pub fn chunk(&self, text: Option<&str>, role: bool, finish: Option<&str>) -> Value {
        let choice = match self.api {
            Api::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), "assistant".into());
                }
                if let Some(t) = text {
                    delta.insert("content".into(), t.into());
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Api::Completion => json!({
                "index": 0,
                "text": text.unwrap_or(""),
                "logprobs": null,
                "finish_reason": finish,
            }),
        };
        self.wrap(json!([choice]), None)
    }

    /// The chunk after the last, with `usage` and no choices (`stream_options.include_usage`).
    pub fn usage_chunk(&self, usage: &Usage) -> Value {
        self.wrap(json!([]), Some(usage.json()))
    }

    fn wrap(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::Chat, false) => "chat.completion",
            (Api::Chat, true) => "chat.completion.chunk",
            (Api::Completion, _) => "text_completion",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_clients_send_them() {
        let r: Request = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},
                {"role":"user","content":[{"type":"text","text":"a"}]}],
                "stop":"x","seed":-3,"temperature":0,"unknown_field":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(r.messages.unwrap().len(), 2);
        assert_eq!(r.stop.unwrap().into_vec(), vec!["x".to_string()]);
        assert_eq!(r.seed.unwrap().as_i64(), Some(-3));
        let r: Request = serde_json::from_str(r#"{"prompt":[1,2,3],"stop":["a","b"]}"#).unwrap();
        assert!(matches!(r.prompt, Some(Prompt::Tokens(ref t)) if t == &[1, 2, 3]));
        assert_eq!(r.stop.unwrap().into_vec().len(), 2);
        // Wrong types are errors, not defaults.
        assert!(serde_json::from_str::<Request>(r#"{"max_tokens":-1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"temperature":"hot"}"#).is_err());
    }

    #[test]
    fn errors_have_openais_shape() {
        let e = ApiError::invalid("bad", Some("top_p")).body();
        assert_eq!(e["error"]["message"], "bad");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], "top_p");
        assert!(e["error"]["code"].is_null());
    }
}
