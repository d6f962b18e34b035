//! Chat templates: a conversation rendered into the prompt text a model was trained on,
//! by the model's own Jinja template (as transformers' `apply_chat_template` renders
//! it: trimmed blocks, Python string methods, `raise_exception`, `strftime_now`).

use crate::{generate_from, GenParams, Generation, GraphSession, Model, RuntimeError, StopStrings};
use serde::Serialize;
use std::path::Path;

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template ({origin}): {message}")]
    Template { origin: String, message: String },
    #[error("{model} has no chat template, and its family ({family}) declares none: give one with --chat-template FILE")]
    NoTemplate { model: String, family: String },
    #[error("reading chat template {path}: {message}")]
    Io { path: String, message: String },
}

/// A chat template with the special tokens it may name.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    /// Where it came from (the file's metadata key, a path, the family template).
    origin: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: String, origin: String, bos_token: String, eos_token: String) -> Self {
        ChatTemplate {
            source,
            origin,
            bos_token,
            eos_token,
        }
    }

    /// A template read from a file (`--chat-template FILE`).
    pub fn from_file(path: &Path, bos: String, eos: String) -> Result<Self, ChatError> {
        let source = std::fs::read_to_string(path).map_err(|e| ChatError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(ChatTemplate::new(
            source,
            path.display().to_string(),
            bos,
            eos,
        ))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; with `add_generation_prompt`, the text that opens the
    /// assistant's turn follows.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let fail = |e: minijinja::Error| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message += &format!(": {s}");
                source = s.source();
            }
            ChatError::Template {
                origin: self.origin.clone(),
                message,
            }
        };
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, _> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        });
        env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
        env.add_template("chat", &self.source).map_err(fail)?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        // Templates come from model files: bounded in work and in output.
        env.set_fuel(Some(TEMPLATE_FUEL));
        let mut out = Capped(Vec::new());
        env.get_template("chat")
            .and_then(|t| t.render_captured_to(ctx, &mut out).map(drop))
            .map_err(fail)?;
        String::from_utf8(out.0).map_err(|e| ChatError::Template {
            origin: self.origin.clone(),
            message: format!("the rendered prompt is not UTF-8: {e}"),
        })
    }
}

/// Instructions a template may run for one rendering (minijinja's fuel): real
/// templates need thousands for a long conversation.
const TEMPLATE_FUEL: u64 = 10_000_000;

/// The longest rendered prompt (bytes).
const TEMPLATE_MAX_OUTPUT: usize = 64 << 20;

/// A rendering's output, refusing to grow past [`TEMPLATE_MAX_OUTPUT`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + b.len() > TEMPLATE_MAX_OUTPUT {
            return Err(std::io::Error::other(format!(
                "the rendered prompt would pass {} MiB",
                TEMPLATE_MAX_OUTPUT >> 20
            )));
        }
        self.0.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A multi-turn conversation on one session: each turn renders the whole conversation,
/// keeps the KV rows of the longest prefix it shares with what the session holds, and
/// prefills only the rest (the new user turn, and whatever the template re-rendered).
pub struct Conversation<'m> {
    model: &'m Model,
    template: ChatTemplate,
    session: GraphSession,
    system: Option<String>,
    messages: Vec<Message>,
    /// The tokens whose KV rows the session holds, in order.
    cached: Vec<u32>,
    /// Replies end at the first of these.
    stops: StopStrings,
}

/// What one turn did.
pub struct Turn {
    pub reply: String,
    pub generation: Generation,
}

impl<'m> Conversation<'m> {
    pub fn new(
        model: &'m Model,
        template: ChatTemplate,
        session: GraphSession,
        system: Option<String>,
    ) -> Self {
        let mut c = Conversation {
            model,
            template,
            session,
            system,
            messages: Vec::new(),
            cached: Vec::new(),
            stops: StopStrings::default(),
        };
        c.reset();
        c
    }

    /// Replies end at the first of `stops` (the reply recorded is cut there; the caller
    /// streams through its own [`StopStrings`]).
    pub fn with_stops(mut self, stops: &[String]) -> Self {
        self.stops = StopStrings::new(stops);
        self
    }

    /// Forgets the turns (the system message stays); the cache is reused as far as the
    /// next prompt shares it.
    pub fn reset(&mut self) {
        self.messages = self
            .system
            .iter()
            .map(|s| Message::new("system", s))
            .collect();
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The user says `text`; the model answers, each token reaching `on_token` as it is
    /// chosen (return false to stop). A turn that fails leaves the conversation as it was.
    pub fn say(
        &mut self,
        text: &str,
        params: &GenParams,
        on_token: impl FnMut(u32) -> bool,
    ) -> Result<Turn, RuntimeError> {
        let mut messages = self.messages.clone();
        messages.push(Message::new("user", text));
        let prompt = self
            .model
            .encode_chat(&self.template.render(&messages, true)?)?;
        let room = self.session.max_ctx().saturating_sub(prompt.len());
        if prompt.len() >= self.session.max_ctx() {
            return Err(RuntimeError::Backend(
                weft_backend::BackendError::ContextFull {
                    needed: prompt.len() + 1,
                    max_ctx: self.session.max_ctx(),
                },
            ));
        }
        let params = GenParams {
            max_tokens: params.max_tokens.min(room + 1),
            ..params.clone()
        };
        let reuse = crate::executor::reusable(&self.session, &self.cached, &prompt);
        // Until this turn succeeds, the session holds no more than the shared prefix.
        self.cached.truncate(reuse);
        let generation = generate_from(&mut self.session, reuse, &prompt, &params, on_token)?;
        // Every token but the last sampled one went through the model.
        let held = crate::Forward::position(&self.session);
        self.cached = prompt
            .iter()
            .chain(&generation.tokens)
            .copied()
            .take(held)
            .collect();
        let shown: Vec<u32> = generation
            .tokens
            .iter()
            .copied()
            .filter(|t| !params.stop_ids.contains(t))
            .collect();
        let reply = self.stops.cut(&self.model.decode(&shown)?).to_string();
        messages.push(Message::new("assistant", &reply));
        self.messages = messages;
        Ok(Turn { reply, generation })
    }
}

/// The current UTC date and time in the few `strftime` fields chat templates use
/// (`%d %b %B %Y %m %H %M %S %%`); others pass through as written.
fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_time(secs, fmt)
}

fn format_time(secs: u64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out += &format!("{day:02}"),
            Some('b') => out += &name[..3],
            Some('B') => out += name,
            Some('Y') => out += &year.to_string(),
            Some('m') => out += &format!("{month:02}"),
            Some('H') => out += &format!("{h:02}"),
            Some('M') => out += &format!("{m:02}"),
            Some('S') => out += &format!("{s:02}"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template from a hostile file: endless work or a prompt of gigabytes ends in
    /// one error, quickly, without the memory.
    #[test]
    fn runaway_templates_are_stopped() {
        let render = |src: &str| {
            ChatTemplate::new(src.into(), "test".into(), "<s>".into(), "</s>".into())
                .render(&[Message::new("user", "hi")], true)
                .unwrap_err()
                .to_string()
        };
        let work = render(
            "{% for i in range(10000) %}{% for j in range(10000) %}{% for m in messages %}{{ '' }}{% endfor %}{% endfor %}{% endfor %}",
        );
        assert!(work.contains("fuel"), "{work}");
        let size = render("{% for i in range(10000) %}{{ 'x' * 10000000 }}{% endfor %}");
        assert!(size.contains("would pass 64 MiB"), "{size}");
    }

    #[test]
    fn dates_format_like_strftime() {
        // 2024-02-29 13:05:09 UTC.
        assert_eq!(
            format_time(1_709_211_909, "%d %b %Y %H:%M:%S %B %m %% %q"),
            "29 Feb 2024 13:05:09 February 02 % %q"
        );
        assert_eq!(format_time(0, "%Y-%m-%d"), "1970-01-01");
    }

    #[test]
    fn raise_exception_and_python_methods() {
        let t = ChatTemplate::new(
            "{% if messages[0].role == 'system' %}{{ raise_exception('no system') }}{% endif %}\
             {% for m in messages %}{{ m.content.strip().upper() }}{% endfor %}"
                .into(),
            "test".into(),
            String::new(),
            String::new(),
        );
        assert_eq!(
            t.render(&[Message::new("user", "  hi ")], false).unwrap(),
            "HI"
        );
        let e = t
            .render(&[Message::new("system", "x")], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no system") && e.contains("test"), "{e}");
    }
}
