//! The generic expander: template + model metadata → graph.

use crate::expr::{eval, Value};
use crate::template::{HparamSpec, Keys, Template, TensorSpec};
use crate::{find_template, FamilyError, ModelInfo, SourceKind};
use std::collections::{BTreeMap, HashMap};
use toml::Table;
use weft_ir::{GluAct, Graph, MetaValue, NodeId, Op, RopeLayout, RopeScaling};

/// Layers a model may have: released models have a few hundred at most, and a corrupt
/// count (2^40) must be refused rather than expanded until memory runs out (a bare
/// config.json has no tensors whose absence would stop it).
pub const MAX_LAYERS: usize = 1 << 12;

/// A model's graph as its template describes it, before any pass.
pub struct Expanded {
    pub family: String,
    pub template_file: String,
    pub graph: Graph,
    /// Every hyperparameter the template read.
    pub hparams: BTreeMap<String, MetaValue>,
    /// The family's default chat template, if it declares one.
    pub chat_template: Option<String>,
}

/// Expands the built-in template that serves `info`.
pub fn expand(info: &dyn ModelInfo) -> Result<Expanded, FamilyError> {
    let (file, template) = find_template(info)?;
    expand_with(info, file, &template)
}

/// Expands a given template (tests use this to try malformed ones).
pub fn expand_with(
    info: &dyn ModelInfo,
    file: &str,
    t: &Template,
) -> Result<Expanded, FamilyError> {
    let mut x = Expander {
        info,
        file,
        t,
        vars: BTreeMap::new(),
        graph: Graph::new(),
        weights: HashMap::new(),
        expert: None,
        tying: Vec::new(),
    };
    x.read_hparams()?;
    for cond in &t.family.requires {
        let holds = eval(cond, &x.vars)
            .map_err(|e| x.op_err("family.requires", format!("'{cond}': {e}")))?
            .truthy();
        if !holds {
            return Err(x.hparam_err(
                "requires",
                format!(
                    "this model needs what the template does not describe: '{cond}' does not hold"
                ),
            ));
        }
    }
    let tokens = x.graph.add(Op::Tokens, "tokens", "", &[]);
    let mut scope = HashMap::from([("tokens".to_string(), tokens)]);
    x.section("embed", &t.body.embed, None, &mut scope)?;
    let n_layers = x.usize_var("n_layers", "body")?;
    if n_layers > MAX_LAYERS {
        return Err(x.hparam_err(
            "n_layers",
            format!("{n_layers} layers is more than the {MAX_LAYERS} a model may have"),
        ));
    }
    for i in 0..n_layers {
        x.section("layer", &t.body.layer, Some(i), &mut scope)?;
    }
    x.section("head", &t.body.head, None, &mut scope)?;
    if x.graph.outputs.is_empty() {
        return Err(x.op_err("body.head", "the head has no 'output' op"));
    }
    let hparams = x
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), value_to_meta(v)))
        .collect();
    Ok(Expanded {
        family: t.family.name.clone(),
        template_file: file.to_string(),
        graph: x.graph,
        hparams,
        chat_template: t.family.chat_template.clone(),
    })
}

struct Expander<'a> {
    info: &'a dyn ModelInfo,
    file: &'a str,
    t: &'a Template,
    vars: BTreeMap<String, Value>,
    graph: Graph,
    /// Weight nodes by (canonical name, layer); a tensor read under two names gets
    /// two nodes here, which the tie-alias pass merges.
    weights: HashMap<(String, Option<usize>), Option<NodeId>>,
    /// The expert whose tensors `weight` reads (while expanding a `moe` op).
    expert: Option<usize>,
    /// The roles whose `tied` target `weight` is reading, outermost first: a tie back
    /// to one of them is a cycle, which would otherwise recurse without end.
    tying: Vec<String>,
}

/// Ties a tensor may chain through (real templates tie at most once: head → embed).
const MAX_TIE_CHAIN: usize = 8;

fn meta_to_value(m: &MetaValue) -> Option<Value> {
    match m {
        MetaValue::Str(s) => Some(Value::Str(s.clone())),
        MetaValue::Array(a) => a
            .iter()
            .map(meta_to_value)
            .collect::<Option<Vec<_>>>()
            .map(Value::List),
        // A NaN or infinity in a file is never a meaningful hyperparameter.
        other => other.as_f64().filter(|x| x.is_finite()).map(Value::Num),
    }
}

fn value_to_meta(v: &Value) -> MetaValue {
    match v {
        Value::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => MetaValue::Int(*n as i64),
        Value::Num(n) => MetaValue::Float(*n),
        Value::Str(s) => MetaValue::Str(s.clone()),
        Value::List(l) => MetaValue::Array(l.iter().map(value_to_meta).collect()),
    }
}

impl Expander<'_> {
    fn hparam_err(&self, name: &str, message: String) -> FamilyError {
        FamilyError::Hparam {
            origin: self.info.origin(),
            file: self.file.to_string(),
            name: name.to_string(),
            message,
        }
    }

    fn op_err(&self, at: &str, message: impl Into<String>) -> FamilyError {
        FamilyError::Op {
            file: self.file.to_string(),
            at: at.to_string(),
            message: message.into(),
        }
    }

    /// Reads every hyperparameter: from its key, else its default. Defaults may name
    /// other hyperparameters in any order (a child template's override can use names
    /// its parent never had); a default waits until the names it uses are known.
    fn read_hparams(&mut self) -> Result<(), FamilyError> {
        let mut pending: Vec<(String, HparamSpec)> = Vec::new();
        for (name, spec) in &self.t.hparams {
            let spec: HparamSpec = spec.clone().try_into().map_err(|e| FamilyError::Template {
                file: self.file.to_string(),
                message: format!("hparams.{name}: {e}"),
            })?;
            pending.push((name.clone(), spec));
        }
        while !pending.is_empty() {
            let before = pending.len();
            let mut waiting = Vec::new();
            let mut first_wait = None;
            for (name, spec) in pending {
                match self.read_hparam(&name, &spec) {
                    Ok(v) => {
                        self.vars.insert(name, v);
                    }
                    Err(Some(e)) => return Err(e),
                    Err(None) => {
                        first_wait.get_or_insert(name.clone());
                        waiting.push((name, spec));
                    }
                }
            }
            if waiting.len() == before {
                let (name, spec) = &waiting[0];
                let d = self.default_of(spec).cloned().unwrap_or_default();
                let e = eval(&d, &self.vars).err().unwrap_or_default();
                return Err(self.hparam_err(name, format!("default '{d}': {e}")));
            }
            pending = waiting;
        }
        Ok(())
    }

    fn default_of<'s>(&self, spec: &'s HparamSpec) -> Option<&'s String> {
        match self.info.source_kind() {
            SourceKind::Gguf => spec.gguf_default.as_ref(),
            SourceKind::Hf => spec.hf_default.as_ref(),
        }
        .or(spec.default.as_ref())
    }

    /// One hyperparameter; `Err(None)` when its default names one not read yet.
    fn read_hparam(&self, name: &str, spec: &HparamSpec) -> Result<Value, Option<FamilyError>> {
        let arch = self.info.architecture();
        let keys = match self.info.source_kind() {
            SourceKind::Gguf => spec.gguf.as_ref(),
            SourceKind::Hf => spec.hf.as_ref(),
        };
        // Inside a layer, `{i}` in a key is the layer index (per-layer config entries).
        let layer = self
            .vars
            .get("i")
            .map(|i| i.to_string())
            .unwrap_or_default();
        let keys: Vec<String> = keys
            .map(Keys::list)
            .unwrap_or_default()
            .iter()
            .map(|k| k.replace("{arch}", arch).replace("{i}", &layer))
            .collect();
        for k in &keys {
            if let Some(m) = self.info.meta(k) {
                let bad = |why: String| Some(self.hparam_err(name, format!("key '{k}': {why}")));
                if let Some(expect) = spec.check {
                    m.check(expect).map_err(bad)?;
                }
                return meta_to_value(m).ok_or_else(|| {
                    bad(format!(
                        "expected finite numbers or strings, found {}",
                        m.summary()
                    ))
                });
            }
        }
        if let Some(d) = self.default_of(spec) {
            return eval(d, &self.vars).map_err(|e| {
                let waits = e
                    .strip_prefix("unknown name '")
                    .and_then(|r| r.strip_suffix('\''))
                    .is_some_and(|n| self.t.hparams.contains_key(n) && !self.vars.contains_key(n));
                (!waits).then(|| self.hparam_err(name, format!("default '{d}': {e}")))
            });
        }
        let place = match self.info.source_kind() {
            SourceKind::Gguf => "the GGUF metadata",
            SourceKind::Hf => "config.json",
        };
        let tried = if keys.is_empty() {
            "no key for this source in the template".to_string()
        } else {
            format!("key {} not found in {place}", keys.join(" or "))
        };
        Err(Some(
            self.hparam_err(name, format!("{tried} and no default")),
        ))
    }

    fn usize_var(&self, name: &str, at: &str) -> Result<usize, FamilyError> {
        match self.vars.get(name) {
            Some(Value::Num(n)) if *n >= 0.0 && n.fract() == 0.0 => Ok(*n as usize),
            Some(v) => Err(self.hparam_err(
                name,
                format!("expected a whole number, found {v} (used at {at})"),
            )),
            None => Err(self.op_err(at, format!("unknown hyperparameter '{name}'"))),
        }
    }

    /// The node reading canonical tensor `role` of layer `layer`; `None` if optional and absent.
    fn weight(
        &mut self,
        role: &str,
        layer: Option<usize>,
        at: &str,
    ) -> Result<Option<NodeId>, FamilyError> {
        // `{e}` in a tensor name is the expert index, for per-expert tensors.
        let key = match self.expert {
            Some(e) => format!("{role}#{e}"),
            None => role.to_string(),
        };
        if let Some(&n) = self.weights.get(&(key.clone(), layer)) {
            return Ok(n);
        }
        let spec: TensorSpec = self
            .t
            .tensors
            .get(role)
            .ok_or_else(|| self.op_err(at, format!("unknown tensor '{role}'")))?
            .clone()
            .try_into()
            .map_err(|e| FamilyError::Template {
                file: self.file.to_string(),
                message: format!("tensors.{role}: {e}"),
            })?;
        let name = match self.info.source_kind() {
            SourceKind::Gguf => spec.gguf.as_ref(),
            SourceKind::Hf => spec.hf.as_ref(),
        };
        let name = name.map(|n| {
            n.replace("{i}", &layer.map(|i| i.to_string()).unwrap_or_default())
                .replace(
                    "{e}",
                    &self.expert.map(|e| e.to_string()).unwrap_or_default(),
                )
        });
        let declared = self.declared_shape(&spec, role, at)?;
        // A bare config.json: tensors the template gives a shape are taken as present.
        let assumed = match (
            &declared,
            self.info.tensor_meta(name.as_deref().unwrap_or("")),
        ) {
            (_, Some(_)) => None,
            (Some(shape), None) if !shape.contains(&0) => {
                let n_layers = self.usize_var("n_layers", at)?;
                self.info
                    .assumed_dtype(role, layer, n_layers, shape)
                    .map(|dtype| (dtype, shape.clone()))
            }
            _ => None,
        };
        let present = name
            .as_ref()
            .is_some_and(|n| self.info.tensor_meta(n).is_some())
            || assumed.is_some();
        let tie = match &spec.tied_when {
            Some(w) => eval(w, &self.vars)
                .map_err(|e| self.op_err(&format!("tensors.{role}.tied_when"), e))?
                .truthy(),
            None => false,
        };
        let node = if let Some(tied) = spec.tied.as_ref().filter(|_| tie || !present) {
            let at_tie = format!("tensors.{role}.tied");
            if tied == role || self.tying.iter().any(|r| r == tied) {
                let mut chain: Vec<&str> = self.tying.iter().map(String::as_str).collect();
                chain.extend([role, tied.as_str()]);
                return Err(
                    self.op_err(&at_tie, format!("ties form a cycle: {}", chain.join(" → ")))
                );
            }
            if self.tying.len() >= MAX_TIE_CHAIN {
                return Err(self.op_err(
                    &at_tie,
                    format!("ties chain more than {MAX_TIE_CHAIN} tensors deep"),
                ));
            }
            self.tying.push(role.to_string());
            let target = self.weight(tied, layer, at);
            self.tying.pop();
            let target = target?;
            match target {
                // A node of its own over the same tensor: tie-alias merges it, visibly.
                Some(t) => {
                    let mut op = self.graph.node(t).op.clone();
                    // An assumed tensor read in two roles is stored as the later role needs
                    // (llama.cpp quantises a tied embedding as the output).
                    if let Op::Weight {
                        tensor,
                        dtype,
                        shape,
                        ..
                    } = &mut op
                    {
                        if self.info.tensor_meta(tensor).is_none() {
                            let n_layers = self.usize_var("n_layers", at)?;
                            if let Some(d) = self.info.assumed_dtype(role, layer, n_layers, shape) {
                                *dtype = d;
                                self.graph.node_mut(t).op = op.clone();
                            }
                        }
                    }
                    Some(
                        self.graph
                            .add(op, role, format!("tensors.{role} (tied to {tied})"), &[]),
                    )
                }
                None => None,
            }
        } else if present {
            let name = name.expect("present implies a name");
            // HF Conv1D matrices are stored [in, out]; the graph sees [out, in].
            let transposed = spec.hf_transposed && self.info.source_kind() == SourceKind::Hf;
            let (dtype, shape) = match assumed {
                Some(a) => a,
                None => {
                    let mut m = self.info.tensor_meta(&name).expect("present");
                    if transposed {
                        m.shape.reverse();
                    }
                    let fits = |d: &Vec<usize>| {
                        d.len() == m.shape.len()
                            && d.iter().zip(&m.shape).all(|(e, f)| *e == 0 || e == f)
                    };
                    if let Some(expected) = declared.filter(|d| !fits(d)) {
                        return Err(FamilyError::Shape {
                            origin: self.info.origin(),
                            file: self.file.to_string(),
                            tensor: name,
                            expected,
                            found: m.shape,
                        });
                    }
                    let dtype = m.dtype.ok_or_else(|| FamilyError::UnsupportedType {
                        origin: self.info.origin(),
                        type_name: m.type_name.clone(),
                        tensor: name.clone(),
                    })?;
                    (dtype, m.shape)
                }
            };
            Some(self.graph.add(
                Op::Weight {
                    tensor: name,
                    dtype,
                    shape,
                    transposed,
                },
                role,
                format!("tensors.{role}"),
                &[],
            ))
        } else if spec.optional {
            None
        } else {
            return Err(FamilyError::MissingTensor {
                origin: self.info.origin(),
                file: self.file.to_string(),
                role: role.to_string(),
                tensor: name.unwrap_or_else(|| "(no name for this source)".to_string()),
            });
        };
        self.weights.insert((key, layer), node);
        Ok(node)
    }

    /// The template's shape for a tensor, evaluated here (`None` if it declares none).
    fn declared_shape(
        &self,
        spec: &TensorSpec,
        role: &str,
        at: &str,
    ) -> Result<Option<Vec<usize>>, FamilyError> {
        let Some(dims) = &spec.shape else {
            return Ok(None);
        };
        dims.iter()
            .map(|d| match eval(d, &self.vars) {
                // 0: a size the source does not state (a GGUF's vocabulary); the file's holds.
                Ok(Value::Num(n)) if n >= 0.0 && n.fract() == 0.0 => Ok(n as usize),
                Ok(v) => Err(self.op_err(
                    &format!("tensors.{role}.shape"),
                    format!("'{d}' is {v}, expected a whole number (used at {at})"),
                )),
                Err(e) => Err(self.op_err(&format!("tensors.{role}.shape"), format!("'{d}': {e}"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Whether tensor `role`'s name in this source contains `needle`.
    fn tensor_name_has(&self, role: &str, needle: &str) -> bool {
        let spec = self.t.tensors.get(role).and_then(|v| {
            v.get(match self.info.source_kind() {
                SourceKind::Gguf => "gguf",
                SourceKind::Hf => "hf",
            })
        });
        spec.and_then(|v| v.as_str())
            .is_some_and(|n| n.contains(needle))
    }

    fn section(
        &mut self,
        section: &str,
        ops: &[Table],
        layer: Option<usize>,
        scope: &mut HashMap<String, NodeId>,
    ) -> Result<(), FamilyError> {
        if let Some(i) = layer {
            self.vars.insert("i".to_string(), Value::Num(i as f64));
            for (name, e) in &self.t.layer_vars {
                let at = format!("layer_vars.{name}");
                let v = match e {
                    toml::Value::String(src) => eval(src, &self.vars)
                        .map_err(|m| self.op_err(&at, format!("layer {i}: {m}")))?,
                    // Read like a hyperparameter, with `{i}` in its keys.
                    toml::Value::Table(_) => {
                        let spec: HparamSpec =
                            e.clone().try_into().map_err(|e| FamilyError::Template {
                                file: self.file.to_string(),
                                message: format!("{at}: {e}"),
                            })?;
                        self.read_hparam(name, &spec).map_err(|e| {
                            e.unwrap_or_else(|| {
                                self.op_err(
                                    &at,
                                    format!("layer {i}: its default names an unknown value"),
                                )
                            })
                        })?
                    }
                    _ => {
                        return Err(self.op_err(
                            &at,
                            "expected an expression string or a table of source keys",
                        ))
                    }
                };
                self.vars.insert(name.clone(), v);
            }
        }
        for (k, entry) in ops.iter().enumerate() {
            let at = format!("body.{section}[{k}]");
            self.op(entry, &at, layer, scope)?;
        }
        self.vars.remove("i");
        for name in self.t.layer_vars.keys() {
            self.vars.remove(name);
        }
        Ok(())
    }

    fn expr(&self, entry: &Table, key: &str, at: &str) -> Result<Option<Value>, FamilyError> {
        match entry.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => eval(s, &self.vars)
                .map(Some)
                .map_err(|e| self.op_err(at, format!("{key} = '{s}': {e}"))),
            Some(toml::Value::Integer(n)) => Ok(Some(Value::Num(*n as f64))),
            Some(toml::Value::Float(n)) => Ok(Some(Value::Num(*n))),
            Some(other) => Err(self.op_err(
                at,
                format!("{key}: expected an expression string, found {other}"),
            )),
        }
    }

    fn num(&self, entry: &Table, key: &str, at: &str) -> Result<Option<f64>, FamilyError> {
        match self.expr(entry, key, at)? {
            None => Ok(None),
            Some(Value::Num(n)) => Ok(Some(n)),
            Some(other) => Err(self.op_err(at, format!("{key}: expected a number, found {other}"))),
        }
    }

    fn req_num(&self, entry: &Table, key: &str, at: &str) -> Result<f64, FamilyError> {
        self.num(entry, key, at)?
            .ok_or_else(|| self.op_err(at, format!("missing '{key}'")))
    }

    fn req_count(&self, entry: &Table, key: &str, at: &str) -> Result<usize, FamilyError> {
        let n = self.req_num(entry, key, at)?;
        if n < 1.0 || n.fract() != 0.0 {
            return Err(self.op_err(
                at,
                format!("{key} must be a positive whole number, found {n}"),
            ));
        }
        Ok(n as usize)
    }

    fn string(&self, entry: &Table, key: &str, at: &str) -> Result<Option<String>, FamilyError> {
        match self.expr(entry, key, at)? {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(other) => Err(self.op_err(at, format!("{key}: expected a string, found {other}"))),
        }
    }

    fn op(
        &mut self,
        entry: &Table,
        at: &str,
        layer: Option<usize>,
        scope: &mut HashMap<String, NodeId>,
    ) -> Result<(), FamilyError> {
        if let Some(w) = self.expr(entry, "when", at)? {
            if !w.truthy() {
                return Ok(());
            }
        }
        let kind = entry
            .get("op")
            .and_then(|v| v.as_str())
            .ok_or_else(|| self.op_err(at, "missing 'op'"))?;
        let ins: Vec<NodeId> = match entry.get("in") {
            None => vec![],
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    let name = v
                        .as_str()
                        .ok_or_else(|| self.op_err(at, "'in' must list value names"))?;
                    scope.get(name).copied().ok_or_else(|| {
                        self.op_err(at, format!("value '{name}' is not defined yet"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(self.op_err(at, "'in' must be a list of value names")),
        };
        let weight = match entry.get("weight").map(|v| v.as_str()) {
            None => None,
            Some(Some(role)) => self.weight(role, layer, at)?,
            Some(None) => return Err(self.op_err(at, "'weight' must name a tensor")),
        };
        // A second tensor (layer_norm's bias).
        let bias = match entry.get("bias").map(|v| v.as_str()) {
            None => None,
            Some(Some(role)) => self.weight(role, layer, at)?,
            Some(None) => return Err(self.op_err(at, "'bias' must name a tensor")),
        };
        let need = |n: usize| -> Result<(), FamilyError> {
            if ins.len() == n {
                Ok(())
            } else {
                Err(self.op_err(
                    at,
                    format!("{kind} takes {n} input(s), found {}", ins.len()),
                ))
            }
        };
        let need_weight =
            || weight.ok_or_else(|| self.op_err(at, format!("{kind} needs a 'weight'")));
        let (op, inputs) = match kind {
            "token_embed" => {
                need(1)?;
                (Op::TokenEmbed, vec![need_weight()?, ins[0]])
            }
            "matmul" => {
                need(1)?;
                (Op::matmul(), vec![ins[0], need_weight()?])
            }
            "add" | "mul" => {
                need(2)?;
                (if kind == "add" { Op::Add } else { Op::Mul }, ins.clone())
            }
            "scale" => {
                need(1)?;
                // By a constant, a learned scalar (`weight`, one value), or both.
                let factor = match weight {
                    Some(_) => self.num(entry, "factor", at)?.unwrap_or(1.0),
                    None => self.req_num(entry, "factor", at)?,
                };
                let mut inputs = ins.clone();
                inputs.extend(weight);
                (
                    Op::Scale {
                        factor: factor as f32,
                    },
                    inputs,
                )
            }
            "silu" | "gelu" => {
                need(1)?;
                (
                    if kind == "silu" { Op::Silu } else { Op::Gelu },
                    ins.clone(),
                )
            }
            "softcap" => {
                need(1)?;
                (
                    Op::Softcap {
                        cap: self.req_num(entry, "cap", at)? as f32,
                    },
                    ins.clone(),
                )
            }
            "rms_norm" => {
                need(1)?;
                // The group is the weight's length; a norm without a weight names it.
                let group = match weight {
                    Some(w) => match &self.graph.node(w).op {
                        Op::Weight { shape, .. } => shape.iter().product(),
                        _ => unreachable!("weights are Weight nodes"),
                    },
                    None => self.req_count(entry, "group", at)?,
                };
                let op = Op::RmsNorm {
                    eps: self.req_num(entry, "eps", at)? as f32,
                    weight_offset: self.num(entry, "weight_offset", at)?.unwrap_or(0.0) as f32,
                    group,
                };
                let mut inputs = vec![ins[0]];
                inputs.extend(weight);
                (op, inputs)
            }
            "rope" => {
                need(1)?;
                let layout = match self.string(entry, "layout", at)?.as_deref() {
                    Some("pairs") => RopeLayout::Pairs,
                    Some("halves") => RopeLayout::Halves,
                    other => {
                        return Err(self.op_err(
                            at,
                            format!("rope layout must be 'pairs' or 'halves', found {other:?}"),
                        ))
                    }
                };
                let head_dim = self.req_count(entry, "head_dim", at)?;
                let rot_dim = self
                    .num(entry, "rot_dim", at)?
                    .map(|r| r as usize)
                    .unwrap_or(head_dim);
                if rot_dim > head_dim || rot_dim % 2 != 0 {
                    return Err(self.op_err(
                        at,
                        format!("rot_dim {rot_dim} must be even and at most head_dim {head_dim}"),
                    ));
                }
                let scaling = self.rope_scaling(entry, rot_dim, at)?;
                let op = Op::Rope {
                    head_dim,
                    rot_dim,
                    base: self.req_num(entry, "base", at)? as f32,
                    layout,
                    scaling,
                };
                let mut inputs = vec![ins[0]];
                inputs.extend(weight);
                (op, inputs)
            }
            "attention" => {
                need(3)?;
                let window = self.num(entry, "window", at)?.unwrap_or(0.0);
                let softcap = self.num(entry, "softcap", at)?.unwrap_or(0.0);
                let op = Op::Attention {
                    layer: layer
                        .ok_or_else(|| self.op_err(at, "attention belongs in body.layer"))?,
                    n_heads: self.req_count(entry, "heads", at)?,
                    n_kv_heads: self.req_count(entry, "kv_heads", at)?,
                    head_dim: self.req_count(entry, "head_dim", at)?,
                    scale: self.req_num(entry, "scale", at)? as f32,
                    window: (window > 0.0).then_some(window as usize),
                    softcap: (softcap > 0.0).then_some(softcap as f32),
                    rope: None,
                };
                (op, ins.clone())
            }
            "moe" => {
                need(1)?;
                let e = self.req_count(entry, "experts", at)?;
                let act = match self.string(entry, "act", at)?.as_deref() {
                    Some("silu") | None => GluAct::Silu,
                    Some("gelu") => GluAct::Gelu,
                    other => {
                        return Err(self.op_err(
                            at,
                            format!("moe act must be 'silu' or 'gelu', found {other:?}"),
                        ))
                    }
                };
                let mut inputs = vec![ins[0]];
                let router = entry
                    .get("router")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| self.op_err(at, "moe needs a 'router' tensor"))?;
                inputs.push(
                    self.weight(router, layer, at)?
                        .ok_or_else(|| self.op_err(at, "the router tensor is absent"))?,
                );
                let mut stacked = None;
                for key in ["gate", "up", "down"] {
                    let role = entry
                        .get(key)
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| self.op_err(at, format!("moe needs a '{key}' tensor")))?;
                    let per_expert = self.tensor_name_has(role, "{e}");
                    if *stacked.get_or_insert(!per_expert) == per_expert {
                        return Err(
                            self.op_err(at, "expert tensors must all be stacked or all per expert")
                        );
                    }
                    for x in 0..if per_expert { e } else { 1 } {
                        self.expert = per_expert.then_some(x);
                        let w = self.weight(role, layer, at);
                        self.expert = None;
                        inputs.push(w?.ok_or_else(|| {
                            self.op_err(at, format!("expert tensor '{role}' is absent"))
                        })?);
                    }
                }
                let op = Op::Moe {
                    n_experts: e,
                    top_k: self.req_count(entry, "top_k", at)?,
                    norm_topk: self.num(entry, "norm_topk", at)?.unwrap_or(1.0) != 0.0,
                    act,
                    stacked: stacked.unwrap_or(true),
                };
                (op, inputs)
            }
            "position_embed" => {
                need(0)?;
                (Op::PositionEmbed, vec![need_weight()?])
            }
            "layer_norm" => {
                need(1)?;
                let b = bias.ok_or_else(|| self.op_err(at, "layer_norm needs a 'bias' tensor"))?;
                (
                    Op::LayerNorm {
                        eps: self.req_num(entry, "eps", at)? as f32,
                    },
                    vec![ins[0], need_weight()?, b],
                )
            }
            "bias" => {
                need(1)?;
                (Op::Bias, vec![ins[0], need_weight()?])
            }
            "slice" => {
                need(1)?;
                let start = self.num(entry, "start", at)?.unwrap_or(0.0) as usize;
                (
                    Op::Slice {
                        start,
                        len: self.req_count(entry, "len", at)?,
                    },
                    ins.clone(),
                )
            }
            "glu" => {
                need(1)?;
                let act = match self.string(entry, "act", at)?.as_deref() {
                    Some("silu") => GluAct::Silu,
                    Some("gelu") => GluAct::Gelu,
                    other => {
                        return Err(self.op_err(
                            at,
                            format!("glu act must be 'silu' or 'gelu', found {other:?}"),
                        ))
                    }
                };
                (Op::Glu { act }, ins.clone())
            }
            "last_position" => {
                need(1)?;
                (Op::LastPosition, ins.clone())
            }
            "output" => {
                need(1)?;
                (Op::Output, ins.clone())
            }
            other => return Err(self.op_err(at, format!("unknown op '{other}'"))),
        };
        let out = entry.get("out").and_then(|v| v.as_str());
        let value_name = out.unwrap_or(kind);
        let name = match layer {
            Some(i) => format!("blk.{i}.{value_name}"),
            None => value_name.to_string(),
        };
        let is_output = matches!(op, Op::Output);
        let id = self
            .graph
            .add(op, name, format!("{}:{at}", self.file), &inputs);
        if is_output {
            self.graph.outputs.push(id);
        }
        if let Some(o) = out {
            scope.insert(o.to_string(), id);
        }
        Ok(())
    }

    fn rope_scaling(
        &self,
        entry: &Table,
        rot_dim: usize,
        at: &str,
    ) -> Result<RopeScaling, FamilyError> {
        let kind = self
            .string(entry, "scaling", at)?
            .unwrap_or_else(|| "none".to_string());
        let get = |k: &str| -> Result<f32, FamilyError> { Ok(self.req_num(entry, k, at)? as f32) };
        Ok(match kind.as_str() {
            "none" | "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: get("factor")?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: get("factor")?,
                low_freq_factor: get("low_freq_factor")?,
                high_freq_factor: get("high_freq_factor")?,
                original_context: get("original_context")?,
            },
            // HF's rope_type "proportional": int(partial · rot_dim / 2) frequencies turn.
            "proportional" => {
                let partial = self.num(entry, "partial", at)?.unwrap_or(1.0);
                if !(0.0..=1.0).contains(&partial) {
                    return Err(
                        self.op_err(at, format!("partial must be in [0, 1], found {partial}"))
                    );
                }
                RopeScaling::Proportional {
                    pairs: (partial * rot_dim as f64 / 2.0) as usize,
                    factor: self.num(entry, "factor", at)?.unwrap_or(1.0) as f32,
                }
            }
            other => {
                return Err(self.op_err(
                    at,
                    format!(
                    "rope scaling '{other}' is not supported (none, linear, llama3, proportional)"
                ),
                ))
            }
        })
    }
}
