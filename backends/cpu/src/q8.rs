//! Activation rows quantised to 8 bits for the integer dot kernels (`--activations
//! int8`), as llama.cpp's Q8_0 / Q8_1 / Q8_K: symmetric, one f32 scale per block,
//! values rounded to nearest (ties to even, as the AVX2 conversion does) in −127..=127.
//!
//! Each element moves by at most half its block's step `d = max|x| / 127`, so a dot
//! with a weight row is off by at most `Σ_blocks d/2 · Σ_block |w|` (plus float
//! rounding): the bound the kernel tests check.

/// Rows quantised per 32 elements, for the 32-element weight types. Per block: the
/// scale `d` and the block's sum `d·Σq` (which a weight block's offset or minimum
/// multiplies), each in its own array so that kernels load 8 blocks' worth at once.
#[derive(Default)]
pub struct Q8Rows {
    pub m: usize,
    pub k: usize,
    /// `m × k` values.
    pub q: Vec<i8>,
    /// `m × k/32` scales.
    pub d: Vec<f32>,
    /// `m × k/32` sums `d·Σq`.
    pub s: Vec<f32>,
}

impl Q8Rows {
    /// Sized for `m × k` (contents unspecified), reusing the buffers' capacity.
    pub fn resize(&mut self, m: usize, k: usize) {
        assert_eq!(k % 32, 0, "Q8 rows need k a multiple of 32, got {k}");
        (self.m, self.k) = (m, k);
        self.q.resize(m * k, 0);
        self.d.resize(m * k / 32, 0.0);
        self.s.resize(m * k / 32, 0.0);
    }

    /// Row `i`: values, block scales, block sums.
    pub fn row(&self, i: usize) -> (&[i8], &[f32], &[f32]) {
        let nb = self.k / 32;
        (
            &self.q[i * self.k..][..self.k],
            &self.d[i * nb..][..nb],
            &self.s[i * nb..][..nb],
        )
    }
}

/// Rows quantised per 256 elements with the sum of every 16 values, for the
/// k-quants (their sub-block minimums and offsets meet the sums, not each value).
#[derive(Default)]
pub struct Q8KRows {
    pub m: usize,
    pub k: usize,
    /// `m × k` values.
    pub q: Vec<i8>,
    /// `m × k/256` scales.
    pub d: Vec<f32>,
    /// `m × k/16` sums of 16 values.
    pub bsums: Vec<i16>,
}

impl Q8KRows {
    /// Sized for `m × k` (contents unspecified), reusing the buffers' capacity.
    pub fn resize(&mut self, m: usize, k: usize) {
        assert_eq!(k % 256, 0, "Q8_K rows need k a multiple of 256, got {k}");
        (self.m, self.k) = (m, k);
        self.q.resize(m * k, 0);
        self.d.resize(m * k / 256, 0.0);
        self.bsums.resize(m * k / 16, 0);
    }

    /// Row `i`: values, scales, sums.
    pub fn row(&self, i: usize) -> (&[i8], &[f32], &[i16]) {
        let k = self.k;
        (
            &self.q[i * k..][..k],
            &self.d[i * k / 256..][..k / 256],
            &self.bsums[i * k / 16..][..k / 16],
        )
    }
}

/// `(d, 127/max|x|)` of one block (both 0 for an all-zero block).
#[inline]
pub(crate) fn scales(amax: f32) -> (f32, f32) {
    if amax > 0.0 {
        (amax / 127.0, 127.0 / amax)
    } else {
        (0.0, 0.0)
    }
}

/// Quantises `x` into `q`, returning `Σq`.
fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let (d, id) = scales(amax);
    let mut sum = 0i32;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
        sum += *q as i32;
    }
    (d, sum)
}

/// One row per 32 elements (portable).
pub fn quantize_row_q8(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    assert!(x.len() == q.len() && x.len() == 32 * d.len() && d.len() == s.len());
    for (((x, q), d), s) in x.chunks_exact(32).zip(q.chunks_exact_mut(32)).zip(d).zip(s) {
        let (scale, sum) = quantize_block(x, q);
        (*d, *s) = (scale, scale * sum as f32);
    }
}

/// One row per 256 elements with sums per 16 (portable).
pub fn quantize_row_q8k(x: &[f32], q: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    assert!(x.len() == q.len() && x.len() == 256 * d.len() && x.len() == 16 * bsums.len());
    for (((x, q), d), bs) in x
        .chunks_exact(256)
        .zip(q.chunks_exact_mut(256))
        .zip(d)
        .zip(bsums.chunks_exact_mut(16))
    {
        *d = quantize_block(x, q).0;
        for (s, q) in bs.iter_mut().zip(q.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
    }
}
