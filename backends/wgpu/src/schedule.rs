//! Lowering a plan into a GPU schedule: each step becomes one or more dispatches, each a
//! pipeline fixed at lowering, the buffers it binds (named by role, bound to a
//! session's own arena and KV cache when the session opens) and a rule giving its
//! parameters and workgroup counts for a forward call's rows and positions.

use crate::buffers::{f, groups, upload, Params};
use crate::device::{gpu, Gpu};
use crate::shaders::{self, elementwise_source, Kernel, Operand, Pipelines, RowsVariant};
use crate::NAME;
use std::sync::{Arc, OnceLock};
use weft_backend::{
    after_last, backend_stage, check_declined, kv_widths, validate_plan, Activations, BackendError,
    Executable, KvType, LowerOptions, Route, Session, Stage,
};
use weft_ir::{DType, Ew, GluAct, Op, Plan, RopeLayout, WeightProvider, WeightView};
use weft_reference::ops::rope_inv_freqs;
use weft_reference::{bind_weight, decode_vector, vector_weights};

/// Activation rows per tiled-matmul workgroup on `gpu`: each decoded weight chunk
/// serves this many rows.
pub fn matmul_mt(gpu: &Gpu) -> usize {
    match gpu.info.device_type {
        wgpu::DeviceType::Cpu => 4,
        _ => 16,
    }
}

/// Weight rows per matmul workgroup on `gpu` (see `shaders::matmul_source`).
/// `WEFT_GPU_ROWS` (1, 2, 4, … 64) overrides it: the tests take the GPU's kernels
/// (several rows a workgroup, several lanes a row) on Mesa's software Vulkan with 2.
pub fn matmul_rows(gpu: &Gpu) -> usize {
    let forced = std::env::var("WEFT_GPU_ROWS")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Some(r @ (1 | 2 | 4 | 8 | 16 | 32 | 64)) = forced {
        return r;
    }
    match gpu.info.device_type {
        wgpu::DeviceType::Cpu => 64,
        _ => 2,
    }
}

/// Whether the kernels may use subgroup operations on `gpu`.
pub fn subgroups(gpu: &Gpu) -> bool {
    gpu.features.contains(wgpu::Features::SUBGROUP)
}

/// Keys a workgroup of a split decode attention takes: a one-row call over more keys
/// runs chunks of this many side by side, then merges them.
pub const ATTENTION_CHUNK: usize = 64;

/// Activation rows from which a matmul takes the register-tiled GEMM (`gemm.wgsl`,
/// 64 × 64 tiles) rather than `matmul.wgsl`, where the GEMM applies (see [`gemm_fits`]).
pub const GEMM_MIN_ROWS: usize = 32;

/// Activation rows and weight rows of a GEMM workgroup's tile (`TM`, `TN` in
/// gemm.wgsl).
pub const GEMM_TM: usize = 64;
pub const GEMM_TN: usize = 64;

/// The same for the tensor-core GEMM (`TM`, `TN` in gemm_coop.wgsl).
pub const COOP_TM: usize = 128;
pub const COOP_TN: usize = 128;
/// The k a tensor-core GEMM step takes (`BK` in gemm_coop.wgsl): k must be a multiple.
pub const COOP_BK: usize = 64;

/// Activation rows of an integer-dot GEMM workgroup are 8 · this (`TY` in gemm_i8.wgsl;
/// its weight rows are [`GEMM_TN`]). `WEFT_GEMM_I8_TY` overrides it (8 or 16), for
/// measuring.
pub fn gemm_i8_ty() -> usize {
    static TY: OnceLock<usize> = OnceLock::new();
    *TY.get_or_init(|| {
        std::env::var("WEFT_GEMM_I8_TY")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&t| t == 8 || t == 16)
            .unwrap_or(8)
    })
}

/// Blocks of 32 an integer-dot GEMM step stages (`KB` in gemm_i8.wgsl).
/// `WEFT_GEMM_I8_KB` overrides it (1, 2, 4 or 8), for measuring.
pub fn gemm_i8_kb() -> usize {
    static KB: OnceLock<usize> = OnceLock::new();
    *KB.get_or_init(|| {
        std::env::var("WEFT_GEMM_I8_KB")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&t| [1, 2, 4, 8].contains(&t))
            .unwrap_or(2)
    })
}

/// Whether the integer-dot GEMM over `dtype` reads its weight decoded once a call
/// (`decode_i8_rows.wgsl`) rather than decoding it in each row tile: Q6_K, whose
/// decoding costs most. `WEFT_GEMM_I8_PREDECODE` (`all`, `none`) overrides it, for
/// measuring.
pub fn gemm_i8_predecode(dtype: DType) -> bool {
    // Read once, as the other knobs are, not at every matmul's lowering.
    static ALL: OnceLock<Option<bool>> = OnceLock::new();
    let all = ALL.get_or_init(
        || match std::env::var("WEFT_GEMM_I8_PREDECODE").as_deref() {
            Ok("all") => Some(true),
            Ok("none") => Some(false),
            _ => None,
        },
    );
    all.unwrap_or(dtype == DType::Q6_K)
}

/// Whether the device has the workgroup memory the integer-dot GEMM's tiles take
/// (gemm_i8.wgsl: KB blocks of TM + TN rows' words, and their scales).
pub fn gemm_i8_fits(gpu: &Gpu) -> bool {
    let (tm, kb) = (8 * gemm_i8_ty(), gemm_i8_kb());
    let bytes = kb * 32 * (tm + GEMM_TN) + kb * (8 * tm + 16 * GEMM_TN);
    gpu.limits.max_compute_workgroup_storage_size as usize >= bytes
}

/// Whether the GEMM kernel can run a matmul: k whole chunks of 32, x read four floats a
/// load (`vec4`), no expert routing.
pub fn gemm_fits(k: usize, vec4: bool, experts: bool) -> bool {
    vec4 && k.is_multiple_of(32) && !experts
}

/// The process's compiled pipelines.
pub fn pipelines() -> &'static Pipelines {
    static P: OnceLock<Pipelines> = OnceLock::new();
    P.get_or_init(Pipelines::default)
}

/// A buffer a dispatch binds, by role; a session resolves roles to its buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buf {
    /// Arena slot of a step's value.
    Slot(usize),
    /// An uploaded weight (index into the executable's weights).
    Weight(usize),
    /// The forward call's token ids.
    Tokens,
    KeyCache(usize),
    ValueCache(usize),
    /// The (cos, sin) table of rope configuration `n`.
    RopeTable(usize),
    /// MoE step `n`'s router choices, weights, and its expert intermediates.
    MoeIds(usize),
    MoeWeights(usize),
    MoeHidden(usize),
    MoeOut(usize),
    /// A split attention's chunk sums (attention.wgsl), reused by every layer, and
    /// its count of finished chunks a head (the last sets it back to 0).
    AttnPart,
    AttnDone,
    /// One activation row quantised to 8 bits (activations int8): the packed values,
    /// then the block scales.
    X8,
    /// A normed row quantised by a matvec's norm epilogue (matvec_norm.wgsl) for the
    /// int8 matvecs after it: a buffer apart from [`Buf::X8`], which that matvec reads.
    X8Normed,
    /// A call's activation rows quantised to 8 bits (activations int8, prefill): the
    /// packed values of each row, and each block's (d, d·Σq).
    X8Rows,
    X8Scales,
    /// A weight's blocks decoded for the integer-dot GEMM: 32 bytes a block, and each
    /// block's (d, d, m, 0).
    W8,
    W8Scales,
    /// A weight decoded to f16 for the tensor-core GEMM: two bytes a value.
    W16,
    /// The norm epilogue's counts (of each block's finished rows, and of finished
    /// blocks) and block sums (matvec_norm.wgsl); the last block sets the counts back
    /// to 0.
    Done,
    /// A one-word buffer for bindings a kernel variant does not read.
    Dummy,
}

/// An activation input as a kernel reads it: a buffer, a row stride and a column
/// offset (a slice read in place has its source's buffer and stride).
#[derive(Clone, Copy, Debug)]
pub struct Src {
    pub buf: Buf,
    pub stride: usize,
    pub off: usize,
}

/// What a forward call's parameters depend on.
pub struct Call<'a> {
    pub seq: usize,
    pub pos0: usize,
    /// Rows of each step's value in this call.
    pub rows: &'a [usize],
    pub gpu: &'a Gpu,
}

type Rule = Box<dyn Fn(&Call) -> (Params, (u32, u32)) + Send + Sync>;

/// One dispatch of the schedule.
pub struct Dispatch {
    pub step: usize,
    pub pipeline: Arc<Kernel>,
    pub bufs: Vec<Buf>,
    pub rule: Rule,
    /// What the profile (WEFT_GPU_PROFILE) calls it: the kernel's name and, for
    /// matmuls, the weight's shape.
    pub label: String,
}

/// Where a matmul over [gate | up] may store act(gate) · up itself (see
/// [`Lowering::matmul`]): the GLU step's value and width.
#[derive(Clone, Copy)]
struct GluOut {
    act: GluAct,
    out: Buf,
    width: usize,
}

/// An add_rms_norm that alone reads a matmul's value, whose work a one-row matvec may do
/// itself (see [`Lowering::matmul`]): the norm's value (2d wide), the residual added,
/// the norm's weight, eps and weight offset.
#[derive(Clone, Copy)]
struct NormOut {
    out: Buf,
    res: Src,
    weight: Buf,
    eps: f32,
    offset: f32,
}

/// An add_rms_norm whose normed half one plain matvec alone reads, which works it out
/// itself at decode (see [`Lowering::matmul`]): the rows added, the norm's weight, its
/// value (2d wide: the matvec stores the sum half), eps and weight offset.
#[derive(Clone, Copy)]
struct NormIn {
    a: Src,
    b: Src,
    weight: Buf,
    out: Buf,
    eps: f32,
    offset: f32,
}

/// Work a decode matvec may take over from the step that alone reads its value.
#[derive(Clone, Copy)]
enum Epilogue {
    None,
    Glu(GluOut),
    Norm(NormOut),
}

/// Scratch sizes a session allocates, per row of a call.
#[derive(Clone, Debug, Default)]
pub struct MoeScratch {
    /// Floats per activation row of the hidden (gate | up, then act) and expert outputs.
    pub hidden: usize,
    pub out: usize,
    pub top_k: usize,
}

/// A plan lowered for the GPU: the schedule and the weights, uploaded once.
pub struct GpuExecutable {
    pub plan: Plan,
    pub stage: Stage,
    pub gpu: Arc<Gpu>,
    pub weights: Vec<wgpu::Buffer>,
    pub dispatches: Vec<Dispatch>,
    /// Arena slot of each step's value and the slot count.
    pub slot: Vec<usize>,
    pub n_slots: usize,
    /// Floats a step's value holds per row (its width).
    pub widths: Vec<usize>,
    /// Steps at or after `last_position`.
    pub after_last: Vec<bool>,
    /// KV width of each attention layer.
    pub kv_widths: Vec<usize>,
    /// Bytes a cached key or value takes: 4 (f32), or 2 (`--kv f16`, two a word).
    pub kv_bytes: usize,
    /// Inverse frequencies of each distinct rope configuration.
    pub rope_freqs: Vec<Vec<f32>>,
    pub moe: Vec<MoeScratch>,
    /// Floats of one key chunk's sums for all heads of the widest attention layer
    /// ([`Buf::AttnPart`] holds one per chunk of [`ATTENTION_CHUNK`] keys).
    pub attn_part: usize,
    /// Heads of the widest attention layer ([`Buf::AttnDone`] holds a count each).
    pub attn_heads: usize,
    /// Words of the quantised activation row ([`Buf::X8`]; 0 without int8 matvecs).
    pub x8_words: usize,
    /// The widest activation row the integer-dot GEMM reads ([`Buf::X8Rows`]; 0 where
    /// none runs).
    pub x8_rows_k: usize,
    /// Blocks of the largest weight the integer-dot GEMM reads decoded ([`Buf::W8`]).
    pub w8_blocks: usize,
    /// The same for the tensor-core GEMM ([`Buf::W16`]).
    pub w16_blocks: usize,
    /// Rows of the embedding tables that token ids and positions index (for checks).
    pub token_rows: Option<(String, usize)>,
    pub position_rows: Option<(String, usize)>,
    /// The greedy pick (argmax.wgsl), run after the schedule by `forward_pick`.
    pub pick: Arc<Kernel>,
    /// A sampled step's candidates (topk.wgsl), run after the schedule by `forward_top`.
    pub top: Arc<Kernel>,
}

fn bad(i: usize, plan: &Plan, message: impl Into<String>) -> BackendError {
    BackendError::BadPlan {
        step: i,
        name: plan.steps[i].node.name.clone(),
        message: message.into(),
    }
}

fn unsupported(i: usize, plan: &Plan, what: impl Into<String>) -> BackendError {
    BackendError::Unsupported {
        step: i,
        name: plan.steps[i].node.name.clone(),
        what: what.into(),
        backend: NAME,
    }
}

/// Whether a matmul reads x four floats a load: every x offset 16-byte aligned.
fn x_vec4(x: &Src, k: usize) -> bool {
    x.stride.is_multiple_of(4) && x.off.is_multiple_of(4) && k.is_multiple_of(4)
}

/// The `quantize_q8` dispatch of one activation row of width `k` from float `x_off`:
/// a thread a vec4.
pub fn quantize_q8_call(gpu: &Gpu, k: usize, x_off: usize) -> (Params, (u32, u32)) {
    let g = groups(gpu, (k / 4).div_ceil(shaders::Q8_SLOTS) as u32);
    (Params::new(&[k as u32, x_off as u32, g.0]), g)
}

/// Dispatch counts over `n` elements with 256 threads a group.
fn flat(gpu: &Gpu, n: usize) -> (u32, u32) {
    groups(gpu, n.div_ceil(256) as u32)
}

struct Lowering<'a> {
    plan: &'a Plan,
    gpu: Arc<Gpu>,
    /// The uploaded weights.
    weights: Vec<wgpu::Buffer>,
    /// Weight index of each weight step, and its view's shape facts.
    weight_of: Vec<Option<Vec<Part>>>,
    views: Vec<Option<WeightView>>,
    dispatches: Vec<Dispatch>,
    /// Activations int8: decode matvecs with an integer-dot variant read x quantised.
    int8: bool,
    /// A prefill GEMM runs on tensor cores (gemm_coop.wgsl).
    coop_gemm: bool,
    /// The widest quantised row, in words, and the activation row [`Buf::X8`] holds
    /// where the schedule so far ends (a value is not written again while read).
    x8_words: usize,
    x8_src: Option<(Buf, usize, usize)>,
    /// The activation row [`Buf::X8Normed`] holds where the schedule so far ends.
    x8_normed: Option<(Buf, usize, usize)>,
    /// The same for the integer-dot GEMM's rows ([`Buf::X8Rows`]): the widest, and
    /// the activation it holds where the schedule so far ends.
    x8_rows_k: usize,
    x8_rows_src: Option<(Buf, usize, usize)>,
    /// The most weight blocks an integer-dot GEMM's decoded weight holds
    /// ([`Buf::W8`]) and a tensor-core GEMM's ([`Buf::W16`]), and the steps at or after
    /// `last_position`.
    w8_blocks: usize,
    w16_blocks: usize,
    after_last: Vec<bool>,
}

impl Lowering<'_> {
    fn pipeline(
        &self,
        i: usize,
        name: &str,
        dtype: Option<DType>,
    ) -> Result<Arc<Kernel>, BackendError> {
        let src = shaders::source(name, dtype)
            .map_err(|what| unsupported(i, self.plan, format!("matmuls or lookups over {what}")))?;
        pipelines().get(&self.gpu, name, src)
    }

    /// A norm kernel for rows (or groups) `width` wide: each thread keeps just the
    /// values it loads (`NORM_KEEP`, a power of two up to 32), so a narrow row's
    /// kernel holds a few registers, not 64.
    fn norm_pipeline(
        &self,
        i: usize,
        name: &str,
        width: usize,
    ) -> Result<Arc<Kernel>, BackendError> {
        let keep = width
            .div_ceil(shaders::NORM_THREADS)
            .next_power_of_two()
            .min(32);
        let src = shaders::source(name, None)
            .map_err(|what| unsupported(i, self.plan, what))?
            .replace(
                "const NORM_KEEP: u32 = 32u;",
                &format!("const NORM_KEEP: u32 = {keep}u;"),
            );
        pipelines().get(&self.gpu, &format!("{name} keep {keep}"), src)
    }

    fn ew_pipeline(
        &self,
        code: &[Ew],
        ops: &[Operand],
        in_place: bool,
    ) -> Result<Arc<Kernel>, BackendError> {
        pipelines().get(
            &self.gpu,
            "elementwise",
            elementwise_source(code, ops, in_place),
        )
    }

    /// [`Buf::X8`] holds activation `h` (buffer, stride, offset), a row `k` wide, from
    /// here on in the schedule.
    fn x8_holds(&mut self, h: (Buf, usize, usize), k: usize) {
        self.x8_src = Some(h);
        self.x8_words = self.x8_words.max(k / 4 + k / 32);
    }

    fn push(&mut self, step: usize, pipeline: Arc<Kernel>, bufs: Vec<Buf>, rule: Rule) {
        self.dispatches.push(Dispatch {
            step,
            label: pipeline.name.clone(),
            pipeline,
            bufs,
            rule,
        });
    }

    /// One buffer holding the experts' tensors (inputs `ks` of step `i`) back to back;
    /// they must share type and shape. Returns the first expert's facts.
    fn concat_experts(
        &mut self,
        i: usize,
        ks: Vec<usize>,
    ) -> Result<(usize, DType, usize, usize, usize), BackendError> {
        let (buf, views) = self.concat_rows(i, &ks, "experts")?;
        let first = &views[0];
        if let Some(v) = views.iter().find(|v| v.shape != first.shape) {
            return Err(unsupported(
                i,
                self.plan,
                format!(
                    "experts of different shapes ('{}' is {:?}, '{}' is {:?})",
                    first.name, first.shape, v.name, v.shape
                ),
            ));
        }
        Ok((
            buf,
            first.dtype,
            first.rows(),
            first.cols(),
            first.row_bytes(),
        ))
    }

    /// Uploads the weights (inputs `ks` of step `i`, of one type and width) as one
    /// buffer, their rows back to back. Returns its index and the views.
    fn concat_rows(
        &mut self,
        i: usize,
        ks: &[usize],
        what: &str,
    ) -> Result<(usize, Vec<WeightView>), BackendError> {
        let views: Vec<WeightView> = ks
            .iter()
            .map(|&k| {
                self.views[self.plan.steps[i].inputs[k]]
                    .clone()
                    .ok_or_else(|| bad(i, self.plan, format!("input {k} must be a weight")))
            })
            .collect::<Result<_, _>>()?;
        let first = &views[0];
        if let Some(v) = views
            .iter()
            .find(|v| v.dtype != first.dtype || v.cols() != first.cols())
        {
            return Err(unsupported(
                i,
                self.plan,
                format!(
                    "{what} of different types or widths ('{}' is {} {:?}, '{}' is {} {:?})",
                    first.name, first.dtype, first.shape, v.name, v.dtype, v.shape
                ),
            ));
        }
        let total = views.iter().map(|v| v.bytes().len()).sum::<usize>();
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(total)
            .map_err(|_| BackendError::Alloc {
                what: format!("the {what} of '{}'", self.plan.steps[i].node.name),
                bytes: total as u128,
            })?;
        views
            .iter()
            .for_each(|v| bytes.extend_from_slice(v.bytes()));
        let label = format!("{} {what}", first.name);
        self.weights.push(upload(&self.gpu, &label, &bytes)?);
        Ok((self.weights.len() - 1, views))
    }

    /// Input `k` of step `i`, a weight in one buffer.
    fn view(&self, i: usize, k: usize) -> Result<(usize, &WeightView), BackendError> {
        let (parts, v) = self.parts(i, k)?;
        match parts {
            [p] => Ok((p.buf, v)),
            _ => Err(unsupported(
                i,
                self.plan,
                format!(
                    "'{}' split across bindings here (only matmuls and lookups read split weights)",
                    v.name
                ),
            )),
        }
    }

    /// Input `k` of step `i`, a weight in one or more buffers of rows.
    fn parts(&self, i: usize, k: usize) -> Result<(&[Part], &WeightView), BackendError> {
        let j = self.plan.steps[i].inputs[k];
        match (&self.weight_of[j], &self.views[j]) {
            (Some(w), Some(v)) => Ok((w, v)),
            _ => Err(bad(i, self.plan, format!("input {k} must be a weight"))),
        }
    }

    /// Copies `width` columns of every row between two buffers; `src_off` and
    /// `dst_off` are element offsets given the call.
    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        i: usize,
        src: Buf,
        dst: Buf,
        width: usize,
        strides: (usize, usize),
        offsets: impl Fn(&Call) -> (usize, usize) + Send + Sync + 'static,
        rows: impl Fn(&Call) -> usize + Send + Sync + 'static,
    ) -> Result<(), BackendError> {
        let p = self.pipeline(i, "copy", None)?;
        self.push(
            i,
            p,
            vec![src, dst],
            Box::new(move |c| {
                let r = rows(c);
                let (so, d) = offsets(c);
                let g = flat(c.gpu, r * width);
                (
                    Params::new(&[
                        r as u32,
                        width as u32,
                        strides.0 as u32,
                        so as u32,
                        strides.1 as u32,
                        d as u32,
                        g.0,
                    ]),
                    g,
                )
            }),
        );
        Ok(())
    }

    /// Rotates `rows` rows of `buf` starting at row `row0(call)` in place.
    #[allow(clippy::too_many_arguments)]
    fn rope(
        &mut self,
        i: usize,
        buf: Buf,
        table: usize,
        width: usize,
        head_dim: usize,
        half: usize,
        layout: RopeLayout,
        row0: impl Fn(&Call) -> usize + Send + Sync + 'static,
        rows: impl Fn(&Call) -> usize + Send + Sync + 'static,
    ) -> Result<(), BackendError> {
        let p = self.pipeline(i, "rope", None)?;
        let layout = matches!(layout, RopeLayout::Halves) as u32;
        self.push(
            i,
            p,
            vec![Buf::RopeTable(table), buf],
            Box::new(move |c| {
                let r = rows(c);
                let g = flat(c.gpu, r * (width / head_dim) * half);
                (
                    Params::new(&[
                        r as u32,
                        width as u32,
                        head_dim as u32,
                        half as u32,
                        layout,
                        c.pos0 as u32,
                        row0(c) as u32,
                        g.0,
                    ]),
                    g,
                )
            }),
        );
        Ok(())
    }

    /// `out[:, col..col+n] = x · wᵀ` for `m(call)` rows; in expert mode rows pick their
    /// expert's weight from `ids`. With a GLU epilogue (w is [gate | up]) a one-row
    /// call's matvec stores act(gate) · up into the GLU step's value instead; with a norm
    /// epilogue it does the add_rms_norm's work (int8 only, the one row quantised);
    /// returns whether it does. With a norm prologue (the plain matvec on f32 x read as
    /// vec4, which the caller has checked) the one-row matvec works x out from the
    /// add_rms_norm's inputs and stores its sum half. Weights of more rows than a dispatch's workgroups
    /// reach (a 262k-row vocabulary at two rows a workgroup) run in several dispatches
    /// over ranges of rows, each from a byte offset of the weight.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        i: usize,
        x: Src,
        w: (usize, DType, usize, usize, usize),
        out: Buf,
        out_stride: usize,
        col: usize,
        experts: Option<(Buf, usize, usize)>,
        epilogue: Epilogue,
        prologue: Option<NormIn>,
        m: impl Fn(&Call) -> usize + Send + Sync + 'static,
    ) -> Result<bool, BackendError> {
        let (wi, dtype, n_all, k, row_bytes) = w;
        let rows_per = matmul_rows(&self.gpu);
        let mt = matmul_mt(&self.gpu);
        let vec4 = x_vec4(&x, k);
        // Activations int8: a decode row is quantised once for the matmuls that read it in
        // a row (q|k and v of different types), and the matvec takes the integer-dot
        // variant.
        let several = experts.is_none() && shaders::rows_matvec(dtype, rows_per, vec4, k);
        let int8 = self.int8 && several;
        let mv_rows = shaders::matvec_rows(dtype, rows_per, vec4, k, int8);
        let span =
            self.gpu.limits.max_compute_workgroups_per_dimension as usize * rows_per.min(mv_rows);
        // The GLU epilogue: in the several-rows matvec, or in the plain one where a
        // workgroup holds a gate row and its up row. The norm epilogue: in the int8
        // several-rows matvec, over rows it quantises (q8_block.wgsl's widths), where x
        // is not the row it would overwrite. A row a norm epilogue quantised is read where
        // it lies.
        let normed = int8 && self.x8_normed == Some((x.buf, x.stride, x.off));
        if prologue.is_some() && (several || experts.is_some()) {
            return Err(bad(
                i,
                self.plan,
                "a norm prologue on a matvec other than the plain one",
            ));
        }
        let (glu, norm) = match epilogue {
            Epilogue::Glu(g)
                if experts.is_none()
                    && (several || rows_per >= 2)
                    && n_all.is_multiple_of(2)
                    && n_all <= span =>
            {
                (Some(g), None)
            }
            Epilogue::Norm(nm)
                if int8
                    && !normed
                    && shaders::norm_epilogue_fits(dtype, rows_per, vec4, k)
                    && n_all <= span
                    && n_all.is_multiple_of(32)
                    && n_all <= shaders::Q8_NORM_WIDTH =>
            {
                (None, Some(nm))
            }
            _ => (None, None),
        };
        let m = Arc::new(m);
        if let Some(nm) = norm {
            self.x8_normed = Some((nm.out, 2 * n_all, n_all));
            self.x8_words = self.x8_words.max(n_all / 4 + n_all / 32);
        }
        if int8 && !normed {
            let h = (x.buf, x.stride, x.off);
            let held = self.x8_src == Some(h);
            self.x8_holds(h, k);
            if !held {
                let q = self.pipeline(i, "quantize_q8", None)?;
                let rows = Arc::clone(&m);
                self.push(
                    i,
                    q,
                    vec![x.buf, Buf::X8],
                    Box::new(move |c| match rows(c) {
                        1 => quantize_q8_call(c.gpu, k, x.off),
                        _ => (Params::new(&[]), (0, 0)),
                    }),
                );
            }
        }
        let first = self.dispatches.len();
        let pipeline = |name: &str, variant: RowsVariant| -> Result<_, BackendError> {
            let src = match name {
                "gemm" => shaders::source(name, Some(dtype)),
                _ => shaders::matmul_source(name, dtype, rows_per, mt, vec4, k, variant),
            }
            .map_err(|what| unsupported(i, self.plan, format!("matmuls over {what}")))?;
            let mut label = format!("{name} {dtype}");
            if variant.int8 {
                label += " int8";
            }
            if variant.glu {
                label += " glu";
            }
            if variant.norm {
                label += " norm";
            }
            if variant.norm_in {
                label += " norm-in";
            }
            pipelines().get(&self.gpu, &label, src)
        };
        let plain = RowsVariant::default();
        let variant = RowsVariant {
            int8,
            subgroups: subgroups(&self.gpu),
            glu: glu.is_some(),
            norm: norm.is_some(),
            norm_in: prologue.is_some(),
        };
        let (tiled, one) = (pipeline("matmul", plain)?, pipeline("matvec", variant)?);
        let fits = gemm_fits(k, vec4, experts.is_some());
        // Activations int8: the integer-dot GEMM where the type has a block decoder for
        // it, on x quantised once for the matmuls that read it in a row.
        // Decoded once a call where the type's decoding costs most, but not for the
        // logits' matmul (one row but where a call returns every row's), whose decoded
        // vocabulary would be the largest scratch by far.
        let blocks = span.min(n_all) * (k / 32);
        let binding = self.gpu.limits.max_storage_buffer_binding_size as usize;
        let predecode = gemm_i8_predecode(dtype) && !self.after_last[i] && blocks * 32 <= binding;
        // Activations int8 on an adapter with tensor cores (device.rs): the GEMM multiplies
        // f16 activations by the weight decoded to f16 once a call (gemm_coop.wgsl;
        // nearer the f32 products than int8 x), where that decoded weight fits a binding.
        let coop = fits
            && k % COOP_BK == 0
            && self.int8
            && self.gpu.coop_gemm
            && !self.after_last[i]
            && blocks * 64 <= binding;
        let gemm_i8 = match fits && self.int8 && !coop && gemm_i8_fits(&self.gpu) {
            true => shaders::gemm_i8_sources(dtype, gemm_i8_ty(), gemm_i8_kb(), predecode),
            false => None,
        };
        let i8_gemm = gemm_i8.is_some();
        let mut decode_i8 = None;
        let mut decode_f16 = None;
        let gemm = match (fits, gemm_i8) {
            (false, _) => None,
            (true, None) if coop => {
                let (src, dec) = shaders::gemm_coop_sources(dtype)
                    .map_err(|what| unsupported(i, self.plan, format!("matmuls over {what}")))?;
                self.coop_gemm = true;
                self.w16_blocks = self.w16_blocks.max(blocks);
                let label = format!("decode_f16 {dtype}");
                decode_f16 = Some(pipelines().get(&self.gpu, &label, dec)?);
                Some(pipelines().get(&self.gpu, "gemm_coop", src)?)
            }
            (true, None) => Some(pipeline("gemm", plain)?),
            (true, Some((src, dec))) => {
                if let Some(dec) = dec {
                    self.w8_blocks = self.w8_blocks.max(blocks);
                    let label = format!("decode_i8 {dtype}");
                    decode_i8 = Some(pipelines().get(&self.gpu, &label, dec)?);
                }
                Some(pipelines().get(&self.gpu, &format!("gemm {dtype} int8"), src)?)
            }
        };
        let (gemm_tm, gemm_tn) = match (i8_gemm, decode_f16.is_some()) {
            (true, _) => (8 * gemm_i8_ty(), GEMM_TN),
            (false, true) => (COOP_TM, COOP_TN),
            (false, false) => (GEMM_TM, GEMM_TN),
        };
        if i8_gemm {
            self.x8_rows_k = self.x8_rows_k.max(k);
            if self.x8_rows_src != Some((x.buf, x.stride, x.off)) {
                self.x8_rows_src = Some((x.buf, x.stride, x.off));
                let q = self.pipeline(i, "quantize_q8_rows", None)?;
                let rows = Arc::clone(&m);
                self.push(
                    i,
                    q,
                    vec![x.buf, Buf::X8Rows, Buf::X8Scales],
                    Box::new(move |c| {
                        let rows = rows(c);
                        let g = match rows >= GEMM_MIN_ROWS {
                            true => groups(c.gpu, (rows * k / 32).div_ceil(64) as u32),
                            false => (0, 0),
                        };
                        let p = [rows as u32, k as u32, x.stride as u32, x.off as u32, g.0];
                        (Params::new(&p), g)
                    }),
                );
            }
        }
        // The tiled kernel's rows stop where the GEMM's start.
        let tiled_max = match gemm {
            Some(_) => GEMM_MIN_ROWS - 1,
            None => usize::MAX,
        };
        let (ids, x_div, expert_bytes) = experts.unwrap_or((Buf::Dummy, 1, 0));
        let expert_mode = experts.is_some() as u32;
        let mv_x = match (int8, normed, prologue) {
            (_, _, Some(p)) => p.a.buf,
            (true, true, _) => Buf::X8Normed,
            (true, false, _) => Buf::X8,
            (false, _, _) => x.buf,
        };
        // The GLU epilogue stores half as many rows, each from two, into its own value.
        let (mv_out, mv_stride, mv_col, halves, act) = match (glu, norm) {
            (Some(g), _) => (g.out, g.width, 0, 2, matches!(g.act, GluAct::Gelu) as u32),
            (_, Some(nm)) => (nm.out, 2 * n_all, 0, 1, 0),
            _ => (out, out_stride, col, 1, 0),
        };
        // The norm epilogue's or prologue's own bindings and words (matvec_norm.wgsl,
        // matvec_norm_prologue.wgsl); the prologue's x is at 0 in workgroup memory.
        let (norm_bufs, norm_words, mv_x_at) = match (norm, prologue) {
            (Some(nm), _) => (
                vec![nm.res.buf, nm.weight, Buf::Done, Buf::X8Normed],
                [nm.res.off as u32, f(nm.eps), f(nm.offset), 0],
                (x.stride, x.off),
            ),
            (None, Some(p)) => (
                vec![p.b.buf, p.weight, p.out],
                [
                    (p.a.off / 4) as u32,
                    (p.b.off / 4) as u32,
                    f(p.eps),
                    f(p.offset),
                ],
                (0, 0),
            ),
            (None, None) => (vec![], [0; 4], (x.stride, x.off)),
        };
        for row0 in (0..n_all).step_by(span.max(1)) {
            let n = span.min(n_all - row0);
            let params = move |rows: usize,
                               gx: u32,
                               out_stride: usize,
                               col: usize,
                               (x_stride, x_off): (usize, usize)| {
                Params::new(&[
                    rows as u32,
                    k as u32,
                    n as u32,
                    out_stride as u32,
                    (col + row0) as u32,
                    row_bytes as u32,
                    (row0 * row_bytes) as u32,
                    gx,
                    expert_mode,
                    x_div as u32,
                    expert_bytes as u32,
                    x_stride as u32,
                    x_off as u32,
                    act,
                    norm_words[0],
                    norm_words[1],
                    norm_words[2],
                    norm_words[3],
                ])
            };
            let gx = n.div_ceil(rows_per) as u32;
            let mv_gx = (n / halves).div_ceil(mv_rows / halves) as u32;
            // One activation row, or rows routed to experts: the matvec kernel, a
            // workgroup row per output row. Several rows: the tiled kernel. All are in
            // the schedule; a call dispatches the one its row count picks.
            let mv = Arc::clone(&m);
            let mut mv_bufs = vec![mv_x, Buf::Weight(wi), mv_out, ids];
            mv_bufs.extend(&norm_bufs);
            self.push(
                i,
                Arc::clone(&one),
                mv_bufs,
                Box::new(move |c| {
                    let rows = mv(c);
                    let gy = match expert_mode == 1 || rows == 1 {
                        true => rows as u32,
                        false => 0,
                    };
                    (params(rows, mv_gx, mv_stride, mv_col, mv_x_at), (mv_gx, gy))
                }),
            );
            if expert_mode == 0 {
                let mt_rows = Arc::clone(&m);
                self.push(
                    i,
                    Arc::clone(&tiled),
                    vec![x.buf, Buf::Weight(wi), out],
                    Box::new(move |c| {
                        let rows = mt_rows(c);
                        let gy = match rows {
                            2.. if rows <= tiled_max => rows.div_ceil(mt) as u32,
                            _ => 0,
                        };
                        (
                            params(rows, gx, out_stride, col, (x.stride, x.off)),
                            (gx, gy),
                        )
                    }),
                );
            }
            // This range's weight decoded for the GEMM, when the call's rows take it.
            let decoded = [
                (&decode_i8, vec![Buf::Weight(wi), Buf::W8, Buf::W8Scales]),
                (&decode_f16, vec![Buf::Weight(wi), Buf::W16]),
            ];
            for (dec, bufs) in decoded {
                let Some(dec) = dec else { continue };
                let dm = Arc::clone(&m);
                self.push(
                    i,
                    Arc::clone(dec),
                    bufs,
                    Box::new(move |c| {
                        let g = match dm(c) >= GEMM_MIN_ROWS {
                            true => groups(c.gpu, (n * (k / 32)).div_ceil(64) as u32),
                            false => (0, 0),
                        };
                        let p = [
                            n as u32,
                            k as u32,
                            row_bytes as u32,
                            (row0 * row_bytes) as u32,
                            g.0,
                        ];
                        (Params::new(&p), g)
                    }),
                );
            }
            if let Some(gemm) = &gemm {
                let gx = n.div_ceil(gemm_tn) as u32;
                let gm = Arc::clone(&m);
                let bufs = match (i8_gemm, decode_i8.is_some(), decode_f16.is_some()) {
                    (true, true, _) => {
                        vec![Buf::X8Rows, Buf::W8, out, Buf::X8Scales, Buf::W8Scales]
                    }
                    (true, false, _) => vec![Buf::X8Rows, Buf::Weight(wi), out, Buf::X8Scales],
                    (false, _, true) => vec![x.buf, Buf::W16, out],
                    (false, _, false) => vec![x.buf, Buf::Weight(wi), out],
                };
                self.push(
                    i,
                    Arc::clone(gemm),
                    bufs,
                    Box::new(move |c| {
                        let rows = gm(c);
                        let gy = match rows >= GEMM_MIN_ROWS {
                            true => rows.div_ceil(gemm_tm) as u32,
                            false => 0,
                        };
                        (
                            params(rows, gx, out_stride, col, (x.stride, x.off)),
                            (gx, gy),
                        )
                    }),
                );
            }
        }
        for d in &mut self.dispatches[first..] {
            d.label = format!("{} {n_all}×{k}", d.pipeline.name);
        }
        Ok(glu.is_some() || norm.is_some())
    }

    fn elementwise(
        &mut self,
        i: usize,
        code: &[Ew],
        ins: Vec<(Buf, Operand)>,
        width: usize,
    ) -> Result<(), BackendError> {
        let ops: Vec<Operand> = ins.iter().map(|(_, o)| *o).collect();
        let p = self.ew_pipeline(code, &ops, false)?;
        let mut bufs: Vec<Buf> = ins.iter().map(|(b, _)| *b).collect();
        bufs.push(Buf::Slot(i));
        self.push(
            i,
            p,
            bufs,
            Box::new(move |c| {
                let n = c.rows[i] * width;
                let g = flat(c.gpu, n);
                (Params::new(&[n as u32, width as u32, g.0]), g)
            }),
        );
        Ok(())
    }
}

/// Rows `row0..row0 + rows` of a weight, in uploaded buffer `buf`.
#[derive(Clone, Copy, Debug)]
struct Part {
    buf: usize,
    row0: usize,
    rows: usize,
}

/// The weights of matmul step `st` (after them come as many biases, if it has them).
fn matmul_weights(st: &weft_ir::Step) -> usize {
    match st.node.op {
        Op::MatMul { bias: true, .. } => (st.inputs.len() - 1) / 2,
        _ => st.inputs.len() - 1,
    }
}

/// Matmul steps over several weights (fuse-matmul's q|k|v, gate|up) whose weights are
/// uploaded as one buffer of rows, so that one dispatch runs them: weights of one type
/// and width, read by nothing else, fitting one binding together.
fn joined_matmuls(
    plan: &Plan,
    views: &[Option<WeightView>],
    vectors: &[bool],
    binding_limit: u64,
) -> Vec<bool> {
    let mut users = vec![0usize; plan.steps.len()];
    for st in &plan.steps {
        st.inputs.iter().for_each(|&j| users[j] += 1);
    }
    plan.steps
        .iter()
        .map(|st| {
            if !matches!(st.node.op, Op::MatMul { .. }) || matmul_weights(st) < 2 {
                return false;
            }
            let ws = &st.inputs[1..=matmul_weights(st)];
            let Some(vs) = ws
                .iter()
                .map(|&j| views[j].as_ref().filter(|_| !vectors[j] && users[j] == 1))
                .collect::<Option<Vec<_>>>()
            else {
                return false;
            };
            let total: usize = vs.iter().map(|v| v.bytes().len()).sum();
            vs.iter()
                .all(|v| v.dtype == vs[0].dtype && v.cols() == vs[0].cols())
                && total <= binding_limit as usize
        })
        .collect()
}

/// Uploads `w` in its stored form, split by rows into as many buffers as the
/// adapter's binding limit needs (a 262k-row embedding on a 128 MiB limit).
fn upload_parts(
    gpu: &Gpu,
    w: &WeightView,
    uploaded: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Part>, BackendError> {
    let limit = gpu.limits.max_storage_buffer_binding_size as usize;
    let row_bytes = w.row_bytes().max(1);
    let per = (limit / row_bytes).max(1);
    let rows = w.bytes().len() / row_bytes;
    let mut parts = Vec::new();
    for row0 in (0..rows.max(1)).step_by(per) {
        let n = per.min(rows - row0.min(rows));
        let bytes = &w.bytes()[row0 * row_bytes..(row0 + n) * row_bytes];
        let label = match rows > per {
            true => format!("{} rows {row0}..{}", w.name, row0 + n),
            false => w.name.clone(),
        };
        uploaded.push(upload(gpu, &label, bytes)?);
        parts.push(Part {
            buf: uploaded.len() - 1,
            row0,
            rows: n,
        });
    }
    Ok(parts)
}

/// A matmul's weight as the kernels see it: index, type, rows, cols, row bytes.
fn wfacts(wi: usize, v: &WeightView) -> (usize, DType, usize, usize, usize) {
    (wi, v.dtype, v.rows(), v.cols(), v.row_bytes())
}

impl GpuExecutable {
    pub fn new(
        plan: Plan,
        weights: &dyn WeightProvider,
        options: &LowerOptions,
    ) -> Result<Self, BackendError> {
        validate_plan(&plan)?;
        check_declined(&plan, NAME, &[])?;
        let gpu = gpu()?;
        let in_place = slice_views(&plan);
        // Routing is the kernel's choice inside the dispatch (rows per workgroup); the
        // stage records the type and lays out the arena in f32.
        let mut stage = backend_stage(
            &plan,
            NAME,
            |dtype, _| Route {
                dtype,
                decode: weft_backend::MatKernel::Dot,
                prefill: weft_backend::MatKernel::DecodeReuse,
            },
            options.memory,
            4,
            &in_place,
        );
        stage
            .log
            .insert(0, format!("kernels: gpu ({})", gpu.info.name));
        let n_views = in_place.iter().flatten().count();
        stage.log.push(format!(
            "views (gpu): {n_views} slice(s) read in place by their consumers"
        ));
        let n = plan.steps.len();

        // Upload every weight once, in its stored form; vectors (norm weights, biases,
        // rope divisors) are decoded to f32 first, as the kernels read floats.
        let vectors = vector_weights(&plan);
        // Experts stored as separate tensors are uploaded as one buffer per role (gate,
        // up, down) so that one kernel reads any expert; not one by one.
        let mut expert_part = vec![false; n];
        for st in &plan.steps {
            if let Op::Moe { stacked: false, .. } = st.node.op {
                st.inputs[2..].iter().for_each(|&w| expert_part[w] = true);
            }
        }
        let mut views = vec![None; n];
        for (i, st) in plan.steps.iter().enumerate() {
            views[i] = bind_weight(weights, &st.node.op)?;
        }
        let joined = joined_matmuls(
            &plan,
            &views,
            &vectors,
            gpu.limits.max_storage_buffer_binding_size,
        );
        let mut joined_part = vec![false; n];
        for (i, st) in plan.steps.iter().enumerate() {
            if joined[i] {
                st.inputs[1..=matmul_weights(st)]
                    .iter()
                    .for_each(|&w| joined_part[w] = true);
            }
        }
        let mut uploaded = Vec::new();
        let mut weight_of = vec![None; n];
        let mut small: Vec<Option<Vec<f32>>> = vec![None; n];
        for (i, view) in views.iter().enumerate() {
            let Some(w) = view else {
                continue;
            };
            if vectors[i] {
                let v = decode_vector(w);
                uploaded.push(upload(&gpu, &w.name, &crate::floats(&v))?);
                small[i] = Some(v);
                weight_of[i] = Some(vec![Part {
                    buf: uploaded.len() - 1,
                    row0: 0,
                    rows: w.rows(),
                }]);
            } else if !expert_part[i] && !joined_part[i] {
                weight_of[i] = Some(upload_parts(&gpu, w, &mut uploaded)?);
            }
        }
        let n_joined = joined.iter().filter(|&&j| j).count();
        stage.log.push(format!(
            "joined weights (gpu): {n_joined} matmul(s) over several weights read them as one buffer"
        ));

        let after_last = after_last(&plan);
        let widths: Vec<usize> = plan
            .steps
            .iter()
            .map(|st| st.node.shape.get(1).map_or(1, |d| d.eval(1)))
            .collect();
        let kv_widths = kv_widths(&plan)?;
        let kv_bytes = match options.kv {
            KvType::F32 => 4,
            KvType::F16 => 2,
        };

        let mut lw = Lowering {
            plan: &plan,
            gpu: Arc::clone(&gpu),
            weights: uploaded,
            weight_of,
            views,
            dispatches: Vec::new(),
            int8: options.activations == Activations::Int8,
            coop_gemm: false,
            x8_words: 0,
            x8_src: None,
            x8_normed: None,
            x8_rows_k: 0,
            x8_rows_src: None,
            w8_blocks: 0,
            w16_blocks: 0,
            after_last: after_last.clone(),
        };
        let mut rope_freqs: Vec<Vec<f32>> = Vec::new();
        let mut moe = Vec::new();
        let mut token_rows = None;
        let mut position_rows = None;
        // Where a step's value is read: its own slot, or its slice source's, in place.
        let src_of = |mut j: usize| {
            let mut off = 0;
            while let (Some(s), Op::Slice { start, .. }) = (in_place[j], &plan.steps[j].node.op) {
                off += start;
                j = s;
            }
            Src {
                buf: Buf::Slot(j),
                stride: widths[j],
                off,
            }
        };
        let (mut slot_of, mut n_slots) = stage.arena_slots(&plan)?;
        // The step whose slot holds the value that reading step j's reads.
        let x_step = |j: usize| match src_of(j).buf {
            Buf::Slot(s) => s,
            _ => j,
        };
        // GLU steps and the matmul each reads, where nothing else reads the matmul.
        let mut users = vec![0usize; n];
        plan.steps
            .iter()
            .for_each(|st| st.inputs.iter().for_each(|&j| users[j] += 1));
        let mut glu_of: Vec<Option<(usize, GluAct)>> = vec![None; n];
        for (g, st) in plan.steps.iter().enumerate() {
            if let Op::Glu { act } = st.node.op {
                let m = st.inputs[0];
                if users[m] == 1 && 2 * widths[g] == widths[m] {
                    glu_of[m] = Some((g, act));
                }
            }
        }
        let mut glu_fused = vec![false; n];
        // Activation rows an int8 matvec reads (as (buffer, stride, offset)), and those
        // that a step other than an all-int8 matmul reads as f32.
        let mut wants_q8 = std::collections::HashSet::new();
        let mut reads_f32 = std::collections::HashSet::new();
        // The last step that reads each activation.
        let mut last_read = std::collections::HashMap::new();
        if lw.int8 {
            let rows_per = matmul_rows(&gpu);
            for (i, st) in plan.steps.iter().enumerate() {
                let mut all_int8 = false;
                if matches!(st.node.op, Op::MatMul { .. }) {
                    let x = src_of(st.inputs[0]);
                    let int8 = st.inputs[1..=matmul_weights(st)].iter().map(|&w| {
                        lw.views[w].as_ref().is_some_and(|v| {
                            shaders::rows_matvec(v.dtype, rows_per, x_vec4(&x, v.cols()), v.cols())
                        })
                    });
                    let int8: Vec<bool> = int8.collect();
                    if int8.contains(&true) {
                        wants_q8.insert((x.buf, x.stride, x.off));
                    }
                    all_int8 = !int8.contains(&false);
                }
                for (k, &j) in st.inputs.iter().enumerate() {
                    let x = src_of(j);
                    last_read.insert((x.buf, x.stride, x.off), i);
                    if k > 0 || !all_int8 {
                        reads_f32.insert((x.buf, x.stride, x.off));
                    }
                }
            }
        }
        let add_rms_norms = || {
            plan.steps
                .iter()
                .enumerate()
                .filter_map(|(g, st)| match st.node.op {
                    Op::AddRmsNorm {
                        eps, weight_offset, ..
                    } => Some((g, st, eps, weight_offset)),
                    _ => None,
                })
        };
        // add_rms_norm steps whose normed half only int8 matvecs read, and the plain
        // matmul that each alone reads, with only weights between them: at decode that
        // matvec may do the norm's work, all but the f32 normed half, quantising it into
        // Buf::X8Normed. A matmul is taken only after the last read of the row the one
        // before wrote there (`busy`), so that every reader finds its row there.
        let mut norm_of: Vec<Option<(usize, NormOut)>> = vec![None; n];
        let mut busy = 0;
        for (g, st, eps, weight_offset) in add_rms_norms() {
            let d = widths[g] / 2;
            let h = (Buf::Slot(g), widths[g], d);
            if !wants_q8.contains(&h) || reads_f32.contains(&h) {
                continue;
            }
            for (k, &m) in st.inputs[..2].iter().enumerate() {
                let res = st.inputs[1 - k];
                let plain = matches!(
                    plan.steps[m].node.op,
                    Op::MatMul {
                        bias: false,
                        softcap: None
                    }
                ) && matmul_weights(&plan.steps[m]) == 1;
                let between = plan.steps[m + 1..g]
                    .iter()
                    .all(|s| matches!(s.node.op, Op::Weight { .. }));
                if plain
                    && between
                    && m > busy
                    && users[m] == 1
                    && widths[m] == d
                    && slot_of[x_step(res)] != slot_of[g]
                {
                    busy = last_read.get(&h).copied().unwrap_or(g);
                    let weight = Buf::Weight(lw.view(g, 2)?.0);
                    let (res, offset) = (src_of(res), weight_offset);
                    norm_of[m] = Some((
                        g,
                        NormOut {
                            out: Buf::Slot(g),
                            res,
                            weight,
                            eps,
                            offset,
                        },
                    ));
                }
            }
        }
        // add_rms_norm steps whose normed half one matmul alone reads, through the plain
        // matvec on f32 x read as vec4 (block-quantised weights that have no several-rows
        // kernel) in one dispatch, with only weights between them: at decode that matvec
        // works the norm out itself (a norm prologue), and the norm's own dispatch runs
        // only for several rows. Only slices of its sum half may read the norm's value
        // otherwise (the matvec stores that half alone).
        let mut norm_in_of: Vec<Option<NormIn>> = vec![None; n];
        let mut norm_in_fused = vec![false; n];
        let workgroup_bytes = gpu.limits.max_compute_workgroup_storage_size as usize;
        let mut fused_pairs = Vec::new();
        for (g, st, eps, weight_offset) in add_rms_norms() {
            let d = widths[g] / 2;
            let (a, b) = (src_of(st.inputs[0]), src_of(st.inputs[1]));
            let mut normed_by = Vec::new();
            let mut others_ok = !plan.outputs.iter().any(|&o| src_of(o).buf == Buf::Slot(g));
            for (i, s) in plan.steps.iter().enumerate() {
                if in_place[i].is_some() {
                    continue;
                }
                for (k, &j) in s.inputs.iter().enumerate() {
                    let x = src_of(j);
                    if x.buf != Buf::Slot(g) {
                        continue;
                    }
                    match (x.off, widths[j]) {
                        (o, w) if o == d && w == d && k == 0 => normed_by.push(i),
                        (0, w) if w == d => {}
                        _ => others_ok = false,
                    }
                }
            }
            let [m] = normed_by[..] else { continue };
            let Op::MatMul { .. } = plan.steps[m].node.op else {
                continue;
            };
            let between = (g + 1..m).all(|s| {
                in_place[s].is_some() || matches!(plan.steps[s].node.op, Op::Weight { .. })
            });
            let ws = &plan.steps[m].inputs[1..=matmul_weights(&plan.steps[m])];
            let one_dispatch = joined[m]
                || (ws.len() == 1 && lw.weight_of[ws[0]].as_ref().is_some_and(|p| p.len() == 1));
            let plain = ws.iter().all(|&w| {
                lw.views[w].as_ref().is_some_and(|v| {
                    v.cols() == d
                        && v.dtype.block_size() >= 32
                        && !shaders::rows_matvec(v.dtype, matmul_rows(&gpu), true, d)
                })
            });
            let x = src_of(plan.steps[m].inputs[0]);
            let fits = shaders::norm_prologue_workgroup_bytes(d) <= workgroup_bytes;
            let aligned = a.off.is_multiple_of(4) && b.off.is_multiple_of(4) && x_vec4(&x, d);
            if others_ok && between && one_dispatch && plain && aligned && fits {
                norm_in_of[m] = Some(NormIn {
                    a,
                    b,
                    weight: Buf::Weight(lw.view(g, 2)?.0),
                    out: Buf::Slot(g),
                    eps,
                    offset: weight_offset,
                });
                norm_in_fused[g] = true;
                fused_pairs.push((g, m));
            }
        }
        // The fused matvec reads the norm's rows and writes the norm's value and its own
        // (or, fused GLU, the GLU step's) at once: a value it writes that the memory plan
        // put where a row it reads lies moves to a slot of its own, shared by such moved
        // values whose lives do not overlap.
        let mut last_use = weft_backend::last_uses(&plan, x_step);
        for &(g, m) in &fused_pairs {
            for &j in &plan.steps[g].inputs[..2] {
                last_use[x_step(j)] = last_use[x_step(j)].max(m);
            }
        }
        // (extra slot, the last step that reads the value moved there)
        let mut extra: Vec<(usize, usize)> = Vec::new();
        for &(g, m) in &fused_pairs {
            let reads: Vec<usize> = plan.steps[g].inputs[..2]
                .iter()
                .map(|&j| slot_of[x_step(j)])
                .collect();
            let glu = glu_of[m].map(|(q, _)| (q, m));
            for (w, from) in [(g, g), (m, m)].into_iter().chain(glu) {
                if !reads.contains(&slot_of[w]) {
                    continue;
                }
                slot_of[w] = match extra.iter_mut().find(|e| e.1 < from) {
                    Some(e) => {
                        e.1 = last_use[w];
                        e.0
                    }
                    None => {
                        extra.push((n_slots, last_use[w]));
                        n_slots += 1;
                        n_slots - 1
                    }
                };
            }
        }
        let mut norm_fused = vec![false; n];
        let mut attn_part = 0;
        let mut attn_heads = 0;
        for (i, st) in plan.steps.iter().enumerate() {
            let slot = Buf::Slot;
            let input = |k: usize| Buf::Slot(st.inputs[k]);
            let read = |k: usize| src_of(st.inputs[k]);
            let width = widths[i];
            match &st.node.op {
                Op::Tokens | Op::Weight { .. } => {}
                Op::TokenEmbed | Op::PositionEmbed => {
                    let (parts, v) = lw.parts(i, 0)?;
                    let parts = parts.to_vec();
                    let (k, row_bytes) = (v.cols(), v.row_bytes());
                    let by_position = matches!(st.node.op, Op::PositionEmbed);
                    let rows = Some((v.name.clone(), v.rows()));
                    if by_position {
                        position_rows = rows;
                    } else {
                        token_rows = rows;
                    }
                    let p = lw.pipeline(i, "gather", Some(v.dtype))?;
                    let ids = if by_position { Buf::Dummy } else { Buf::Tokens };
                    // A table split across bindings: each part writes the rows it holds.
                    for part in parts {
                        lw.push(
                            i,
                            Arc::clone(&p),
                            vec![ids, Buf::Weight(part.buf), slot(i)],
                            Box::new(move |c| {
                                let g = groups(c.gpu, c.rows[i] as u32);
                                let p = [
                                    c.rows[i] as u32,
                                    k as u32,
                                    row_bytes as u32,
                                    by_position as u32,
                                    c.pos0 as u32,
                                    g.0,
                                    part.row0 as u32,
                                    (part.row0 + part.rows) as u32,
                                ];
                                (Params::new(&p), g)
                            }),
                        );
                    }
                }
                Op::LayerNorm { eps } => {
                    let ws: Vec<Buf> = (1..3)
                        .map(|k| lw.view(i, k).map(|(w, _)| Buf::Weight(w)))
                        .collect::<Result<_, _>>()?;
                    let p = lw.pipeline(i, "layer_norm", None)?;
                    let eps = *eps;
                    lw.push(
                        i,
                        p,
                        vec![input(0), ws[0], ws[1], slot(i)],
                        Box::new(move |c| {
                            let g = groups(c.gpu, c.rows[i] as u32);
                            let p = [c.rows[i] as u32, width as u32, f(eps), g.0];
                            (Params::new(&p), g)
                        }),
                    );
                }
                Op::RmsNorm {
                    eps,
                    weight_offset,
                    group,
                } => {
                    let w = match st.inputs.len() {
                        1 => Buf::Dummy,
                        _ => Buf::Weight(lw.view(i, 1)?.0),
                    };
                    let p = lw.norm_pipeline(i, "rms_norm", *group)?;
                    let (eps, off, group) = (*eps, *weight_offset, *group);
                    let has_w = (w != Buf::Dummy) as u32;
                    lw.push(
                        i,
                        p,
                        vec![input(0), w, slot(i)],
                        Box::new(move |c| {
                            let n = c.rows[i] * width / group;
                            let g = groups(c.gpu, n as u32);
                            let p = [n as u32, group as u32, f(eps), f(off), has_w, g.0];
                            (Params::new(&p), g)
                        }),
                    );
                }
                Op::AddRmsNorm {
                    eps, weight_offset, ..
                } => {
                    let w = Buf::Weight(lw.view(i, 2)?.0);
                    let (eps, off, d) = (*eps, *weight_offset, width / 2);
                    let (a, b) = (read(0), read(1));
                    // Int8 matvecs read the normed half: quantised here at decode, with
                    // no dispatch of its own, unless the matmul's matvec did this work
                    // (or works the normed half out itself: a norm prologue; either way
                    // this dispatch runs only for several rows).
                    let fused = norm_fused[i] || norm_in_fused[i];
                    let h = (slot(i), width, d);
                    let q8 = wants_q8.contains(&h)
                        && !fused
                        && d.is_multiple_of(32)
                        && d <= shaders::Q8_NORM_WIDTH;
                    let (p, x8) = match q8 {
                        true => {
                            lw.x8_holds(h, d);
                            (lw.norm_pipeline(i, "add_rms_norm_q8", d)?, Buf::X8)
                        }
                        false => (lw.norm_pipeline(i, "add_rms_norm", d)?, Buf::Dummy),
                    };
                    lw.push(
                        i,
                        p,
                        vec![a.buf, b.buf, w, slot(i), x8],
                        Box::new(move |c| {
                            let g = match fused && c.rows[i] == 1 {
                                true => (0, 0),
                                false => groups(c.gpu, c.rows[i] as u32),
                            };
                            let p = [
                                c.rows[i] as u32,
                                d as u32,
                                f(eps),
                                f(off),
                                g.0,
                                a.stride as u32,
                                a.off as u32,
                                b.stride as u32,
                                b.off as u32,
                                (q8 && c.rows[i] == 1) as u32,
                            ];
                            (Params::new(&p), g)
                        }),
                    );
                }
                Op::MatMul { bias, softcap } => {
                    let nw = matmul_weights(st);
                    if joined[i] {
                        // One dispatch over the weights' rows back to back: their outputs
                        // are the matmul's columns in the same order.
                        let ks: Vec<usize> = (1..=nw).collect();
                        let (buf, views) = lw.concat_rows(i, &ks, "joined")?;
                        let rows = views.iter().map(|v| v.rows()).sum();
                        let v = &views[0];
                        let facts = (buf, v.dtype, rows, v.cols(), v.row_bytes());
                        // gate | up read by a GLU step alone: at decode the matvec stores
                        // the GLU's value itself, unless that value shares x's slot.
                        let glu = glu_of[i].filter(|&(g, _)| {
                            !*bias
                                && softcap.is_none()
                                && views.len() == 2
                                && views[0].rows() == views[1].rows()
                                && slot_of[g] != slot_of[x_step(st.inputs[0])]
                        });
                        let out = match glu {
                            Some((g, act)) => Epilogue::Glu(GluOut {
                                act,
                                out: slot(g),
                                width: widths[g],
                            }),
                            None => Epilogue::None,
                        };
                        let fused = lw.matmul(
                            i,
                            read(0),
                            facts,
                            slot(i),
                            width,
                            0,
                            None,
                            out,
                            norm_in_of[i],
                            move |c| c.rows[i],
                        )?;
                        if let (true, Some((g, _))) = (fused, glu) {
                            glu_fused[g] = true;
                        }
                    } else {
                        let mut col = 0;
                        for k in 1..=nw {
                            let (parts, v) = lw.parts(i, k)?;
                            let (parts, v) = (parts.to_vec(), v.clone());
                            // The add_rms_norm reading this matmul alone, done by its
                            // matvec where the weight is one part.
                            let norm = norm_of[i].filter(|_| parts.len() == 1);
                            let epilogue =
                                norm.map_or(Epilogue::None, |(_, nm)| Epilogue::Norm(nm));
                            // A weight split across bindings: each part's rows are
                            // columns of the output.
                            for part in parts {
                                let facts = (part.buf, v.dtype, part.rows, v.cols(), v.row_bytes());
                                let fused = lw.matmul(
                                    i,
                                    read(0),
                                    facts,
                                    slot(i),
                                    width,
                                    col + part.row0,
                                    None,
                                    epilogue,
                                    norm_in_of[i],
                                    move |c| c.rows[i],
                                )?;
                                if let (true, Some((g, _))) = (fused, norm) {
                                    norm_fused[g] = true;
                                }
                            }
                            col += v.rows();
                        }
                    }
                    if *bias {
                        let p = lw.pipeline(i, "bias", None)?;
                        // Each weight's bias over its columns, in the weights' order.
                        let mut col = 0;
                        for k in 0..nw {
                            let len = lw.views[st.inputs[1 + k]].as_ref().map_or(0, |v| v.rows());
                            let b = Buf::Weight(lw.view(i, 1 + nw + k)?.0);
                            lw.push(
                                i,
                                Arc::clone(&p),
                                vec![b, slot(i)],
                                Box::new(move |c| {
                                    let n = c.rows[i] * len;
                                    let g = flat(c.gpu, n);
                                    let p = [n as u32, width as u32, col as u32, len as u32, g.0];
                                    (Params::new(&p), g)
                                }),
                            );
                            col += len;
                        }
                    }
                    if let Some(cap) = softcap {
                        let p = lw.ew_pipeline(
                            &[Ew::Softcap { a: 0, cap: *cap }],
                            &[Operand::Full],
                            true,
                        )?;
                        lw.push(
                            i,
                            p,
                            vec![slot(i)],
                            Box::new(move |c| {
                                let n = c.rows[i] * width;
                                let g = flat(c.gpu, n);
                                (Params::new(&[n as u32, width as u32, g.0]), g)
                            }),
                        );
                    }
                }
                // Read in place by every consumer: no dispatch.
                Op::Slice { .. } if in_place[i].is_some() => {}
                Op::Slice { start, len } => {
                    let src_w = widths[st.inputs[0]];
                    let start = *start;
                    lw.copy(
                        i,
                        input(0),
                        slot(i),
                        *len,
                        (src_w, *len),
                        move |_| (start, 0),
                        move |c| c.rows[i],
                    )?;
                }
                Op::Glu { act } => {
                    let p = lw.pipeline(i, "glu", None)?;
                    let act = matches!(act, GluAct::Gelu) as u32;
                    // One row where the matmul's epilogue computed it already.
                    let fused = glu_fused[i];
                    lw.push(
                        i,
                        p,
                        vec![input(0), slot(i)],
                        Box::new(move |c| {
                            let n = c.rows[i] * width;
                            let g = match fused && c.rows[i] == 1 {
                                true => (0, 0),
                                false => flat(c.gpu, n),
                            };
                            (Params::new(&[n as u32, width as u32, act, g.0]), g)
                        }),
                    );
                }
                Op::Elementwise { code } => {
                    let ins = (0..st.inputs.len())
                        .map(|k| (input(k), Operand::Full))
                        .collect();
                    lw.elementwise(i, code, ins, width)?;
                }
                Op::Add => lw.elementwise(
                    i,
                    &[Ew::Add { a: 0, b: 1 }],
                    vec![(input(0), Operand::Full), (input(1), Operand::Full)],
                    width,
                )?,
                Op::Mul => lw.elementwise(
                    i,
                    &[Ew::Mul { a: 0, b: 1 }],
                    vec![(input(0), Operand::Full), (input(1), Operand::Full)],
                    width,
                )?,
                Op::Bias => {
                    let b = Buf::Weight(lw.view(i, 1)?.0);
                    lw.elementwise(
                        i,
                        &[Ew::Add { a: 0, b: 1 }],
                        vec![(input(0), Operand::Full), (b, Operand::Row)],
                        width,
                    )?
                }
                Op::Scale { factor } => match st.inputs.len() {
                    1 => lw.elementwise(
                        i,
                        &[Ew::Scale {
                            a: 0,
                            factor: *factor,
                        }],
                        vec![(input(0), Operand::Full)],
                        width,
                    )?,
                    _ => {
                        // x · (factor · s), folded as the reference multiplies.
                        let learned = small[st.inputs[1]]
                            .as_ref()
                            .and_then(|v| v.first().copied())
                            .ok_or_else(|| bad(i, &plan, "the scale input must be a weight"))?;
                        lw.elementwise(
                            i,
                            &[Ew::Scale {
                                a: 0,
                                factor: factor * learned,
                            }],
                            vec![(input(0), Operand::Full)],
                            width,
                        )?
                    }
                },
                Op::Silu => lw.elementwise(
                    i,
                    &[Ew::Silu { a: 0 }],
                    vec![(input(0), Operand::Full)],
                    width,
                )?,
                Op::Gelu => lw.elementwise(
                    i,
                    &[Ew::Gelu { a: 0 }],
                    vec![(input(0), Operand::Full)],
                    width,
                )?,
                Op::Softcap { cap } => lw.elementwise(
                    i,
                    &[Ew::Softcap { a: 0, cap: *cap }],
                    vec![(input(0), Operand::Full)],
                    width,
                )?,
                Op::Rope {
                    head_dim,
                    rot_dim,
                    base,
                    layout,
                    scaling,
                } => {
                    let div = st.inputs.get(1).and_then(|&j| small[j].as_deref());
                    let table = rope_table(
                        &mut rope_freqs,
                        rope_inv_freqs(*rot_dim, *base, *scaling, div),
                    );
                    lw.copy(
                        i,
                        input(0),
                        slot(i),
                        width,
                        (width, width),
                        |_| (0, 0),
                        move |c| c.rows[i],
                    )?;
                    lw.rope(
                        i,
                        slot(i),
                        table,
                        width,
                        *head_dim,
                        rot_dim / 2,
                        *layout,
                        |_| 0,
                        move |c| c.rows[i],
                    )?;
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
                    if *head_dim > 256 {
                        return Err(unsupported(
                            i,
                            &plan,
                            format!("attention heads of {head_dim} dims (at most 256)"),
                        ));
                    }
                    let (layer, kvw) = (*layer, kv_widths[*layer]);
                    // Rope-fused: k is rotated as it enters the cache, q as the
                    // attention kernel loads it.
                    let (table, rope) = match rope {
                        Some(r) => {
                            let div = st.inputs.get(3).and_then(|&j| small[j].as_deref());
                            let t = rope_table(
                                &mut rope_freqs,
                                rope_inv_freqs(r.rot_dim, r.base, r.scaling, div),
                            );
                            let layout = matches!(r.layout, RopeLayout::Halves) as usize;
                            (Buf::RopeTable(t), [1, r.head_dim, r.rot_dim / 2, layout])
                        }
                        None => (Buf::Dummy, [0; 4]),
                    };
                    let (q, k, v) = (read(0), read(1), read(2));
                    // An f16 cache holds two values a word, written a pair a thread.
                    let (kv16, kv_suffix) = match options.kv {
                        KvType::F32 => (false, ""),
                        KvType::F16 => (true, "_kv16"),
                    };
                    if kv16 && head_dim % 2 != 0 {
                        return Err(unsupported(
                            i,
                            &plan,
                            format!("an f16 KV cache for heads of {head_dim} dims (an odd width)"),
                        ));
                    }
                    let p = lw.pipeline(i, &format!("kv_append{kv_suffix}"), None)?;
                    lw.push(
                        i,
                        p,
                        vec![
                            k.buf,
                            v.buf,
                            Buf::KeyCache(layer),
                            Buf::ValueCache(layer),
                            table,
                        ],
                        Box::new(move |c| {
                            // A decode step's attention appends its own row.
                            let g = match c.seq {
                                1 => (0, 0),
                                _ => flat(c.gpu, c.seq * kvw / 2),
                            };
                            let p = [
                                c.seq as u32,
                                kvw as u32,
                                k.stride as u32,
                                k.off as u32,
                                v.stride as u32,
                                v.off as u32,
                                c.pos0 as u32,
                                g.0,
                                rope[0] as u32,
                                rope[1] as u32,
                                rope[2] as u32,
                                rope[3] as u32,
                            ];
                            (Params::new(&p), g)
                        }),
                    );
                    let (nh, nkv, hd) = (*n_heads, *n_kv_heads, *head_dim);
                    let src = shaders::attention_source(kv16, hd)
                        .map_err(|what| unsupported(i, &plan, what))?;
                    let p = pipelines().get(&lw.gpu, "attention", src)?;
                    // Int8 matvecs read the output: a decode step quantises it where it
                    // is written (a head of whole blocks a workgroup), with no
                    // quantize_q8 dispatch of its own.
                    let o = src_of(i);
                    let h = (o.buf, o.stride, o.off);
                    let q8 = wants_q8.contains(&h) && hd.is_multiple_of(32);
                    // Not quantising: the output's own slot fills the writable q8
                    // binding (Dummy is bound read-only here too, and a dispatch cannot
                    // use one buffer both ways).
                    let x8 = match q8 {
                        true => {
                            lw.x8_holds(h, o.stride);
                            Buf::X8
                        }
                        false => slot(i),
                    };
                    let (scale, window, cap) =
                        (*scale, window.unwrap_or(0), softcap.unwrap_or(0.0));
                    attn_part = attn_part.max(nh * (hd + 2));
                    attn_heads = attn_heads.max(nh);
                    // Decode over more keys than a chunk: chunks side by side, merged.
                    let chunks = move |c: &Call| {
                        let keys = match window {
                            0 => c.pos0 + 1,
                            w => (c.pos0 + 1).min(w),
                        };
                        match c.seq == 1 && keys > ATTENTION_CHUNK {
                            true => keys.div_ceil(ATTENTION_CHUNK),
                            false => 1,
                        }
                    };
                    // Several rows: the prefill kernel, a block of rows a workgroup, where
                    // its tiles fit (WEFT_GPU_NO_ATTENTION_ROWS=1 keeps attention.wgsl, for
                    // measuring).
                    let workgroup_bytes = lw.gpu.limits.max_compute_workgroup_storage_size;
                    let block = shaders::attention_rows_shape(hd, workgroup_bytes as usize)
                        .filter(|_| std::env::var_os("WEFT_GPU_NO_ATTENTION_ROWS").is_none());
                    let rows_min = match block {
                        Some(_) => 2,
                        None => usize::MAX,
                    };
                    let rope_flags = rope[0] | rope[3] << 1 | rope[2] << 3;
                    // The words both attention kernels read first (params 0..=11).
                    let head = move |c: &Call, gx: u32, flags: usize| {
                        [
                            c.seq as u32,
                            nh as u32,
                            nkv as u32,
                            hd as u32,
                            f(scale),
                            window as u32,
                            f(cap),
                            c.pos0 as u32,
                            gx,
                            q.stride as u32,
                            q.off as u32,
                            flags as u32,
                        ]
                    };
                    // The bindings both read first.
                    let reads = vec![
                        q.buf,
                        Buf::KeyCache(layer),
                        Buf::ValueCache(layer),
                        slot(i),
                        table,
                    ];
                    let mut bufs = reads.clone();
                    bufs.extend([Buf::AttnPart, k.buf, v.buf, x8, Buf::AttnDone]);
                    lw.push(
                        i,
                        p,
                        bufs,
                        Box::new(move |c| {
                            let n = chunks(c);
                            let g = match c.seq >= rows_min {
                                true => (0, 0),
                                false => groups(c.gpu, (c.seq * nh * n) as u32),
                            };
                            let mut p = [0; 17];
                            p[..12].copy_from_slice(&head(
                                c,
                                g.0,
                                rope_flags | ((c.seq == 1) as usize) << 2,
                            ));
                            p[12..].copy_from_slice(&[
                                k.off as u32,
                                v.off as u32,
                                ATTENTION_CHUNK as u32,
                                n as u32,
                                (q8 && c.seq == 1) as u32,
                            ]);
                            (Params::new(&p), g)
                        }),
                    );
                    if let Some((qb, hd4)) = block {
                        let src = shaders::attention_rows_source(kv16, qb, hd4)
                            .map_err(|what| unsupported(i, &plan, what))?;
                        let p = pipelines().get(&lw.gpu, "attention_rows", src)?;
                        lw.push(
                            i,
                            p,
                            reads,
                            Box::new(move |c| {
                                let g = match c.seq >= rows_min {
                                    true => groups(c.gpu, (c.seq.div_ceil(qb) * nh) as u32),
                                    false => (0, 0),
                                };
                                (Params::new(&head(c, g.0, rope_flags)), g)
                            }),
                        );
                    }
                }
                Op::Moe {
                    n_experts,
                    top_k,
                    norm_topk,
                    act,
                    stacked,
                } => {
                    let m = moe.len();
                    let (ne, top_k, d) = (*n_experts, *top_k, width);
                    if ne > 256 {
                        return Err(unsupported(i, &plan, format!("{ne} experts (at most 256)")));
                    }
                    // Router logits into the expert-output scratch, then the choice.
                    let (ri, rv) = lw.view(i, 1)?;
                    let router = wfacts(ri, rv);
                    let x = Src {
                        buf: input(0),
                        stride: d,
                        off: 0,
                    };
                    lw.matmul(
                        i,
                        x,
                        router,
                        Buf::MoeOut(m),
                        ne,
                        0,
                        None,
                        Epilogue::None,
                        None,
                        move |c| c.rows[i],
                    )?;
                    let p = lw.pipeline(i, "moe_route", None)?;
                    let norm = *norm_topk as u32;
                    lw.push(
                        i,
                        p,
                        vec![Buf::MoeOut(m), Buf::MoeIds(m), Buf::MoeWeights(m)],
                        Box::new(move |c| {
                            let g = groups(c.gpu, c.rows[i].div_ceil(64) as u32);
                            let p = [c.rows[i] as u32, ne as u32, top_k as u32, norm, g.0];
                            (Params::new(&p), g)
                        }),
                    );
                    // The experts' weights as one buffer each for gate, up and down:
                    // stacked tensors already are; separate ones must match in type and
                    // shape, and are concatenated at upload.
                    let mut part =
                        |k: usize| -> Result<(usize, DType, usize, usize, usize), BackendError> {
                            if *stacked {
                                let (wi, v) = lw.view(i, 2 + k)?;
                                let rows = v.shape[v.shape.len() - 2];
                                return Ok((wi, v.dtype, rows, v.cols(), v.row_bytes()));
                            }
                            lw.concat_experts(i, (2 + k * ne..2 + (k + 1) * ne).collect())
                        };
                    let (gate, up, down) = (part(0)?, part(1)?, part(2)?);
                    let ffn = gate.2;
                    let hidden = 2 * ffn;
                    lw.matmul(
                        i,
                        x,
                        gate,
                        Buf::MoeHidden(m),
                        hidden,
                        0,
                        Some((Buf::MoeIds(m), top_k, ffn * gate.4)),
                        Epilogue::None,
                        None,
                        move |c| c.rows[i] * top_k,
                    )?;
                    lw.matmul(
                        i,
                        x,
                        up,
                        Buf::MoeHidden(m),
                        hidden,
                        ffn,
                        Some((Buf::MoeIds(m), top_k, ffn * up.4)),
                        Epilogue::None,
                        None,
                        move |c| c.rows[i] * top_k,
                    )?;
                    // act(gate) · up, in place is not possible: into the out scratch.
                    let p = lw.pipeline(i, "glu", None)?;
                    let actn = matches!(act, GluAct::Gelu) as u32;
                    lw.push(
                        i,
                        p,
                        vec![Buf::MoeHidden(m), Buf::MoeOut(m)],
                        Box::new(move |c| {
                            let n = c.rows[i] * top_k * ffn;
                            let g = flat(c.gpu, n);
                            (Params::new(&[n as u32, ffn as u32, actn, g.0]), g)
                        }),
                    );
                    lw.matmul(
                        i,
                        Src {
                            buf: Buf::MoeOut(m),
                            stride: ffn,
                            off: 0,
                        },
                        down,
                        Buf::MoeHidden(m),
                        d,
                        0,
                        Some((Buf::MoeIds(m), 1, d * down.4)),
                        Epilogue::None,
                        None,
                        move |c| c.rows[i] * top_k,
                    )?;
                    let p = lw.pipeline(i, "moe_combine", None)?;
                    lw.push(
                        i,
                        p,
                        vec![Buf::MoeHidden(m), Buf::MoeWeights(m), slot(i)],
                        Box::new(move |c| {
                            let n = c.rows[i] * d;
                            let g = flat(c.gpu, n);
                            (Params::new(&[n as u32, d as u32, top_k as u32, g.0]), g)
                        }),
                    );
                    moe.push(MoeScratch {
                        hidden: (hidden * top_k).max(d * top_k),
                        out: (ffn * top_k).max(ne),
                        top_k,
                    });
                }
                Op::LastPosition | Op::Output => {
                    let src = st.inputs[0];
                    lw.copy(
                        i,
                        input(0),
                        slot(i),
                        width,
                        (width, width),
                        move |c| ((c.rows[src] - c.rows[i]) * width, 0),
                        move |c| c.rows[i],
                    )?;
                }
            }
        }
        if lw.x8_words > 0 {
            stage.log.push(
                "activations (gpu): int8 for the Q4_K / Q6_K decode matvecs, x quantised per 32 values"
                    .into(),
            );
        }
        if lw.x8_rows_k > 0 {
            stage.log.push(
                "activations (gpu): int8 for the Q4_K / Q6_K / Q8_0 / Q4_0 / Q4_1 / Q5_0 prefill GEMMs, x quantised per 32 values"
                    .into(),
            );
        }
        if lw.coop_gemm {
            stage.log.push(
                "activations (gpu): f16 on tensor cores (cooperative matrices) for the prefill GEMMs, the weights' chunks decoded to f16"
                    .into(),
            );
        }
        let x8_words = lw.x8_words;
        let x8_rows_k = lw.x8_rows_k;
        let w8_blocks = lw.w8_blocks;
        let w16_blocks = lw.w16_blocks;
        let pick = lw.pipeline(plan.outputs[0], "argmax", None)?;
        let top = lw.pipeline(plan.outputs[0], "topk", None)?;
        let dispatches = std::mem::take(&mut lw.dispatches);
        let uploaded = std::mem::take(&mut lw.weights);
        drop(lw);
        Ok(GpuExecutable {
            plan,
            stage,
            gpu,
            weights: uploaded,
            dispatches,
            slot: slot_of,
            n_slots,
            widths,
            after_last,
            kv_widths,
            kv_bytes,
            rope_freqs,
            moe,
            attn_part,
            attn_heads,
            x8_words,
            x8_rows_k,
            w8_blocks,
            w16_blocks,
            token_rows,
            position_rows,
            pick,
            top,
        })
    }

    /// Rows of step `i`'s value at `seq` positions.
    pub fn rows(&self, i: usize, seq: usize, all: bool) -> usize {
        weft_backend::value_rows(&self.plan, &self.after_last, i, seq, all)
    }
}

/// Slices that the GPU kernels read in place (with their source's row stride and a
/// column offset) rather than copy: those whose every reader takes a strided input
/// (matmul x, add_rms_norm's a and b, attention's q, k, v) and that are no output.
fn slice_views(plan: &Plan) -> Vec<Option<usize>> {
    let n = plan.steps.len();
    let mut ok = vec![true; n];
    for st in &plan.steps {
        for (k, &j) in st.inputs.iter().enumerate() {
            let strided = match st.node.op {
                Op::MatMul { .. } => k == 0,
                Op::AddRmsNorm { .. } => k < 2,
                Op::Attention { .. } => k < 3,
                _ => false,
            };
            ok[j] &= strided;
        }
    }
    for &o in &plan.outputs {
        ok[o] = false;
    }
    plan.steps
        .iter()
        .enumerate()
        .map(|(i, st)| match st.node.op {
            Op::Slice { .. } if ok[i] => Some(st.inputs[0]),
            _ => None,
        })
        .collect()
}

/// The index of the rope table with these frequencies, added if new.
fn rope_table(tables: &mut Vec<Vec<f32>>, freqs: Vec<f32>) -> usize {
    match tables.iter().position(|t| *t == freqs) {
        Some(k) => k,
        None => {
            tables.push(freqs);
            tables.len() - 1
        }
    }
}

impl Executable for GpuExecutable {
    fn backend(&self) -> &'static str {
        NAME
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn lowered_text(&self) -> String {
        let mut s = self.stage.describe(&self.plan);
        let mut steps: Vec<usize> = self.dispatches.iter().map(|d| d.step).collect();
        steps.dedup();
        s += &format!(
            "; schedule (gpu): {} dispatches for {} steps, {} weight buffers\n",
            self.dispatches.len(),
            steps.len(),
            self.weights.len()
        );
        s
    }

    fn session(self: Arc<Self>, max_ctx: usize) -> Result<Box<dyn Session>, BackendError> {
        Ok(Box::new(crate::session::GpuSession::new(self, max_ctx)?))
    }
}
