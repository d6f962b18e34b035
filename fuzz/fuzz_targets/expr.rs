//! Any text as a template expression, over numbers, strings and lists.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use weft_families::expr::{eval, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let vars = BTreeMap::from([
        ("hidden".to_string(), Value::Num(64.0)),
        ("n_heads".to_string(), Value::Num(4.0)),
        ("i".to_string(), Value::Num(3.0)),
        ("layout".to_string(), Value::Str("pairs".into())),
        (
            "kinds".to_string(),
            Value::List(vec![Value::Str("full".into()), Value::Num(1.0)]),
        ),
    ]);
    let _ = eval(src, &vars);
});
