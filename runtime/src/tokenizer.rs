//! Tokenizers: GGUF vocabularies (byte-level BPE and SentencePiece-style, as
//! llama.cpp reads them) and Hugging Face `tokenizer.json` files.
//!
//! `encode` reproduces llama.cpp's ids for a plain prompt: BOS only when the
//! model asks for it, user-defined tokens matched in the raw text, control
//! tokens never parsed from text. Decoding hides control tokens, as llama.cpp
//! does when not asked to render special tokens.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{
    OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior,
};
use weft_ir::{MetaValue, PackedArray, StrList, StrListBuilder};

/// Everything that can go wrong building or running a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer: missing metadata key '{key}'")]
    MissingKey { key: String },
    #[error("tokenizer: metadata key '{key}': expected {expected}, found {found}")]
    BadKey {
        key: String,
        expected: String,
        found: String,
    },
    #[error("tokenizer: unsupported tokenizer.ggml.model '{0}' (expected \"gpt2\" or \"llama\")")]
    UnknownModel(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed JSON: {msg}")]
    Json { path: PathBuf, msg: String },
    #[error("{path}: cannot load tokenizer: {msg}")]
    Load { path: PathBuf, msg: String },
    #[error("tokenizer: cannot build the BPE model from the GGUF vocabulary: {0}")]
    Build(String),
    #[error("tokenizer: cannot encode text: {0}")]
    Encode(String),
}

/// GGUF `tokenizer.ggml.token_type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenKind {
    fn from_gguf(t: i64) -> TokenKind {
        match t {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            // 0 (undefined) and anything else are suppressed when decoding, as in llama.cpp.
            _ => TokenKind::Unused,
        }
    }
}

enum Model {
    /// GGUF byte-level BPE: llama.cpp's pre-tokenizer regexes (run by
    /// `tokenizers`), then the `tokenizers` BPE merge algorithm over our own
    /// compact vocabulary and merge table.
    Bpe {
        pre: Sequence,
        vocab: VocabIndex,
        /// (left, right) → (rank, merged id).
        merges: HashMap<(u32, u32), (u32, u32)>,
        /// Words already in the vocabulary skip merging (llama3-style).
        ignore_merges: bool,
    },
    /// GGUF SentencePiece-style vocabulary, llama.cpp's greedy bigram merge.
    Spm {
        vocab: VocabIndex,
        scores: Arc<[f32]>,
        byte_ids: Vec<Option<u32>>,
        add_space_prefix: bool,
    },
    /// A Hugging Face `tokenizer.json`.
    Hf {
        hf: Box<tokenizers::Tokenizer>,
        add_bos: Option<bool>,
        strip_leading_space: bool,
    },
}

/// A text tokenizer for one model.
pub struct Tokenizer {
    model: Model,
    /// Decoded bytes of each id (empty for hidden tokens).
    pieces: Pieces,
    /// User-defined tokens, longest first, matched in raw text before the model runs.
    user_defined: Vec<(String, u32)>,
    /// User-defined and control tokens, longest first: what a rendered chat template's
    /// special-token texts (`<|im_start|>`, `<start_of_turn>`) are parsed as.
    special: Vec<(String, u32)>,
    bos: Option<u32>,
    add_bos: bool,
    eos: Vec<u32>,
    /// What the caller should hear about (e.g. an unknown pre-tokenizer's fallback).
    warnings: Vec<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.model {
            Model::Bpe { .. } => "gguf-bpe",
            Model::Spm { .. } => "gguf-spm",
            Model::Hf { .. } => "hf",
        };
        write!(
            f,
            "Tokenizer({kind}, {} tokens, bos {:?}, eos {:?})",
            self.pieces.len(),
            self.bos,
            self.eos
        )
    }
}

/// Texts llama.cpp treats as end of generation when present in the vocabulary.
const EOG_TEXTS: [&str; 9] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
];

fn bad_key(key: &str, expected: &str, v: &MetaValue) -> TokenizerError {
    TokenizerError::BadKey {
        key: key.into(),
        expected: expected.into(),
        found: v.summary(),
    }
}

fn meta_str<'a>(
    meta: &'a BTreeMap<String, MetaValue>,
    key: &str,
) -> Result<Option<&'a str>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| bad_key(key, "a string", v)),
    }
}

fn meta_bool(
    meta: &BTreeMap<String, MetaValue>,
    key: &str,
) -> Result<Option<bool>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| bad_key(key, "a bool", v)),
    }
}

fn meta_id(
    meta: &BTreeMap<String, MetaValue>,
    key: &str,
    n: usize,
) -> Result<Option<u32>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(id) if (id as usize) < n => Ok(Some(id as u32)),
            _ => Err(bad_key(
                key,
                &format!("a token id below the vocabulary size {n}"),
                v,
            )),
        },
    }
}

/// A string array, packed (shared, no copy) or a plain `Array` (copied).
fn meta_strs(
    meta: &BTreeMap<String, MetaValue>,
    key: &str,
) -> Result<Option<StrList>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(MetaValue::Packed(PackedArray::Str(s))) => Ok(Some(s.clone())),
        Some(MetaValue::Array(a)) => {
            let mut b = StrListBuilder::with_capacity(a.len(), 0);
            for (i, v) in a.iter().enumerate() {
                let s = v
                    .as_str()
                    .ok_or_else(|| bad_key(&format!("{key}[{i}]"), "a string", v))?;
                b.push(s);
            }
            Ok(Some(b.finish()))
        }
        Some(v) => Err(bad_key(key, "an array of strings", v)),
    }
}

/// Element `i` of an integer array, packed or not.
fn elem_i64(v: &MetaValue, i: usize) -> Option<i64> {
    match v {
        MetaValue::Packed(p) => p.get_i64(i),
        MetaValue::Array(a) => match a.get(i)? {
            MetaValue::Int(t) => Some(*t),
            MetaValue::UInt(t) => Some(*t as i64),
            _ => None,
        },
        _ => None,
    }
}

/// Element `i` of a numeric array, packed or not.
fn elem_f64(v: &MetaValue, i: usize) -> Option<f64> {
    match v {
        MetaValue::Packed(p) => p.get_f64(i),
        MetaValue::Array(a) => a.get(i)?.as_f64(),
        _ => None,
    }
}

/// FNV-1a 64 of a token text.
fn text_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Text → id over a [`StrList`] without a second copy of the texts: an
/// open-addressing table of ids, each probe verified against the list. A text
/// listed twice maps to its last id.
struct VocabIndex {
    texts: StrList,
    /// id + 1 per slot, 0 for empty; the length is a power of two.
    slots: Vec<u32>,
}

impl VocabIndex {
    fn new(texts: StrList) -> VocabIndex {
        let cap = (texts.len() * 3 / 2 + 1).next_power_of_two().max(16);
        let mut slots = vec![0u32; cap];
        let mask = cap - 1;
        for (i, t) in texts.iter().enumerate() {
            let mut k = text_hash(t) as usize & mask;
            loop {
                match slots[k] {
                    0 => {
                        slots[k] = i as u32 + 1;
                        break;
                    }
                    id if texts.get(id as usize - 1) == Some(t) => {
                        slots[k] = i as u32 + 1;
                        break;
                    }
                    _ => k = (k + 1) & mask,
                }
            }
        }
        VocabIndex { texts, slots }
    }

    fn get(&self, text: &str) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut k = text_hash(text) as usize & mask;
        loop {
            match self.slots[k] {
                0 => return None,
                id if self.texts.get(id as usize - 1) == Some(text) => return Some(id - 1),
                _ => k = (k + 1) & mask,
            }
        }
    }

    fn text(&self, id: u32) -> &str {
        self.texts.get(id as usize).unwrap_or_default()
    }

    fn texts(&self) -> &StrList {
        &self.texts
    }
}

/// The decoded bytes of every id, in one buffer.
#[derive(Default)]
struct Pieces {
    data: Vec<u8>,
    /// End of each id's bytes in `data` (vocabularies stay far below 4 GiB).
    ends: Vec<u32>,
}

impl Pieces {
    fn with_capacity(n: usize) -> Pieces {
        Pieces {
            data: Vec::new(),
            ends: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if u32::try_from(self.data.len() + bytes.len()).is_ok() {
            self.data.extend_from_slice(bytes);
        }
        self.ends.push(self.data.len() as u32);
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match self.ends.get(i) {
            Some(&end) => {
                let start = if i == 0 { 0 } else { self.ends[i - 1] };
                &self.data[start as usize..end as usize]
            }
            None => &[],
        }
    }

    fn shrink(mut self) -> Pieces {
        self.data.shrink_to_fit();
        self
    }
}

/// GPT-2's byte-to-character table: printable bytes map to themselves, the
/// rest to U+0100 onwards.
fn byte_level_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let c = if printable {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\0');
    }
    table
}

/// Inverts the byte-level mapping; characters outside it keep their UTF-8 bytes.
fn byte_level_decode_into(text: &str, inverse: &HashMap<char, u8>, out: &mut Vec<u8>) {
    for c in text.chars() {
        match inverse.get(&c) {
            Some(&b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

/// `<0xAB>` → 0xAB.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// SentencePiece piece → bytes: "▁" is a space, `<0xXX>` a raw byte.
fn spm_piece_bytes(text: &str) -> Vec<u8> {
    match parse_byte_token(text) {
        Some(b) => vec![b],
        None => text.replace('\u{2581}', " ").into_bytes(),
    }
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One BPE pre-tokenizer of llama.cpp: the `tokenizer.ggml.pre` names it answers to,
/// its regexes (applied in turn), whether it skips merges for words already in the
/// vocabulary, and whether it adds BOS by default. One table, so a name never has a
/// BOS rule without its regexes.
struct PreTokenizerRule {
    names: &'static [&'static str],
    regexes: &'static [&'static str],
    ignore_merges: bool,
    adds_bos: bool,
}

const PRE_TOKENIZERS: &[PreTokenizerRule] = &[
    PreTokenizerRule {
        names: &["default"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizerRule {
        names: &[
            "gpt2",
            "gpt-2",
            "phi-2",
            "mpt",
            "olmo",
            "jais",
            "roberta-bpe",
        ],
        regexes: &[GPT2],
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizerRule {
        names: &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        regexes: &[r"\p{N}", GPT2],
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizerRule {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3"],
        regexes: &[LLAMA3],
        ignore_merges: true,
        adds_bos: true,
    },
    PreTokenizerRule {
        names: &["dbrx", "smaug-bpe"],
        regexes: &[LLAMA3],
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizerRule {
        names: &["qwen2", "stablelm2", "megrez", "deepseek-r1-qwen"],
        regexes: &[QWEN2],
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizerRule {
        names: &["tekken"],
        regexes: &[TEKKEN],
        ignore_merges: true,
        adds_bos: true,
    },
];

/// The pre-tokenizer for a `tokenizer.ggml.pre` value; an unknown value gets the
/// closest generic rule (GPT-2's) and a warning, so the model still compiles and runs.
fn pre_tokenizer(pre: &str) -> (&'static PreTokenizerRule, Option<String>) {
    match PRE_TOKENIZERS.iter().find(|p| p.names.contains(&pre)) {
        Some(p) => (p, None),
        None => (
            &PRE_TOKENIZERS[1],
            Some(format!(
                "tokenizer: unknown tokenizer.ggml.pre '{pre}': encoding text with the generic GPT-2 rule, which may split words differently from the model's own"
            )),
        ),
    }
}

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    // Highest score first; on ties, the leftmost pair (llama.cpp's order).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// llama.cpp's SentencePiece tokenization of one already-escaped fragment.
fn spm_tokenize(
    text: &str,
    vocab: &VocabIndex,
    scores: &[f32],
    byte_ids: &[Option<u32>],
    out: &mut Vec<u32>,
) {
    // Symbols are (start, len) byte ranges of `text`, linked by prev/next.
    struct Sym {
        start: usize,
        len: usize,
        prev: Option<usize>,
        next: Option<usize>,
    }
    let mut syms: Vec<Sym> = Vec::new();
    for (i, (start, c)) in text.char_indices().enumerate() {
        syms.push(Sym {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: None,
        });
        if i > 0 {
            syms[i - 1].next = Some(i);
        }
    }
    if syms.is_empty() {
        return;
    }
    let mut queue = BinaryHeap::new();
    let try_add = |syms: &[Sym],
                   queue: &mut BinaryHeap<Bigram>,
                   left: Option<usize>,
                   right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        let start = syms[l].start;
        let size = syms[l].len + syms[r].len;
        if let Some(id) = vocab.get(&text[start..start + size]) {
            let score = scores.get(id as usize).copied().unwrap_or(0.0);
            queue.push(Bigram {
                score,
                left: l,
                right: r,
                size,
            });
        }
    };
    for i in 1..syms.len() {
        try_add(&syms, &mut queue, Some(i - 1), Some(i));
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (b.left, b.right);
        // Skip pairs whose symbols were merged away since they were queued.
        if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != b.size {
            continue;
        }
        syms[l].len += syms[r].len;
        syms[r].len = 0;
        syms[l].next = syms[r].next;
        if let Some(n) = syms[r].next {
            syms[n].prev = Some(l);
        }
        let prev = syms[l].prev;
        let next = syms[l].next;
        try_add(&syms, &mut queue, prev, Some(l));
        try_add(&syms, &mut queue, Some(l), next);
    }
    let mut i = Some(0);
    while let Some(k) = i {
        let piece = &text[syms[k].start..syms[k].start + syms[k].len];
        match vocab.get(piece) {
            Some(id) => out.push(id),
            // Only unmerged single characters can be missing: spell them as bytes.
            None => out.extend(piece.bytes().filter_map(|b| byte_ids[b as usize])),
        }
        i = syms[k].next;
    }
}

/// The `tokenizers` crate's BPE (no dropout, unknown token, or affixes) of one
/// pre-tokenized word: symbols are its characters found in the vocabulary;
/// the lowest-ranked adjacent pair merges first, leftmost on ties.
fn bpe_word(
    word: &str,
    vocab: &VocabIndex,
    merges: &HashMap<(u32, u32), (u32, u32)>,
    ignore_merges: bool,
    out: &mut Vec<u32>,
) {
    if word.is_empty() {
        return;
    }
    if ignore_merges {
        if let Some(id) = vocab.get(word) {
            out.push(id);
            return;
        }
    }
    #[derive(Clone, Copy)]
    struct Sym {
        id: u32,
        prev: Option<usize>,
        next: Option<usize>,
        live: bool,
    }
    let mut syms: Vec<Sym> = Vec::with_capacity(word.len());
    for (i, c) in word.char_indices() {
        // Characters outside the vocabulary are dropped, as `tokenizers` does
        // without an unknown token.
        if let Some(id) = vocab.get(&word[i..i + c.len_utf8()]) {
            let k = syms.len();
            syms.push(Sym {
                id,
                prev: k.checked_sub(1),
                next: None,
                live: true,
            });
            if k > 0 {
                syms[k - 1].next = Some(k);
            }
        }
    }
    // (rank, pos, merged id), smallest rank then smallest pos first.
    let mut queue: BinaryHeap<std::cmp::Reverse<(u32, usize, u32)>> = syms
        .windows(2)
        .enumerate()
        .filter_map(|(pos, w)| {
            merges
                .get(&(w[0].id, w[1].id))
                .map(|&(rank, id)| std::cmp::Reverse((rank, pos, id)))
        })
        .collect();
    while let Some(std::cmp::Reverse((_, pos, new_id))) = queue.pop() {
        if !syms[pos].live {
            continue;
        }
        let Some(next) = syms[pos].next else {
            continue;
        };
        // Skip entries made stale by an earlier merge.
        if merges
            .get(&(syms[pos].id, syms[next].id))
            .is_none_or(|&(_, id)| id != new_id)
        {
            continue;
        }
        let right = syms[next];
        syms[pos].id = new_id;
        syms[pos].next = right.next;
        syms[next].live = false;
        if let Some(n) = right.next {
            syms[n].prev = Some(pos);
        }
        if let Some(p) = syms[pos].prev {
            if let Some(&(rank, id)) = merges.get(&(syms[p].id, new_id)) {
                queue.push(std::cmp::Reverse((rank, p, id)));
            }
        }
        if let Some(n) = syms[pos].next {
            if let Some(&(rank, id)) = merges.get(&(new_id, syms[n].id)) {
                queue.push(std::cmp::Reverse((rank, pos, id)));
            }
        }
    }
    out.extend(syms.iter().filter(|s| s.live).map(|s| s.id));
}

/// A raw text fragment, or a token matched verbatim.
enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// Splits text on user-defined tokens, longest token first (llama.cpp's order).
fn partition<'a>(text: &'a str, specials: &[(String, u32)]) -> Vec<Fragment<'a>> {
    let mut frags = vec![Fragment::Text(text)];
    for (tok, id) in specials {
        let mut next = Vec::with_capacity(frags.len());
        for f in frags {
            match f {
                Fragment::Text(t) if t.contains(tok.as_str()) => {
                    let mut rest = t;
                    while let Some(pos) = rest.find(tok.as_str()) {
                        if pos > 0 {
                            next.push(Fragment::Text(&rest[..pos]));
                        }
                        next.push(Fragment::Token(*id));
                        rest = &rest[pos + tok.len()..];
                    }
                    if !rest.is_empty() {
                        next.push(Fragment::Text(rest));
                    }
                }
                other => next.push(other),
            }
        }
        frags = next;
    }
    frags
}

impl Tokenizer {
    /// Warnings from building it, for the caller to pass on.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Builds the tokenizer a GGUF file describes; `None` when it has none.
    pub fn from_gguf(
        meta: &BTreeMap<String, MetaValue>,
    ) -> Result<Option<Tokenizer>, TokenizerError> {
        let Some(model) = meta_str(meta, "tokenizer.ggml.model")? else {
            return Ok(None);
        };
        let mut warnings = Vec::new();
        let tokens = meta_strs(meta, "tokenizer.ggml.tokens")?.ok_or_else(|| {
            TokenizerError::MissingKey {
                key: "tokenizer.ggml.tokens".into(),
            }
        })?;
        // llama.cpp renames empty tokens so they can never match text.
        let texts = if tokens.iter().any(str::is_empty) {
            let mut b = StrListBuilder::with_capacity(tokens.len(), 0);
            for (i, t) in tokens.iter().enumerate() {
                if t.is_empty() {
                    b.push(&format!("[EMPTY_{i}]"));
                } else {
                    b.push(t);
                }
            }
            b.finish()
        } else {
            tokens
        };
        let n = texts.len();
        let kinds: Vec<TokenKind> = match meta.get("tokenizer.ggml.token_type") {
            None => vec![TokenKind::Normal; n],
            Some(v) => match v.array_len() {
                Some(len) if len == n => (0..n)
                    .map(|i| elem_i64(v, i).map_or(TokenKind::Unused, TokenKind::from_gguf))
                    .collect(),
                Some(len) => {
                    return Err(TokenizerError::BadKey {
                        key: "tokenizer.ggml.token_type".into(),
                        expected: format!("{n} entries (one per token)"),
                        found: format!("{len} entries"),
                    })
                }
                None => return Err(bad_key("tokenizer.ggml.token_type", "an array", v)),
            },
        };
        let vocab = VocabIndex::new(texts);

        let longest_first = |kinds_wanted: &[TokenKind]| {
            let mut v: Vec<(String, u32)> = (0..n)
                .filter(|&i| kinds_wanted.contains(&kinds[i]))
                .map(|i| (vocab.text(i as u32).to_string(), i as u32))
                .filter(|(t, _)| !t.is_empty())
                .collect();
            v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
            v
        };
        let user_defined = longest_first(&[TokenKind::UserDefined]);
        let special = longest_first(&[TokenKind::UserDefined, TokenKind::Control]);

        let mut eog: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| vocab.get(t)).collect();
        let model_name = model;
        let (model, pieces, default_bos, default_add_bos) = match model {
            "gpt2" => {
                let pre = meta_str(meta, "tokenizer.ggml.pre")?.unwrap_or("default");
                let (pre_tok, warning) = pre_tokenizer(pre);
                warnings.extend(warning);
                let (regexes, ignore_merges) = (pre_tok.regexes, pre_tok.ignore_merges);
                let merges_meta = meta_strs(meta, "tokenizer.ggml.merges")?.ok_or_else(|| {
                    TokenizerError::MissingKey {
                        key: "tokenizer.ggml.merges".into(),
                    }
                })?;
                let mut merges = HashMap::with_capacity(merges_meta.len());
                let mut kept = 0u32;
                let mut joined = String::new();
                for s in merges_meta.iter() {
                    // Split at the first space after the first character, as llama.cpp does.
                    let Some(pos) = s.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                        continue;
                    };
                    let (a, b) = (&s[..pos], &s[pos + 1..]);
                    joined.clear();
                    joined.push_str(a);
                    joined.push_str(b);
                    // A merge whose parts or result are not tokens can never yield a
                    // token (the `tokenizers` builder rejects them): drop it. Ranks
                    // count the kept merges; a repeated pair keeps its last rank.
                    if let (Some(a), Some(b), Some(ab)) =
                        (vocab.get(a), vocab.get(b), vocab.get(&joined))
                    {
                        merges.insert((a, b), (kept, ab));
                        kept += 1;
                    }
                }
                drop(merges_meta);
                merges.shrink_to_fit();
                let mut pres: Vec<PreTokenizerWrapper> = Vec::new();
                for r in regexes {
                    let split = Split::new(
                        SplitPattern::Regex(r.to_string()),
                        SplitDelimiterBehavior::Isolated,
                        false,
                    )
                    .map_err(|e| {
                        TokenizerError::Build(format!("pre-tokenizer regex {r:?}: {e}"))
                    })?;
                    pres.push(split.into());
                }
                pres.push(ByteLevel::new(false, false, false).into());

                let inverse: HashMap<char, u8> = byte_level_chars()
                    .iter()
                    .enumerate()
                    .map(|(b, &c)| (c, b as u8))
                    .collect();
                let mut pieces = Pieces::with_capacity(n);
                let mut buf = Vec::new();
                for (i, t) in vocab.texts().iter().enumerate() {
                    match kinds[i] {
                        TokenKind::Normal => {
                            buf.clear();
                            byte_level_decode_into(t, &inverse, &mut buf);
                            pieces.push(&buf);
                        }
                        TokenKind::UserDefined => pieces.push(t.as_bytes()),
                        _ => pieces.push(&[]),
                    }
                }
                (
                    Model::Bpe {
                        pre: Sequence::new(pres),
                        vocab,
                        merges,
                        ignore_merges,
                    },
                    pieces,
                    Some(11),
                    pre_tok.adds_bos,
                )
            }
            "llama" => {
                let scores: Arc<[f32]> = match meta.get("tokenizer.ggml.scores") {
                    None => vec![0.0; n].into(),
                    Some(MetaValue::Packed(PackedArray::F32(a))) if a.len() == n => a.clone(),
                    Some(v) => match v.array_len() {
                        Some(len) if len == n => (0..n)
                            .map(|i| elem_f64(v, i).unwrap_or(0.0) as f32)
                            .collect(),
                        Some(len) => {
                            return Err(TokenizerError::BadKey {
                                key: "tokenizer.ggml.scores".into(),
                                expected: format!("{n} entries (one per token)"),
                                found: format!("{len} entries"),
                            })
                        }
                        None => return Err(bad_key("tokenizer.ggml.scores", "an array", v)),
                    },
                };
                let mut byte_ids = vec![None; 256];
                for (b, slot) in byte_ids.iter_mut().enumerate() {
                    *slot = vocab.get(&format!("<0x{b:02X}>")).or_else(|| {
                        char::from_u32(b as u32).and_then(|c| vocab.get(c.encode_utf8(&mut [0; 4])))
                    });
                }
                let add_space_prefix =
                    meta_bool(meta, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
                let mut pieces = Pieces::with_capacity(n);
                let mut buf = String::new();
                for (i, t) in vocab.texts().iter().enumerate() {
                    match kinds[i] {
                        TokenKind::Normal if t.contains('\u{2581}') => {
                            buf.clear();
                            for (j, part) in t.split('\u{2581}').enumerate() {
                                if j > 0 {
                                    buf.push(' ');
                                }
                                buf.push_str(part);
                            }
                            pieces.push(buf.as_bytes());
                        }
                        TokenKind::Normal | TokenKind::UserDefined => pieces.push(t.as_bytes()),
                        TokenKind::Byte => match parse_byte_token(t) {
                            Some(b) => pieces.push(&[b]),
                            None => pieces.push(t.replace('\u{2581}', " ").as_bytes()),
                        },
                        _ => pieces.push(&[]),
                    }
                }
                (
                    Model::Spm {
                        vocab,
                        scores,
                        byte_ids,
                        add_space_prefix,
                    },
                    pieces,
                    Some(1),
                    true,
                )
            }
            other => return Err(TokenizerError::UnknownModel(other.to_string())),
        };

        let bos = match meta_id(meta, "tokenizer.ggml.bos_token_id", n)? {
            Some(id) => Some(id),
            None => default_bos.filter(|&b| (b as usize) < n),
        };
        let add_bos = meta_bool(meta, "tokenizer.ggml.add_bos_token")?.unwrap_or(default_add_bos)
            && bos.is_some();
        let mut eos = Vec::new();
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            eos.extend(meta_id(meta, key, n)?);
        }
        if model_name == "llama" && eos.is_empty() && n > 2 {
            eos.push(2);
        }
        eos.append(&mut eog);
        eos.sort_unstable();
        eos.dedup();
        let pieces = pieces.shrink();
        Ok(Some(Tokenizer {
            model,
            pieces,
            user_defined,
            special,
            bos,
            add_bos,
            eos,
            warnings,
        }))
    }

    /// Loads a Hugging Face `tokenizer.json`, reading `tokenizer_config.json`
    /// (and `config.json` / `generation_config.json`) beside it for BOS/EOS.
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let text = std::fs::read(path).map_err(|e| TokenizerError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let json: Value = serde_json::from_slice(&text).map_err(|e| TokenizerError::Json {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let mut hf =
            tokenizers::Tokenizer::from_bytes(&text).map_err(|e| TokenizerError::Load {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        // Special tokens in the prompt are plain text, as in llama.cpp.
        hf.set_encode_special_tokens(true);

        let dir = path.parent().unwrap_or(Path::new("."));
        let read_side = |name: &str| -> Result<Option<Value>, TokenizerError> {
            let p = dir.join(name);
            match std::fs::read(&p) {
                Ok(b) => serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|e| TokenizerError::Json {
                        path: p,
                        msg: e.to_string(),
                    }),
                Err(_) => Ok(None),
            }
        };
        let tok_config = read_side("tokenizer_config.json")?.unwrap_or(Value::Null);
        let token_text = |v: Option<&Value>| -> Option<String> {
            match v? {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        let bos = token_text(tok_config.get("bos_token")).and_then(|t| hf.token_to_id(&t));
        let add_bos = tok_config.get("add_bos_token").and_then(Value::as_bool);
        let mut eos: Vec<u32> = token_text(tok_config.get("eos_token"))
            .and_then(|t| hf.token_to_id(&t))
            .into_iter()
            .collect();
        for side in ["generation_config.json", "config.json"] {
            // Optional files: a malformed one only loses its EOS hint.
            if let Ok(Some(v)) = read_side(side) {
                match v.get("eos_token_id") {
                    Some(Value::Number(id)) => eos.extend(id.as_u64().map(|i| i as u32)),
                    Some(Value::Array(a)) => {
                        eos.extend(a.iter().filter_map(|i| i.as_u64().map(|i| i as u32)))
                    }
                    _ => {}
                }
            }
        }
        eos.extend(EOG_TEXTS.iter().filter_map(|t| hf.token_to_id(t)));
        let n = hf.get_vocab_size(true);
        eos.retain(|&i| (i as usize) < n);
        eos.sort_unstable();
        eos.dedup();

        // Byte-level vocabularies spell bytes as GPT-2 characters; the others are
        // SentencePiece-style ("▁" for space, `<0xXX>` byte fallback).
        let byte_level = json
            .get("decoder")
            .is_some_and(|d| d.to_string().contains("\"ByteLevel\""));
        let inverse: HashMap<char, u8> = byte_level_chars()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let added = hf.get_added_tokens_decoder();
        let mut pieces = Pieces::with_capacity(n);
        let mut buf = Vec::new();
        for id in 0..n as u32 {
            if let Some(a) = added.get(&id) {
                pieces.push(if a.special { &[] } else { a.content.as_bytes() });
                continue;
            }
            match hf.id_to_token(id) {
                None => pieces.push(&[]),
                Some(t) if byte_level => {
                    buf.clear();
                    byte_level_decode_into(&t, &inverse, &mut buf);
                    pieces.push(&buf);
                }
                Some(t) => pieces.push(&spm_piece_bytes(&t)),
            }
        }
        drop(added);
        let strip_leading_space = !byte_level
            && json
                .get("decoder")
                .is_some_and(|d| d.to_string().contains("\"Strip\""));
        Ok(Tokenizer {
            model: Model::Hf {
                hf: Box::new(hf),
                add_bos,
                strip_leading_space,
            },
            pieces: pieces.shrink(),
            user_defined: Vec::new(),
            special: Vec::new(),
            bos,
            add_bos: add_bos.unwrap_or(false),
            eos,
            warnings: Vec::new(),
        })
    }

    /// Token ids of a plain prompt, BOS first when the model asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with(text, false)
    }

    /// Token ids of a rendered chat template: the texts of special and control tokens
    /// become those tokens, and BOS is only where the text names it (as transformers'
    /// `apply_chat_template` tokenizes).
    pub fn encode_chat(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with(text, true)
    }

    fn encode_with(&self, text: &str, chat: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::new();
        let (specials, add_bos) = match chat {
            true => (&self.special, false),
            false => (&self.user_defined, self.add_bos),
        };
        match &self.model {
            Model::Hf { hf, .. } if chat => {
                let enc = hf
                    .encode(text, false)
                    .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                return Ok(enc.get_ids().to_vec());
            }
            Model::Hf { hf, add_bos, .. } => {
                let enc = hf
                    .encode(text, true)
                    .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                out.extend_from_slice(enc.get_ids());
                // tokenizer_config's add_bos_token overrides the post-processor.
                if let Some(bos) = self.bos {
                    let starts = out.first() == Some(&bos);
                    match add_bos {
                        Some(true) if !starts => out.insert(0, bos),
                        Some(false) if starts => {
                            let plain = hf
                                .encode(text, false)
                                .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                            if plain.get_ids().first() != Some(&bos) {
                                out.remove(0);
                            }
                        }
                        _ => {}
                    }
                }
                return Ok(out);
            }
            Model::Bpe {
                pre,
                vocab,
                merges,
                ignore_merges,
            } => {
                if add_bos {
                    out.extend(self.bos);
                }
                for frag in partition(text, specials) {
                    match frag {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(t) => {
                            let mut pts = PreTokenizedString::from(t);
                            pre.pre_tokenize(&mut pts)
                                .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                            for (word, _, _) in
                                pts.get_splits(OffsetReferential::Original, OffsetType::Byte)
                            {
                                bpe_word(word, vocab, merges, *ignore_merges, &mut out);
                            }
                        }
                    }
                }
            }
            Model::Spm {
                vocab,
                scores,
                byte_ids,
                add_space_prefix,
            } => {
                if add_bos {
                    out.extend(self.bos);
                }
                let mut prev_special = true;
                for frag in partition(text, specials) {
                    match frag {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text(t) => {
                            let mut s = String::with_capacity(t.len() + 3);
                            if *add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(t);
                            let s = s.replace(' ', "\u{2581}");
                            spm_tokenize(&s, vocab, scores, byte_ids, &mut out);
                            prev_special = false;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Text of a token sequence; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.piece(id));
        }
        let strip = match &self.model {
            Model::Spm {
                add_space_prefix, ..
            } => *add_space_prefix,
            Model::Hf {
                strip_leading_space,
                ..
            } => *strip_leading_space,
            Model::Bpe { .. } => false,
        };
        // The space the encoder prepended is not part of the text.
        let skip = usize::from(strip && bytes.first() == Some(&b' '));
        String::from_utf8_lossy(&bytes[skip..]).into_owned()
    }

    fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id)
    }

    /// Raw bytes of one token (empty for control tokens and unknown ids); a
    /// multi-byte character may be split across tokens.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.piece(id).to_vec()
    }

    /// Ids that end generation: EOS, plus end-of-turn/-message tokens present.
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos.clone()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The vocabulary's text of a token (control tokens included), if the id exists.
    pub fn token_text(&self, id: u32) -> Option<String> {
        match &self.model {
            Model::Bpe { vocab, .. } | Model::Spm { vocab, .. } => {
                ((id as usize) < self.pieces.len()).then(|| vocab.text(id).to_string())
            }
            Model::Hf { hf, .. } => hf.id_to_token(id),
        }
    }

    /// Whether `encode` prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
}

/// Turns a stream of token ids into text, holding back bytes of a character
/// that is not complete yet.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// The text completed by this token (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending.extend_from_slice(tok.piece(id));
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: the prefix was just validated.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes can never complete: replace them.
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is still held back (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod pre_tokenizer_tests {
    use super::*;

    /// Every pre-tokenizer's regexes build, and no name is listed twice.
    #[test]
    fn every_listed_name_has_regexes_that_build() {
        let mut seen = std::collections::HashSet::new();
        for p in PRE_TOKENIZERS {
            assert!(!p.regexes.is_empty(), "{:?} has no regexes", p.names);
            for r in p.regexes {
                Split::new(
                    SplitPattern::Regex(r.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .unwrap_or_else(|e| panic!("{:?}: {r:?}: {e}", p.names));
            }
            for n in p.names {
                assert!(seen.insert(*n), "'{n}' is listed twice");
            }
        }
        let (p, warning) = pre_tokenizer("tekken");
        assert!(p.adds_bos && p.ignore_merges && warning.is_none());
        let (p, warning) = pre_tokenizer("no-such-pre");
        assert!(p.names.contains(&"gpt2"));
        assert!(warning.unwrap().contains("no-such-pre"));
    }
}
