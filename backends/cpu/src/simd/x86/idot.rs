//! 8-bit activations × weight blocks: integer dots, as llama.cpp's AVX2 path.
//!
//! `maddubs` multiplies unsigned weight bytes by signed activation bytes and adds
//! pairs into i16 (never saturating here: at most 2·128·127); `madd` widens to i32
//! (by ones, or by the sub-block scale). Offsets and minimums meet the activation
//! block sums instead of each value: `Σ (q − o)·x = Σ q·x − o·Σx`. A weight block is
//! unpacked once per tile and used for up to 4 activation rows.
//!
//! The 32-element types go 8 blocks at a time: the 8 integer block sums are reduced
//! into one vector (a lane per block) so that the float work (scales, offsets) is one
//! vector op per 8 blocks instead of several per block.

// Index loops over the const tile sizes: LLVM unrolls them completely, so tile
// arrays live in registers (iterator adaptors like skip were left as loops, with the
// arrays on the stack).
#![allow(clippy::needless_range_loop)]

use super::{bit4_of_32, f16_at, hsum, kquant_scales_mins, nibbles32, q6k_values};
use crate::simd::{Acts, ChunkFn, Needs, OutPtr};
use std::arch::x86_64::*;
use weft_ir::DType;

/// Bytes ahead of the current block that decode tiles prefetch, every cache line of
/// what they read (weights stream from memory once per token; the hardware prefetcher
/// alone left the loads waiting). 1024 over 384 with every line: +17% SmolLM2 and +8%
/// Gemma 3 int8 decode on a 2-core EPYC.
pub(super) const PREFETCH: usize = 1024;

/// One activation row in 8-bit blocks.
#[derive(Clone, Copy)]
pub(super) struct XRow {
    /// The values.
    pub(super) q: *const i8,
    /// Block scales.
    pub(super) d: *const f32,
    /// Block sums `d·Σq` (32-element blocks).
    pub(super) s: *const f32,
    /// Sums of 16 values (256-element blocks).
    pub(super) bs: *const i16,
}

/// The kernel for `dtype`; `vnni`: AVX-512 VNNI is present (the 32-element types'
/// dots take `vpdpbusd`).
pub(super) fn kernel(dtype: DType, vnni: bool) -> Option<(ChunkFn, Needs)> {
    fn k<T: IDot>() -> Option<(ChunkFn, Needs)> {
        Some((chunk::<T> as ChunkFn, Needs::Q8K))
    }
    let l = |plain: ChunkFn, with_vnni: ChunkFn| match vnni {
        true => Some((with_vnni, Needs::Q8)),
        false => Some((plain, Needs::Q8)),
    };
    macro_rules! l {
        ($T:ty) => {
            l(chunk_legacy::<$T>, chunk_legacy_vnni::<$T>)
        };
    }
    match dtype {
        DType::Q8_0 => l!(Q8_0),
        DType::Q4_0 => l!(Q4_0),
        DType::Q4_1 => l!(Q4_1),
        DType::Q5_0 => l!(Q5_0),
        DType::Q5_1 => l!(Q5_1),
        DType::Q4_K => k::<Q4_K>(),
        DType::Q5_K => k::<Q5_K>(),
        DType::Q6_K => k::<Q6_K>(),
        _ => None,
    }
}

/// Every row's pointers, its lengths checked against m and k once.
pub(super) fn rows(x: &Acts<'_>, needs: Needs, block: usize) -> XRows {
    let (m, k) = (x.m, x.k);
    let nb = k / block;
    match needs {
        Needs::Q8 => {
            let q = x.q8.expect("idot: activations quantised per 32");
            assert!(q.m == m && q.k == k && q.q.len() == m * k && q.d.len() == m * nb);
            assert!(q.s.len() == m * nb && block == 32);
            XRows::new(m, |i| {
                let (v, d, s) = q.row(i);
                XRow {
                    q: v.as_ptr(),
                    d: d.as_ptr(),
                    s: s.as_ptr(),
                    bs: std::ptr::null(),
                }
            })
        }
        Needs::Q8K => {
            let q = x.q8k.expect("idot: activations quantised per 256");
            assert!(q.m == m && q.k == k && q.d.len() == m * nb && q.bsums.len() == m * k / 16);
            assert!(q.q.len() == m * k && block == 256);
            XRows::new(m, |i| {
                let (v, d, bs) = q.row(i);
                XRow {
                    q: v.as_ptr(),
                    d: d.as_ptr(),
                    s: std::ptr::null(),
                    bs: bs.as_ptr(),
                }
            })
        }
        Needs::F32 => unreachable!("integer kernels read 8-bit rows"),
    }
}

/// Row pointers: on the stack for a few rows, so that a decode step allocates nothing
/// (the large variant is the point).
#[allow(clippy::large_enum_variant)]
pub(super) enum XRows {
    Few([XRow; 8], usize),
    Many(Vec<XRow>),
}

impl XRows {
    fn new(m: usize, row: impl Fn(usize) -> XRow) -> XRows {
        match m <= 8 {
            true => {
                let none = XRow {
                    q: std::ptr::null(),
                    d: std::ptr::null(),
                    s: std::ptr::null(),
                    bs: std::ptr::null(),
                };
                let mut few = [none; 8];
                few.iter_mut().zip(0..m).for_each(|(r, i)| *r = row(i));
                XRows::Few(few, m)
            }
            false => XRows::Many((0..m).map(row).collect()),
        }
    }
}

impl std::ops::Deref for XRows {
    type Target = [XRow];
    fn deref(&self) -> &[XRow] {
        match self {
            XRows::Few(rows, m) => &rows[..*m],
            XRows::Many(rows) => rows,
        }
    }
}

/// The task's tiles `(i, j, r, c)`: activation rows 4 at a time (each unpacked
/// weight block feeds 4 rows; 8 where `tall`), or with one row left (decode) two
/// weight rows side by side. Activation groups are the outer loop, so the task's
/// weight rows stay in cache while the activations stream past once. An iterator, not
/// a closure-taking loop, so a kernel's body stays in its entry function and takes its
/// target features.
#[inline(always)]
fn tiles(m: usize, n: usize, tall: bool) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        if i >= m || n == 0 {
            return None;
        }
        let r = if tall && m - i >= 8 {
            8
        } else {
            (m - i).min(4)
        };
        let c = if r == 1 && n - j >= 2 { 2 } else { 1 };
        let tile = (i, j, r, c);
        j += c;
        if j >= n {
            (i, j) = (i + r, 0);
        }
        Some(tile)
    })
}

struct Tile<'a> {
    w: &'a [u8],
    rb: usize,
    x: &'a [XRow],
    nb: usize,
    out: OutPtr<'a>,
    i: usize,
    j: usize,
}

impl Tile<'_> {
    /// The tile's activation rows as an array.
    #[inline(always)]
    fn xrows<const R: usize>(&self) -> [XRow; R] {
        let mut x = [self.x[0]; R];
        x.copy_from_slice(&self.x[..R]);
        x
    }

    /// Block `b`'s address in each weight row (prefetching ahead for decode tiles).
    #[inline(always)]
    unsafe fn blocks<const R: usize, const C: usize>(
        &self,
        b: usize,
        bytes: usize,
        span: usize,
    ) -> [*const u8; C] {
        let w = self.w.as_ptr();
        let mut wb = [w; C];
        for c in 0..C {
            wb[c] = w.add(c * self.rb + b * bytes);
            if R == 1 {
                // Every cache line of the bytes this call reads, PREFETCH ahead.
                let mut off = 0;
                while off < span {
                    _mm_prefetch::<_MM_HINT_T0>(wb[c].wrapping_add(PREFETCH + off) as *const i8);
                    off += 64;
                }
            }
        }
        wb
    }

    #[inline(always)]
    fn store<const R: usize, const C: usize>(&self, acc: &[[[__m256; 2]; R]; C]) {
        for c in 0..C {
            for r in 0..R {
                // SAFETY: plain AVX arithmetic; the features are the caller's.
                let s = unsafe { hsum(_mm256_add_ps(acc[c][r][0], acc[c][r][1])) };
                self.out.set(self.i + r, self.j + c, s);
            }
        }
    }
}

/// Dispatches a tile shape to its monomorph.
macro_rules! run_tile {
    ($t:expr, $f:ident, $T:ty, $r:expr, $c:expr) => {
        match ($r, $c) {
            (1, 2) => $t.$f::<$T, 1, 2>(),
            (1, _) => $t.$f::<$T, 1, 1>(),
            (2, _) => $t.$f::<$T, 2, 1>(),
            (3, _) => $t.$f::<$T, 3, 1>(),
            (4, _) => $t.$f::<$T, 4, 1>(),
            _ => $t.$f::<$T, 8, 1>(),
        }
    };
}

// ---------------------------------------------------------------------------------
// The 32-element types.

/// A 32-element weight type.
pub(super) trait Legacy {
    /// Dots by `vpdpbusd` (AVX-512 VNNI): [`Vnni`]'s form of a type.
    const VNNI: bool = false;
    const BYTES: usize;
    /// `Some(o)`: value = d·(q − o); `None`: value = d·q + m (m the f16 after d).
    const OFFSET: Option<f32>;
    /// Values are signed bytes (Q8_0), else 0..=31.
    const SIGNED: bool = false;
    /// Values have a fifth bit (Q5_0, Q5_1).
    const FIFTH: bool = false;
    /// The block's 32 values, in element order.
    unsafe fn values(b: *const u8) -> __m256i;
}

/// Type `T` whose block dots take `vpdpbusd` (one instruction for maddubs + madd, so
/// no i16 pair sums either).
pub(super) struct Vnni<T>(std::marker::PhantomData<T>);

impl<T: Legacy> Legacy for Vnni<T> {
    const VNNI: bool = true;
    const BYTES: usize = T::BYTES;
    const OFFSET: Option<f32> = T::OFFSET;
    const SIGNED: bool = T::SIGNED;
    const FIFTH: bool = T::FIFTH;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> __m256i {
        T::values(b)
    }
}

/// One task of a 32-element type.
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn chunk_legacy<T: Legacy>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    legacy_task::<T>(w, rb, x, out)
}

/// [`chunk_legacy`] with AVX-512 VNNI's dots.
///
/// # Safety
/// AVX2, FMA, F16C, AVX-512 VNNI and VL must be present.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn chunk_legacy_vnni<T: Legacy>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    legacy_task::<Vnni<T>>(w, rb, x, out)
}

/// A task's body, inlined into each entry point so that it takes their features.
#[inline(always)]
pub(super) unsafe fn legacy_task<T: Legacy>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    let (m, k, n) = (x.m, x.k, out.cols());
    let nb = k / 32;
    assert!(out.rows() == m && w.len() == n * rb && nb * T::BYTES <= rb && k % 32 == 0);
    let xr = rows(x, Needs::Q8, 32);
    // 8-row tiles: each row runs its own reduction, so few registers stay live.
    for (i, j, r, c) in tiles(m, n, true) {
        let t = Tile {
            w: &w[j * rb..(j + c) * rb],
            rb,
            x: &xr[i..i + r],
            nb,
            out,
            i,
            j,
        };
        // SAFETY: c weight rows of nb whole blocks and r activation rows of nb blocks
        // (checked above); the features are present (this function's).
        unsafe { run_tile!(t, run_legacy, T, r, c) }
    }
}

/// The products of one weight block (`u` its values, `ua` their absolute values
/// for signed types) with 32 activation values, as 8 × i32 partial sums.
#[inline(always)]
unsafe fn legacy_dot<T: Legacy>(u: __m256i, ua: __m256i, q: *const i8) -> __m256i {
    let x = _mm256_loadu_si256(q as *const __m256i);
    // Signed × signed: |w| times x with w's sign (both instructions want one side
    // unsigned).
    let (u, x) = match T::SIGNED {
        true => (ua, _mm256_sign_epi8(x, u)),
        false => (u, x),
    };
    match T::VNNI {
        true => _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x),
        false => _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)),
    }
}

/// The scales `d` of 8 consecutive blocks, and their `−o·d` or minimums.
#[inline(always)]
unsafe fn legacy_scales8<T: Legacy>(b: *const u8) -> (__m256, __m256) {
    let s = T::BYTES as i32;
    let at = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
    // Each lane: the block's first 4 bytes (d, then m where the type has one).
    let g = _mm256_i32gather_epi32::<1>(b as *const i32, at);
    let halves = |pick: i64| {
        let v = _mm256_shuffle_epi8(g, _mm256_set1_epi64x(pick));
        _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(
            v,
        )))
    };
    // Low (d) or high (m) halves of the 4 dwords of each 128-bit lane.
    let d = halves(0x0d0c_0908_0504_0100);
    let dm = match T::OFFSET {
        Some(o) => _mm256_mul_ps(d, _mm256_set1_ps(-o)),
        None => halves(0x0f0e_0b0a_0706_0302),
    };
    (d, dm)
}

/// Adds the block sums of two 8 × i32 partial-sum vectors pairwise: lanes
/// (a01, a23, b01, b23 | a45, a67, b45, b67).
#[inline(always)]
unsafe fn hadd(a: __m256i, b: __m256i) -> __m256i {
    _mm256_hadd_epi32(a, b)
}

impl Tile<'_> {
    #[inline(always)]
    unsafe fn run_legacy<T: Legacy, const R: usize, const C: usize>(&self) {
        let x = self.xrows::<R>();
        let mut acc = [[[_mm256_setzero_ps(); 2]; R]; C];
        let groups = self.nb / 8;
        for g in 0..groups {
            self.group8::<T, R, C>(&x, &mut acc, g);
        }
        for b in 8 * groups..self.nb {
            self.block1::<T, R, C>(&x, &mut acc, b);
        }
        self.store(&acc);
    }

    /// Blocks `8g..8g + 8`: integer sums reduced to one vector (lane = block), then
    /// one FMA with the 8 scale products and one with the 8 offsets or minimums.
    /// Each weight row's 8 blocks are unpacked once (into registers, or L1 when the
    /// tile is tall) and each activation row then runs its own reduction, which keeps
    /// few registers live.
    #[inline(always)]
    unsafe fn group8<T: Legacy, const R: usize, const C: usize>(
        &self,
        x: &[XRow; R],
        acc: &mut [[[__m256; 2]; R]; C],
        g: usize,
    ) {
        let zero = _mm256_setzero_si256();
        let wg = self.blocks::<R, C>(8 * g, T::BYTES, 8 * T::BYTES);
        for c in 0..C {
            // The gather's latency overlaps the integer work below.
            let (d, dm) = legacy_scales8::<T>(wg[c]);
            let mut u = [zero; 8];
            let mut ua = [zero; 8];
            for i in 0..8 {
                u[i] = T::values(wg[c].add(i * T::BYTES));
                if T::SIGNED {
                    ua[i] = _mm256_sign_epi8(u[i], u[i]);
                }
            }
            for r in 0..R {
                let q = x[r].q.add(256 * g);
                let mut h = [zero; 4];
                for i in 0..4 {
                    let s0 = legacy_dot::<T>(u[2 * i], ua[2 * i], q.add(64 * i));
                    let s1 = legacy_dot::<T>(u[2 * i + 1], ua[2 * i + 1], q.add(64 * i + 32));
                    h[i] = hadd(s0, s1);
                }
                let (q0, q1) = (hadd(h[0], h[1]), hadd(h[2], h[3]));
                let sums = _mm256_add_epi32(
                    _mm256_permute2x128_si256::<0x20>(q0, q1),
                    _mm256_permute2x128_si256::<0x31>(q0, q1),
                );
                let dx = _mm256_loadu_ps(x[r].d.add(8 * g));
                let sx = _mm256_loadu_ps(x[r].s.add(8 * g));
                let a =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(d, dx), acc[c][r][0]);
                acc[c][r][0] = _mm256_fmadd_ps(dm, sx, a);
            }
        }
    }

    /// One block (the rows' last `nb % 8`): its sum over all 8 lanes, so the scale
    /// terms go in as an eighth per lane (exact: a power of two).
    #[inline(always)]
    unsafe fn block1<T: Legacy, const R: usize, const C: usize>(
        &self,
        x: &[XRow; R],
        acc: &mut [[[__m256; 2]; R]; C],
        b: usize,
    ) {
        let wb = self.blocks::<R, C>(b, T::BYTES, T::BYTES);
        for c in 0..C {
            let u = T::values(wb[c]);
            let ua = if T::SIGNED { _mm256_sign_epi8(u, u) } else { u };
            let d = f16_at(wb[c]);
            let dm = match T::OFFSET {
                Some(o) => -o * d,
                None => f16_at(wb[c].add(2)),
            };
            for r in 0..R {
                let s = legacy_dot::<T>(u, ua, x[r].q.add(32 * b));
                let dx = _mm256_broadcast_ss(&*x[r].d.add(b));
                let sx = _mm256_broadcast_ss(&*x[r].s.add(b));
                let a = &mut acc[c][r][1];
                *a = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(s),
                    _mm256_mul_ps(_mm256_set1_ps(d), dx),
                    *a,
                );
                *a = _mm256_fmadd_ps(_mm256_set1_ps(0.125 * dm), sx, *a);
            }
        }
    }
}

#[allow(non_camel_case_types)]
pub(super) struct Q8_0;
impl Legacy for Q8_0 {
    const BYTES: usize = 34;
    const OFFSET: Option<f32> = Some(0.0);
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> __m256i {
        _mm256_loadu_si256(b.add(2) as *const __m256i)
    }
}

/// The 4- and 5-bit 32-element types: (fifth bits at, nibbles at, offset).
macro_rules! legacy {
    ($name:ident, $bytes:expr, $qh:expr, $qs:expr, $offset:expr) => {
        #[allow(non_camel_case_types)]
        pub(super) struct $name;
        impl Legacy for $name {
            const BYTES: usize = $bytes;
            const OFFSET: Option<f32> = $offset;
            const FIFTH: bool = $qh.is_some();
            #[inline(always)]
            unsafe fn values(b: *const u8) -> __m256i {
                let q = nibbles32(b.add($qs));
                match $qh {
                    Some(at) => _mm256_or_si256(q, bit4_of_32(b.add(at))),
                    None => q,
                }
            }
        }
    };
}

legacy!(Q4_0, 18, None::<usize>, 2, Some(8.0));
legacy!(Q4_1, 20, None::<usize>, 4, None);
legacy!(Q5_0, 22, Some(2), 6, Some(16.0));
legacy!(Q5_1, 24, Some(4), 8, None);

// ---------------------------------------------------------------------------------
// The k-quants: 256-element blocks, per-sub-block scales.

/// A k-quant dotted with 8-bit activation blocks of 256.
trait IDot {
    const BLOCK: usize = 256;
    const BYTES: usize;
    /// Unpacked parts per block (32 or 64 values each).
    const PARTS: usize;
    /// The block's scales, decoded once per tile.
    type H: Copy;
    /// One unpacked part.
    type U: Copy;
    unsafe fn header(b: *const u8) -> Self::H;
    unsafe fn unpack(b: *const u8, h: &Self::H, part: usize) -> Self::U;
    /// `sumi` plus the part's integer products with the block's values at `q`.
    unsafe fn part(u: &Self::U, q: *const i8, part: usize, sumi: __m256i) -> __m256i;
    /// `acc` plus the block's value, from `sumi` and the activation block `b`.
    unsafe fn finish(h: &Self::H, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256;
}

/// One task of a k-quant.
///
/// # Safety
/// AVX2, FMA and F16C must be present.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn chunk<T: IDot>(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    let (m, k, n) = (x.m, x.k, out.cols());
    let nb = k / T::BLOCK;
    assert!(out.rows() == m && w.len() == n * rb && nb * T::BYTES <= rb && k % T::BLOCK == 0);
    let xr = rows(x, Needs::Q8K, T::BLOCK);
    for (i, j, r, c) in tiles(m, n, false) {
        let t = Tile {
            w: &w[j * rb..(j + c) * rb],
            rb,
            x: &xr[i..i + r],
            nb,
            out,
            i,
            j,
        };
        // SAFETY: c weight rows of whole blocks and r activation rows of nb blocks
        // each (checked above); the features are present (this function's).
        unsafe { run_tile!(t, run_k, T, r, c) }
    }
}

/// The stored-layout Q4_K kernel (the rows8 kernel's tail rows).
///
/// # Safety
/// AVX2, FMA and F16C must be present.
pub(super) unsafe fn chunk_q4k(w: &[u8], rb: usize, x: &Acts<'_>, out: OutPtr<'_>) {
    chunk::<Q4_K>(w, rb, x, out)
}

impl Tile<'_> {
    #[inline(always)]
    unsafe fn run_k<T: IDot, const R: usize, const C: usize>(&self) {
        let x = self.xrows::<R>();
        // One accumulator per output, blocks in order whatever the tile: a row's result
        // does not depend on the batch it came in.
        let mut acc = [[[_mm256_setzero_ps(); 2]; R]; C];
        for b in 0..self.nb {
            self.block_k::<T, R, C>(&x, &mut acc, b);
        }
        self.store(&acc);
    }

    /// Block `b`. A method, not a closure: closures do not inherit the caller's
    /// target features and might not inline.
    #[inline(always)]
    unsafe fn block_k<T: IDot, const R: usize, const C: usize>(
        &self,
        x: &[XRow; R],
        acc: &mut [[[__m256; 2]; R]; C],
        b: usize,
    ) {
        let wb = self.blocks::<R, C>(b, T::BYTES, T::BYTES);
        let mut h = [T::header(wb[0]); C];
        for c in 1..C {
            h[c] = T::header(wb[c]);
        }
        let mut sumi = [[_mm256_setzero_si256(); R]; C];
        for part in 0..T::PARTS {
            for c in 0..C {
                let u = T::unpack(wb[c], &h[c], part);
                for r in 0..R {
                    let q = x[r].q.add(b * T::BLOCK);
                    sumi[c][r] = T::part(&u, q, part, sumi[c][r]);
                }
            }
        }
        for c in 0..C {
            for r in 0..R {
                acc[c][r][0] = T::finish(&h[c], x[r], b, sumi[c][r], acc[c][r][0]);
            }
        }
    }
}

/// Q4_K / Q5_K block scales: (d, dmin, the 8 scales in both lanes as i16, the 8
/// minimums each twice as i16 — lined up with pairs of 16-sums).
#[derive(Clone, Copy)]
struct KHeader {
    d: f32,
    dmin: f32,
    scales: __m256i,
    mins: __m256i,
}

#[inline(always)]
unsafe fn k_header(b: *const u8) -> KHeader {
    let sm = _mm256_cvtepu8_epi16(kquant_scales_mins(b.add(4)));
    let scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm));
    let mins = _mm256_broadcastsi128_si256(_mm256_extracti128_si256::<1>(sm));
    // Lane pair j of each 128-bit half takes minimum j (low half) or 4 + j (high half).
    let dup = _mm256_setr_epi8(
        0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, //
        8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15,
    );
    KHeader {
        d: f16_at(b),
        dmin: f16_at(b.add(2)),
        scales,
        mins: _mm256_shuffle_epi8(mins, dup),
    }
}

/// Scale `j` of a header's scales in every i16 lane.
#[inline(always)]
unsafe fn k_scale(scales: __m256i, j: usize) -> __m256i {
    _mm256_shuffle_epi8(scales, _mm256_set1_epi16((0x0100 + 0x0202 * j) as i16))
}

/// `acc + (d·dx)·sumi − (dmin·dx)·Σ_j m_j·(sum of sub-block j)`.
#[inline(always)]
unsafe fn k_finish(h: &KHeader, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
    let dx = _mm256_broadcast_ss(&*x.d.add(b));
    let bs = _mm256_loadu_si256(x.bs.add(16 * b) as *const __m256i);
    let mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(h.mins, bs));
    let acc = _mm256_fmadd_ps(
        _mm256_cvtepi32_ps(sumi),
        _mm256_mul_ps(_mm256_set1_ps(h.d), dx),
        acc,
    );
    _mm256_fnmadd_ps(mins, _mm256_mul_ps(_mm256_set1_ps(h.dmin), dx), acc)
}

/// 64 values of a Q4_K / Q5_K block (low nibbles: sub-block 2c, high: 2c + 1) with
/// their scales.
#[derive(Clone, Copy)]
struct KPart {
    lo: __m256i,
    hi: __m256i,
    s_lo: __m256i,
    s_hi: __m256i,
}

#[inline(always)]
unsafe fn k_part(u: &KPart, q: *const i8, c: usize, sumi: __m256i) -> __m256i {
    let q = q.add(64 * c);
    let p_lo = _mm256_maddubs_epi16(u.lo, _mm256_loadu_si256(q as *const __m256i));
    let p_hi = _mm256_maddubs_epi16(u.hi, _mm256_loadu_si256(q.add(32) as *const __m256i));
    let p = _mm256_add_epi32(
        _mm256_madd_epi16(p_lo, u.s_lo),
        _mm256_madd_epi16(p_hi, u.s_hi),
    );
    _mm256_add_epi32(sumi, p)
}

#[allow(non_camel_case_types)]
struct Q4_K;
impl IDot for Q4_K {
    const BYTES: usize = 144;
    const PARTS: usize = 4;
    type H = KHeader;
    type U = KPart;
    #[inline(always)]
    unsafe fn header(b: *const u8) -> KHeader {
        k_header(b)
    }
    #[inline(always)]
    unsafe fn unpack(b: *const u8, h: &KHeader, c: usize) -> KPart {
        let q = _mm256_loadu_si256(b.add(16 + 32 * c) as *const __m256i);
        let m4 = _mm256_set1_epi8(0x0F);
        KPart {
            lo: _mm256_and_si256(q, m4),
            hi: _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
            s_lo: k_scale(h.scales, 2 * c),
            s_hi: k_scale(h.scales, 2 * c + 1),
        }
    }
    #[inline(always)]
    unsafe fn part(u: &KPart, q: *const i8, c: usize, sumi: __m256i) -> __m256i {
        k_part(u, q, c, sumi)
    }
    #[inline(always)]
    unsafe fn finish(h: &KHeader, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
        k_finish(h, x, b, sumi, acc)
    }
}

#[allow(non_camel_case_types)]
struct Q5_K;
impl IDot for Q5_K {
    const BYTES: usize = 176;
    const PARTS: usize = 4;
    type H = KHeader;
    type U = KPart;
    #[inline(always)]
    unsafe fn header(b: *const u8) -> KHeader {
        k_header(b)
    }
    #[inline(always)]
    unsafe fn unpack(b: *const u8, h: &KHeader, c: usize) -> KPart {
        let q = _mm256_loadu_si256(b.add(48 + 32 * c) as *const __m256i);
        let qh = _mm256_loadu_si256(b.add(16) as *const __m256i);
        let m4 = _mm256_set1_epi8(0x0F);
        // Fifth bits: bit 2c (low nibbles) and 2c + 1 (high) of qh byte l, to 0x10.
        let fifth = |bit: usize| {
            let bit = _mm256_set1_epi8((1u8 << bit) as i8);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
            _mm256_and_si256(set, _mm256_set1_epi8(0x10))
        };
        KPart {
            lo: _mm256_or_si256(_mm256_and_si256(q, m4), fifth(2 * c)),
            hi: _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
                fifth(2 * c + 1),
            ),
            s_lo: k_scale(h.scales, 2 * c),
            s_hi: k_scale(h.scales, 2 * c + 1),
        }
    }
    #[inline(always)]
    unsafe fn part(u: &KPart, q: *const i8, c: usize, sumi: __m256i) -> __m256i {
        k_part(u, q, c, sumi)
    }
    #[inline(always)]
    unsafe fn finish(h: &KHeader, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
        k_finish(h, x, b, sumi, acc)
    }
}

/// Q6_K block scales: d, the 16 scales as i16 (for the −32 offset against the
/// 16-sums), and scales 0..8 / 8..16 in both 128-bit lanes (for the parts).
#[derive(Clone, Copy)]
struct Q6Header {
    d: f32,
    sc16: __m256i,
    halves: [__m256i; 2],
}

#[allow(non_camel_case_types)]
struct Q6_K;
impl IDot for Q6_K {
    const BYTES: usize = 210;
    /// (half n, 32-value group s) = (part / 4, part % 4).
    const PARTS: usize = 8;
    type H = Q6Header;
    type U = (__m256i, __m256i);
    #[inline(always)]
    unsafe fn header(b: *const u8) -> Q6Header {
        let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(192) as *const __m128i));
        Q6Header {
            d: f16_at(b.add(208)),
            sc16,
            halves: [
                _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16)),
                _mm256_broadcastsi128_si256(_mm256_extracti128_si256::<1>(sc16)),
            ],
        }
    }
    #[inline(always)]
    unsafe fn unpack(b: *const u8, h: &Q6Header, part: usize) -> Self::U {
        let (n, s) = (part / 4, part % 4);
        // Values 0..16 take scale 8n + 2s, 16..32 scale 8n + 2s + 1: i16 lanes 2s and
        // 2s + 1 of the half's scales, one per 128-bit lane.
        let pick = _mm256_set_m128i(
            _mm_set1_epi16((0x0302 + 0x0404 * s) as i16),
            _mm_set1_epi16((0x0100 + 0x0404 * s) as i16),
        );
        (q6k_values(b, part), _mm256_shuffle_epi8(h.halves[n], pick))
    }
    #[inline(always)]
    unsafe fn part(u: &Self::U, q: *const i8, part: usize, sumi: __m256i) -> __m256i {
        let p = _mm256_maddubs_epi16(u.0, _mm256_loadu_si256(q.add(32 * part) as *const __m256i));
        _mm256_add_epi32(sumi, _mm256_madd_epi16(p, u.1))
    }
    #[inline(always)]
    unsafe fn finish(h: &Q6Header, x: XRow, b: usize, sumi: __m256i, acc: __m256) -> __m256 {
        // Values are q − 32: take 32·Σ sc_j·(sum of 16-group j) off in integers.
        let bs = _mm256_loadu_si256(x.bs.add(16 * b) as *const __m256i);
        let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(h.sc16, bs));
        let dx = _mm256_broadcast_ss(&*x.d.add(b));
        let s = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, off));
        _mm256_fmadd_ps(s, _mm256_mul_ps(_mm256_set1_ps(h.d), dx), acc)
    }
}
