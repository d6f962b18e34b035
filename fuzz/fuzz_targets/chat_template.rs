//! Any text as a chat template (as a model file may carry one), rendered over a short
//! conversation: a prompt or one clear error, in bounded time and memory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_runtime::chat::{ChatTemplate, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let template = ChatTemplate::new(src.into(), "fuzz".into(), "<s>".into(), "</s>".into());
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "Why is the sky blue?"),
        Message::new("assistant", "Rayleigh scattering."),
        Message::new("user", "And sunsets?"),
    ];
    let _ = template.render(&messages, true);
});
