//! Weight layouts chosen at lowering: the 32-element types' rows interleaved eight at
//! a time, so that one vector holds the same four values of eight rows.
//!
//! The integer kernels for the stored layout dot one weight row with one activation
//! block into 8 lanes, then must fold those lanes to one sum per block before the
//! block's scale applies: on AVX2 that fold (a tree of `phaddd`) costs as much as the
//! products. Interleaved, lane r of every vector belongs to weight row r: an
//! activation's four values are broadcast, `maddubs` + `madd` leave each row's partial
//! sum in its own lane, and the block's eight scales are one vector. No fold at all,
//! and eight outputs are stored at once.
//!
//! Layout ("rows8"). A group of 8 consecutive rows occupies the same bytes as those
//! rows did (`8·rb`), block after block; packed block b (8 × the stored block size)
//! holds, for rows r = 0..8:
//! - `d`: 8 f16, row r's scale;
//! - `m`: 8 f16, row r's minimum (Q4_1, Q5_1 only);
//! - `qh`: 8 u32, word G's bit 4r + i the fifth bit of row r's value 4G + i (Q5_0, Q5_1);
//! - values, by groups G of four: Q8_0 has 8 chunks of 32 bytes, chunk G's byte 4r + i
//!   row r's value 4G + i; the 4- and 5-bit types have 4 chunks, chunk c's byte
//!   4r + i row r's stored byte 4c + i, so its low nibbles are group c (values 4c + i)
//!   and its high nibbles group c + 4 (values 16 + 4c + i = 4(c + 4) + i).
//!
//! Rows after the last whole group keep the stored layout. Same size, same row
//! offsets at multiples of 8: the matmul driver cuts tasks at multiples of 8 rows, so
//! a task's bytes are whole groups and, last, the stored tail.
//!
//! Packing replaces the mapping rather than adding to it: as a weight is packed, the
//! file pages it was read from are released ([`WeightView::release`]), a MiB at a time.

use crate::matmul::Config;
use crate::simd;
use std::collections::HashMap;
use weft_ir::{DType, WeightView};

/// The stored block's parts: (bytes, has a minimum, has fifth bits, 8-bit values).
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

/// Whether `dtype` has the rows8 layout.
pub fn packs(dtype: DType) -> bool {
    parts(dtype).is_some()
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
    let (bb, min, fifth, wide) = parts(dtype)?;
    if rb == 0 || !rb.is_multiple_of(bb) || Some(bytes.len()) != rows.checked_mul(rb) {
        return None;
    }
    let nb = rb / bb;
    let mut out = Vec::new();
    out.try_reserve_exact(bytes.len()).ok()?;
    // Where the values start in a stored block.
    let qs_at = 2 + 2 * min as usize + 4 * fifth as usize;
    let mut finished = 0;
    for g in 0..rows / 8 {
        let group = &bytes[8 * g * rb..8 * (g + 1) * rb];
        out.resize(8 * (g + 1) * rb, 0);
        let packed = &mut out[8 * g * rb..];
        for b in 0..nb {
            let src = |r: usize| &group[r * rb + b * bb..r * rb + (b + 1) * bb];
            let dst = &mut packed[8 * b * bb..8 * (b + 1) * bb];
            let mut at = 0;
            for r in 0..8 {
                dst[2 * r..2 * r + 2].copy_from_slice(&src(r)[..2]);
            }
            at += 16;
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
        if out.len() - finished >= 1 << 20 {
            done(finished..out.len());
            finished = out.len();
        }
    }
    out.extend_from_slice(&bytes[out.len()..]);
    done(finished..out.len());
    Some(out)
}

/// The packed forms of a lowered plan's matmul weights, by the address and length
/// of the stored bytes they replace (a view of the same bytes finds them, e.g. a tied
/// embedding read as the output head).
#[derive(Default)]
pub struct Packed {
    weights: HashMap<(usize, usize), Vec<u8>>,
}

impl Packed {
    /// Packs every weight of `ws` that `cfg`'s kernels read faster packed, then
    /// releases the file pages each was read from.
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

    /// `w`'s packed bytes, if it was packed.
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

    /// Every stored byte lands once: packing a permutation of byte values and
    /// reading each documented position back gives the stored block's byte.
    #[test]
    fn the_layout_is_as_documented() {
        for dtype in [
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q8_0,
        ] {
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
