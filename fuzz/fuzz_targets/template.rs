//! Any text as a family template, expanded over the seed model and compiled.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_families::{expand_with, parse_template, ModelInfo, SourceKind, TensorMeta};
use weft_ir::MetaValue;
use weft_passes::PassSelection;
use weft_runtime::load::ModelSource;

/// The seed model as the expander sees it.
struct Info(&'static ModelSource);

impl ModelInfo for Info {
    fn source_kind(&self) -> SourceKind {
        SourceKind::Gguf
    }
    fn architecture(&self) -> &str {
        &self.0.architecture
    }
    fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.0.meta(key)
    }
    fn tensor_meta(&self, name: &str) -> Option<TensorMeta> {
        self.0.tensor(name).map(|t| TensorMeta {
            dtype: t.dtype,
            type_name: t.type_name.clone(),
            shape: t.shape.clone(),
        })
    }
    fn origin(&self) -> String {
        "seed".into()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = parse_template("fuzz.toml", text) else {
        return;
    };
    let info = Info(weft_fuzz::seed_model());
    let Ok(x) = expand_with(&info, "fuzz.toml", &t) else {
        return;
    };
    let mut graph = x.graph;
    if weft_passes::infer_shapes(&mut graph).is_err() {
        return;
    }
    let stamp = weft_ir::ModelStamp {
        source: "seed".into(),
        file_bytes: 0,
        tensor_table_hash: String::new(),
    };
    let _ = weft_passes::build_plan(
        graph,
        &PassSelection::all(),
        &x.family,
        stamp,
        x.hparams,
        |_, _| {},
    );
});
