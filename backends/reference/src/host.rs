//! The host executor: the one generic executor of weft's CPU-side backends. Lowering
//! validates the plan, runs the backend stage and binds weights once into a
//! [`HostExecutable`] (shared, `Send + Sync`); each [`HostSession`] holds its own KV
//! cache, arena and position and runs the steps in order for each forward call. The
//! arithmetic of matmuls and embedding lookups comes from the backend's [`Kernels`];
//! the other ops run the reference kernels of [`crate::ops`].

use crate::ops::{self, AttnShape, KvRows};
use std::ops::Range;
use std::sync::Arc;
use weft_backend::{
    after_last, backend_stage, check_batch, check_declined, check_forward, check_truncate,
    kv_layers, validate_plan, BackendError, Executable, KvType, Logits, LowerOptions, MatKernel,
    Output, Route, Session, Stage,
};
use weft_ir::alloc::{try_resize, try_zeros};
use weft_ir::{DType, KvLayer, Op, Plan, Step, WeightProvider, WeightView};

/// Inputs a step may have for [`Kernels::run_compiled`] (a fused program's operands).
pub const COMPILED_INPUTS: usize = 8;

/// Weights one matmul may read side by side (fused q/k/v, gate/up).
const FUSED_WEIGHTS: usize = 8;

/// The arithmetic a host backend supplies: how matmuls read stored weights and how
/// embedding rows are gathered. One value per executable, made at lowering from the
/// options (e.g. the activation mode of its matmuls).
pub trait Kernels: Send + Sync + Sized + 'static {
    /// The backend's name (`--backend`).
    const NAME: &'static str;
    /// Fused forms this backend declines.
    const DECLINED: &'static [&'static str] = &[];
    /// The kernels for `plan` (validated) lowered with `options`.
    fn new(options: &LowerOptions, plan: &Plan) -> Result<Self, BackendError>;
    /// The kernels a matmul over `dtype` is bound to; `one_row`: its shape is one row
    /// whatever the step (a head after `last_position`). By default: dots straight from
    /// the blocks for one row, each weight row decoded once and reused for several.
    fn route(&self, dtype: DType, one_row: bool) -> Route {
        Route {
            dtype,
            decode: MatKernel::Dot,
            prefill: if one_row {
                MatKernel::Dot
            } else {
                MatKernel::DecodeReuse
            },
        }
    }
    /// Called once at lowering with every weight a matmul reads: a backend may keep
    /// them in a layout of its own. By default nothing.
    fn prepare(&mut self, _matmul_weights: &[&WeightView]) {}
    /// `out[m×Σn] = x[m×k] · [w₁; w₂; …]ᵀ`, outputs side by side.
    fn matmul(&self, x: &[f32], m: usize, ws: &[&WeightView], kernel: MatKernel, out: &mut [f32]);
    /// `out[i]` = row `ids[i]` of `w`, decoded; ids are checked by the caller.
    fn gather_rows(&self, w: &WeightView, ids: &[u32], out: &mut [f32]);
    /// Runs `steps`, one forward call's whole step loop. Kernels that fork onto a
    /// thread pool run it inside the pool, so that each kernel's fork is an in-pool
    /// join rather than a hand-off from the caller's thread (a futex wake and wait per
    /// matmul). By default, on the caller's thread.
    fn run_steps<R: Send>(&self, steps: impl FnOnce() -> R + Send) -> R {
        steps()
    }
    /// Causal attention over a session's cache ([`ops::attention`]'s contract). By
    /// default the scalar loops; a SIMD backend runs its own.
    fn attention(
        &self,
        q: &[f32],
        k: KvRows,
        v: KvRows,
        s: AttnShape,
        pos0: usize,
        out: &mut [f32],
    ) {
        ops::attention(q, k, v, s, pos0, out)
    }
    /// Runs step `step` with code these kernels compiled for it at lowering (a JIT),
    /// reading `ins` (the step's inputs: activations and decoded small weights; an
    /// empty slice for a stored weight) into `out`, sized for its rows. False where
    /// nothing was compiled for the step: the host interprets it.
    fn run_compiled(&self, _step: usize, _ins: &[&[f32]], _out: &mut [f32]) -> bool {
        false
    }
    /// A line for the lowered dump: what these kernels are (instruction set, modes).
    fn describe(&self) -> String {
        Self::NAME.to_string()
    }
}

/// Weight steps that kernels read as f32 vectors rather than matrices: norm weights,
/// biases, learned scales, rope divisors. Every backend's lowering decodes these.
pub fn vector_weights(plan: &Plan) -> Vec<bool> {
    let mut vector = vec![false; plan.steps.len()];
    for st in &plan.steps {
        match st.node.op {
            Op::Bias => vector[st.inputs[1]] = true,
            Op::RmsNorm { .. } | Op::Scale { .. } if st.inputs.len() > 1 => {
                vector[st.inputs[1]] = true
            }
            Op::LayerNorm { .. } => st.inputs[1..].iter().for_each(|&w| vector[w] = true),
            Op::MatMul { bias: true, .. } => {
                let n_weights = (st.inputs.len() - 1) / 2;
                st.inputs[1 + n_weights..]
                    .iter()
                    .for_each(|&b| vector[b] = true);
            }
            Op::AddRmsNorm { .. } => vector[st.inputs[2]] = true,
            Op::Rope { .. } if st.inputs.len() > 1 => vector[st.inputs[1]] = true,
            Op::Attention { .. } if st.inputs.len() > 3 => vector[st.inputs[3]] = true,
            _ => {}
        }
    }
    vector
}

/// The provider's tensor for a weight step (`None` for other ops), transposed where the
/// file stores `[in, out]` (one copy, so matmuls read rows as usual), and checked
/// against the plan's type and shape.
pub fn bind_weight(
    weights: &dyn WeightProvider,
    op: &Op,
) -> Result<Option<WeightView>, BackendError> {
    let Op::Weight {
        tensor,
        dtype,
        shape,
        transposed,
    } = op
    else {
        return Ok(None);
    };
    let mut w = weights
        .weight(tensor)
        .ok_or_else(|| BackendError::MissingWeight(tensor.clone()))?;
    if *transposed {
        w = w.transposed().ok_or_else(|| BackendError::WeightMismatch {
            tensor: tensor.clone(),
            expected: "a 2-D matrix of f32, f16 or bf16 to transpose".into(),
            found: format!("{} {:?}", w.dtype, w.shape),
        })?;
    }
    if w.dtype != *dtype || &w.shape != shape {
        return Err(BackendError::WeightMismatch {
            tensor: tensor.clone(),
            expected: format!("{dtype} {shape:?}"),
            found: format!("{} {:?}", w.dtype, w.shape),
        });
    }
    Ok(Some(w))
}

/// A (vector) weight decoded to f32.
pub fn decode_vector(w: &WeightView) -> Vec<f32> {
    let mut f = vec![0.0; w.numel()];
    for (r, out) in f.chunks_exact_mut(w.cols()).enumerate() {
        weft_quant::kernel_for(w.dtype).decode_row(w.row(r), out);
    }
    f
}

/// Lowers `plan` for the host backend `K`.
pub fn lower<K: Kernels>(
    plan: Plan,
    weights: &dyn WeightProvider,
    options: &LowerOptions,
) -> Result<Arc<dyn Executable>, BackendError> {
    Ok(Arc::new(HostExecutable::<K>::new(plan, weights, options)?))
}

enum Bound {
    /// A weight in its stored form.
    Weight(WeightView),
    /// A small weight (norm, rope divisors) decoded once at load.
    Small(Vec<f32>),
    /// An activation (or nothing, for token ids and markers).
    Value,
}

/// Positions a forward pass may add to a sliding-window layer's ring beyond its window:
/// its ring holds window + this many rows, and longer calls run in passes of this many
/// positions. Prompts of this length still run as one pass.
pub const PASS_POSITIONS: usize = 512;

/// The rows a host session's cache of `layer` holds at a context of `max_ctx`: every
/// position, or a sliding-window layer's ring where that is shorter.
pub fn cache_rows(layer: &KvLayer, max_ctx: usize) -> usize {
    layer
        .window
        .map_or(max_ctx, |w| w.saturating_add(PASS_POSITIONS).min(max_ctx))
}

/// One attention layer's keys and values. A sliding-window layer keeps a ring of
/// [`Cache::rows`] rows (position j at row j mod rows) where the context is longer:
/// its window and a pass's new positions, not the whole context.
struct Cache {
    k: Store,
    v: Store,
    width: usize,
    /// Rows held: the context, or a windowed layer's ring.
    rows: usize,
    window: Option<usize>,
    /// The first position whose row nothing has overwritten since (0 until a ring wraps).
    held_from: usize,
}

impl Cache {
    fn new(kv: KvType, max_ctx: usize, layer: &KvLayer) -> Result<Cache, BackendError> {
        let (rows, width) = (
            cache_rows(layer, max_ctx),
            layer.n_kv_heads * layer.head_dim,
        );
        Ok(Cache {
            k: Store::new(kv, rows, width, "the key cache")?,
            v: Store::new(kv, rows, width, "the value cache")?,
            width,
            rows,
            window: layer.window,
            held_from: 0,
        })
    }

    /// Whether the rows a query at `pos` reads before `pos` are still held, so the
    /// layer can go on from `pos` (a rewind).
    fn holds_window_of(&self, pos: usize) -> bool {
        let first = self.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        pos == 0 || first >= self.held_from
    }

    /// Stores the keys and values of positions `pos0..` (`len` rows); a rope-fused
    /// attention's keys rotated by `rope` (given a run's first position) first.
    fn write(&mut self, pos0: usize, k: &[f32], v: &[f32], rope: impl Fn(&mut [f32], usize)) {
        let (w, len) = (self.width, k.len() / self.width);
        // Rows overwritten by this pass are gone from here on, even if the pass fails.
        self.held_from = self.held_from.max((pos0 + len).saturating_sub(self.rows));
        let mut o = 0;
        while o < len {
            let r = (pos0 + o) % self.rows;
            let n = (len - o).min(self.rows - r);
            let (at, from) = (r * w..(r + n) * w, o * w..(o + n) * w);
            self.k
                .write(at.clone(), &k[from.clone()], |k| rope(k, pos0 + o));
            self.v.write(at, &v[from], |_| {});
            o += n;
        }
    }
}

/// A cache's keys or values ([`LowerOptions::kv`]).
enum Store {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Store {
    /// `rows × width` zeros, allocated fallibly: sizes come from flags and files.
    fn new(kv: KvType, rows: usize, width: usize, what: &str) -> Result<Store, BackendError> {
        let too_big = |bytes| BackendError::Alloc {
            what: format!("{what} ({rows} positions × {width})"),
            bytes,
        };
        Ok(match kv {
            KvType::F32 => Store::F32(try_zeros(&[rows, width]).map_err(|e| too_big(e.bytes))?),
            KvType::F16 => Store::F16(try_zeros(&[rows, width]).map_err(|e| too_big(e.bytes))?),
        })
    }

    /// Rows `at` from `src`; a rope-fused attention's keys rotated by `rot` first.
    fn write(&mut self, at: Range<usize>, src: &[f32], rot: impl FnOnce(&mut [f32])) {
        match self {
            Store::F32(c) => {
                c[at.clone()].copy_from_slice(src);
                rot(&mut c[at]);
            }
            Store::F16(c) => ops::store_f16(src, &mut c[at], rot),
        }
    }

    fn rows(&self) -> KvRows<'_> {
        match self {
            Store::F32(c) => KvRows::F32(c),
            Store::F16(c) => KvRows::F16(c),
        }
    }
}

/// A plan lowered for the host backend `K`, its weights bound once.
pub struct HostExecutable<K: Kernels> {
    plan: Plan,
    stage: Stage,
    bound: Vec<Bound>,
    /// Rope inverse frequencies of rope steps and rope-fused attention steps.
    freqs: Vec<Option<Vec<f32>>>,
    /// Arena slot of each step's value (one per step without a memory plan).
    slot: Vec<usize>,
    n_slots: usize,
    /// Each attention layer's cache shape.
    kv_layers: Vec<KvLayer>,
    /// Steps at or after a `last_position`: one row per position when all logits are asked.
    after_last: Vec<bool>,
    kv: KvType,
    kernels: K,
}

fn bad(i: usize, plan: &Plan, message: &str) -> BackendError {
    BackendError::BadPlan {
        step: i,
        name: plan.steps[i].node.name.clone(),
        message: message.to_string(),
    }
}

impl<K: Kernels> HostExecutable<K> {
    /// Validates the plan, runs the backend stage and binds every weight step to the
    /// provider's tensor (checking dtype and shape).
    pub fn new(
        plan: Plan,
        weights: &dyn WeightProvider,
        options: &LowerOptions,
    ) -> Result<Self, BackendError> {
        validate_plan(&plan)?;
        check_declined(&plan, K::NAME, K::DECLINED)?;
        let mut kernels = K::new(options, &plan)?;
        let mut stage = backend_stage(
            &plan,
            K::NAME,
            |d, one| kernels.route(d, one),
            options.memory,
            4,
            &[],
        );
        let n = plan.steps.len();
        let vectors = vector_weights(&plan);
        let mut bound = Vec::with_capacity(n);
        for (i, st) in plan.steps.iter().enumerate() {
            bound.push(match bind_weight(weights, &st.node.op)? {
                Some(w) if vectors[i] => Bound::Small(decode_vector(&w)),
                Some(w) => Bound::Weight(w),
                None => Bound::Value,
            });
        }
        let matmul_weights: Vec<&WeightView> = plan
            .steps
            .iter()
            .filter(|st| matches!(st.node.op, Op::MatMul { .. }))
            .flat_map(|st| &st.inputs[1..])
            .filter_map(|&j| match &bound[j] {
                Bound::Weight(w) => Some(w),
                _ => None,
            })
            .collect();
        kernels.prepare(&matmul_weights);
        stage
            .log
            .insert(0, format!("kernels: {}", kernels.describe()));
        let divisors = |st: &weft_ir::Step, k: usize| match st.inputs.get(k).map(|&j| &bound[j]) {
            Some(Bound::Small(d)) => Some(d.as_slice()),
            _ => None,
        };
        let freqs = plan
            .steps
            .iter()
            .map(|st| {
                // Divisors follow x for rope, q/k/v for rope-fused attention.
                let at = if matches!(st.node.op, Op::Rope { .. }) {
                    1
                } else {
                    3
                };
                let r = st.node.op.rope_params()?;
                Some(ops::rope_inv_freqs(
                    r.rot_dim,
                    r.base,
                    r.scaling,
                    divisors(st, at),
                ))
            })
            .collect();
        let kv_layers = kv_layers(&plan)?;
        let after_last = after_last(&plan);
        let (slot, n_slots) = stage.arena_slots(&plan)?;
        Ok(HostExecutable {
            plan,
            stage,
            bound,
            freqs,
            slot,
            n_slots,
            kv_layers,
            after_last,
            kv: options.kv,
            kernels,
        })
    }
}

impl<K: Kernels> Executable for HostExecutable<K> {
    fn backend(&self) -> &'static str {
        K::NAME
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn lowered_text(&self) -> String {
        self.stage.describe(&self.plan)
    }

    fn session(self: Arc<Self>, max_ctx: usize) -> Result<Box<dyn Session>, BackendError> {
        let caches = self
            .kv_layers
            .iter()
            .map(|layer| Cache::new(self.kv, max_ctx, layer))
            .collect::<Result<Vec<_>, BackendError>>()?;
        Ok(Box::new(HostSession {
            slots: vec![Vec::new(); self.n_slots],
            exe: self,
            rings: caches.iter().any(|c| c.rows < max_ctx),
            caches,
            scratch: Vec::new(),
            logits: Vec::new(),
            max_ctx,
            pos: 0,
        }))
    }
    fn forward_batch(
        &self,
        sessions: &mut [&mut dyn Session],
        tokens: &[u32],
        out: &mut Vec<f32>,
    ) -> Result<(), BackendError> {
        // One row per session, run in the first session's arena; the logits are copied out.
        check_batch(sessions.len(), tokens.len())?;
        let mut mine = Vec::with_capacity(sessions.len());
        for (i, s) in sessions.iter_mut().enumerate() {
            let s = s
                .as_any_mut()
                .downcast_mut::<HostSession<K>>()
                .filter(|s| std::ptr::eq(Arc::as_ptr(&s.exe), self))
                .ok_or_else(|| {
                    BackendError::Batch(format!("session {i} belongs to another executable"))
                })?;
            check_forward(s.pos, 1, s.max_ctx)?;
            mine.push(s);
        }
        let Some((first, rest)) = mine.split_first_mut() else {
            out.clear();
            return Ok(());
        };
        let HostSession {
            slots,
            scratch,
            caches,
            pos,
            ..
        } = &mut **first;
        let mut segments = vec![Segment {
            caches,
            pos0: *pos,
            len: 1,
        }];
        segments.extend(rest.iter_mut().map(|s| Segment {
            caches: &mut s.caches,
            pos0: s.pos,
            len: 1,
        }));
        self.run(Pass {
            slots,
            scratch,
            segments: &mut segments,
            tokens,
            all: true,
            check: false,
        })?;
        let o = &slots[self.slot[self.plan.outputs[0]]];
        out.clear();
        out.extend_from_slice(o);
        *pos += 1;
        rest.iter_mut().for_each(|s| s.pos += 1);
        Ok(())
    }
}

/// Checks that every id names a row of `table` before anything is written.
fn check_ids(table: &WeightView, ids: &[u32]) -> Result<(), BackendError> {
    let rows = table.rows();
    match ids.iter().enumerate().find(|(_, &id)| id as usize >= rows) {
        Some((pos, &id)) => Err(BackendError::TokenOutOfRange {
            tensor: table.name.clone(),
            id,
            pos,
            rows,
        }),
        None => Ok(()),
    }
}

/// One sequence on a [`HostExecutable`]: KV cache, arena, position.
pub struct HostSession<K: Kernels> {
    exe: Arc<HostExecutable<K>>,
    /// The arena: one buffer per slot, grown to the largest value it holds.
    slots: Vec<Vec<f32>>,
    caches: Vec<Cache>,
    /// Some layer keeps a ring shorter than the context: calls run in passes of at
    /// most [`PASS_POSITIONS`] positions.
    rings: bool,
    scratch: Vec<f32>,
    /// Every position's logits of a call that ran in several passes.
    logits: Vec<f32>,
    max_ctx: usize,
    pos: usize,
}

/// Consecutive rows of one forward pass that belong to one sequence: its KV caches
/// and the position of its first row.
struct Segment<'a> {
    caches: &'a mut [Cache],
    pos0: usize,
    len: usize,
}

/// One forward pass over the rows of one or more sequences (a batched decode step
/// has one row per session), in the arena of the session that runs it.
struct Pass<'p, 'a> {
    slots: &'a mut [Vec<f32>],
    scratch: &'a mut Vec<f32>,
    segments: &'p mut [Segment<'a>],
    tokens: &'a [u32],
    /// Every row goes on past `last_position` (all logits asked, or a batch).
    all: bool,
    /// Stop at the first step whose output is not finite (a diagnostic rerun).
    check: bool,
}

impl Pass<'_, '_> {
    /// The position of every row, in order.
    fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.segments.iter().flat_map(|s| s.pos0..s.pos0 + s.len)
    }
}

impl<K: Kernels> HostSession<K> {
    /// Whether every layer still holds the positions a query at `pos` reads.
    fn holds(&self, pos: usize) -> bool {
        self.caches.iter().all(|c| c.holds_window_of(pos))
    }

    /// Goes back to `pos`, which [`Self::holds`]; at 0 no ring row is needed any more.
    fn rewind(&mut self, pos: usize) {
        self.pos = pos;
        if pos == 0 {
            self.caches.iter_mut().for_each(|c| c.held_from = 0);
        }
    }

    /// Runs `tokens` at positions `pos0..`: one pass, or passes of [`PASS_POSITIONS`]
    /// where a ring is shorter than the context. With `all`, every position's logits;
    /// those of several passes are gathered in `self.logits`. Returns the last pass's
    /// length and whether logits were gathered.
    fn run_passes(
        &mut self,
        pos0: usize,
        tokens: &[u32],
        all: bool,
        check: bool,
    ) -> Result<(usize, bool), BackendError> {
        let exe = Arc::clone(&self.exe);
        let n = match self.rings {
            true => PASS_POSITIONS,
            false => tokens.len().max(1),
        };
        let gather = all && tokens.len() > n;
        let o = &exe.slot[exe.plan.outputs[0]];
        self.logits.clear();
        let mut last = 0;
        for (k, piece) in tokens.chunks(n).enumerate() {
            exe.run(Pass {
                slots: &mut self.slots,
                scratch: &mut self.scratch,
                // One segment, on the stack: no allocation per forward call.
                segments: &mut [Segment {
                    caches: &mut self.caches,
                    pos0: pos0 + k * n,
                    len: piece.len(),
                }],
                tokens: piece,
                all,
                check,
            })?;
            if gather {
                let rows = &self.slots[*o];
                self.logits
                    .try_reserve(rows.len())
                    .map_err(|_| BackendError::Alloc {
                        what: format!("the logits of {} positions", tokens.len()),
                        bytes: tokens.len() as u128 * (rows.len() / piece.len()) as u128 * 4,
                    })?;
                self.logits.extend_from_slice(rows);
            }
            last = piece.len();
        }
        Ok((last, gather))
    }
}

impl<K: Kernels> Session for HostSession<K> {
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Output<'_>, BackendError> {
        let seq = tokens.len();
        check_forward(self.pos, seq, self.max_ctx)?;
        let all = which == Logits::All;
        let (last, gathered) = match self.run_passes(self.pos, tokens, all, false) {
            Ok(done) => done,
            Err(e) => {
                // The session stays where it was, unless a pass of the call overwrote
                // ring rows that position reads.
                if !self.holds(self.pos) {
                    self.rewind(0);
                }
                return Err(e);
            }
        };
        self.pos += seq;
        if gathered {
            return Ok(Output {
                logits: &self.logits,
                rows: seq,
            });
        }
        let o = self.exe.plan.outputs[0];
        Ok(Output {
            logits: &self.slots[self.exe.slot[o]],
            rows: self.exe.rows(o, last, all),
        })
    }

    fn truncate(&mut self, pos: usize) -> Result<(), BackendError> {
        let to = check_truncate(pos, self.pos)?;
        if !self.holds(to) {
            let held_from = self.caches.iter().map(|c| c.held_from).max().unwrap_or(0);
            return Err(BackendError::Rewind { to, held_from });
        }
        self.rewind(to);
        Ok(())
    }

    fn rewind_point(&self, pos: usize) -> usize {
        let pos = pos.min(self.pos);
        match self.holds(pos) {
            true => pos,
            false => 0,
        }
    }

    fn position(&self) -> usize {
        self.pos
    }

    fn max_ctx(&self) -> usize {
        self.max_ctx
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn locate_non_finite(&mut self, tokens: &[u32]) -> Result<Option<String>, BackendError> {
        let seq = tokens.len();
        // A ring that no longer holds what the call's first position read cannot rerun it.
        if seq == 0 || seq > self.pos || !self.holds(self.pos - seq) {
            return Ok(None);
        }
        // The same tokens at the same positions: the rerun writes what the call wrote.
        // One of several passes that stops early has left older positions' rows in
        // rings that later positions share: the sequence starts again.
        let several = self.rings && seq > PASS_POSITIONS;
        let found = self.run_passes(self.pos - seq, tokens, false, true);
        if found.is_err() && several {
            self.rewind(0);
        }
        match found {
            Ok(_) => Ok(None),
            Err(e @ BackendError::NonFinite { .. }) => Ok(Some(e.to_string())),
            Err(e) => Err(e),
        }
    }
}

impl<K: Kernels> HostExecutable<K> {
    /// Rows of step `i`'s value at `seq` positions.
    fn rows(&self, i: usize, seq: usize, all: bool) -> usize {
        weft_backend::value_rows(&self.plan, &self.after_last, i, seq, all)
    }

    /// Runs every step of one pass.
    fn run(&self, mut pass: Pass<'_, '_>) -> Result<(), BackendError> {
        self.kernels
            .run_steps(|| (0..self.plan.steps.len()).try_for_each(|i| self.run_step(i, &mut pass)))
    }

    fn run_step(&self, i: usize, pass: &mut Pass<'_, '_>) -> Result<(), BackendError> {
        let exe = self;
        let seq = pass.tokens.len();
        let all = pass.all;
        let step = &exe.plan.steps[i];
        if matches!(step.node.op, Op::Tokens | Op::Weight { .. }) {
            return Ok(());
        }
        // Activations are [rows, cols] (shape inference guarantees it); no allocation per step.
        let shape = [
            exe.rows(i, seq, all),
            step.node.shape.get(1).map_or(1, |d| d.eval(seq)),
        ];
        let mut out = std::mem::take(&mut pass.slots[exe.slot[i]]);
        // A step's size comes from the plan and the tokens: grown fallibly.
        try_resize(&mut out, &shape).map_err(|e| BackendError::Alloc {
            what: format!("step {i}'s value ({} × {})", shape[0], shape[1]),
            bytes: e.bytes,
        })?;
        let slots = &*pass.slots;
        let input = |k: usize| -> &[f32] { &slots[exe.slot[step.inputs[k]]] };
        let weight = |k: usize| -> Result<&WeightView, BackendError> {
            match &exe.bound[step.inputs[k]] {
                Bound::Weight(w) => Ok(w),
                _ => Err(bad(i, &exe.plan, "expected a weight input")),
            }
        };
        let small = |k: usize| -> Result<&[f32], BackendError> {
            match &exe.bound[step.inputs[k]] {
                Bound::Small(w) => Ok(w),
                _ => Err(bad(i, &exe.plan, "expected a decoded weight")),
            }
        };
        if step.inputs.len() <= COMPILED_INPUTS {
            let ins = exe.inputs(step, slots);
            if exe
                .kernels
                .run_compiled(i, &ins[..step.inputs.len()], &mut out)
            {
                return exe.finish(i, out, pass);
            }
        }
        match &step.node.op {
            Op::Tokens | Op::Weight { .. } => {}
            Op::TokenEmbed => {
                let table = weight(0)?;
                check_ids(table, pass.tokens)?;
                exe.kernels.gather_rows(table, pass.tokens, &mut out);
            }
            Op::PositionEmbed => {
                let table = weight(0)?;
                let positions: Vec<u32> = pass.positions().map(|p| p as u32).collect();
                check_ids(table, &positions)?;
                exe.kernels.gather_rows(table, &positions, &mut out);
            }
            Op::LayerNorm { eps } => {
                ops::layer_norm(input(0), small(1)?, small(2)?, *eps, &mut out)
            }
            Op::MatMul { bias, softcap } => {
                let rows = shape[0];
                let kernel = exe.stage.routes[i]
                    .ok_or_else(|| bad(i, &exe.plan, "a matmul without a kernel route"))?
                    .for_rows(rows);
                let n_weights = if *bias {
                    (step.inputs.len() - 1) / 2
                } else {
                    step.inputs.len() - 1
                };
                // On the stack: a decode step allocates nothing.
                if n_weights > FUSED_WEIGHTS {
                    return Err(bad(i, &exe.plan, "a matmul over too many weights"));
                }
                let mut ws = [weight(1)?; FUSED_WEIGHTS];
                for (k, w) in ws.iter_mut().enumerate().take(n_weights) {
                    *w = weight(1 + k)?;
                }
                let ws = &ws[..n_weights];
                exe.kernels.matmul(input(0), rows, ws, kernel, &mut out);
                if *bias {
                    for row in out.chunks_exact_mut(shape[1]) {
                        let mut at = 0;
                        for k in 0..n_weights {
                            let b = small(1 + n_weights + k)?;
                            row[at..at + b.len()]
                                .iter_mut()
                                .zip(b.iter())
                                .for_each(|(o, v)| *o += v);
                            at += b.len();
                        }
                    }
                }
                if let Some(cap) = softcap {
                    out.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
                }
            }
            Op::Slice { start, len: width } => {
                let src = input(0);
                let d = src.len() / shape[0];
                for (o, r) in out.chunks_exact_mut(*width).zip(src.chunks_exact(d)) {
                    o.copy_from_slice(&r[*start..start + width]);
                }
            }
            Op::Add => {
                for ((o, a), b) in out.iter_mut().zip(input(0)).zip(input(1)) {
                    *o = a + b;
                }
            }
            Op::Mul => {
                for ((o, a), b) in out.iter_mut().zip(input(0)).zip(input(1)) {
                    *o = a * b;
                }
            }
            Op::Bias => {
                let b = small(1)?;
                for (o, r) in out
                    .chunks_exact_mut(b.len())
                    .zip(input(0).chunks_exact(b.len()))
                {
                    for ((o, x), y) in o.iter_mut().zip(r).zip(b) {
                        *o = x + y;
                    }
                }
            }
            Op::Scale { factor } => {
                let factor = match step.inputs.len() {
                    1 => *factor,
                    _ => factor * small(1)?[0],
                };
                ops::scale(input(0), factor, &mut out);
            }
            Op::RmsNorm {
                eps,
                weight_offset,
                group,
            } => {
                let w = match step.inputs.len() {
                    1 => None,
                    _ => Some(small(1)?),
                };
                ops::rms_norm(input(0), *group, w, *eps, *weight_offset, &mut out)
            }
            Op::AddRmsNorm {
                eps, weight_offset, ..
            } => ops::add_rms_norm(
                input(0),
                input(1),
                shape[1] / 2,
                small(2)?,
                *eps,
                *weight_offset,
                &mut out,
            ),
            Op::Glu { act } => ops::glu(input(0), shape[1], *act, &mut out),
            Op::Moe {
                n_experts,
                top_k,
                norm_topk,
                act,
                stacked,
            } => {
                let (n, d) = (*n_experts, shape[1]);
                let experts = (0..n)
                    .map(|e| {
                        let (g, u, dn) = if *stacked {
                            (weight(2)?, weight(3)?, weight(4)?)
                        } else {
                            (weight(2 + e)?, weight(2 + n + e)?, weight(2 + 2 * n + e)?)
                        };
                        let ffn = g.shape[g.shape.len() - 2];
                        let (fb, db) = if *stacked { (e * ffn, e * d) } else { (0, 0) };
                        Ok(ops::Expert {
                            gate: (g, fb),
                            up: (u, fb),
                            down: (dn, db),
                            ffn,
                        })
                    })
                    .collect::<Result<Vec<_>, BackendError>>()?;
                ops::moe(
                    input(0),
                    d,
                    weight(1)?,
                    &experts,
                    *top_k,
                    *norm_topk,
                    *act,
                    &mut out,
                );
            }
            Op::Elementwise { code } => {
                let ins: Vec<&[f32]> = (0..step.inputs.len()).map(input).collect();
                ops::elementwise(&ins, code, &mut out);
            }
            Op::Silu => ops::silu(input(0), &mut out),
            Op::Gelu => ops::gelu(input(0), &mut out),
            Op::Softcap { cap } => ops::softcap(input(0), *cap, &mut out),
            Op::Rope {
                head_dim, layout, ..
            } => {
                let f = exe.freqs[i]
                    .as_deref()
                    .expect("rope steps have frequencies");
                out.copy_from_slice(input(0));
                let w = shape[1];
                let mut rows = out.chunks_mut(w);
                for seg in pass.segments.iter() {
                    for (t, row) in rows.by_ref().take(seg.len).enumerate() {
                        ops::rope(row, w, *head_dim, f, *layout, seg.pos0 + t);
                    }
                }
            }
            Op::Attention {
                layer,
                n_heads,
                n_kv_heads,
                head_dim,
                scale,
                window,
                softcap,
                rope,
            } => {
                let (qw, ow) = (n_heads * head_dim, shape[1]);
                let (q_all, k_new, v_new) = (input(0), input(1), input(2));
                let mut r = 0;
                for seg in pass.segments.iter_mut() {
                    let (pos0, len) = (seg.pos0, seg.len);
                    let c = &mut seg.caches[*layer];
                    let w = c.width;
                    let f = exe.freqs[i].as_deref();
                    // Rope fused into attention: rotate k as it enters the cache, q in scratch.
                    let (k, v) = (&k_new[r * w..(r + len) * w], &v_new[r * w..(r + len) * w]);
                    c.write(pos0, k, v, |k, p| {
                        if let (Some(rp), Some(f)) = (rope, f) {
                            ops::rope(k, w, rp.head_dim, f, rp.layout, p);
                        }
                    });
                    let mut q = &q_all[r * qw..(r + len) * qw];
                    if let Some(rp) = rope {
                        let f = f.expect("rope-fused attention has frequencies");
                        pass.scratch.clear();
                        pass.scratch.extend_from_slice(q);
                        ops::rope(&mut pass.scratch[..], qw, rp.head_dim, f, rp.layout, pos0);
                        q = &pass.scratch[..];
                    }
                    let s = AttnShape {
                        n_heads: *n_heads,
                        n_kv_heads: *n_kv_heads,
                        head_dim: *head_dim,
                        scale: *scale,
                        window: *window,
                        softcap: *softcap,
                        cache_rows: c.rows,
                    };
                    let o = &mut out[r * ow..(r + len) * ow];
                    exe.kernels.attention(q, c.k.rows(), c.v.rows(), s, pos0, o);
                    r += len;
                }
            }
            // With all logits asked, every position goes on (rows = seq).
            Op::LastPosition => {
                let (src, len) = (input(0), out.len());
                out.copy_from_slice(&src[src.len() - len..]);
            }
            Op::Output => out.copy_from_slice(input(0)),
        }
        exe.finish(i, out, pass)
    }

    /// The first [`COMPILED_INPUTS`] inputs of `step` for compiled code: activations,
    /// and decoded small weights (stored weights are empty slices). On the stack: this
    /// runs for every step of every forward pass.
    fn inputs<'s>(&'s self, step: &Step, slots: &'s [Vec<f32>]) -> [&'s [f32]; COMPILED_INPUTS] {
        let mut ins: [&[f32]; COMPILED_INPUTS] = [&[]; COMPILED_INPUTS];
        for (x, &j) in ins.iter_mut().zip(&step.inputs) {
            *x = match &self.bound[j] {
                Bound::Small(w) => w,
                Bound::Weight(_) => &[],
                Bound::Value => &slots[self.slot[j]],
            };
        }
        ins
    }

    /// Stores step `i`'s value, checking it in a diagnostic pass.
    fn finish(&self, i: usize, out: Vec<f32>, pass: &mut Pass<'_, '_>) -> Result<(), BackendError> {
        let step = &self.plan.steps[i];
        let bad = match pass.check {
            true => out.iter().copied().find(|v| !v.is_finite()),
            false => None,
        };
        pass.slots[self.slot[i]] = out;
        match bad {
            Some(value) => Err(BackendError::NonFinite {
                step: i,
                name: step.node.name.clone(),
                op: step.node.op.kind().to_string(),
                value,
            }),
            None => Ok(()),
        }
    }
}
