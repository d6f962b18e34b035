//! Weight layouts chosen at lowering: rows interleaved eight at a time, so that one
//! vector holds the same four values of eight rows (the 32-element types and Q4_K).
//!
//! The integer kernels for the stored layout dot one weight row with one activation
//! block into 8 lanes, then must fold those lanes to one sum per block before the
//! block's scale applies: on AVX2 that fold (a tree of `phaddd`) costs as much as the
//! products. Interleaved, lane r of every vector belongs to weight row r: an
//! activation's four values are broadcast, `maddubs` + `madd` leave each row's partial
//! sum in its own lane, and the block's eight scales are one vector. No fold at all,
//! and eight outputs are stored at once.
//!
//! Layout ("rows8"). A group of 8 consecutive rows is stored block after block
//! ([`group_bytes`] a group). For the 32-element types a packed block b takes the
//! bytes of the 8 stored ones (so a group, `8·rb`, those of its rows) and holds, for
//! rows r = 0..8:
//! - `d`: 8 f16, row r's scale;
//! - `m`: 8 f16, row r's minimum (Q4_1, Q5_1 only);
//! - `qh`: 8 u32, word G's bit 4r + i the fifth bit of row r's value 4G + i (Q5_0, Q5_1);
//! - values, by groups G of four: Q8_0 has 8 chunks of 32 bytes, chunk G's byte 4r + i
//!   row r's value 4G + i; the 4- and 5-bit types have 4 chunks, chunk c's byte
//!   4r + i row r's stored byte 4c + i, so its low nibbles are group c (values 4c + i)
//!   and its high nibbles group c + 4 (values 16 + 4c + i = 4(c + 4) + i).
//!
//! Q4_K's packed block ([`pack_q4k`]) holds its 6-bit scales and minimums as bytes,
//! 32 more than the 8 stored blocks (+2.8%).
//!
//! Rows after the last whole group keep the stored layout. The matmul driver cuts
//! tasks at multiples of 8 rows, so a task's bytes are whole groups and, last, the
//! stored tail.
//!
//! Packing replaces the mapping rather than adding to it: as a weight is packed, the
//! file pages it was read from are released ([`WeightView::release`]), a MiB at a time.

use crate::matmul::Config;
use crate::simd;
use std::collections::HashMap;
use weft_ir::{DType, WeightView};

/// The stored block's parts of a 32-element type: (bytes, has a minimum, has fifth
/// bits, 8-bit values).
fn parts(dtype: DType) -> Option<(usize, bool, bool, bool)> {
    match dtype {
        DType::Q4_0 => Some((18, false, false, false)),
        DType::Q4_1 => Some((20, true, false, false)),
        DType::Q5_0 => Some((22, false, true, false)),
        DType::Q5_1 => Some((24, true, true, false)),
        DType::Q8_0 => Some((34, false, false, true)),
        _ => None,
    }
}

/// Whether `dtype` is a 32-element type (rows8 layout the same size as the stored
/// one, rows readable back by [`stored_block`]).
pub fn packs(dtype: DType) -> bool {
    parts(dtype).is_some()
}

/// Q4_K's stored block, and the bytes its 8-row packed block takes beyond 8 of them
/// (the scales and minimums unpacked to bytes: 128 where 96 held them).
const Q4K_BYTES: usize = 144;
const Q4K_EXTRA: usize = 32;

/// Bytes of Q4_K's packed block of 8 rows (the kernel's block stride).
pub const Q4K_PACKED: usize = 8 * Q4K_BYTES + Q4K_EXTRA;

/// Bytes of an 8-row group of rows of `rb` bytes of `dtype` in the rows8 layout;
/// `None`: the type has none.
pub fn group_bytes(dtype: DType, rb: usize) -> Option<usize> {
    match dtype {
        DType::Q4_K => Some(Q4K_PACKED * (rb / Q4K_BYTES)),
        d => parts(d).map(|_| 8 * rb),
    }
}

/// `rows` stored rows of `rb` bytes (`bytes`) in the rows8 layout; `None` for other
/// types, rows that are not whole blocks, or when the memory is not there. `done`
/// hears each range of `bytes` as it is finished with (every group of about 1 MiB),
/// so a caller can drop those pages while the copy grows: the two never both stand
/// whole in memory.
pub fn pack_rows8(
    dtype: DType,
    bytes: &[u8],
    rows: usize,
    rb: usize,
    mut done: impl FnMut(std::ops::Range<usize>),
) -> Option<Vec<u8>> {
    let bb = match dtype {
        DType::Q4_K => Q4K_BYTES,
        d => parts(d)?.0,
    };
    if rb == 0 || !rb.is_multiple_of(bb) || Some(bytes.len()) != rows.checked_mul(rb) {
        return None;
    }
    let gb = group_bytes(dtype, rb)?;
    let size = (rows / 8).checked_mul(gb)?.checked_add(rows % 8 * rb)?;
    let mut out = Vec::new();
    out.try_reserve_exact(size).ok()?;
    let mut finished = 0;
    for g in 0..rows / 8 {
        let group = &bytes[8 * g * rb..8 * (g + 1) * rb];
        out.resize((g + 1) * gb, 0);
        let packed = &mut out[g * gb..];
        for b in 0..rb / bb {
            let src = |r: usize| &group[r * rb + b * bb..r * rb + (b + 1) * bb];
            match dtype {
                DType::Q4_K => pack_q4k(src, &mut packed[b * Q4K_PACKED..(b + 1) * Q4K_PACKED]),
                _ => pack_legacy(dtype, src, &mut packed[8 * b * bb..8 * (b + 1) * bb]),
            }
        }
        let read = 8 * (g + 1) * rb;
        if read - finished >= 1 << 20 {
            done(finished..read);
            finished = read;
        }
    }
    out.extend_from_slice(&bytes[rows / 8 * 8 * rb..]);
    done(finished..bytes.len());
    Some(out)
}

/// One block of 8 rows of a 32-element type (`src(r)`: row r's stored block).
fn pack_legacy<'a>(dtype: DType, src: impl Fn(usize) -> &'a [u8], dst: &mut [u8]) {
    let Some((_, min, fifth, wide)) = parts(dtype) else {
        return;
    };
    // Where the values start in a stored block.
    let qs_at = 2 + 2 * min as usize + 4 * fifth as usize;
    for r in 0..8 {
        dst[2 * r..2 * r + 2].copy_from_slice(&src(r)[..2]);
    }
    let mut at = 16;
    if min {
        for r in 0..8 {
            dst[at + 2 * r..at + 2 * r + 2].copy_from_slice(&src(r)[2..4]);
        }
        at += 16;
    }
    if fifth {
        let qh = |r: usize| {
            let s = &src(r)[qs_at - 4..qs_at];
            u32::from_le_bytes([s[0], s[1], s[2], s[3]])
        };
        for gr in 0..8 {
            let mut word = 0u32;
            for r in 0..8 {
                word |= ((qh(r) >> (4 * gr)) & 0xF) << (4 * r);
            }
            dst[at + 4 * gr..at + 4 * gr + 4].copy_from_slice(&word.to_le_bytes());
        }
        at += 32;
    }
    // Chunks of four stored bytes per row: 8 for Q8_0, 4 for nibbles.
    let chunks = if wide { 8 } else { 4 };
    for c in 0..chunks {
        for r in 0..8 {
            let s = &src(r)[qs_at + 4 * c..qs_at + 4 * c + 4];
            dst[at + 32 * c + 4 * r..at + 32 * c + 4 * r + 4].copy_from_slice(s);
        }
    }
}

/// One Q4_K block of 8 rows: d ×8 (f16), dmin ×8, then sub-block j's 8 scales at
/// byte 32 + 8j and its 8 minimums at 96 + 8j (row r at + r), then for each pair c
/// of sub-blocks 8 chunks of 32 bytes: chunk k's byte 4r + i is row r's stored byte
/// `32c + 4k + i` (low nibble: sub-block 2c's value 4k + i; high: 2c + 1's).
fn pack_q4k<'a>(src: impl Fn(usize) -> &'a [u8], dst: &mut [u8]) {
    for r in 0..8 {
        let b = src(r);
        dst[2 * r..2 * r + 2].copy_from_slice(&b[..2]);
        dst[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&b[2..4]);
        let sb: &[u8; 12] = b[4..16].try_into().expect("12 scale bytes");
        for j in 0..8 {
            let (sc, m) = weft_quant::kquant_scale_min(sb, j);
            dst[32 + 8 * j + r] = sc;
            dst[96 + 8 * j + r] = m;
        }
        for c in 0..4 {
            for k in 0..8 {
                let at = 160 + 256 * c + 32 * k + 4 * r;
                dst[at..at + 4].copy_from_slice(&b[16 + 32 * c + 4 * k..][..4]);
            }
        }
    }
}

/// Block `b` of row `row` in its stored bytes, read back from a rows8 weight
/// (`packed`, stored rows of `rb` bytes, `rows` of them) into `out` (one stored
/// block): the inverse of the packing, so an embedding table that is also the output
/// head is gathered from the packed copy (its file pages stay released). The
/// 32-element types only ([`packs`]).
pub fn stored_block(
    dtype: DType,
    packed: &[u8],
    rows: usize,
    rb: usize,
    row: usize,
    b: usize,
    out: &mut [u8],
) {
    let Some((bb, min, fifth, wide)) = parts(dtype) else {
        panic!("{dtype} rows are not read back from rows8");
    };
    assert!(row < rows && out.len() == bb && (b + 1) * bb <= rb && packed.len() == rows * rb);
    if row >= rows / 8 * 8 {
        out.copy_from_slice(&packed[row * rb + b * bb..][..bb]);
        return;
    }
    let (g, r) = (row / 8, row % 8);
    let qs_at = 2 + 2 * min as usize + 4 * fifth as usize;
    let src = &packed[8 * g * rb + 8 * b * bb..][..8 * bb];
    out[..2].copy_from_slice(&src[2 * r..2 * r + 2]);
    let mut at = 16;
    if min {
        out[2..4].copy_from_slice(&src[at + 2 * r..at + 2 * r + 2]);
        at += 16;
    }
    if fifth {
        let mut qh = 0u32;
        for gr in 0..8 {
            let word = u32::from_le_bytes([0, 1, 2, 3].map(|i| src[at + 4 * gr + i]));
            qh |= ((word >> (4 * r)) & 0xF) << (4 * gr);
        }
        out[qs_at - 4..qs_at].copy_from_slice(&qh.to_le_bytes());
        at += 32;
    }
    let chunks = if wide { 8 } else { 4 };
    for c in 0..chunks {
        out[qs_at + 4 * c..qs_at + 4 * c + 4].copy_from_slice(&src[at + 32 * c + 4 * r..][..4]);
    }
}

/// The largest stored block [`stored_block`] reads back (Q8_0's).
pub const MAX_BLOCK: usize = 34;

/// The packed forms of a lowered plan's matmul weights, by the address and length
/// of the stored bytes they replace (a view of the same bytes finds them, e.g. a tied
/// embedding read as the output head).
#[derive(Default)]
pub struct Packed {
    weights: HashMap<(usize, usize), Vec<u8>>,
}

impl Packed {
    /// Packs every weight of `ws` that `cfg`'s kernels read faster packed, releasing
    /// the file pages each was read from as it goes.
    pub fn for_weights<'a>(cfg: &Config, ws: impl IntoIterator<Item = &'a WeightView>) -> Packed {
        let mut packed = Packed::default();
        for w in ws {
            let key = (w.bytes().as_ptr() as usize, w.bytes().len());
            if packed.weights.contains_key(&key)
                || w.rows() < 8
                || simd::packed_kernel(cfg.isa, cfg.activations, w.dtype).is_none()
            {
                continue;
            }
            let Some(rb) = w.dtype.row_bytes(w.cols()) else {
                continue;
            };
            if let Some(p) = pack_rows8(w.dtype, w.bytes(), w.rows(), rb, |r| w.release(r)) {
                packed.weights.insert(key, p);
            }
        }
        packed
    }

    /// `w`'s packed bytes, if it was packed (a group of 8 rows: [`group_bytes`]).
    pub fn get(&self, w: &WeightView) -> Option<&[u8]> {
        let key = (w.bytes().as_ptr() as usize, w.bytes().len());
        self.weights.get(&key).map(Vec::as_slice)
    }

    /// Weights packed, and their bytes.
    pub fn count(&self) -> (usize, usize) {
        let bytes = self.weights.values().map(Vec::len).sum();
        (self.weights.len(), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: [DType; 5] = [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
    ];

    /// Reading blocks back from the packed form gives the stored blocks.
    #[test]
    fn stored_rows_read_back() {
        for dtype in LEGACY {
            let bb = parts(dtype).unwrap().0;
            let (rows, rb) = (19, 3 * bb);
            let bytes: Vec<u8> = (0..rows * rb).map(|i| (i * 131 % 251) as u8).collect();
            let packed = pack_rows8(dtype, &bytes, rows, rb, |_| {}).unwrap();
            let mut block = vec![0; bb];
            for i in 0..rows {
                for b in 0..3 {
                    stored_block(dtype, &packed, rows, rb, i, b, &mut block);
                    assert_eq!(block, bytes[i * rb + b * bb..][..bb], "{dtype} row {i}");
                }
            }
        }
    }

    /// Every stored byte lands once: packing a permutation of byte values and
    /// reading each documented position back gives the stored block's byte.
    #[test]
    fn the_layout_is_as_documented() {
        for dtype in LEGACY {
            let (bb, min, fifth, wide) = parts(dtype).unwrap();
            let (nb, rows) = (3, 11);
            let rb = nb * bb;
            let bytes: Vec<u8> = (0..rows * rb).map(|i| (i * 131 % 251) as u8).collect();
            let out = pack_rows8(dtype, &bytes, rows, rb, |_| {}).unwrap();
            assert_eq!(
                out[8 * rb..],
                bytes[8 * rb..],
                "{dtype}: the tail is stored"
            );
            let stored = |r: usize, b: usize, i: usize| bytes[r * rb + b * bb + i];
            let qs_at = 2 + 2 * min as usize + 4 * fifth as usize;
            for b in 0..nb {
                let p = &out[8 * b * bb..8 * (b + 1) * bb];
                for r in 0..8 {
                    assert_eq!(p[2 * r..2 * r + 2], [stored(r, b, 0), stored(r, b, 1)]);
                    let mut at = 16;
                    if min {
                        assert_eq!(
                            p[at + 2 * r..at + 2 * r + 2],
                            [stored(r, b, 2), stored(r, b, 3)]
                        );
                        at += 16;
                    }
                    if fifth {
                        let qh = |r| {
                            u32::from_le_bytes([0, 1, 2, 3].map(|i| stored(r, b, qs_at - 4 + i)))
                        };
                        for v in 0..32 {
                            let word =
                                u32::from_le_bytes([0, 1, 2, 3].map(|i| p[at + 4 * (v / 4) + i]));
                            let bit = (word >> (4 * r + v % 4)) & 1;
                            assert_eq!(bit, (qh(r) >> v) & 1, "{dtype} fifth bit {v}");
                        }
                        at += 32;
                    }
                    let chunks = if wide { 8 } else { 4 };
                    for c in 0..chunks {
                        for i in 0..4 {
                            assert_eq!(p[at + 32 * c + 4 * r + i], stored(r, b, qs_at + 4 * c + i));
                        }
                    }
                }
            }
        }
    }
}
