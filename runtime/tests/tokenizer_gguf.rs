//! GGUF tokenizers on tiny hand-made vocabularies.

use std::collections::BTreeMap;

use weft_ir::MetaValue;
use weft_runtime::tokenizer::{StreamDecoder, Tokenizer};

fn strs(v: &[String]) -> MetaValue {
    MetaValue::Array(v.iter().map(|s| MetaValue::Str(s.clone())).collect())
}

fn ints(v: &[i64]) -> MetaValue {
    MetaValue::Array(v.iter().map(|&i| MetaValue::Int(i)).collect())
}

/// SentencePiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, then pieces.
fn spm_meta() -> (BTreeMap<String, MetaValue>, Vec<String>) {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let pieces: [(&str, f64, i64); 16] = [
        ("\u{2581}", -1.0, 1),
        ("h", -1.0, 1),
        ("e", -1.0, 1),
        ("l", -1.0, 1),
        ("o", -1.0, 1),
        ("w", -1.0, 1),
        ("r", -1.0, 1),
        ("d", -1.0, 1),
        ("ll", 5.0, 1),
        ("llo", 4.0, 1),
        ("he", 3.0, 1),
        ("hello", 2.0, 1),
        ("\u{2581}hello", 1.0, 1),
        ("or", 6.0, 1),
        ("<tool>", 0.0, 4),
        ("<ctl>", 0.0, 3),
    ];
    for (p, s, t) in pieces {
        tokens.push(p.into());
        scores.push(s);
        types.push(t);
    }
    let mut m = BTreeMap::new();
    m.insert(
        "tokenizer.ggml.model".into(),
        MetaValue::Str("llama".into()),
    );
    m.insert("tokenizer.ggml.tokens".into(), strs(&tokens));
    m.insert("tokenizer.ggml.token_type".into(), ints(&types));
    m.insert(
        "tokenizer.ggml.scores".into(),
        MetaValue::Array(scores.iter().map(|&s| MetaValue::Float(s)).collect()),
    );
    m.insert("tokenizer.ggml.bos_token_id".into(), MetaValue::UInt(1));
    m.insert("tokenizer.ggml.eos_token_id".into(), MetaValue::UInt(2));
    (m, tokens)
}

fn id(tokens: &[String], t: &str) -> u32 {
    tokens
        .iter()
        .position(|x| x == t)
        .unwrap_or_else(|| panic!("no token {t:?}")) as u32
}

#[test]
fn no_tokenizer_in_metadata() {
    assert!(Tokenizer::from_gguf(&BTreeMap::new()).unwrap().is_none());
}

#[test]
fn spm_greedy_merges_and_bos() {
    let (meta, t) = spm_meta();
    let tok = Tokenizer::from_gguf(&meta).unwrap().unwrap();
    assert_eq!(tok.vocab_size(), t.len());
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), vec![2]);
    // BOS by default for llama vocabularies; a space is prefixed.
    let ids = tok.encode("hello world").unwrap();
    let want: Vec<u32> = ["<s>", "\u{2581}hello", "\u{2581}", "w", "or", "l", "d"]
        .iter()
        .map(|s| id(&t, s))
        .collect();
    assert_eq!(ids, want);
    assert_eq!(tok.decode(&ids), "hello world");
    // add_bos_token / add_space_prefix from metadata.
    let mut meta2 = meta.clone();
    meta2.insert(
        "tokenizer.ggml.add_bos_token".into(),
        MetaValue::Bool(false),
    );
    meta2.insert(
        "tokenizer.ggml.add_space_prefix".into(),
        MetaValue::Bool(false),
    );
    let tok2 = Tokenizer::from_gguf(&meta2).unwrap().unwrap();
    assert_eq!(tok2.encode("hello").unwrap(), vec![id(&t, "hello")]);
    assert_eq!(
        tok2.decode(&tok2.encode("hello world").unwrap()),
        "hello world"
    );
}

#[test]
fn spm_byte_fallback_and_streaming() {
    let (meta, t) = spm_meta();
    let tok = Tokenizer::from_gguf(&meta).unwrap().unwrap();
    let ids = tok.encode("hé").unwrap();
    let want: Vec<u32> = ["<s>", "\u{2581}", "h", "<0xC3>", "<0xA9>"]
        .iter()
        .map(|s| id(&t, s))
        .collect();
    assert_eq!(ids, want);
    assert_eq!(tok.decode(&ids), "hé");
    assert_eq!(tok.token_bytes(id(&t, "<0xC3>")), vec![0xC3]);
    // The two halves of "é" arrive in separate tokens.
    let mut s = StreamDecoder::new();
    assert_eq!(s.push(&tok, id(&t, "h")), "h");
    assert_eq!(s.push(&tok, id(&t, "<0xC3>")), "");
    assert_eq!(s.push(&tok, id(&t, "<0xA9>")), "é");
    assert_eq!(s.finish(), "");
    // A 4-byte emoji spelled byte by byte, then a dangling lead byte.
    let emoji = tok.encode("🙂").unwrap();
    assert_eq!(emoji.len(), 1 + 1 + 4);
    let mut s = StreamDecoder::new();
    let outs: Vec<String> = emoji[1..].iter().map(|&i| s.push(&tok, i)).collect();
    assert_eq!(outs, [" ", "", "", "", "🙂"]);
    assert_eq!(s.push(&tok, id(&t, "<0xF0>")), "");
    assert_eq!(s.finish(), "\u{FFFD}");
    // An invalid byte in the middle is replaced, not held back forever.
    let mut s = StreamDecoder::new();
    assert_eq!(s.push(&tok, id(&t, "<0xFF>")), "\u{FFFD}");
    assert_eq!(s.push(&tok, id(&t, "h")), "h");
}

#[test]
fn spm_user_defined_and_control_tokens() {
    let (meta, t) = spm_meta();
    let tok = Tokenizer::from_gguf(&meta).unwrap().unwrap();
    // User-defined tokens are matched in text; the text after one gets the space prefix again
    // only at the start (llama.cpp prefixes after special fragments).
    let ids = tok.encode("he<tool>he").unwrap();
    let want: Vec<u32> = ["<s>", "\u{2581}", "he", "<tool>", "\u{2581}", "he"]
        .iter()
        .map(|s| id(&t, s))
        .collect();
    assert_eq!(ids, want);
    // Control tokens are not parsed from text: "<ctl>" is spelled out.
    let ids = tok.encode("<ctl>").unwrap();
    assert!(!ids.contains(&id(&t, "<ctl>")), "{ids:?}");
    assert_eq!(tok.decode(&ids), "<ctl>");
    // Control tokens decode to nothing.
    assert_eq!(tok.decode(&[id(&t, "<ctl>"), 1, 2]), "");
    assert!(tok.token_bytes(id(&t, "<ctl>")).is_empty());
    assert!(tok.token_bytes(999_999).is_empty());
}

/// GPT-2's byte → character table.
fn byte_chars() -> Vec<char> {
    let mut out = Vec::new();
    let mut n = 256;
    for b in 0..256u32 {
        if (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b) {
            out.push(char::from_u32(b).unwrap());
        } else {
            out.push(char::from_u32(n).unwrap());
            n += 1;
        }
    }
    out
}

fn bpe_meta(pre: &str) -> (BTreeMap<String, MetaValue>, Vec<String>) {
    let mut tokens: Vec<String> = byte_chars().iter().map(|c| c.to_string()).collect();
    let mut types = vec![1i64; 256];
    for (t, ty) in [
        ("he", 1),
        ("ll", 1),
        ("hell", 1),
        ("hello", 1),
        ("Ġw", 1),
        ("<|endoftext|>", 3),
        ("<think>", 4),
    ] {
        tokens.push(t.into());
        types.push(ty);
    }
    let merges: Vec<String> = ["h e", "l l", "he ll", "hell o", "Ġ w"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut m = BTreeMap::new();
    m.insert("tokenizer.ggml.model".into(), MetaValue::Str("gpt2".into()));
    m.insert("tokenizer.ggml.pre".into(), MetaValue::Str(pre.into()));
    m.insert("tokenizer.ggml.tokens".into(), strs(&tokens));
    m.insert("tokenizer.ggml.token_type".into(), ints(&types));
    m.insert("tokenizer.ggml.merges".into(), strs(&merges));
    m.insert("tokenizer.ggml.bos_token_id".into(), MetaValue::UInt(261));
    m.insert("tokenizer.ggml.eos_token_id".into(), MetaValue::UInt(261));
    (m, tokens)
}

#[test]
fn bpe_merges_by_rank() {
    let (meta, t) = bpe_meta("gpt2");
    let tok = Tokenizer::from_gguf(&meta).unwrap().unwrap();
    // No BOS for plain gpt2 vocabularies unless the file asks for it.
    let ids = tok.encode("hello world").unwrap();
    let want: Vec<u32> = ["hello", "Ġw", "o", "r", "l", "d"]
        .iter()
        .map(|s| id(&t, s))
        .collect();
    assert_eq!(ids, want);
    assert_eq!(tok.decode(&ids), "hello world");
    assert_eq!(tok.eos_ids(), vec![261]);
    let mut meta2 = meta.clone();
    meta2.insert("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(true));
    let tok2 = Tokenizer::from_gguf(&meta2).unwrap().unwrap();
    assert_eq!(tok2.encode("hello").unwrap(), vec![261, id(&t, "hello")]);
    // llama-bpe adds BOS by default.
    let (meta3, _) = bpe_meta("llama-bpe");
    let tok3 = Tokenizer::from_gguf(&meta3).unwrap().unwrap();
    assert_eq!(tok3.encode("hello").unwrap(), vec![261, id(&t, "hello")]);
}

#[test]
fn bpe_user_defined_control_and_bytes() {
    let (meta, t) = bpe_meta("smollm");
    let tok = Tokenizer::from_gguf(&meta).unwrap().unwrap();
    let ids = tok.encode("he<think>he").unwrap();
    assert_eq!(ids, vec![id(&t, "he"), id(&t, "<think>"), id(&t, "he")]);
    assert_eq!(tok.decode(&ids), "he<think>he");
    // Control token text is spelled out byte by byte, not parsed.
    let ids = tok.encode("<|endoftext|>").unwrap();
    assert!(!ids.contains(&261) && ids.len() > 1, "{ids:?}");
    assert_eq!(tok.decode(&ids), "<|endoftext|>");
    assert_eq!(tok.decode(&[261]), "");
    // Digits split one by one under smollm; multi-byte text round-trips through byte tokens.
    assert_eq!(tok.encode("123").unwrap().len(), 3);
    let text = "ünïcödé 日本 🙂\n\ttab";
    let ids = tok.encode(text).unwrap();
    assert_eq!(tok.decode(&ids), text);
    let mut s = StreamDecoder::new();
    let mut out: String = ids.iter().map(|&i| s.push(&tok, i)).collect();
    out.push_str(&s.finish());
    assert_eq!(out, text);
    // Every supported pre-tokenizer builds and round-trips.
    for pre in [
        "default",
        "gpt2",
        "smollm",
        "llama-bpe",
        "qwen2",
        "starcoder",
    ] {
        let (meta, _) = bpe_meta(pre);
        let tok = Tokenizer::from_gguf(&meta).unwrap().unwrap();
        let ids = tok.encode("Hello 12345 world's\n\n  x").unwrap();
        assert_eq!(
            tok.decode(&ids).trim_start_matches('\u{0}'),
            "Hello 12345 world's\n\n  x",
            "{pre}"
        );
    }
}

#[test]
fn bad_metadata_is_a_clear_error() {
    // An unknown pre-tokenizer is no error: the generic rule, with a warning.
    let (mut meta, _) = bpe_meta("no-such-pre");
    let tok = Tokenizer::from_gguf(&meta).unwrap().unwrap();
    assert!(tok.warnings()[0].contains("no-such-pre"));
    assert_eq!(
        tok.decode(&tok.encode("Hello world").unwrap()),
        "Hello world"
    );
    meta.insert(
        "tokenizer.ggml.model".into(),
        MetaValue::Str("wordpiece".into()),
    );
    let e = Tokenizer::from_gguf(&meta).unwrap_err().to_string();
    assert!(e.contains("wordpiece"), "{e}");
    let (mut meta, _) = bpe_meta("gpt2");
    meta.remove("tokenizer.ggml.merges");
    let e = Tokenizer::from_gguf(&meta).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.merges"), "{e}");
    let (mut meta, _) = bpe_meta("gpt2");
    meta.insert(
        "tokenizer.ggml.bos_token_id".into(),
        MetaValue::UInt(1 << 20),
    );
    let e = Tokenizer::from_gguf(&meta).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.bos_token_id"), "{e}");
    let (mut meta, _) = spm_meta();
    meta.insert("tokenizer.ggml.token_type".into(), ints(&[1, 2]));
    let e = Tokenizer::from_gguf(&meta).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.token_type"), "{e}");
}
