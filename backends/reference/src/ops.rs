//! Reference kernels for the non-matmul ops, on row-major f32 activations.
//! Written for clarity first; a later issue moves the hot ones to SIMD and the JIT.

use rayon::prelude::*;
use weft_ir::{Ew, GluAct, RopeLayout, RopeScaling, WeightView};
use weft_quant::kernel_for;

/// `x / rms(x) · (w + offset)` over each group of `w.len()` values.
pub fn rms_norm(
    x: &[f32],
    group: usize,
    w: Option<&[f32]>,
    eps: f32,
    offset: f32,
    out: &mut [f32],
) {
    for (xs, os) in x.chunks_exact(group).zip(out.chunks_exact_mut(group)) {
        let ms = xs.iter().map(|v| v * v).sum::<f32>() / group as f32;
        let r = 1.0 / (ms + eps).sqrt();
        match w {
            Some(w) => {
                for ((o, &v), &wv) in os.iter_mut().zip(xs).zip(w) {
                    *o = v * r * (wv + offset);
                }
            }
            None => os.iter_mut().zip(xs).for_each(|(o, &v)| *o = v * r),
        }
    }
}

/// Rows of `a + b` (`d` values each) into the first half of each `2·d`-wide output
/// row, and into the second half their RMS norm over groups of `w.len()` values.
pub fn add_rms_norm(
    a: &[f32],
    b: &[f32],
    d: usize,
    w: &[f32],
    eps: f32,
    offset: f32,
    out: &mut [f32],
) {
    for ((o, ra), rb) in out
        .chunks_exact_mut(2 * d)
        .zip(a.chunks_exact(d))
        .zip(b.chunks_exact(d))
    {
        let (sum, normed) = o.split_at_mut(d);
        for ((s, x), y) in sum.iter_mut().zip(ra).zip(rb) {
            *s = x + y;
        }
        rms_norm(sum, w.len(), Some(w), eps, offset, normed);
    }
}

/// `x · factor`.
pub fn scale(x: &[f32], factor: f32, out: &mut [f32]) {
    for (o, a) in out.iter_mut().zip(x) {
        *o = a * factor;
    }
}

/// `(x − mean) / sqrt(var + eps) · w + b` over each row of `w.len()` values.
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xs, os) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = xs.iter().sum::<f32>() / d as f32;
        let var = xs.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let r = 1.0 / (var + eps).sqrt();
        for (((o, &v), &wv), &bv) in os.iter_mut().zip(xs).zip(w).zip(b) {
            *o = (v - mean) * r * wv + bv;
        }
    }
}

pub fn silu(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v / (1.0 + (-v).exp());
    }
}

/// GELU, tanh approximation.
pub fn gelu(x: &[f32], out: &mut [f32]) {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    for (o, &v) in out.iter_mut().zip(x) {
        *o = 0.5 * v * (1.0 + tanh_by_exp(C * (v + 0.044715 * v * v * v)));
    }
}

/// `tanh(y)` as `1 − 2/(e^{2|y|} + 1)` with y's sign: one `exp`, where libm's `tanhf`
/// (through `expm1f`) cost three times as much in a prompt's GELUs. Absolute error
/// within 2.5e-7 (the test below); GELU uses `1 + tanh`, so that is all that matters.
fn tanh_by_exp(y: f32) -> f32 {
    let e = (2.0 * y.abs()).exp();
    (1.0 - 2.0 / (e + 1.0)).copysign(y)
}

/// Gated linear unit over rows of `[gate | up]` (`2·f` values each): `act(gate) ⊙ up`
/// into rows of `f`. Rows go in parallel: for a prompt this is millions of
/// transcendental calls (Gemma's GELU), too many for one core.
pub fn glu(x: &[f32], f: usize, act: GluAct, out: &mut [f32]) {
    out.par_chunks_mut(f.max(1))
        .zip(x.par_chunks(2 * f.max(1)))
        .with_min_len((1 << 14) / f.max(1) + 1)
        .for_each(|(o, r)| {
            let (gate, up) = r.split_at(f);
            match act {
                GluAct::Silu => silu(gate, o),
                GluAct::Gelu => gelu(gate, o),
            }
            for (v, u) in o.iter_mut().zip(up) {
                *v *= u;
            }
        });
}

pub fn softcap(x: &[f32], cap: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = cap * (v / cap).tanh();
    }
}

/// Rope's inverse frequencies for one head, after scaling and optional per-frequency divisors.
pub fn rope_inv_freqs(
    rot_dim: usize,
    base: f32,
    scaling: RopeScaling,
    divisors: Option<&[f32]>,
) -> Vec<f32> {
    (0..rot_dim / 2)
        .map(|i| {
            let mut f = 1.0 / (base as f64).powf(2.0 * i as f64 / rot_dim as f64);
            match scaling {
                RopeScaling::None => {}
                RopeScaling::Linear { factor } => f /= factor as f64,
                RopeScaling::Proportional { pairs, factor } => {
                    f = if i < pairs { f / factor as f64 } else { 0.0 }
                }
                RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_context,
                } => {
                    let (factor, lo, hi, ctx) = (
                        factor as f64,
                        low_freq_factor as f64,
                        high_freq_factor as f64,
                        original_context as f64,
                    );
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen > ctx / lo {
                        f /= factor;
                    } else if wavelen >= ctx / hi {
                        let smooth = (ctx / wavelen - lo) / (hi - lo);
                        f = (1.0 - smooth) * f / factor + smooth * f;
                    }
                }
            }
            if let Some(d) = divisors {
                f /= d[i] as f64;
            }
            f as f32
        })
        .collect()
}

/// Rotates the first `rot_dim` dims of every head of every row, in place; row `t` is
/// at absolute position `pos0 + t`.
pub fn rope(
    x: &mut [f32],
    width: usize,
    head_dim: usize,
    inv_freq: &[f32],
    layout: RopeLayout,
    pos0: usize,
) {
    let half = inv_freq.len();
    // One buffer for the row's (cos, sin) pairs, shared by all its heads.
    with_scratch(|cs| {
        for (t, row) in x.chunks_exact_mut(width).enumerate() {
            let p = (pos0 + t) as f32;
            cs.clear();
            for &f in inv_freq {
                let (s, c) = (p * f).sin_cos();
                cs.extend([c, s]);
            }
            for head in row.chunks_exact_mut(head_dim) {
                for (i, cs) in cs.chunks_exact(2).enumerate() {
                    let (c, s) = (cs[0], cs[1]);
                    let (a, b) = match layout {
                        RopeLayout::Pairs => (2 * i, 2 * i + 1),
                        RopeLayout::Halves => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * c - x1 * s;
                    head[b] = x0 * s + x1 * c;
                }
            }
        }
    })
}

/// A thread's grow-only f32 buffer (see [`with_buffer`]).
pub type Scratch = std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>;

thread_local! {
    /// Rope's angles and attention's scores.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// [`store_f16`]'s copy, which rope works on inside it.
    static COPY: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, kept between calls so that the
/// per-token loops allocate only while it grows. A nested call (a pool thread that
/// took another task while this one waits) gets a fresh one.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    with_buffer(&SCRATCH, f)
}

/// [`with_scratch`] on buffer `key`.
pub fn with_buffer<R>(key: &'static Scratch, f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    key.with(|s| match s.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Shape of an attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub window: Option<usize>,
    pub softcap: Option<f32>,
    /// Rows the caches hold: position j is at row j mod `cache_rows`. A sliding-window
    /// layer's cache is a ring of its window and a pass's new rows; other caches hold
    /// every position (j < `cache_rows`).
    pub cache_rows: usize,
}

/// A layer's cached keys or values, rows of its KV width: f32, or f16 bits.
#[derive(Clone, Copy, Debug)]
pub enum KvRows<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
}

impl KvRows<'_> {
    /// `Σ q[i]·row[i]` over the row of `q.len()` values at `at`, in element order.
    pub fn dot(self, q: &[f32], at: usize) -> f32 {
        match self {
            KvRows::F32(r) => q.iter().zip(&r[at..][..q.len()]).map(|(a, b)| a * b).sum(),
            KvRows::F16(r) => q
                .iter()
                .zip(&r[at..][..q.len()])
                .map(|(a, b)| a * half::f16::from_bits(*b).to_f32())
                .sum(),
        }
    }

    /// `y[i] += a·row[i]` over the row of `y.len()` values at `at`.
    pub fn axpy(self, y: &mut [f32], a: f32, at: usize) {
        let n = y.len();
        match self {
            KvRows::F32(r) => y
                .iter_mut()
                .zip(&r[at..][..n])
                .for_each(|(y, x)| *y += a * x),
            KvRows::F16(r) => y
                .iter_mut()
                .zip(&r[at..][..n])
                .for_each(|(y, x)| *y += a * half::f16::from_bits(*x).to_f32()),
        }
    }
}

/// `src` into `dst` as f16 bits (round to nearest even), after `then` has worked on an
/// f32 copy (the rotation of a rope-fused attention's keys). The copy has a per-thread
/// buffer of its own: rope, inside `then`, takes [`with_scratch`]'s.
pub fn store_f16(src: &[f32], dst: &mut [u16], then: impl FnOnce(&mut [f32])) {
    with_buffer(&COPY, |buf| {
        buf.clear();
        buf.extend_from_slice(src);
        then(buf);
        for (d, v) in dst.iter_mut().zip(buf.iter()) {
            *d = half::f16::from_f32(*v).to_bits();
        }
    })
}

/// Causal attention for `seq` query rows at positions `pos0..pos0+seq`, over cached keys
/// and values `[0, pos0+seq)` (rows of `n_kv_heads·head_dim`, position j at row
/// j mod `s.cache_rows`). Writes `[seq, n_heads·head_dim]`.
/// A task per query row and head, plain loops: the yardstick of faster forms.
pub fn attention(
    q: &[f32],
    k_cache: KvRows,
    v_cache: KvRows,
    s: AttnShape,
    pos0: usize,
    out: &mut [f32],
) {
    let (hd, nh) = (s.head_dim, s.n_heads);
    let kvw = s.n_kv_heads * hd;
    let group = nh / s.n_kv_heads;
    // One score buffer per thread, grown in powers of two: not per head and position.
    out.par_chunks_mut(hd).enumerate().for_each(|(idx, o)| {
        with_scratch(|scores| {
            let (t, h) = (idx / nh, idx % nh);
            let p = pos0 + t;
            let start = s.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let qh = &q[t * nh * hd + h * hd..][..hd];
            let kvh = h / group;
            scores.clear();
            scores.reserve((p + 1 - start).next_power_of_two().max(256));
            let at = |j: usize| (j % s.cache_rows) * kvw + kvh * hd;
            scores.extend((start..=p).map(|j| {
                let at = at(j);
                let mut d = k_cache.dot(qh, at) * s.scale;
                if let Some(c) = s.softcap {
                    d = c * (d / c).tanh();
                }
                d
            }));
            let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in scores.iter_mut() {
                *v = (*v - m).exp();
                sum += *v;
            }
            o.fill(0.0);
            for (j, w) in (start..=p).zip(scores.iter()) {
                v_cache.axpy(o, w / sum, at(j));
            }
        })
    });
}

/// One expert's weights: each a view and the first row of the expert inside it (stacked
/// `[n_experts, rows, cols]` tensors hold every expert; per-expert tensors start at 0).
pub struct Expert<'a> {
    pub gate: (&'a WeightView, usize),
    pub up: (&'a WeightView, usize),
    pub down: (&'a WeightView, usize),
    pub ffn: usize,
}

/// Mixture of experts over rows of `d` values: softmax router, the `top_k` best experts
/// (renormalised over the k when `norm_topk`), each `down · (act(gate · x) ⊙ (up · x))`.
#[allow(clippy::too_many_arguments)]
pub fn moe(
    x: &[f32],
    d: usize,
    router: &WeightView,
    experts: &[Expert],
    top_k: usize,
    norm_topk: bool,
    act: GluAct,
    out: &mut [f32],
) {
    let dot = |(w, base): (&WeightView, usize), r: usize, v: &[f32]| {
        kernel_for(w.dtype).dot(w.row(base + r), v)
    };
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let logits: Vec<f32> = (0..experts.len())
            .map(|e| dot((router, 0), e, xr))
            .collect();
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let z: f32 = exps.iter().sum();
        let mut order: Vec<usize> = (0..experts.len()).collect();
        order.sort_by(|&a, &b| exps[b].total_cmp(&exps[a]).then(a.cmp(&b)));
        order.truncate(top_k);
        let norm = if norm_topk {
            order.iter().map(|&e| exps[e] / z).sum::<f32>()
        } else {
            1.0
        };
        or.fill(0.0);
        for e in order {
            let ex = &experts[e];
            let weight = exps[e] / z / norm;
            let g: Vec<f32> = (0..ex.ffn)
                .into_par_iter()
                .map(|r| dot(ex.gate, r, xr))
                .collect();
            let u: Vec<f32> = (0..ex.ffn)
                .into_par_iter()
                .map(|r| dot(ex.up, r, xr))
                .collect();
            let mut h = vec![0.0; ex.ffn];
            match act {
                GluAct::Silu => silu(&g, &mut h),
                GluAct::Gelu => gelu(&g, &mut h),
            }
            h.iter_mut().zip(&u).for_each(|(a, b)| *a *= b);
            let y: Vec<f32> = (0..d)
                .into_par_iter()
                .map(|r| dot(ex.down, r, &h))
                .collect();
            or.iter_mut().zip(&y).for_each(|(o, v)| *o += weight * v);
        }
    }
}

/// Runs a fused elementwise program over inputs of one length, a block of values at
/// a time so each instruction is a tight loop.
pub fn elementwise(inputs: &[&[f32]], code: &[Ew], out: &mut [f32]) {
    const BLOCK: usize = 256;
    let n_regs = inputs.len() + code.len();
    let mut regs = vec![[0f32; BLOCK]; n_regs];
    for start in (0..out.len()).step_by(BLOCK) {
        let len = BLOCK.min(out.len() - start);
        for (r, inp) in regs.iter_mut().zip(inputs) {
            r[..len].copy_from_slice(&inp[start..start + len]);
        }
        for (k, e) in code.iter().enumerate() {
            let dst = inputs.len() + k;
            let (done, rest) = regs.split_at_mut(dst);
            let d = &mut rest[0][..len];
            match *e {
                Ew::Add { a, b } => d
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, v)| *v = done[a][j] + done[b][j]),
                Ew::Mul { a, b } => d
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, v)| *v = done[a][j] * done[b][j]),
                Ew::Scale { a, factor } => d
                    .iter_mut()
                    .zip(&done[a][..len])
                    .for_each(|(v, x)| *v = x * factor),
                Ew::Silu { a } => silu(&done[a][..len], d),
                Ew::Gelu { a } => gelu(&done[a][..len], d),
                Ew::Softcap { a, cap } => softcap(&done[a][..len], cap, d),
            }
        }
        out[start..start + len].copy_from_slice(&regs[n_regs - 1][..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_by_exp_is_within_its_error_bound() {
        let mut worst = 0f64;
        for i in -400_000..=400_000 {
            let y = i as f32 * 5e-5;
            let err = (tanh_by_exp(y) as f64 - (y as f64).tanh()).abs();
            worst = worst.max(err);
        }
        assert!(worst <= 2.5e-7, "tanh_by_exp: max abs error {worst:e}");
        for y in [f32::INFINITY, 1e30, 89.0, -89.0, f32::NEG_INFINITY] {
            assert_eq!(tanh_by_exp(y), y.signum());
        }
        assert!(tanh_by_exp(f32::NAN).is_nan());
    }

    #[test]
    fn rope_layouts_agree_up_to_permutation() {
        // A head in `pairs` order equals the same head in `halves` order after the
        // converter's permutation (pair i = dims (i, i+half)).
        let hd = 8;
        let x: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.37).sin()).collect();
        let perm: Vec<usize> = (0..hd / 2).flat_map(|i| [i, i + hd / 2]).collect();
        let mut halves = x.clone();
        let mut pairs: Vec<f32> = perm.iter().map(|&p| x[p]).collect();
        let f = rope_inv_freqs(hd, 10000.0, RopeScaling::None, None);
        rope(&mut halves, hd, hd, &f, RopeLayout::Halves, 5);
        rope(&mut pairs, hd, hd, &f, RopeLayout::Pairs, 5);
        for (k, &p) in perm.iter().enumerate() {
            assert!((pairs[k] - halves[p]).abs() < 1e-6);
        }
    }

    #[test]
    fn attention_single_position_returns_v() {
        let s = AttnShape {
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 2,
            scale: 1.0,
            window: None,
            softcap: None,
            cache_rows: 1,
        };
        let q = [1.0, 0.0, 0.0, 1.0];
        let k = [0.5, 0.5];
        let v = [3.0, -1.0];
        let mut out = [0.0; 4];
        attention(&q, KvRows::F32(&k), KvRows::F32(&v), s, 0, &mut out);
        assert_eq!(out, [3.0, -1.0, 3.0, -1.0]);
    }

    #[test]
    fn attention_reads_a_ring_as_the_whole_cache() {
        // 20 positions of 2 KV heads × 3; a window of 5 over the last 3 query rows needs
        // keys 13.. only, which a ring of 8 rows (position j at row j % 8) still holds.
        let (kvw, n, ring) = (6, 20, 8);
        let val = |i: usize| ((i * 37 % 23) as f32 - 11.0) / 7.0;
        let k: Vec<f32> = (0..n * kvw).map(val).collect();
        let v: Vec<f32> = (0..n * kvw).map(|i| val(i + 5)).collect();
        let mut rk = vec![f32::NAN; ring * kvw];
        let mut rv = rk.clone();
        for j in n - ring..n {
            let r = j % ring;
            rk[r * kvw..][..kvw].copy_from_slice(&k[j * kvw..][..kvw]);
            rv[r * kvw..][..kvw].copy_from_slice(&v[j * kvw..][..kvw]);
        }
        let mut s = AttnShape {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 3,
            scale: 0.5,
            window: Some(5),
            softcap: None,
            cache_rows: n,
        };
        let q: Vec<f32> = (0..3 * 12).map(|i| val(i + 2)).collect();
        let mut want = vec![0.0; 36];
        attention(&q, KvRows::F32(&k), KvRows::F32(&v), s, n - 3, &mut want);
        s.cache_rows = ring;
        let mut got = vec![0.0; 36];
        attention(&q, KvRows::F32(&rk), KvRows::F32(&rv), s, n - 3, &mut got);
        assert_eq!(got, want);
    }
}
