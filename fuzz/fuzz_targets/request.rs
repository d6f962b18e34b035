//! Any bytes as the body of a chat or completion request to `weft serve`, parsed and
//! checked as the server does before tokenizing: accepted, or one API error with a
//! client-error status.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    if let Err((status, message)) = weft_runtime::serve::check_request(first & 1 == 1, body) {
        assert!((400..500).contains(&status), "{status}: {message}");
        assert!(!message.is_empty());
    }
});
