//! weft's GPU backend: plans lowered onto wgpu compute pipelines. Lowering validates
//! the plan, runs the backend stage (the memory plan gives the activation arena) and
//! uploads each weight once in its stored blocks (matmuls and lookups decode blocks in
//! the kernel; nothing is expanded to f32 but norm vectors). Each step becomes one or
//! more dispatches with a pipeline fixed at lowering; a session binds them to its own
//! arena and KV cache and runs a forward call as one command encoder, reading back
//! only the logits it returns.

mod buffers;
mod device;
mod profile;
mod schedule;
mod session;
mod shaders;

pub use device::{gpu, Gpu};

use buffers::{groups, read_back, storage, upload, Params};
pub use shaders::RowsVariant;
use std::sync::Arc;
use weft_backend::{Backend, BackendError, Executable, LowerOptions};
use weft_ir::{Plan, WeightProvider, WeightView};

/// The backend's name (`--backend gpu`).
pub const NAME: &str = "gpu";

/// The GPU backend.
pub struct GpuBackend;

pub const GPU: GpuBackend = GpuBackend;

impl Backend for GpuBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn declined_fusions(&self) -> &'static [&'static str] {
        &[]
    }

    fn lower(
        &self,
        plan: Plan,
        weights: &dyn WeightProvider,
        options: &LowerOptions,
    ) -> Result<Arc<dyn Executable>, BackendError> {
        Ok(Arc::new(schedule::GpuExecutable::new(
            plan, weights, options,
        )?))
    }
}

/// Rows `ids` of `w` decoded on the GPU by the embedding kernel (kernel tests).
pub fn decode_rows(w: &WeightView, ids: &[u32]) -> Result<Vec<f32>, BackendError> {
    let gpu = gpu()?;
    let p =
        schedule::pipelines().get(&gpu, "gather", kernel_source("gather", Some(w.dtype), w)?)?;
    let wbuf = upload(&gpu, &w.name, w.bytes())?;
    let ibuf = upload(&gpu, "ids", &words(ids))?;
    let k = w.cols();
    let out = storage(&gpu, "rows", (ids.len() * k * 4) as u64)?;
    let (gx, gy) = groups(&gpu, ids.len() as u32);
    let params = Params::new(&[
        ids.len() as u32,
        k as u32,
        w.row_bytes() as u32,
        0,
        0,
        gx,
        0,
        w.rows() as u32,
    ]);
    buffers::dispatch_once(&gpu, &p, params, &[&ibuf, &wbuf, &out], (gx, gy));
    read_back(&gpu, &out, (ids.len() * k * 4) as u64)
}

/// Every row of `w` decoded to f16 by the tensor-core GEMM's decoder
/// (decode_f16_rows.wgsl, kernel tests; it needs no cooperative matrices itself): the
/// halves' bits, row j's at [j · k..]. `w`'s width is whole chunks of 32.
pub fn decode_f16(w: &WeightView) -> Result<Vec<u16>, BackendError> {
    let gpu = gpu()?;
    let (_, dec) = shaders::gemm_coop_sources(w.dtype).map_err(|what| unsupported(w, what))?;
    let p = schedule::pipelines().get(&gpu, "decode_f16", dec)?;
    let wbuf = upload(&gpu, &w.name, w.bytes())?;
    let (n, k) = (w.rows(), w.cols());
    let out = storage(&gpu, "halves", (n * k * 2) as u64)?;
    let (gx, gy) = groups(&gpu, (n * k / 32).div_ceil(64) as u32);
    let params = Params::new(&[n as u32, k as u32, w.row_bytes() as u32, 0, gx]);
    buffers::dispatch_once(&gpu, &p, params, &[&wbuf, &out], (gx, gy));
    let words = read_back(&gpu, &out, (n * k * 2) as u64)?;
    Ok(words
        .into_iter()
        .flat_map(|v| [v.to_bits() as u16, (v.to_bits() >> 16) as u16])
        .collect())
}

/// `x[m×k] · wᵀ` on the GPU by the matmul kernel a plan's matmul of m rows takes
/// (kernel tests), with `rows` weight rows a workgroup (`None`: the device's choice),
/// over the weight's rows from `skip` on (read from a byte offset into its buffer, as
/// a matmul split across dispatches reads them). `variant.int8`: a one-row matvec that
/// has an integer-dot variant runs it on x quantised by `quantize_q8`, as a plan lowered
/// with int8 activations does; `variant.subgroups`: a several-rows matvec adds its
/// lanes' sums with subgroup operations where the device has them; `variant.glu`: the
/// weight is [gate | up] and a one-row several-rows matvec returns act(gate) · up, the act
/// `glu_act`.
pub fn matmul(
    x: &[f32],
    m: usize,
    w: &WeightView,
    rows: Option<usize>,
    skip: usize,
    variant: RowsVariant,
    glu_act: weft_ir::GluAct,
) -> Result<Vec<f32>, BackendError> {
    let gpu = gpu()?;
    let rows_per = rows.unwrap_or_else(|| schedule::matmul_rows(&gpu));
    let mt = schedule::matmul_mt(&gpu);
    // The kernel a plan's matmul of m rows takes.
    let vec4 = w.cols().is_multiple_of(4);
    let gemm = m >= schedule::GEMM_MIN_ROWS && schedule::gemm_fits(w.cols(), vec4, false);
    let name = match (m, gemm) {
        (1, _) => "matvec",
        (_, true) => "gemm",
        _ => "matmul",
    };
    let several = m == 1 && shaders::rows_matvec(w.dtype, rows_per, vec4, w.cols());
    // `variant.int8` at GEMM rows: the integer-dot GEMM, where the type has one.
    let gemm_i8 = match gemm && variant.int8 && schedule::gemm_i8_fits(&gpu) {
        true => {
            let (ty, kb) = (schedule::gemm_i8_ty(), schedule::gemm_i8_kb());
            shaders::gemm_i8_sources(w.dtype, ty, kb, schedule::gemm_i8_predecode(w.dtype))
        }
        false => None,
    };
    let i8_gemm = gemm_i8.is_some();
    let (gemm_i8, decode_i8) = gemm_i8.unzip();
    let decode_i8 = decode_i8.flatten();
    let (int8, glu) = (variant.int8 && several, variant.glu && several);
    let src = match gemm {
        true if i8_gemm => Ok(gemm_i8.unwrap_or_default()),
        true => shaders::source(name, Some(w.dtype)),
        false => {
            let variant = RowsVariant {
                int8,
                subgroups: variant.subgroups && schedule::subgroups(&gpu),
                glu,
                norm: false,
                norm_in: false,
            };
            shaders::matmul_source(name, w.dtype, rows_per, mt, vec4, w.cols(), variant)
        }
    }
    .map_err(|what| unsupported(w, what))?;
    let p = schedule::pipelines().get(&gpu, name, src)?;
    let (n, k) = (w.rows() - skip.min(w.rows()), w.cols());
    // GLU: n / 2 outputs, each from a gate row and an up row.
    let (n_out, r_out) = match glu {
        true => (n / 2, 2),
        false => (n, 1),
    };
    let wbuf = upload(&gpu, &w.name, w.bytes())?;
    let xbuf = upload(&gpu, "x", &floats(x))?;
    let out = storage(&gpu, "out", (m * n_out * 4) as u64)?;
    let no_experts = upload(&gpu, "ids", &[0; 4])?;
    let mut bindings = vec![&xbuf, &wbuf, &out];
    if m == 1 {
        bindings.push(&no_experts);
    }
    let (x8, x8r, x8s, w8, w8s);
    if i8_gemm {
        let q = schedule::pipelines().get(
            &gpu,
            "quantize_q8_rows",
            kernel_source("quantize_q8_rows", None, w)?,
        )?;
        x8r = storage(&gpu, "x8 rows", (m * k) as u64)?;
        x8s = storage(&gpu, "x8 scales", (m * k / 4) as u64)?;
        let g = buffers::groups(&gpu, (m * k / 32).div_ceil(64) as u32);
        let params = Params::new(&[m as u32, k as u32, k as u32, 0, g.0]);
        buffers::dispatch_once(&gpu, &q, params, &[&xbuf, &x8r, &x8s], g);
        bindings = vec![&x8r, &wbuf, &out, &x8s];
        if let Some(dec) = decode_i8 {
            let d = schedule::pipelines().get(&gpu, "decode_i8", dec)?;
            let blocks = n * (k / 32);
            w8 = storage(&gpu, "w8", (blocks * 32) as u64)?;
            w8s = storage(&gpu, "w8 scales", (blocks * 16) as u64)?;
            let g = buffers::groups(&gpu, blocks.div_ceil(64) as u32);
            let params = Params::new(&[
                n as u32,
                k as u32,
                w.row_bytes() as u32,
                (skip * w.row_bytes()) as u32,
                g.0,
            ]);
            buffers::dispatch_once(&gpu, &d, params, &[&wbuf, &w8, &w8s], g);
            bindings = vec![&x8r, &w8, &out, &x8s, &w8s];
        }
    }
    if int8 {
        let q = schedule::pipelines().get(
            &gpu,
            "quantize_q8",
            kernel_source("quantize_q8", None, w)?,
        )?;
        x8 = storage(&gpu, "x8", ((k / 4 + k / 32) * 4) as u64)?;
        let (params, g) = schedule::quantize_q8_call(&gpu, k, 0);
        buffers::dispatch_once(&gpu, &q, params, &[&xbuf, &x8], g);
        bindings[0] = &x8;
    }
    let (gx, gy) = match (m, gemm) {
        (1, _) => (
            n_out.div_ceil(shaders::matvec_rows(w.dtype, rows_per, vec4, w.cols(), int8) / r_out),
            1,
        ),
        (_, true) if i8_gemm => (
            n.div_ceil(schedule::GEMM_TN),
            m.div_ceil(8 * schedule::gemm_i8_ty()),
        ),
        (_, true) => (n.div_ceil(schedule::GEMM_TN), m.div_ceil(schedule::GEMM_TM)),
        _ => (n.div_ceil(rows_per), m.div_ceil(mt)),
    };
    let (gx, gy) = (gx as u32, gy as u32);
    let params = Params::new(&[
        m as u32,
        k as u32,
        n as u32,
        n_out as u32,
        0,
        w.row_bytes() as u32,
        (skip * w.row_bytes()) as u32,
        gx,
        0,
        1,
        0,
        k as u32,
        0,
        matches!(glu_act, weft_ir::GluAct::Gelu) as u32,
    ]);
    buffers::dispatch_once(&gpu, &p, params, &bindings, (gx, gy));
    read_back(&gpu, &out, (m * n_out * 4) as u64)
}

/// The one-row matvec with the norm prologue (kernel tests), as a plan's decode runs it
/// for an add_rms_norm whose normed half it alone reads: each workgroup works out
/// norm(a + b) · (nw + offset) (k wide) and dots `w`'s rows with it, and workgroup (0, 0)
/// stores a + b. a and b are read from float offsets `a_off` and `b_off` (multiples of
/// 4) of their buffers. Returns the dots and the sum.
#[allow(clippy::too_many_arguments)]
pub fn matvec_norm_prologue(
    a: &[f32],
    a_off: usize,
    b: &[f32],
    b_off: usize,
    w: &WeightView,
    nw: &[f32],
    eps: f32,
    offset: f32,
) -> Result<(Vec<f32>, Vec<f32>), BackendError> {
    let gpu = gpu()?;
    let (n, k) = (w.rows(), w.cols());
    let rows_per = schedule::matmul_rows(&gpu);
    let variant = RowsVariant {
        norm_in: true,
        ..RowsVariant::default()
    };
    if shaders::rows_matvec(w.dtype, rows_per, true, k) {
        return Err(unsupported(
            w,
            "the norm prologue (a several-rows matvec)".into(),
        ));
    }
    let src = shaders::matmul_source("matvec", w.dtype, rows_per, 1, true, k, variant)
        .map_err(|what| unsupported(w, what))?;
    let p = schedule::pipelines().get(&gpu, "matvec norm-in", src)?;
    let (ab, bb, wb, nb) = (
        upload(&gpu, "a", &floats(a))?,
        upload(&gpu, "b", &floats(b))?,
        upload(&gpu, &w.name, w.bytes())?,
        upload(&gpu, "norm weight", &floats(nw))?,
    );
    let (out, sum) = (
        storage(&gpu, "out", (n * 4) as u64)?,
        storage(&gpu, "norm value", (2 * k * 4) as u64)?,
    );
    let no_experts = upload(&gpu, "ids", &[0; 4])?;
    let gx = n.div_ceil(rows_per) as u32;
    let params = Params::new(&[
        1,
        k as u32,
        n as u32,
        n as u32,
        0,
        w.row_bytes() as u32,
        0,
        gx,
        0,
        1,
        0,
        0,
        0,
        0,
        (a_off / 4) as u32,
        (b_off / 4) as u32,
        eps.to_bits(),
        offset.to_bits(),
    ]);
    let bindings = [&ab, &wb, &out, &no_experts, &bb, &nb, &sum];
    buffers::dispatch_once(&gpu, &p, params, &bindings, (gx, 1));
    let dots = read_back(&gpu, &out, (n * 4) as u64)?;
    let sum = read_back(&gpu, &sum, (k * 4) as u64)?;
    Ok((dots, sum))
}

/// The int8 matvec with the norm epilogue (kernel tests), as a plan's decode runs it
/// for an add_rms_norm reading the matvec alone: x (k wide) quantised by `quantize_q8`,
/// then `w` (a Q4_K or Q6_K weight of d rows) against it, the residual `res` added and
/// the sum normed by `nw` (+ `offset`), dispatched `runs` times on the same buffers. The
/// sum res + w·x, the q8 words of norm(sum) · (nw + offset), and the largest count left
/// behind (0 where the last block set them back).
pub fn matvec_norm_q8(
    x: &[f32],
    w: &WeightView,
    res: &[f32],
    nw: &[f32],
    eps: f32,
    offset: f32,
    runs: usize,
) -> Result<(Vec<f32>, Vec<u32>, u32), BackendError> {
    let gpu = gpu()?;
    let (d, k) = (w.rows(), w.cols());
    // A GPU's several-rows kernel, whatever this device's plans take (a CPU's take
    // others).
    let rows_per = 2;
    let variant = RowsVariant {
        int8: true,
        subgroups: schedule::subgroups(&gpu),
        glu: false,
        norm: true,
        norm_in: false,
    };
    if !shaders::norm_epilogue_fits(w.dtype, rows_per, true, k) {
        return Err(unsupported(w, "the norm epilogue".into()));
    }
    let src = shaders::matmul_source("matvec", w.dtype, rows_per, 1, true, k, variant)
        .map_err(|what| unsupported(w, what))?;
    let p = schedule::pipelines().get(&gpu, "matvec norm", src)?;
    let q =
        schedule::pipelines().get(&gpu, "quantize_q8", kernel_source("quantize_q8", None, w)?)?;
    let words = (k / 4 + k / 32).max(d / 4 + d / 32);
    let (xb, wb, rb, nb) = (
        upload(&gpu, "x", &floats(x))?,
        upload(&gpu, &w.name, w.bytes())?,
        upload(&gpu, "res", &floats(res))?,
        upload(&gpu, "norm weight", &floats(nw))?,
    );
    let (x8, out, q8) = (
        storage(&gpu, "x8", (words * 4) as u64)?,
        storage(&gpu, "out", (2 * d * 4) as u64)?,
        storage(&gpu, "q8 normed", (words * 4) as u64)?,
    );
    let done_bytes = shaders::NORM_DONE_WORDS as u64 * 4;
    let (no_experts, done) = (
        upload(&gpu, "ids", &[0; 4])?,
        storage(&gpu, "done", done_bytes)?,
    );
    let gx = d.div_ceil(shaders::matvec_rows(w.dtype, rows_per, true, k, true)) as u32;
    let params = Params::new(&[
        1,
        k as u32,
        d as u32,
        2 * d as u32,
        0,
        w.row_bytes() as u32,
        0,
        gx,
        0,
        1,
        0,
        k as u32,
        0,
        0,
        0,
        eps.to_bits(),
        offset.to_bits(),
    ]);
    for _ in 0..runs {
        let (qp, g) = schedule::quantize_q8_call(&gpu, k, 0);
        buffers::dispatch_once(&gpu, &q, qp, &[&xb, &x8], g);
        let bindings = [&x8, &wb, &out, &no_experts, &rb, &nb, &done, &q8];
        buffers::dispatch_once(&gpu, &p, params, &bindings, (gx, 1));
    }
    let sum = read_back(&gpu, &out, (d * 4) as u64)?;
    let q8 = read_back(&gpu, &q8, (words * 4) as u64)?;
    let q8 = q8[..d / 4 + d / 32].iter().map(|v| v.to_bits()).collect();
    let counts = read_back(&gpu, &done, done_bytes)?;
    let left = counts[..=shaders::Q8_NORM_WIDTH / 32]
        .iter()
        .map(|v| v.to_bits());
    Ok((sum, q8, left.max().unwrap_or(0)))
}

/// add_rms_norm's int8 variant on one row of width `d` (kernel tests): the row
/// [a + b | norm(a + b) · w] and the words it quantises the normed half into (the packed
/// values, then the block scales' bits).
pub fn add_rms_norm_q8(
    a: &[f32],
    b: &[f32],
    w: &[f32],
    eps: f32,
) -> Result<(Vec<f32>, Vec<u32>), BackendError> {
    let gpu = gpu()?;
    let d = a.len();
    let src = shaders::source("add_rms_norm_q8", None).map_err(device::err)?;
    let p = schedule::pipelines().get(&gpu, "add_rms_norm_q8", src)?;
    let (ab, bb, wb) = (
        upload(&gpu, "a", &floats(a))?,
        upload(&gpu, "b", &floats(b))?,
        upload(&gpu, "w", &floats(w))?,
    );
    let out = storage(&gpu, "out", (2 * d * 4) as u64)?;
    let words = d / 4 + d / 32;
    let q8 = storage(&gpu, "q8", (words * 4) as u64)?;
    let params = Params::new(&[
        1,
        d as u32,
        eps.to_bits(),
        0,
        1,
        d as u32,
        0,
        d as u32,
        0,
        1,
    ]);
    buffers::dispatch_once(&gpu, &p, params, &[&ab, &bb, &wb, &out, &q8], (1, 1));
    let row = read_back(&gpu, &out, (2 * d * 4) as u64)?;
    let q = read_back(&gpu, &q8, (words * 4) as u64)?;
    Ok((row, q.into_iter().map(f32::to_bits).collect()))
}

/// Decode attention with its output quantised where it is written (kernel tests): one
/// query row `q` of `heads` heads, f32 caches `kc` and `vc` of `kv_heads` heads a
/// position, the keys split into `chunks` (more than 1: the head's last chunk merges
/// them), dispatched twice on the same buffers. The output row, its q8 words (the packed
/// values, then the block scales' bits), and the largest chunk count left behind (0
/// where each head's last chunk set its count back).
pub fn attention_q8(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    heads: usize,
    kv_heads: usize,
    chunks: usize,
) -> Result<(Vec<f32>, Vec<u32>, u32), BackendError> {
    let gpu = gpu()?;
    let (d, hd) = (q.len(), q.len() / heads);
    let keys = kc.len() / (kv_heads * hd);
    let src = shaders::attention_source(false, hd).map_err(device::err)?;
    let attention = schedule::pipelines().get(&gpu, "attention", src)?;
    let (qb, kb, vb) = (
        upload(&gpu, "q", &floats(q))?,
        upload(&gpu, "k cache", &floats(kc))?,
        upload(&gpu, "v cache", &floats(vc))?,
    );
    let out = storage(&gpu, "out", (d * 4) as u64)?;
    let words = d / 4 + d / 32;
    let q8 = storage(&gpu, "q8", (words * 4) as u64)?;
    let part = storage(&gpu, "part", (heads * chunks * (hd + 2) * 4) as u64)?;
    let none = storage(&gpu, "unread", 16)?;
    let done = storage(&gpu, "done", (heads * 4) as u64)?;
    let scale = 1.0 / (hd as f32).sqrt();
    let n = heads * chunks;
    let params = Params::new(&[
        1,
        heads as u32,
        kv_heads as u32,
        hd as u32,
        scale.to_bits(),
        0,
        0,
        keys as u32 - 1,
        n as u32,
        d as u32,
        0,
        0,
        0,
        0,
        keys.div_ceil(chunks) as u32,
        chunks as u32,
        1,
    ]);
    let bindings = [&qb, &kb, &vb, &out, &none, &part, &none, &none, &q8, &done];
    for _ in 0..2 {
        buffers::dispatch_once(&gpu, &attention, params, &bindings, (n as u32, 1));
    }
    let row = read_back(&gpu, &out, (d * 4) as u64)?;
    let q = read_back(&gpu, &q8, (words * 4) as u64)?;
    let left = read_back(&gpu, &done, (heads * 4) as u64)?;
    let left = left.iter().map(|v| v.to_bits()).max().unwrap_or(0);
    Ok((row, q.into_iter().map(f32::to_bits).collect(), left))
}

/// Prefill attention (attention_rows.wgsl, kernel tests): query rows `q` at positions
/// `pos0..` of `heads` heads of `head_dim`, over f32 caches `kc` and `vc` of `kv_heads`
/// heads a position (every position up to the last row's), with a sliding `window` (0:
/// none), in the row blocks lowering picks for this device. The output rows.
#[allow(clippy::too_many_arguments)]
pub fn attention_rows(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    pos0: usize,
    window: usize,
) -> Result<Vec<f32>, BackendError> {
    let gpu = gpu()?;
    let rows = q.len() / (heads * head_dim);
    let limit = gpu.limits.max_compute_workgroup_storage_size as usize;
    let (qb, hd4) = shaders::attention_rows_shape(head_dim, limit)
        .ok_or_else(|| device::err(format!("no prefill attention for heads of {head_dim}")))?;
    let src = shaders::attention_rows_source(false, qb, hd4).map_err(device::err)?;
    let pipeline = schedule::pipelines().get(&gpu, "attention_rows", src)?;
    let (qbuf, kb, vb) = (
        upload(&gpu, "q", &floats(q))?,
        upload(&gpu, "k cache", &floats(kc))?,
        upload(&gpu, "v cache", &floats(vc))?,
    );
    let out = storage(&gpu, "out", (q.len() * 4) as u64)?;
    let none = storage(&gpu, "unread", 16)?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let n = rows.div_ceil(qb) * heads;
    let params = Params::new(&[
        rows as u32,
        heads as u32,
        kv_heads as u32,
        head_dim as u32,
        scale.to_bits(),
        window as u32,
        0,
        pos0 as u32,
        n as u32,
        (heads * head_dim) as u32,
        0,
        0,
    ]);
    let bindings = [&qbuf, &kb, &vb, &out, &none];
    buffers::dispatch_once(&gpu, &pipeline, params, &bindings, (n as u32, 1));
    read_back(&gpu, &out, (q.len() * 4) as u64)
}

/// The greedy pick (argmax.wgsl) of `row`, with the session's two dispatches (kernel
/// tests).
pub fn pick(row: &[f32]) -> Result<weft_backend::Pick, BackendError> {
    let gpu = gpu()?;
    let src = shaders::source("argmax", None).map_err(device::err)?;
    let p = schedule::pipelines().get(&gpu, "argmax", src)?;
    let rb = upload(&gpu, "row", &floats(row))?;
    let (params, groups) = session::pick_stages(row.len(), 0);
    let part = storage(&gpu, "partials", (groups as u64 + 1) * 16)?;
    for (params, g) in params.into_iter().zip([groups, 1]) {
        buffers::dispatch_once(&gpu, &p, params, &[&rb, &part], (g, 1));
    }
    let w = read_back(&gpu, &part, (groups as u64 + 1) * 16)?;
    let at = 4 * groups as usize;
    Ok(session::read_pick(
        [0, 1, 2, 3].map(|k| w[at + k].to_bits()),
    ))
}

/// The `k` largest values of `row` or its first non-finite one (topk.wgsl), in the
/// session's rounds (kernel tests).
pub fn top_k(row: &[f32], k: usize) -> Result<weft_backend::Top, BackendError> {
    weft_backend::check_top_k(k)?;
    let gpu = gpu()?;
    let src = shaders::source("topk", None).map_err(device::err)?;
    let p = schedule::pipelines().get(&gpu, "topk", src)?;
    let rb = upload(&gpu, "row", &floats(row))?;
    let t = session::top_stages(&gpu, row.len(), 0, k);
    let (x, y) = t.groups[0];
    let bytes = ((x * y) as u64 * t.width as u64 + 1) * 8;
    let parts = [
        storage(&gpu, "top-k a", bytes)?,
        storage(&gpu, "top-k b", bytes)?,
    ];
    for r in 0..t.rounds {
        let bindings = [&rb, &parts[(r + 1) % 2], &parts[r % 2]];
        buffers::dispatch_once(&gpu, &p, t.params[r], &bindings, t.groups[r]);
    }
    let last = &parts[(t.rounds - 1) % 2];
    let words = read_back(&gpu, last, (t.width as u64 + 1) * 8)?;
    Ok(session::read_top(&words, k.min(row.len())))
}

fn kernel_source(
    name: &str,
    dtype: Option<weft_ir::DType>,
    w: &WeightView,
) -> Result<String, BackendError> {
    shaders::source(name, dtype).map_err(|what| unsupported(w, what))
}

fn unsupported(w: &WeightView, what: String) -> BackendError {
    BackendError::Unsupported {
        step: 0,
        name: w.name.clone(),
        what,
        backend: NAME,
    }
}

pub(crate) fn words(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

pub(crate) fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Whether the GPU kernels read weights of `dtype`.
pub fn supports(dtype: weft_ir::DType) -> bool {
    shaders::decoder(dtype).is_some()
}
