//! Memory budgets of models weft has only a config.json of: the template's tensor
//! shapes in the stored types llama-quantize would give them.

mod common;
use common::*;
use weft_runtime::quant_mix::QuantMix;
use weft_runtime::{BackendKind, Model, PassSelection};

fn config(name: &str) -> String {
    let p = fixtures().join("standins").join(name).join("config.json");
    p.to_str().unwrap().to_string()
}

fn assumed(name: &str, mix: &str) -> Model {
    let mut m = Model::open(&config(name), &mut |_| {}).unwrap();
    assert!(m.source.config_only());
    m.assume_quant(mix.parse::<QuantMix>().unwrap());
    m
}

/// Gemma 3 270M's published config, assumed Q4_K_M, needs exactly the bytes of the real
/// Q4_K_M file's tensors: every per-tensor choice (K-quant fallbacks for rows of 640,
/// more bits for half the V and down projections, the tied embedding as the output) agrees.
#[test]
fn q4_k_m_mix_matches_a_real_file() {
    let real = open_shared("gemma3-270m").budget(4096).unwrap();
    let from_config = assumed("gemma-3-270m", "Q4_K_M").budget(4096).unwrap();
    eprintln!(
        "gemma3-270m weights: real file {} bytes, config.json as Q4_K_M {} bytes",
        real.weight_bytes, from_config.weight_bytes
    );
    assert_eq!(from_config.weight_bytes, real.weight_bytes);
    assert_eq!(from_config.kv_bytes, real.kv_bytes);
}

/// Published Q4_K_M GGUF of Qwen2.5-Coder-14B: 8.99 GB (tensors plus a few MB of
/// metadata and vocabulary).
#[test]
fn qwen2_5_coder_14b_q4_k_m_is_about_9_gb() {
    let b = assumed("qwen2.5-coder-14b", "Q4_K_M").budget(4096).unwrap();
    let rel = (b.weight_bytes as f64 - 8.99e9).abs() / 8.99e9;
    eprintln!(
        "qwen2.5-coder-14b Q4_K_M weights {} bytes ({rel:.3} from 8.99e9)",
        b.weight_bytes
    );
    assert!(rel < 0.05, "{} bytes", b.weight_bytes);
    // 48 layers × 8 kv heads × 128 dims × (K, V) × f32 × 4096 positions.
    assert_eq!(b.kv_bytes, 48 * 8 * 128 * 2 * 4 * 4096);
}

/// Published Q4_K_M GGUF of gemma-4-31B-it: 18.7e9 bytes (a quantiser's model card
/// comparing against its own mix; another lists 17.4 GiB, the same size).
#[test]
fn gemma_4_31b_q4_k_m_is_about_18_7_gb() {
    let b = assumed("gemma-4-31b", "Q4_K_M").budget(4096).unwrap();
    let rel = (b.weight_bytes as f64 - 18.7e9).abs() / 18.7e9;
    eprintln!(
        "gemma-4-31b Q4_K_M weights {} bytes ({rel:.3} from 18.7e9)",
        b.weight_bytes
    );
    assert!(rel < 0.05, "{} bytes", b.weight_bytes);
}

/// Gemma 4 31B: full layers have 4 kv heads of 512 dims and no V weights (K doubles as V),
/// sliding layers 16 of 256 in rings; the head is the tied embedding.
#[test]
fn gemma_4_31b_budget_follows_its_layer_kinds() {
    let m = assumed("gemma-4-31b", "BF16");
    let b = m.budget(1024).unwrap();
    let (full, sliding) = (10u64, 50u64);
    let (hidden, ffn, vocab) = (5376u64, 21504u64, 262144u64);
    // BF16 matrices: q and o of 32 heads, k (and v) of the layer's kv heads, the FFN.
    let matrices = vocab * hidden
        + full * hidden * (32 * 512 * 2 + 4 * 512)
        + sliding * hidden * (32 * 256 * 2 + 16 * 256 * 2)
        + 60 * 3 * hidden * ffn;
    // f32 vectors: four norms and the layer scalar per layer, q/k norms per head dim.
    let vectors = 60 * (4 * hidden + 1) + full * 2 * 512 + sliding * 2 * 256 + hidden;
    assert_eq!(b.weight_bytes, 2 * matrices + 4 * vectors);
    assert_eq!(
        b.kv_bytes,
        (full * 4 * 512 + sliding * 16 * 256) * 2 * 4 * 1024
    );
    // At 32k positions a sliding layer keeps a ring of its window (1,024) and 512 more.
    assert_eq!(
        m.budget(32768).unwrap().kv_bytes,
        (full * 4 * 512 * 32768 + sliding * 16 * 256 * (1024 + 512)) * 2 * 4
    );
    // A config-only model compiles but does not run.
    let plan = m.compile(&PassSelection::all()).unwrap().plan;
    assert!(m.session(BackendKind::Cpu, plan, 8).is_err());
}
