//! Opens the real SmolLM2 GGUF (fetched into $WEFT_HOME when missing).

use std::path::PathBuf;

use weft_formats::{ModelSource, SourceKind};
use weft_ir::{DType, WeightProvider};

fn model_path() -> PathBuf {
    weft_runtime::resolve("smollm2-135m", &mut |m| eprintln!("{m}")).expect("fetch smollm2-135m")
}

#[test]
fn smollm2_gguf_loads() {
    let path = model_path();
    let m = ModelSource::open(&path).unwrap();
    assert_eq!(m.kind, SourceKind::Gguf);
    assert_eq!(m.architecture, "llama");
    for (k, v) in &m.metadata {
        eprintln!("{k} = {}", v.summary());
    }
    for t in m.tensors.iter().take(12) {
        eprintln!("{} {} {:?} {}", t.name, t.type_name, t.shape, t.bytes);
    }
    let emb = m.view("token_embd.weight").unwrap();
    assert_eq!(emb.shape, vec![49152, 576]);
    assert!(matches!(
        emb.dtype,
        DType::Q4_1 | DType::Q8_0 | DType::F16 | DType::F32 | DType::Q4_0
    ));
    assert_eq!(
        emb.bytes().len() as u64,
        m.tensor("token_embd.weight").unwrap().bytes
    );
    assert!(m.weight("no.such.tensor").is_none());
    let h = m.tensor_table_hash();
    assert_eq!(h.len(), 16);
    assert_eq!(h, ModelSource::open(&path).unwrap().tensor_table_hash());
}
