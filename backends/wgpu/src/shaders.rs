//! WGSL sources and compiled pipelines. A kernel's source is the common prelude, the
//! stored type's chunk decoder where the kernel reads weights, and the kernel body;
//! fused elementwise programs are generated per program. Pipelines are compiled once
//! per distinct source and shared by every executable on the device.

use crate::device::{err, Gpu};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use weft_backend::BackendError;
use weft_ir::{DType, Ew};

/// A kernel file's WGSL: the copy built in, or with `WEFT_GPU_SHADERS=DIR` the file of
/// that name under DIR (a developer's knob: kernel variants measured on a machine that
/// has the binary but no Rust to rebuild it).
macro_rules! wgsl {
    ($path:literal) => {
        $crate::shaders::text($path, include_str!(concat!("../shaders/", $path)))
    };
}

/// [`wgsl!`]'s lookup: each override is read once and kept for the process. A file not
/// under DIR is the built-in copy; one that cannot be read is said on stderr, once.
pub(crate) fn text(path: &'static str, builtin: &'static str) -> &'static str {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    static READ: Mutex<Option<HashMap<&'static str, &'static str>>> = Mutex::new(None);
    let Some(dir) = DIR.get_or_init(|| std::env::var_os("WEFT_GPU_SHADERS").map(Into::into)) else {
        return builtin;
    };
    let mut read = READ.lock().unwrap_or_else(|p| p.into_inner());
    let read = read.get_or_insert_with(HashMap::new);
    read.entry(path).or_insert_with(|| {
        let file = dir.join(path);
        match std::fs::read_to_string(&file) {
            Ok(t) => Box::leak(t.into_boxed_str()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => builtin,
            Err(e) => {
                eprintln!(
                    "weft gpu: WEFT_GPU_SHADERS: {}: {e}; using the built-in copy",
                    file.display()
                );
                builtin
            }
        }
    })
}

/// What every kernel but the integer-dot and tensor-core GEMMs and their weight decoders
/// starts with: the parameters and the activations.
fn prelude() -> String {
    format!("{}{}", wgsl!("common.wgsl"), wgsl!("activations.wgsl"))
}

/// The chunk decoder (`decode_chunk`) of a stored type, if the GPU backend has one.
pub fn decoder(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => wgsl!("quant/f32.wgsl"),
        DType::F16 => wgsl!("quant/f16.wgsl"),
        DType::BF16 => wgsl!("quant/bf16.wgsl"),
        DType::Q8_0 => wgsl!("quant/q8_0.wgsl"),
        DType::Q4_0 => wgsl!("quant/q4_0.wgsl"),
        DType::Q4_1 => wgsl!("quant/q4_1.wgsl"),
        DType::Q5_0 => wgsl!("quant/q5_0.wgsl"),
        DType::Q5_1 => wgsl!("quant/q5_1.wgsl"),
        DType::Q4_K => wgsl!("quant/q4_k.wgsl"),
        DType::Q5_K => wgsl!("quant/q5_k.wgsl"),
        DType::Q6_K => wgsl!("quant/q6_k.wgsl"),
        DType::Q2_K => wgsl!("quant/q2_k.wgsl"),
        DType::Q3_K => wgsl!("quant/q3_k.wgsl"),
        DType::IQ4_NL => wgsl!("quant/iq4_nl.wgsl"),
        DType::IQ4_XS => wgsl!("quant/iq4_xs.wgsl"),
        DType::TQ1_0 => wgsl!("quant/tq1_0.wgsl"),
        DType::TQ2_0 => wgsl!("quant/tq2_0.wgsl"),
    })
}

/// The integer-dot GEMM's block decoder (`decode_i8`) of a stored type and the form of
/// its blocks (x = d·q − m: `halves`, a d per 16 values; `mins`, an m), for the types
/// that have one (activations int8 at prefill; others keep the f32 GEMM).
pub fn i8_decoder(dtype: DType) -> Option<(&'static str, bool, bool)> {
    Some(match dtype {
        DType::Q4_K => (wgsl!("quant/i8/q4_k.wgsl"), false, true),
        DType::Q6_K => (wgsl!("quant/i8/q6_k.wgsl"), true, false),
        DType::Q8_0 => (wgsl!("quant/i8/q8_0.wgsl"), false, false),
        DType::Q4_0 => (wgsl!("quant/i8/q4_0.wgsl"), false, false),
        DType::Q4_1 => (wgsl!("quant/i8/q4_1.wgsl"), false, true),
        DType::Q5_0 => (wgsl!("quant/i8/q5_0.wgsl"), false, false),
        _ => return None,
    })
}

/// The tensor-core GEMM (`gemm_coop.wgsl`; the same for every type, with the enable
/// directives, which WGSL wants before any declaration) and the kernel that decodes a
/// `dtype` weight to f16 for it once a call (`decode_f16_rows.wgsl`).
pub fn gemm_coop_sources(dtype: DType) -> Result<(String, String), String> {
    let dec = decoder(dtype).ok_or_else(|| format!("{dtype} weights"))?;
    Ok((
        format!(
            "enable f16;\nenable wgpu_cooperative_matrix;\n{}{}",
            wgsl!("common.wgsl"),
            wgsl!("gemm_coop.wgsl")
        ),
        weight_decoder(wgsl!("decode_f16_rows.wgsl"), dec),
    ))
}

/// A kernel that decodes a weight once a call for a GEMM (`kernel`: its entry point and
/// output) with the type's decoder `dec`.
fn weight_decoder(kernel: &str, dec: &str) -> String {
    format!(
        "{}{kernel}{}{dec}",
        wgsl!("common.wgsl"),
        wgsl!("quant/bytes.wgsl")
    )
}

/// The integer-dot GEMM (`gemm_i8.wgsl`) for `dtype` with `ty` · 8 activation rows a
/// workgroup and `kb` blocks a step, if the type has a block decoder; `predecode`: it
/// reads the weight's blocks as `decode_i8_rows` writes them once a call (the second
/// source), else it decodes them in its tiles.
pub fn gemm_i8_sources(
    dtype: DType,
    ty: usize,
    kb: usize,
    predecode: bool,
) -> Option<(String, Option<String>)> {
    let (dec, halves, mins) = i8_decoder(dtype)?;
    let body = wgsl!("gemm_i8.wgsl")
        .replace("const TY: u32 = 8u;", &format!("const TY: u32 = {ty}u;"))
        .replace("const KB: u32 = 4u;", &format!("const KB: u32 = {kb}u;"))
        .replace(
            "const HALVES: bool = false;",
            &format!("const HALVES: bool = {halves};"),
        )
        .replace(
            "const MINS: bool = false;",
            &format!("const MINS: bool = {mins};"),
        );
    Some(match predecode {
        true => (
            format!(
                "{}{body}{}",
                wgsl!("common.wgsl"),
                wgsl!("gemm_i8_tile_w8.wgsl")
            ),
            Some(weight_decoder(wgsl!("decode_i8_rows.wgsl"), dec)),
        ),
        false => (
            format!(
                "{}{body}{}{}{dec}",
                wgsl!("common.wgsl"),
                wgsl!("gemm_i8_tile_decode.wgsl"),
                wgsl!("quant/bytes.wgsl")
            ),
            None,
        ),
    })
}

/// The fixed kernels, by name.
pub fn body(name: &str) -> &'static str {
    match name {
        "gather" => wgsl!("gather.wgsl"),
        "matmul" => wgsl!("matmul.wgsl"),
        "matvec" => wgsl!("matvec.wgsl"),
        "gemm" => wgsl!("gemm.wgsl"),
        "rms_norm" => wgsl!("rms_norm.wgsl"),
        "add_rms_norm" => wgsl!("add_rms_norm.wgsl"),
        "layer_norm" => wgsl!("layer_norm.wgsl"),
        "glu" => wgsl!("glu.wgsl"),
        "copy" => wgsl!("copy.wgsl"),
        "rope" => wgsl!("rope.wgsl"),
        "attention" => wgsl!("attention.wgsl"),
        "attention_rows" => wgsl!("attention_rows.wgsl"),
        "kv_append" => wgsl!("kv_append.wgsl"),
        "bias" => wgsl!("bias.wgsl"),
        "moe_route" => wgsl!("moe_route.wgsl"),
        "moe_combine" => wgsl!("moe_combine.wgsl"),
        "quantize_q8" => wgsl!("quantize_q8.wgsl"),
        "quantize_q8_rows" => wgsl!("quantize_q8_rows.wgsl"),
        "argmax" => wgsl!("argmax.wgsl"),
        "topk" => wgsl!("topk.wgsl"),
        other => panic!("no kernel named {other}"),
    }
}

/// Threads of a norm kernel's workgroup (`NORM_THREADS` in reduce.wgsl).
pub const NORM_THREADS: usize = 256;

/// Threads of a `quantize_q8` workgroup, each quantising four values (`Q8_SLOTS` in
/// q8_block.wgsl, where it is also the slots of a workgroup's block maxima).
pub const Q8_SLOTS: usize = 64;

/// The widest row `add_rms_norm_q8` quantises: its row lives in workgroup memory, and it
/// quantises only on the norms' register path (rows up to NORM_THREADS · NORM_KEEP =
/// 8192 in reduce.wgsl), which this stays within.
pub const Q8_NORM_WIDTH: usize = 4096;

/// Words of the norm epilogue's counts and block sums (`done` in matvec_norm.wgsl), for
/// rows up to [`Q8_NORM_WIDTH`] wide.
pub const NORM_DONE_WORDS: usize = 3 * (Q8_NORM_WIDTH / 32) + 1;

/// The full source of kernel `name`, reading weights of `dtype` where it reads any.
/// `add_rms_norm_q8`: add_rms_norm that also quantises its normed half (activations
/// int8), for rows up to [`Q8_NORM_WIDTH`] wide. `attention` and `kv_append` with
/// `_kv16` appended: over an f16 KV cache.
pub fn source(name: &str, dtype: Option<DType>) -> Result<String, String> {
    // `attention_kv16`, `kv_append_kv16`: over an f16 cache, two values a word.
    if let Some(base) = name.strip_suffix("_kv16") {
        return Ok(source(base, None)?
            .replace("kc: array<f32>", "kc: array<u32>")
            .replace("vc: array<f32>", "vc: array<u32>")
            .replace(wgsl!("kv_f32.wgsl"), wgsl!("kv_f16.wgsl")));
    }
    if name == "add_rms_norm_q8" {
        return Ok(source("add_rms_norm", None)?
            .replace(
                "const Q8_WIDTH: u32 = 0u;",
                &format!("const Q8_WIDTH: u32 = {Q8_NORM_WIDTH}u;"),
            )
            .replace(
                "const Q8_SLOTS: u32 = 64u;",
                &format!("const Q8_SLOTS: u32 = {}u;", Q8_NORM_WIDTH / 4),
            ));
    }
    let mut s = prelude();
    if let Some(d) = dtype {
        let dec = decoder(d).ok_or_else(|| format!("{d} weights"))?;
        // The decoder reads `w`, which the kernel declares: body first, then decoder.
        s += body(name);
        s += wgsl!("quant/bytes.wgsl");
        s += dec;
        return Ok(s);
    }
    s += body(name);
    if matches!(name, "attention" | "attention_rows" | "kv_append") {
        s += wgsl!("rope_pair.wgsl");
        s += wgsl!("kv_f32.wgsl");
    }
    if matches!(name, "rms_norm" | "add_rms_norm" | "layer_norm") {
        s += wgsl!("reduce.wgsl");
    }
    if matches!(name, "add_rms_norm" | "quantize_q8" | "attention") {
        s += wgsl!("q8_block.wgsl");
    }
    Ok(s)
}

/// The attention kernel (`attention.wgsl`: decode, and prefill where attention_rows.wgsl
/// does not fit) for heads of `head_dim` dims, a constant there; `kv16`: over an f16
/// cache.
pub fn attention_source(kv16: bool, head_dim: usize) -> Result<String, String> {
    let name = match kv16 {
        true => "attention_kv16",
        false => "attention",
    };
    Ok(source(name, None)?.replace(
        "const HD: u32 = 64u;",
        &format!("const HD: u32 = {head_dim}u;"),
    ))
}

/// Key tiles of the prefill attention (`KT` in attention_rows.wgsl).
const ATTENTION_ROWS_KT: usize = 16;

/// The prefill attention's query rows a workgroup and its heads' vec4 at most (`QB`,
/// `HD4` in attention_rows.wgsl) for heads of `head_dim`: 16 rows where their tiles fit
/// `workgroup_bytes`, else 8; None where 8 do not fit either or the heads are not whole
/// vec4 (attention.wgsl runs those).
pub fn attention_rows_shape(head_dim: usize, workgroup_bytes: usize) -> Option<(usize, usize)> {
    if !head_dim.is_multiple_of(4) || head_dim > 256 {
        return None;
    }
    let hd4 = match head_dim <= 128 {
        true => 32,
        false => 64,
    };
    let kt = ATTENTION_ROWS_KT;
    let bytes = |qb: usize| 16 * qb * hd4 + 16 * kt * (hd4 + 1) + 8 * qb * kt + 4 * qb;
    [16, 8]
        .into_iter()
        .find(|&qb| bytes(qb) <= workgroup_bytes)
        .map(|qb| (qb, hd4))
}

/// The prefill attention (`attention_rows.wgsl`) with `qb` query rows a workgroup and
/// heads of up to `hd4` vec4 ([`attention_rows_shape`]); `kv16`: over an f16 cache.
pub fn attention_rows_source(kv16: bool, qb: usize, hd4: usize) -> Result<String, String> {
    let name = match kv16 {
        true => "attention_rows_kv16",
        false => "attention_rows",
    };
    Ok(source(name, None)?
        .replace("const QB: u32 = 16u;", &format!("const QB: u32 = {qb}u;"))
        .replace(
            "const HD4: u32 = 32u;",
            &format!("const HD4: u32 = {hd4}u;"),
        ))
}

/// The matmul kernel `name` (`matmul`: several activation rows; `matvec`: one, or
/// expert routing) for `dtype` with `rows` weight rows a workgroup (64 / rows threads
/// share each row; `mt` activation rows a tiled workgroup): a row a thread where
/// invocations run as SIMD lanes of a CPU (Mesa's software Vulkan), a subgroup a row
/// on GPUs so that a row's blocks are read side by side and every multiprocessor has
/// work at decode. `vec4`: x is read four floats a load, for block-quantised weights
/// whose x offsets and strides are multiples of 4. `k`: the weight's width. `variant`:
/// how a several-rows matvec reads x and adds its lanes' sums.
pub fn matmul_source(
    name: &str,
    dtype: DType,
    rows: usize,
    mt: usize,
    vec4: bool,
    k: usize,
    variant: RowsVariant,
) -> Result<String, String> {
    if name == "matvec" {
        if let Some(kernel) = rows_kernel(dtype, rows, vec4, k) {
            let (r, lanes) = kernel.shape(variant.int8);
            let mut body = wgsl!("matvec_rows.wgsl")
                .replace("const R: u32 = 4u;", &format!("const R: u32 = {r}u;"))
                .replace(
                    "const LANES: u32 = 64u;",
                    &format!("const LANES: u32 = {lanes}u;"),
                );
            let mut rows_dot = kernel.rows_dot;
            if variant.int8 {
                body = body.replace(X_F32, X_I8);
                rows_dot = kernel.rows_dot_i8;
            }
            let entry = match variant.subgroups {
                true => wgsl!("matvec_rows_subgroup.wgsl"),
                false => wgsl!("matvec_rows_tree.wgsl"),
            };
            let block = kernel.block;
            if variant.glu {
                body = body.replace("const GLU: bool = false;", "const GLU: bool = true;");
            }
            if variant.norm {
                let norm = wgsl!("matvec_norm.wgsl").replace(
                    "const NORM_WIDTH: u32 = 4096u;",
                    &format!("const NORM_WIDTH: u32 = {Q8_NORM_WIDTH}u;"),
                );
                body = body.replace(OUT_F32, &norm);
            }
            return Ok(format!("{}{body}{block}{rows_dot}{entry}", prelude()));
        }
    }
    let lanes = 64 / rows;
    let xdot = match vec4 && dtype.block_size() >= 32 {
        true => wgsl!("xdot_vec4.wgsl"),
        false => wgsl!("xdot_scalar.wgsl"),
    };
    let mut s = source(name, Some(dtype))?
        .replace("const MT: u32 = 4u;", &format!("const MT: u32 = {mt}u;"))
        .replace(
            "const ROWS: u32 = 64u;\nconst LANES: u32 = 1u;",
            &format!("const ROWS: u32 = {rows}u;\nconst LANES: u32 = {lanes}u;"),
        )
        + xdot;
    if name == "matvec" {
        if variant.glu {
            s = s.replace("const GLU: bool = false;", "const GLU: bool = true;");
        }
        if variant.norm_in {
            if !(vec4 && dtype.block_size() >= 32 && k.is_multiple_of(4)) {
                return Err(format!("a norm prologue over {dtype} (x not read as vec4)"));
            }
            let keep = norm_prologue_keep(k);
            let prologue = wgsl!("matvec_norm_prologue.wgsl").replace(
                "const KEEP: u32 = 1u;",
                &format!("const KEEP: u32 = {keep}u;"),
            );
            s = s
                .replace("fn x_prologue(li: u32, wg: vec3<u32>) {}\n", "")
                .replace(X_F32, &prologue);
        }
        s += match row_dot(dtype).filter(|_| vec4 && lanes == 32) {
            Some(shared) => shared,
            None => wgsl!("row_dot_chunks.wgsl"),
        };
    }
    Ok(s)
}

/// Vec4s of x each of the norm prologue's 64 threads keeps (`KEEP` there) for rows `k` wide.
fn norm_prologue_keep(k: usize) -> usize {
    (k / 4).div_ceil(64)
}

/// Workgroup memory of the matvec with the norm prologue for rows `k` wide: x as the
/// threads keep it, and the matvec's 64 partial sums.
pub fn norm_prologue_workgroup_bytes(k: usize) -> usize {
    norm_prologue_keep(k) * 64 * 16 + 64 * 4
}

/// The x binding of matvec_rows.wgsl and xdot_vec4.wgsl, which the int8 variant replaces
/// with packed words and the norm prologue with workgroup memory.
const X_F32: &str = "@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;";
const X_I8: &str = "@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;";
/// matvec_rows.wgsl's output binding and the functions around it, which the norm
/// epilogue (matvec_norm.wgsl) replaces.
const OUT_F32: &str = "@group(0) @binding(3) var<storage, read_write> out: array<f32>;
fn store_row(i: u32, v: f32) { out[i] = v; }
fn after_rows(lane: u32, wg: vec3<u32>) {}
";

/// Choices of the several-rows matvec (`matvec_rows.wgsl`) beyond its shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowsVariant {
    /// x quantised by `quantize_q8.wgsl` (activations int8), where [`rows_matvec`]
    /// says the type has the kernel.
    pub int8: bool,
    /// The lanes' sums added by subgroup operations (where the adapter has them), not a
    /// tree through workgroup memory.
    pub subgroups: bool,
    /// The GLU epilogue: the weight is [gate | up] and the kernel stores act(gate) · up.
    pub glu: bool,
    /// The norm epilogue (`matvec_norm.wgsl`, with `int8`): the kernel does the work of
    /// the add_rms_norm that alone reads its one row, quantising the normed half.
    pub norm: bool,
    /// The norm prologue (`matvec_norm_prologue.wgsl`; the plain matvec on f32 x read
    /// as vec4): x is the normed half of the add_rms_norm that only this matvec reads,
    /// worked out by each workgroup; workgroup (0, 0) also stores the norm's sum half.
    pub norm_in: bool,
}

/// Whether the decode matvec of `dtype` is the several-rows kernel (Q4_K, Q6_K), which
/// has the integer-dot and GLU-epilogue variants.
pub fn rows_matvec(dtype: DType, rows: usize, vec4: bool, k: usize) -> bool {
    rows_kernel(dtype, rows, vec4, k).is_some()
}

/// Weight rows of a matvec workgroup for `dtype` where the matmul kernels take `rows`
/// (`matvec_rows.wgsl` takes its own).
pub fn matvec_rows(dtype: DType, rows: usize, vec4: bool, k: usize, int8: bool) -> usize {
    match rows_kernel(dtype, rows, vec4, k) {
        Some(kernel) => kernel.shape(int8).0,
        None => rows,
    }
}

/// Whether the int8 several-rows matvec of `dtype` can take the norm epilogue
/// (matvec_norm.wgsl): its workgroups' rows tile blocks of 32, a block's finisher has a
/// lane a value, and its `partial` holds a block's 64 sums.
pub fn norm_epilogue_fits(dtype: DType, rows: usize, vec4: bool, k: usize) -> bool {
    rows_kernel(dtype, rows, vec4, k).is_some_and(|kernel| {
        let (r, lanes) = kernel.shape(true);
        32 % r == 0 && lanes >= 32 && r * lanes >= 64
    })
}

/// A several-rows matvec (`matvec_rows.wgsl`): the type's parts and the kernel's shape.
struct RowsKernel {
    /// The weight binding and block helpers.
    block: &'static str,
    /// `rows_dot` on f32 x, and on x quantised to 8 bits (activations int8).
    rows_dot: &'static str,
    rows_dot_i8: &'static str,
    /// Weight rows a workgroup (`R`).
    r: usize,
    /// Threads a workgroup (`LANES`).
    lanes: usize,
    /// `r` and `lanes` of the integer-dot variant.
    i8_shape: (usize, usize),
}

impl RowsKernel {
    /// (`R`, `LANES`) of the variant on f32 x or (`int8`) on x quantised.
    fn shape(&self, int8: bool) -> (usize, usize) {
        match int8 {
            true => self.i8_shape,
            false => (self.r, self.lanes),
        }
    }
}

/// The several-rows matvec of a K-quant type, on GPUs (a subgroup a row, `rows` < 64)
/// with x read four floats a load. Every row and expert of a weight (read from byte 0 of
/// its buffer, or from a whole row) must start on a word of the kernel's: Q4_K
/// super-blocks are 144 bytes (9 words of 16), Q6_K ones 210 (so rows of an even count
/// of super-blocks, a whole number of 4-byte words). Shapes measured on an H200 (8B
/// decode, R × LANES of 2–16 × 16–256): Q4_K fastest at 4 × 64 on f32 x (8 lanes a
/// super-block) and 2 × 32 on int8 x (4 lanes a super-block: 8B int8 decode 228 → 250
/// tok/s against 4 × 64), Q6_K at 2 × 128 on f32 x (16 lanes a super-block). Q6_K on
/// int8 x takes 8 lanes a super-block, 2 rows and up to 128 lanes, as many as a row's
/// super-blocks fill (64 for k = 2048), at least 32.
fn rows_kernel(dtype: DType, rows: usize, vec4: bool, k: usize) -> Option<RowsKernel> {
    if !vec4 || rows >= 64 {
        return None;
    }
    let kernel = Some(match dtype {
        DType::Q4_K => RowsKernel {
            block: wgsl!("quant/rows/q4_k_block.wgsl"),
            rows_dot: wgsl!("quant/rows/q4_k.wgsl"),
            rows_dot_i8: wgsl!("quant/rows/q4_k_i8.wgsl"),
            r: 4,
            lanes: 64,
            i8_shape: (2, 32),
        },
        DType::Q6_K if (k / 256).is_multiple_of(2) => RowsKernel {
            block: wgsl!("quant/rows/q6_k_block.wgsl"),
            rows_dot: wgsl!("quant/rows/q6_k.wgsl"),
            rows_dot_i8: wgsl!("quant/rows/q6_k_i8.wgsl"),
            r: 2,
            lanes: 128,
            i8_shape: (2, (8 * (k / 256)).next_power_of_two().clamp(32, 128)),
        },
        _ => return None,
    });
    kernel.map(|kernel| match rows_shape(dtype) {
        Some((r, lanes)) => RowsKernel {
            r,
            lanes,
            i8_shape: (r, lanes),
            ..kernel
        },
        None => kernel,
    })
}

/// `WEFT_MV_Q4_K=R,LANES` (or `WEFT_MV_Q6_K`): the several-rows matvec's shape for the
/// type, both variants, for measuring others (R a power of two from 2, since the GLU
/// epilogue splits a workgroup's rows in halves; LANES a multiple of 16 up to 256).
fn rows_shape(dtype: DType) -> Option<(usize, usize)> {
    let v = std::env::var(format!("WEFT_MV_{dtype}")).ok()?;
    let (r, lanes) = v.split_once(',')?;
    let (r, lanes): (usize, usize) = (r.parse().ok()?, lanes.parse().ok()?);
    (r.is_power_of_two()
        && (2..=16).contains(&r)
        && lanes.is_multiple_of(16)
        && (16..=256).contains(&lanes))
    .then_some((r, lanes))
}

/// A row's dot with x with the 32 lanes of a row sharing each super-block (coalesced
/// weight loads), for the types that have one; x read four floats a load.
fn row_dot(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::Q6_K => wgsl!("quant/rowdot/q6_k.wgsl"),
        _ => return None,
    })
}

/// How an elementwise input is indexed at flat index `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// `x[i]`: the same shape as the output.
    Full,
    /// `b[i % width]`: a vector added to every row.
    Row,
}

/// A kernel running the fused elementwise program `code` over `inputs`; `in_place`:
/// one input, which is also the output (a matmul's softcap epilogue).
/// params: 0 n, 1 width (for `Row` operands), 2 groups_x.
pub fn elementwise_source(code: &[Ew], inputs: &[Operand], in_place: bool) -> String {
    let mut s = prelude();
    let n = inputs.len();
    if in_place {
        s += "@group(0) @binding(1) var<storage, read_write> out: array<f32>;\n";
    } else {
        for k in 0..n {
            s += &format!(
                "@group(0) @binding({}) var<storage, read> in{k}: array<f32>;\n",
                k + 1
            );
        }
        s += &format!(
            "@group(0) @binding({}) var<storage, read_write> out: array<f32>;\n",
            n + 1
        );
    }
    s += "@compute @workgroup_size(256)\n\
          fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {\n\
          let i = flat_group(wg, pu(2)) * 256u + li;\n\
          if i >= pu(0) { return; }\n";
    for (k, op) in inputs.iter().enumerate() {
        let at = match op {
            Operand::Full => "i",
            Operand::Row => "i % pu(1)",
        };
        let src = if in_place {
            "out".to_string()
        } else {
            format!("in{k}")
        };
        s += &format!("let r{k} = {src}[{at}];\n");
    }
    for (j, e) in code.iter().enumerate() {
        let expr = match *e {
            Ew::Add { a, b } => format!("r{a} + r{b}"),
            Ew::Mul { a, b } => format!("r{a} * r{b}"),
            Ew::Scale { a, factor } => format!("r{a} * {}", wgsl_f32(factor)),
            Ew::Silu { a } => format!("silu(r{a})"),
            Ew::Gelu { a } => format!("gelu(r{a})"),
            Ew::Softcap { a, cap } => format!("softcap(r{a}, {})", wgsl_f32(cap)),
        };
        s += &format!("let r{} = {expr};\n", n + j);
    }
    s += &format!("out[i] = r{};\n}}\n", n + code.len() - 1);
    s
}

/// An f32 literal that WGSL reads back as the same value.
fn wgsl_f32(v: f32) -> String {
    format!("bitcast<f32>({}u)", v.to_bits())
}

/// A compiled kernel and its name (the label it was compiled under).
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub name: String,
}

impl std::ops::Deref for Kernel {
    type Target = wgpu::ComputePipeline;
    fn deref(&self) -> &wgpu::ComputePipeline {
        &self.pipeline
    }
}

/// Compiled pipelines of one device, by source.
#[derive(Default)]
pub struct Pipelines {
    cache: Mutex<HashMap<String, Arc<Kernel>>>,
}

impl Pipelines {
    /// The pipeline for `source`, compiled on first use; a shader the driver refuses is
    /// an error naming the kernel.
    pub fn get(&self, gpu: &Gpu, label: &str, source: String) -> Result<Arc<Kernel>, BackendError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&source) {
            return Ok(Arc::clone(p));
        }
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        // Without naga's own bounds checks (an index clamp on every access): Vulkan's
        // robust buffer access, which wgpu enables, still keeps every access inside its
        // binding, and every index a kernel forms comes from sizes checked at lowering.
        // SAFETY: out-of-range accesses stay inside the bound buffers (robust buffer
        // access); the kernels contain no other operation the checks guard.
        let module = unsafe {
            gpu.device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
                },
                wgpu::ShaderRuntimeChecks::unchecked(),
            )
        };
        let pipeline = gpu
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(err(format!("the kernel '{label}' does not compile: {e}")));
        }
        let p = Arc::new(Kernel {
            pipeline,
            name: label.to_string(),
        });
        cache.insert(source, Arc::clone(&p));
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_threads_are_the_shaders_own() {
        let s = source("add_rms_norm", None).unwrap();
        assert!(s.contains(&format!("const NORM_THREADS: u32 = {NORM_THREADS}u;")));
        assert!(
            s.contains("const NORM_KEEP: u32 = 32u;"),
            "what norm_pipeline replaces"
        );
        assert!(source("quantize_q8", None)
            .unwrap()
            .contains(&format!("const Q8_SLOTS: u32 = {Q8_SLOTS}u;")));
        let q8 = source("add_rms_norm_q8", None).unwrap();
        assert!(q8.contains(&format!("const Q8_SLOTS: u32 = {}u;", Q8_NORM_WIDTH / 4)));
    }

    #[test]
    fn matvec_shares_super_blocks_among_32_lanes_where_it_can() {
        let shared = |d, rows, vec4| {
            let s =
                matmul_source("matvec", d, rows, 16, vec4, 256, RowsVariant::default()).unwrap();
            s.contains("32 lanes to a super-block")
        };
        assert!(shared(DType::Q6_K, 2, true));
        assert!(!shared(DType::Q6_K, 64, true), "one lane a row");
        assert!(!shared(DType::Q6_K, 2, false), "x not vec4");
        assert!(!shared(DType::Q5_K, 2, true), "no shared dot for the type");
    }

    #[test]
    fn k_quant_matvecs_serve_several_rows_a_workgroup_on_gpus() {
        let rows = |rows, vec4| {
            let s = matmul_source(
                "matvec",
                DType::Q4_K,
                rows,
                16,
                vec4,
                256,
                RowsVariant::default(),
            )
            .unwrap();
            (
                s.contains("const R: u32 = 4u;"),
                matvec_rows(DType::Q4_K, rows, vec4, 256, false),
            )
        };
        assert_eq!(rows(2, true), (true, 4));
        assert_eq!(rows(64, true), (false, 64), "one lane a row");
        assert_eq!(rows(2, false), (false, 2), "x not vec4");
        assert_eq!(
            matvec_rows(DType::Q4_K, 2, true, 256, true),
            2,
            "int8's shape"
        );
        // Q6_K rows start on 4-byte words only with an even count of super-blocks.
        assert_eq!(matvec_rows(DType::Q6_K, 2, true, 512, false), 2);
        assert_eq!(matvec_rows(DType::Q6_K, 2, true, 768, false), 2);
    }

    #[test]
    fn int8_matvecs_read_packed_x_with_integer_dots() {
        for (dtype, k) in [(DType::Q4_K, 256), (DType::Q6_K, 512)] {
            assert!(rows_matvec(dtype, 2, true, k), "{dtype}");
            let int8 = RowsVariant {
                int8: true,
                ..RowsVariant::default()
            };
            let s = matmul_source("matvec", dtype, 2, 16, true, k, int8).unwrap();
            assert!(
                s.contains("x: array<vec4<u32>>") && !s.contains(X_F32),
                "{dtype}"
            );
            assert!(s.contains("dot4I8Packed"), "{dtype}");
            let f = matmul_source("matvec", dtype, 2, 16, true, k, RowsVariant::default()).unwrap();
            assert!(f.contains(X_F32) && !f.contains("dot4I8Packed"), "{dtype}");
        }
        assert!(!rows_matvec(DType::Q5_K, 2, true, 256));
        assert!(!rows_matvec(DType::Q4_K, 64, true, 256), "one lane a row");
        assert!(!rows_matvec(DType::Q6_K, 2, true, 768), "odd super-blocks");
    }

    /// The tensor-core GEMM and its f16 decoder compile (WGSL to SPIR-V, as wgpu's Vulkan
    /// backend does) for every type with a chunk decoder: Mesa's software Vulkan has no
    /// cooperative matrices, so CI cannot build the GEMM's pipeline.
    #[test]
    fn coop_gemm_compiles_to_spirv() {
        use wgpu::naga::{back::spv, front::wgsl, valid};
        for dtype in DType::ALL.into_iter().filter(|&d| decoder(d).is_some()) {
            let (gemm, dec) = gemm_coop_sources(dtype).unwrap();
            for src in [gemm, dec] {
                let module = wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{dtype}: {}", e.emit_to_string(&src)));
                let info = valid::Validator::new(
                    valid::ValidationFlags::all(),
                    valid::Capabilities::all(),
                )
                .validate(&module)
                .unwrap_or_else(|e| panic!("{dtype}: {e:?}"));
                let words = spv::write_vec(&module, &info, &spv::Options::default(), None).unwrap();
                assert!(!words.is_empty(), "{dtype}");
            }
        }
    }

    #[test]
    fn int8_gemm_sources_carry_each_types_block_form() {
        let (g, d) = gemm_i8_sources(DType::Q6_K, 8, 2, true).unwrap();
        assert!(
            g.contains("const HALVES: bool = true;") && g.contains("const MINS: bool = false;")
        );
        assert!(g.contains("var<storage, read> w8s") && !g.contains("fn decode_i8"));
        assert!(d.is_some_and(|d| d.contains("fn decode_i8")));
        let (g, d) = gemm_i8_sources(DType::Q4_K, 16, 4, false).unwrap();
        assert!(g.contains("const MINS: bool = true;") && g.contains("fn decode_i8"));
        assert!(g.contains("const TY: u32 = 16u;") && g.contains("const KB: u32 = 4u;"));
        assert!(d.is_none() && g.contains("dot4I8Packed"));
        assert!(
            gemm_i8_sources(DType::Q5_K, 8, 2, false).is_none(),
            "f32 GEMM"
        );
    }

    #[test]
    fn matmul_kernels_take_the_device_shape_and_x_loads() {
        for name in ["matmul", "matvec"] {
            let q =
                matmul_source(name, DType::Q6_K, 2, 16, true, 256, RowsVariant::default()).unwrap();
            assert!(
                q.contains("const ROWS: u32 = 2u;\nconst LANES: u32 = 32u;"),
                "{name}"
            );
            assert!(q.contains("x: array<vec4<f32>>"), "{name}");
            assert!(
                name == "matvec" || q.contains("const MT: u32 = 16u;"),
                "{name}"
            );
            let f =
                matmul_source(name, DType::F16, 64, 4, true, 256, RowsVariant::default()).unwrap();
            assert!(f.contains("x: array<f32>"), "{name}");
            let unaligned =
                matmul_source(name, DType::Q8_0, 64, 4, false, 256, RowsVariant::default())
                    .unwrap();
            assert!(unaligned.contains("x: array<f32>"), "{name}");
        }
    }
}
