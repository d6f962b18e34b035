//! Hand-edited plans, as a hostile user would write them: real plans of several families
//! mutated at random in their JSON form (numbers, indices, shapes, ops, dropped fields
//! and steps), then read, lowered on both host backends and run. Whatever the edit, the
//! outcome is a plan that runs or one clear error: never a panic.

mod common;
use common::*;
use proptest::prelude::*;
use serde_json::Value;
use weft_runtime::{BackendKind, LowerOptions, Model, PassSelection};

fn models() -> &'static [(&'static Model, Value)] {
    static M: std::sync::OnceLock<Vec<(&'static Model, Value)>> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        [
            "gemma4/model-f32.gguf",
            "qwen3moe",
            "gpt2",
            "phi3-partial-rope/model-f16.gguf",
        ]
        .iter()
        .map(|f| {
            let model = open_shared(fixtures().join("families").join(f).to_str().unwrap());
            let plan = model.compile(&PassSelection::all()).unwrap().plan;
            (model, serde_json::to_value(&plan).unwrap())
        })
        .collect()
    })
}

/// Every number, string and array in the plan, by path (object keys and indices).
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            at.push(Value::String(k.clone()));
            paths(x, at, out);
            at.pop();
        }),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
            at.push(Value::from(i));
            paths(x, at, out);
            at.pop();
        }),
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match k {
        Value::String(k) => &mut v[k.as_str()],
        k => &mut v[k.as_u64().unwrap() as usize],
    })
}

/// One edit at `pick` (a fraction of the paths) of kind `kind`.
fn mutate(plan: &mut Value, pick: f64, kind: u8, n: u64) {
    let mut all = Vec::new();
    paths(plan, &mut Vec::new(), &mut all);
    let path = all[((all.len() as f64 * pick) as usize).min(all.len() - 1)].clone();
    let target = get_mut(plan, &path);
    *target = match (kind % 9, &*target) {
        (0, Value::Number(_)) => Value::from(0),
        (1, Value::Number(_)) => Value::from(n),
        (2, Value::Number(_)) => Value::from(u64::MAX - n),
        (3, Value::Number(x)) => Value::from(-(x.as_f64().unwrap_or(1.0))),
        (4, Value::Number(_)) => serde_json::json!(1e300),
        (5, Value::Array(a)) if !a.is_empty() => {
            let mut a = a.clone();
            a.remove(n as usize % a.len());
            Value::Array(a)
        }
        (6, Value::Array(a)) => {
            let mut a = a.clone();
            a.push(Value::from(n % 40));
            Value::Array(a)
        }
        (7, Value::Object(o)) if !o.is_empty() => {
            let mut o = o.clone();
            let k = o.keys().nth(n as usize % o.len()).unwrap().clone();
            o.remove(&k);
            Value::Object(o)
        }
        (8, _) => Value::String("seq".into()),
        (_, v) => v.clone(),
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn edited_plans_run_or_fail_cleanly(
        which in 0usize..4,
        edits in prop::collection::vec((0.0f64..1.0, any::<u8>(), 0u64..100_000), 1..4),
        backend in prop::sample::select(BackendKind::ALL.to_vec()),
    ) {
        let (model, plan) = &models()[which];
        let mut plan = plan.clone();
        for (pick, kind, n) in edits {
            mutate(&mut plan, pick, kind, n);
        }
        let Ok(plan) = serde_json::from_value::<weft_ir::Plan>(plan) else {
            return Ok(()); // not a plan at all: the reader said so
        };
        let Ok(engine) = model.engine(plan, backend, &LowerOptions::default()) else {
            return Ok(());
        };
        if let Ok(mut session) = engine.session(8) {
            let _ = session.forward_all(&[1, 2, 3]);
            let _ = session.forward_all(&[4]);
        }
    }
}
