//! One sequence on a [`GpuExecutable`]: its arena, KV cache and rope tables on the
//! device, every dispatch's bind group made once when the session opens. A forward
//! call writes the token ids and the parameter blocks, records all dispatches in one
//! command encoder and reads back only the logits it returns, or for a greedy pick
//! (`forward_pick`) 16 bytes, or for a sampled step's candidates (`forward_top`) k
//! pairs. Prompts longer than the arena's row capacity run in chunks.

use crate::buffers::{groups, map_into, storage, upload, Params, PARAM_STRIDE, PARAM_WORDS};
use crate::profile::{CallTimes, Profiler, StepClock};
use crate::schedule::{Buf, Call, GpuExecutable, ATTENTION_CHUNK};
use crate::shaders;
use std::sync::Arc;
use weft_backend::{
    check_forward, check_top_k, check_truncate, BackendError, Logits, Output, Pick, Session, Top,
    MAX_TOP_K,
};
use weft_ir::Dim;

/// Most positions one submission runs (prompt chunks).
const MAX_CHUNK: usize = 512;

/// Most workgroups of the greedy pick's first stage (argmax.wgsl): 32k values a pass
/// over the row, a 262k vocabulary in 8.
const PICK_GROUPS: usize = 128;

/// Entries a topk.wgsl workgroup sorts (`CHUNK` there).
const TOP_CHUNK: usize = 2048;

/// Most rounds of the top-k: a round keeps K ≤ 256 of every 2048 entries, an eighth,
/// so 8 rounds reduce any row a u32 indexes to one workgroup's.
const TOP_ROUNDS: usize = 8;

/// Parameter blocks after the schedule's: the pick's two, then the top-k's rounds.
const EXTRA_BLOCKS: usize = 2 + TOP_ROUNDS;

pub struct GpuSession {
    exe: Arc<GpuExecutable>,
    max_ctx: usize,
    pos: usize,
    /// Rows of a submission: the arena holds this many positions.
    chunk: usize,
    slots: Vec<wgpu::Buffer>,
    tokens: wgpu::Buffer,
    params: wgpu::Buffer,
    bind_groups: Vec<wgpu::BindGroup>,
    staging: wgpu::Buffer,
    logits: Vec<f32>,
    /// The greedy pick's partials (argmax.wgsl), its readback, and its two bind groups
    /// (parameter blocks after the schedule's).
    pick_part: wgpu::Buffer,
    pick_staging: wgpu::Buffer,
    pick_binds: [wgpu::BindGroup; 2],
    /// The top-k's two partial buffers (rounds alternate between them), its readback,
    /// and a bind group for each round (topk.wgsl).
    top_parts: [wgpu::Buffer; 2],
    top_staging: wgpu::Buffer,
    top_binds: Vec<wgpu::BindGroup>,
    /// Per call: rows of each step.
    rows: Vec<usize>,
    /// The call running now, and the one recorded ahead for the next (a decode
    /// step one position on), whose command buffers wait for a call that matches.
    now: Prepared,
    ahead: Prepared,
    /// The call's token ids as bytes, reused.
    token_bytes: Vec<u8>,
    /// `WEFT_GPU_TIMING` set: where each call's time goes, on stderr.
    clock: Option<StepClock>,
    /// `WEFT_GPU_PROFILE` set: GPU time per kernel, printed when the session closes.
    profile: Option<Profiler>,
    /// `WEFT_GPU_SKIP=a,b`: dispatches whose label starts with a listed prefix do not
    /// run (wrong logits; a step's time without them is what they cost).
    skip: Vec<bool>,
}

/// Dispatches in a step's first submission (see `call`). On an H200 (tg64, short
/// context) chunks doubling from 16 beat one submission by 23% on SmolLM2's shape and
/// 10% on Llama 3 8B's; first chunks of 8 to 64 and growth by 2 to 4 are within 5%.
const FIRST_CHUNK: usize = 16;

fn alloc_err(what: String, bytes: usize) -> BackendError {
    BackendError::Alloc {
        what,
        bytes: bytes as u128,
    }
}

impl GpuSession {
    pub fn new(exe: Arc<GpuExecutable>, max_ctx: usize) -> Result<Self, BackendError> {
        let gpu = Arc::clone(&exe.gpu);
        let plan = &exe.plan;
        let n = plan.steps.len();
        let limit = gpu.limits.max_storage_buffer_binding_size as usize;
        let scales = |i: usize| exe.after_last[i] || plan.steps[i].node.shape[0] == Dim::SEQ;
        // The most rows a submission can take with every per-row buffer in one binding.
        let mut widest = 1;
        for i in 0..n {
            if scales(i) {
                widest = widest.max(exe.widths[i]);
            }
        }
        for m in &exe.moe {
            widest = widest.max(m.hidden).max(m.out);
        }
        let chunk = MAX_CHUNK
            .min(max_ctx.max(1))
            .min(limit / (widest * 4))
            .max(1);

        let mut slot_bytes = vec![0usize; exe.n_slots];
        for (i, st) in plan.steps.iter().enumerate() {
            if matches!(st.node.op, weft_ir::Op::Weight { .. } | weft_ir::Op::Tokens) {
                continue;
            }
            let rows = match scales(i) {
                true => chunk,
                false => st.node.shape[0].eval(1),
            };
            let bytes = rows
                .checked_mul(exe.widths[i])
                .and_then(|v| v.checked_mul(4))
                .ok_or_else(|| alloc_err(format!("step {i}'s value"), usize::MAX))?;
            let s = exe.slot[i];
            slot_bytes[s] = slot_bytes[s].max(bytes);
        }
        let slots = slot_bytes
            .iter()
            .enumerate()
            .map(|(s, &b)| storage(&gpu, &format!("arena slot {s}"), b as u64))
            .collect::<Result<Vec<_>, _>>()?;
        let cache = |w: usize, what: &str| {
            let bytes = max_ctx
                .checked_mul(w)
                .and_then(|v| v.checked_mul(exe.kv_bytes))
                .ok_or_else(|| {
                    alloc_err(
                        format!("the {what} ({max_ctx} positions × {w})"),
                        usize::MAX,
                    )
                })?;
            storage(
                &gpu,
                &format!("the {what} ({max_ctx} positions × {w})"),
                bytes as u64,
            )
        };
        let keys = exe
            .kv_widths
            .iter()
            .map(|&w| cache(w, "key cache"))
            .collect::<Result<Vec<_>, _>>()?;
        let values = exe
            .kv_widths
            .iter()
            .map(|&w| cache(w, "value cache"))
            .collect::<Result<Vec<_>, _>>()?;
        // (cos, sin) of every position and frequency, computed as the reference does.
        let mut ropes = Vec::new();
        for freqs in &exe.rope_freqs {
            let mut t = Vec::new();
            let len = max_ctx
                .checked_mul(freqs.len() * 8)
                .ok_or_else(|| alloc_err("a rope table".into(), usize::MAX))?;
            t.try_reserve_exact(len)
                .map_err(|_| alloc_err(format!("a rope table ({max_ctx} positions)"), len))?;
            for p in 0..max_ctx {
                for &fr in freqs {
                    let (s, c) = (p as f32 * fr).sin_cos();
                    t.extend_from_slice(&c.to_le_bytes());
                    t.extend_from_slice(&s.to_le_bytes());
                }
            }
            ropes.push(upload(&gpu, "rope table", &t)?);
        }
        let mut moe = Vec::new();
        for m in &exe.moe {
            let r = chunk * m.top_k;
            moe.push([
                storage(&gpu, "expert ids", (r * 4) as u64)?,
                storage(&gpu, "expert weights", (r * 4) as u64)?,
                storage(&gpu, "expert hidden", (chunk * m.hidden * 4) as u64)?,
                storage(&gpu, "expert out", (chunk * m.out * 4) as u64)?,
            ]);
        }
        let tokens = storage(&gpu, "token ids", (chunk * 4) as u64)?;
        let dummy = storage(&gpu, "unused", 16)?;
        let done = storage(
            &gpu,
            "norm epilogue counts",
            shaders::NORM_DONE_WORDS as u64 * 4,
        )?;
        let x8 = storage(
            &gpu,
            "quantised activations",
            (exe.x8_words.max(4) * 4) as u64,
        )?;
        let x8_normed = storage(
            &gpu,
            "quantised normed activations",
            (exe.x8_words.max(4) * 4) as u64,
        )?;
        // The integer-dot GEMM's rows: a byte a value, and (d, d·Σq) a block of 32.
        let x8_rows = storage(
            &gpu,
            "quantised activation rows",
            (chunk * exe.x8_rows_k).max(16) as u64,
        )?;
        let x8_scales = storage(
            &gpu,
            "quantised activation scales",
            (chunk * exe.x8_rows_k / 4).max(16) as u64,
        )?;
        let w8 = storage(
            &gpu,
            "decoded weight blocks",
            (exe.w8_blocks * 32).max(16) as u64,
        )?;
        let w8_scales = storage(
            &gpu,
            "decoded weight scales",
            (exe.w8_blocks * 16).max(16) as u64,
        )?;
        let w16 = storage(
            &gpu,
            "weight decoded to f16",
            (exe.w16_blocks * 64).max(16) as u64,
        )?;
        let part_bytes = max_ctx
            .div_ceil(ATTENTION_CHUNK)
            .checked_mul(exe.attn_part)
            .and_then(|v| v.checked_mul(4))
            .ok_or_else(|| alloc_err("the attention chunk sums".into(), usize::MAX))?;
        let attn_part = storage(&gpu, "attention chunk sums", part_bytes.max(16) as u64)?;
        let attn_done = storage(
            &gpu,
            "attention chunk counts",
            (exe.attn_heads.max(4) * 4) as u64,
        )?;
        let params = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step parameters"),
            size: (exe.dispatches.len() + EXTRA_BLOCKS) as u64 * PARAM_STRIDE,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let resolve = |b: Buf| -> &wgpu::Buffer {
            match b {
                Buf::Slot(i) => &slots[exe.slot[i]],
                Buf::Weight(w) => &exe.weights[w],
                Buf::Tokens => &tokens,
                Buf::KeyCache(l) => &keys[l],
                Buf::ValueCache(l) => &values[l],
                Buf::RopeTable(t) => &ropes[t],
                Buf::MoeIds(m) => &moe[m][0],
                Buf::MoeWeights(m) => &moe[m][1],
                Buf::MoeHidden(m) => &moe[m][2],
                Buf::MoeOut(m) => &moe[m][3],
                Buf::X8 => &x8,
                Buf::X8Normed => &x8_normed,
                Buf::X8Rows => &x8_rows,
                Buf::X8Scales => &x8_scales,
                Buf::W8 => &w8,
                Buf::W8Scales => &w8_scales,
                Buf::W16 => &w16,
                Buf::AttnPart => &attn_part,
                Buf::AttnDone => &attn_done,
                Buf::Done => &done,
                Buf::Dummy => &dummy,
            }
        };
        let bind_groups = exe
            .dispatches
            .iter()
            .enumerate()
            .map(|(d, dp)| {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &params,
                        offset: d as u64 * PARAM_STRIDE,
                        size: wgpu::BufferSize::new(4 * PARAM_WORDS as u64),
                    }),
                }];
                for (k, &b) in dp.bufs.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: k as u32 + 1,
                        resource: resolve(b).as_entire_binding(),
                    });
                }
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &dp.pipeline.get_bind_group_layout(0),
                    entries: &entries,
                })
            })
            .collect();
        let out = plan.outputs[0];
        let out_bytes = slot_bytes[exe.slot[out]];
        let pick_part = storage(&gpu, "greedy pick partials", (PICK_GROUPS as u64 + 1) * 16)?;
        let pick_bind = |k: u64| {
            let params = wgpu::BufferBinding {
                buffer: &params,
                offset: (exe.dispatches.len() as u64 + k) * PARAM_STRIDE,
                size: wgpu::BufferSize::new(4 * PARAM_WORDS as u64),
            };
            let entries = [
                (0, wgpu::BindingResource::Buffer(params)),
                (1, slots[exe.slot[out]].as_entire_binding()),
                (2, pick_part.as_entire_binding()),
            ]
            .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource });
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("greedy pick"),
                layout: &exe.pick.get_bind_group_layout(0),
                entries: &entries,
            })
        };
        let pick_binds = [pick_bind(0), pick_bind(1)];
        // Sized for the most candidates: round 0 writes the most entries, and the last
        // round one more (the first entry's value bits).
        let widest = top_stages(&gpu, exe.widths[out], 0, MAX_TOP_K);
        let (x, y) = widest.groups[0];
        let top_bytes = ((x * y) as u64 * widest.width as u64 + 1) * 8;
        let top_parts = [
            storage(&gpu, "top-k partials", top_bytes)?,
            storage(&gpu, "top-k partials", top_bytes)?,
        ];
        let top_binds = (0..widest.rounds)
            .map(|r| {
                let params = wgpu::BufferBinding {
                    buffer: &params,
                    offset: (exe.dispatches.len() + 2 + r) as u64 * PARAM_STRIDE,
                    size: wgpu::BufferSize::new(4 * PARAM_WORDS as u64),
                };
                let entries = [
                    (0, wgpu::BindingResource::Buffer(params)),
                    (1, slots[exe.slot[out]].as_entire_binding()),
                    (2, top_parts[(r + 1) % 2].as_entire_binding()),
                    (3, top_parts[r % 2].as_entire_binding()),
                ]
                .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource });
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("top-k"),
                    layout: &exe.top.get_bind_group_layout(0),
                    entries: &entries,
                })
            })
            .collect();
        let top_staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("top-k readback"),
            size: (MAX_TOP_K as u64 + 1) * 8,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let pick_staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("greedy pick readback"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits readback"),
            size: out_bytes.max(4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // Creating buffers and bind groups reports errors asynchronously.
        gpu.wait()?;
        Ok(GpuSession {
            max_ctx,
            pos: 0,
            chunk,
            slots,
            tokens,
            params,
            bind_groups,
            staging,
            logits: Vec::new(),
            pick_part,
            pick_staging,
            pick_binds,
            top_parts,
            top_staging,
            top_binds,
            rows: vec![0; n],
            now: Prepared::new(exe.dispatches.len()),
            ahead: Prepared::new(exe.dispatches.len()),
            token_bytes: Vec::new(),
            clock: StepClock::new(&gpu),
            profile: Profiler::new(&gpu, exe.dispatches.len()),
            skip: skipped(&exe),
            exe,
        })
    }

    /// Computes the rows, workgroup counts and parameter blocks of the call `key`, into
    /// the call ahead or the one now.
    fn prepare(&mut self, key: CallKey, ahead: bool) {
        let exe = &self.exe;
        let p = if ahead {
            &mut self.ahead
        } else {
            &mut self.now
        };
        for (i, r) in self.rows.iter_mut().enumerate() {
            *r = exe.rows(i, key.seq, key.all);
        }
        let call = Call {
            seq: key.seq,
            pos0: key.pos0,
            rows: &self.rows,
            gpu: &exe.gpu,
        };
        for (d, dp) in exe.dispatches.iter().enumerate() {
            let (params, g) = (dp.rule)(&call);
            let at = d * PARAM_STRIDE as usize;
            params.write(&mut p.param_bytes[at..at + 4 * PARAM_WORDS]);
            p.counts[d] = if self.skip[d] { (0, 0) } else { g };
        }
        let o = exe.plan.outputs[0];
        let vocab = exe.widths[o];
        p.out_rows = self.rows[o];
        let offset = (p.out_rows.max(1) - 1) * vocab;
        let (pick_params, pick_groups) = pick_stages(vocab, offset);
        p.pick_groups = pick_groups;
        p.top = match key.read {
            Read::Top { k } => top_stages(&exe.gpu, vocab, offset, k),
            _ => TopStages::default(),
        };
        // The pick's blocks, or the top-k's after them.
        let (first, extra) = match key.read {
            Read::Pick => (0, &pick_params[..]),
            _ => (2, &p.top.params[..p.top.rounds]),
        };
        for (k, params) in extra.iter().enumerate() {
            let at = (exe.dispatches.len() + first + k) * PARAM_STRIDE as usize;
            params.write(&mut p.param_bytes[at..at + 4 * PARAM_WORDS]);
        }
        p.key = Some(key);
    }

    /// Records the call ahead (its command buffers kept for later) or the one now. The
    /// call now is submitted in chunks that double from FIRST_CHUNK dispatches, so that
    /// the GPU runs the first layers while the host records the rest.
    fn record(&mut self, ahead: bool) {
        let exe = &self.exe;
        let gpu = &exe.gpu;
        let p = if ahead { &self.ahead } else { &self.now };
        let Some(key) = p.key else { return };
        let o = exe.plan.outputs[0];
        let bytes = (p.out_rows * exe.widths[o] * 4) as u64;
        let record = |pass: &mut wgpu::ComputePass, d: usize| {
            let (x, y) = p.counts[d];
            pass.set_pipeline(&exe.dispatches[d].pipeline);
            pass.set_bind_group(0, &self.bind_groups[d], &[]);
            pass.dispatch_workgroups(x, y, 1);
        };
        let read_out = |enc: &mut wgpu::CommandEncoder| match key.read {
            Read::Logits { .. } => {
                enc.copy_buffer_to_buffer(&self.slots[exe.slot[o]], 0, &self.staging, 0, bytes)
            }
            Read::Pick => {
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&exe.pick);
                    for (bind, x) in self.pick_binds.iter().zip([p.pick_groups, 1]) {
                        pass.set_bind_group(0, bind, &[]);
                        pass.dispatch_workgroups(x, 1, 1);
                    }
                }
                let at = p.pick_groups as u64 * 16;
                enc.copy_buffer_to_buffer(&self.pick_part, at, &self.pick_staging, 0, 16)
            }
            Read::Top { .. } => self.record_top(enc, &p.top),
        };
        let mut passes = 0;
        let mut kept = Vec::new();
        match &self.profile {
            None => {
                let mut live = p.live().peekable();
                let mut chunk = FIRST_CHUNK;
                loop {
                    let mut enc = gpu.device.create_command_encoder(&Default::default());
                    {
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: self.clock.as_ref().and_then(|c| c.writes(passes)),
                        });
                        live.by_ref().take(chunk).for_each(|d| record(&mut pass, d));
                    }
                    passes += 1;
                    let last = live.peek().is_none();
                    if last {
                        if let Some(c) = &self.clock {
                            c.resolve(&mut enc, passes);
                        }
                        read_out(&mut enc);
                    }
                    match ahead {
                        true => kept.push(enc.finish()),
                        false => {
                            gpu.queue.submit([enc.finish()]);
                        }
                    }
                    if last {
                        break;
                    }
                    chunk *= 2;
                }
            }
            // One pass with timestamps between the dispatches.
            Some(prof) if prof.inside => {
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                let mut q = 0;
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    prof.write_inside(&mut pass, 0);
                    for d in p.live() {
                        record(&mut pass, d);
                        q += 1;
                        prof.write_inside(&mut pass, q);
                    }
                }
                prof.resolve(&mut enc, q);
                read_out(&mut enc);
                gpu.queue.submit([enc.finish()]);
            }
            // A pass per dispatch, timestamps around each.
            Some(prof) => {
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                let mut q = 0;
                for d in p.live() {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: prof.writes(q),
                    });
                    record(&mut pass, d);
                    q += 1;
                }
                prof.resolve(&mut enc, q);
                read_out(&mut enc);
                gpu.queue.submit([enc.finish()]);
            }
        }
        let p = if ahead {
            &mut self.ahead
        } else {
            &mut self.now
        };
        p.passes = passes;
        if ahead {
            p.recorded = Some(kept);
        }
    }

    /// Runs `tokens` (at most a chunk) at `pos0` and reads back what `read` asks; returns
    /// the output's rows, and the pick or candidates where they were asked.
    fn call(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        all: bool,
        read: Read,
    ) -> Result<(usize, Option<Chosen>), BackendError> {
        let tp = std::time::Instant::now();
        let exe = Arc::clone(&self.exe);
        let gpu = &exe.gpu;
        let seq = tokens.len();
        let key = CallKey {
            seq,
            pos0,
            all,
            read,
        };
        let ready = self.ahead.key == Some(key) && self.ahead.recorded.is_some();
        if ready {
            std::mem::swap(&mut self.now, &mut self.ahead);
        } else {
            self.prepare(key, false);
        }
        self.ahead.recorded = None;
        self.token_bytes.clear();
        self.token_bytes
            .extend(tokens.iter().flat_map(|t| t.to_le_bytes()));
        gpu.queue.write_buffer(&self.tokens, 0, &self.token_bytes);
        gpu.queue
            .write_buffer(&self.params, 0, &self.now.param_bytes);
        let t0 = std::time::Instant::now();
        match self.now.recorded.take() {
            // A submission a chunk, as when recording now: the GPU starts on the first
            // chunk while the queue takes in the rest.
            Some(buffers) => {
                for b in buffers {
                    gpu.queue.submit([b]);
                }
            }
            None => self.record(false),
        }
        let t1 = std::time::Instant::now();
        // While the GPU runs a decode step, the next one's commands are recorded: one
        // position on, reading back the same way.
        let next = CallKey {
            seq: 1,
            pos0: pos0 + 1,
            all: false,
            read,
        };
        if self.profile.is_none() && seq == 1 && !all && next.pos0 < self.max_ctx {
            self.prepare(next, true);
            self.record(true);
        }
        let Prepared {
            out_rows,
            passes,
            ref top,
            ..
        } = self.now;
        let vocab = exe.widths[exe.plan.outputs[0]];
        let t2 = std::time::Instant::now();
        let (picked, mapped) = match read {
            Read::Logits { at } => {
                let len = out_rows * vocab;
                if self.logits.len() < at + len {
                    let extra = at + len - self.logits.len();
                    self.logits
                        .try_reserve(extra)
                        .map_err(|_| alloc_err("the logits".into(), (at + len) * 4))?;
                    self.logits.resize(at + len, 0.0);
                }
                let mapped = map_into(gpu, &self.staging, &mut self.logits[at..at + len])?;
                (None, mapped)
            }
            Read::Pick => {
                let mut w = [0f32; 4];
                let mapped = map_into(gpu, &self.pick_staging, &mut w)?;
                (Some(Chosen::Pick(read_pick(w.map(f32::to_bits)))), mapped)
            }
            Read::Top { k } => {
                let mut w = [0f32; 2 * (MAX_TOP_K + 1)];
                let w = &mut w[..2 * (top.width + 1)];
                let mapped = map_into(gpu, &self.top_staging, w)?;
                (Some(Chosen::Top(read_top(w, k.min(vocab)))), mapped)
            }
        };
        let t3 = std::time::Instant::now();
        if let Some(prof) = &mut self.profile {
            let names = self.now.live().map(|d| exe.dispatches[d].label.as_str());
            prof.collect(gpu, names)?;
        }
        if let Some(clock) = &mut self.clock {
            let dispatches = self.now.live().count();
            let ns = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e9;
            let t = CallTimes {
                prep: ns(tp, t0),
                record: ns(t0, t1),
                ahead: ns(t1, t2),
                wait: ns(t2, mapped),
                copy: ns(mapped, t3),
                ..Default::default()
            };
            clock.report(gpu, seq, dispatches, passes, t)?;
        }
        Ok((out_rows, picked))
    }

    /// Runs `tokens` in chunks of at most a submission's rows; the last chunk reads back
    /// what `pick` asks (the greedy pick or the candidates; `None`: its logits), earlier
    /// ones their logits where `all` asks for every row.
    fn run(
        &mut self,
        tokens: &[u32],
        all: bool,
        pick: Option<Read>,
    ) -> Result<(usize, Option<Chosen>), BackendError> {
        let seq = tokens.len();
        check_forward(self.pos, seq, self.max_ctx)?;
        self.check_ids(tokens)?;
        let width = self.exe.widths[self.exe.plan.outputs[0]];
        let (mut at, mut rows, mut picked) = (0, 0, None);
        let n = tokens.len().div_ceil(self.chunk);
        for (c, part) in tokens.chunks(self.chunk).enumerate() {
            let pos0 = self.pos + c * self.chunk;
            let read = match pick {
                Some(read) if c + 1 == n => read,
                _ => Read::Logits {
                    at: if all { at } else { 0 },
                },
            };
            let (r, p) = self.call(part, pos0, all, read)?;
            at += r * width;
            rows = if all { rows + r } else { r };
            picked = p;
        }
        self.pos += seq;
        Ok((rows, picked))
    }

    /// Records the top-k's rounds and the copy of the last one's entries to the readback.
    fn record_top(&self, enc: &mut wgpu::CommandEncoder, top: &TopStages) {
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.exe.top);
            for (bind, &(x, y)) in self.top_binds.iter().zip(&top.groups[..top.rounds]) {
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        let last = &self.top_parts[(top.rounds - 1) % 2];
        let bytes = (top.width as u64 + 1) * 8;
        enc.copy_buffer_to_buffer(last, 0, &self.top_staging, 0, bytes);
    }

    /// Token ids and positions within the embedding tables they index.
    fn check_ids(&self, tokens: &[u32]) -> Result<(), BackendError> {
        if let Some((tensor, rows)) = &self.exe.token_rows {
            if let Some((pos, &id)) = tokens
                .iter()
                .enumerate()
                .find(|(_, &t)| t as usize >= *rows)
            {
                return Err(BackendError::TokenOutOfRange {
                    tensor: tensor.clone(),
                    id,
                    pos,
                    rows: *rows,
                });
            }
        }
        if let Some((tensor, rows)) = &self.exe.position_rows {
            let last = self.pos + tokens.len() - 1;
            if last >= *rows {
                return Err(BackendError::TokenOutOfRange {
                    tensor: tensor.clone(),
                    id: last as u32,
                    pos: tokens.len() - 1,
                    rows: *rows,
                });
            }
        }
        Ok(())
    }
}

/// The greedy pick's two dispatches (argmax.wgsl) over the `vocab` values at `offset`
/// of the output: their parameters, and the first stage's workgroups (the final
/// partial lands just past theirs).
pub(crate) fn pick_stages(vocab: usize, offset: usize) -> ([Params; 2], u32) {
    let groups = vocab.div_ceil(256).clamp(1, PICK_GROUPS) as u32;
    let params = [
        Params::new(&[0, vocab as u32, offset as u32, groups]),
        Params::new(&[1, groups, 0, 1]),
    ];
    (params, groups)
}

/// The final partial of the greedy pick (best value, its index, first non-finite index,
/// its value's bits) as the pick.
pub(crate) fn read_pick([_, index, bad, bad_bits]: [u32; 4]) -> Pick {
    match bad {
        u32::MAX => Pick::Token(index),
        id => Pick::NonFinite {
            id,
            value: f32::from_bits(bad_bits),
        },
    }
}

/// The top-k's rounds (topk.wgsl) over the `vocab` values at `offset` of the output, for
/// `k` candidates (1 to `MAX_TOP_K`, clamped to `vocab`).
#[derive(Default)]
pub(crate) struct TopStages {
    pub params: [Params; TOP_ROUNDS],
    /// Each round's workgroups, as dispatch (x, y).
    pub groups: [(u32, u32); TOP_ROUNDS],
    pub rounds: usize,
    /// K: the entries a workgroup keeps, k rounded up to a power of two. The last round
    /// writes K entries, then the first one's value bits.
    pub width: usize,
}

pub(crate) fn top_stages(gpu: &crate::Gpu, vocab: usize, offset: usize, k: usize) -> TopStages {
    let width = k.clamp(1, vocab.max(1)).next_power_of_two();
    let mut t = TopStages {
        width,
        ..Default::default()
    };
    let mut n = vocab;
    while t.rounds < TOP_ROUNDS {
        let g = n.div_ceil(TOP_CHUNK).max(1);
        let (x, y) = groups(gpu, g as u32);
        let last = g == 1;
        let words = [
            t.rounds as u32,
            n as u32,
            offset as u32,
            width as u32,
            x,
            last as u32,
        ];
        t.params[t.rounds] = Params::new(&words);
        t.groups[t.rounds] = (x, y);
        t.rounds += 1;
        if last {
            break;
        }
        n = g * width;
    }
    t
}

/// The last top-k round's words, read back as floats (K entries (key, id), then the
/// first entry's value bits), as the first `k` candidates or the first non-finite value.
/// Keys order like values (`key_of` in topk.wgsl); a non-finite value's key is all ones.
pub(crate) fn read_top(words: &[f32], k: usize) -> Top {
    let word = |i: usize| words[i].to_bits();
    let width = words.len() / 2 - 1;
    if word(0) == u32::MAX {
        return Top::NonFinite {
            id: word(1),
            value: words[2 * width],
        };
    }
    let value = |key: u32| match key & 0x8000_0000 {
        0 => f32::from_bits(!key),
        _ => f32::from_bits(key ^ 0x8000_0000),
    };
    let pairs = words[..2 * width].chunks_exact(2);
    let pairs = pairs
        .take(k)
        .map(|e| (value(e[0].to_bits()), e[1].to_bits()));
    Top::Candidates(pairs.collect())
}

/// The dispatches `WEFT_GPU_SKIP` leaves out, by label prefix (a timing aid).
fn skipped(exe: &GpuExecutable) -> Vec<bool> {
    let list = std::env::var("WEFT_GPU_SKIP").unwrap_or_default();
    let prefixes: Vec<&str> = list.split(',').filter(|p| !p.is_empty()).collect();
    if !prefixes.is_empty() {
        eprintln!(
            "weft gpu: WEFT_GPU_SKIP={list}: those dispatches do not run; the logits are wrong"
        );
    }
    exe.dispatches
        .iter()
        .map(|d| prefixes.iter().any(|p| d.label.starts_with(p)))
        .collect()
}

/// What a call's commands depend on: calls with the same key record the same commands
/// (its data, the token ids and the caches, live in buffers they read).
#[derive(Clone, Copy, PartialEq, Eq)]
struct CallKey {
    seq: usize,
    pos0: usize,
    all: bool,
    read: Read,
}

/// A call's workgroup counts and parameter blocks, computed from its key, and, for a
/// call recorded ahead, its command buffers.
struct Prepared {
    key: Option<CallKey>,
    counts: Vec<(u32, u32)>,
    param_bytes: Vec<u8>,
    out_rows: usize,
    pick_groups: u32,
    top: TopStages,
    /// Passes recorded (WEFT_GPU_TIMING times each).
    passes: u32,
    recorded: Option<Vec<wgpu::CommandBuffer>>,
}

impl Prepared {
    /// The dispatches that run (a count of 0 skips one).
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.counts.len()).filter(|&d| self.counts[d].0 > 0 && self.counts[d].1 > 0)
    }

    fn new(dispatches: usize) -> Prepared {
        Prepared {
            key: None,
            counts: vec![(0, 0); dispatches],
            param_bytes: vec![0; (dispatches + EXTRA_BLOCKS) * PARAM_STRIDE as usize],
            out_rows: 0,
            pick_groups: 0,
            top: TopStages::default(),
            passes: 0,
            recorded: None,
        }
    }
}

/// What a call reads back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Its output rows, into the session's logits at `at`.
    Logits { at: usize },
    /// The greedy pick of its last output row.
    Pick,
    /// The `k` largest values of its last output row.
    Top { k: usize },
}

/// What a call read back besides its rows.
enum Chosen {
    Pick(Pick),
    Top(Top),
}

impl Session for GpuSession {
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Output<'_>, BackendError> {
        let (rows, _) = self.run(tokens, which == Logits::All, None)?;
        let width = self.exe.widths[self.exe.plan.outputs[0]];
        Ok(Output {
            logits: &self.logits[..rows * width],
            rows,
        })
    }

    fn forward_pick(&mut self, tokens: &[u32]) -> Result<Pick, BackendError> {
        match self.run(tokens, false, Some(Read::Pick))? {
            (_, Some(Chosen::Pick(p))) => Ok(p),
            _ => Err(BackendError::NoTokens),
        }
    }

    fn forward_top(&mut self, tokens: &[u32], k: usize) -> Result<Top, BackendError> {
        check_top_k(k)?;
        match self.run(tokens, false, Some(Read::Top { k }))? {
            (_, Some(Chosen::Top(t))) => Ok(t),
            _ => Err(BackendError::NoTokens),
        }
    }

    fn truncate(&mut self, pos: usize) -> Result<(), BackendError> {
        self.pos = check_truncate(pos, self.pos)?;
        Ok(())
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
}
