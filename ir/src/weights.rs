//! Zero-copy views of weight tensors, shared between the loaders and the backends.

use crate::DType;
use std::sync::Arc;

/// Something that owns bytes for the lifetime of the model: a memory map, or a
/// buffer made at load (small decoded tensors, test data).
pub trait ByteSource: Send + Sync {
    fn bytes(&self) -> &[u8];
    /// A hint that `bytes()[offset..offset + len]` will not be read again soon: a
    /// memory map may drop those pages from memory (they read back the same if they
    /// are). By default nothing.
    fn release(&self, _offset: usize, _len: usize) {}
}

impl ByteSource for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// A tensor in its stored form: dtype, row-major shape (outermost first, so a
/// matmul weight is `[out, in]`), and a byte range of a shared source.
#[derive(Clone)]
pub struct WeightView {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    source: Arc<dyn ByteSource>,
    offset: usize,
    len: usize,
}

impl std::fmt::Debug for WeightView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {:?} ({} bytes)",
            self.name, self.dtype, self.shape, self.len
        )
    }
}

impl WeightView {
    /// A view of `source[offset..offset + len]`. The caller has checked that the
    /// range lies inside the source and that `len` matches dtype and shape.
    pub fn new(
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<usize>,
        source: Arc<dyn ByteSource>,
        offset: usize,
        len: usize,
    ) -> Self {
        debug_assert!(offset + len <= source.bytes().len());
        WeightView {
            name: name.into(),
            dtype,
            shape,
            source,
            offset,
            len,
        }
    }

    /// A view owning its bytes (tests, small tensors made at load).
    pub fn owned(name: impl Into<String>, dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        let len = bytes.len();
        WeightView::new(name, dtype, shape, Arc::new(bytes), 0, len)
    }

    /// A copy with rows and columns swapped, in the same type: for matrices stored
    /// `[in, out]` (HF Conv1D). Only element types (not blocks) can be transposed.
    pub fn transposed(&self) -> Option<WeightView> {
        let [r, c] = self.shape[..] else {
            return None;
        };
        if self.dtype.block_size() != 1 {
            return None;
        }
        let e = self.dtype.block_bytes();
        let src = self.bytes();
        let mut out = vec![0u8; src.len()];
        for i in 0..r {
            for j in 0..c {
                out[(j * r + i) * e..][..e].copy_from_slice(&src[(i * c + j) * e..][..e]);
            }
        }
        Some(WeightView::owned(
            self.name.clone(),
            self.dtype,
            vec![c, r],
            out,
        ))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.source.bytes()[self.offset..self.offset + self.len]
    }

    /// Hints that `bytes()[range]` will not be read again soon (a backend keeps its
    /// own copy in another layout): a mapped file drops the pages.
    pub fn release(&self, range: std::ops::Range<usize>) {
        if range.start <= range.end && range.end <= self.len {
            self.source.release(self.offset + range.start, range.len())
        }
    }

    /// Elements per row (the innermost dimension).
    pub fn cols(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }

    /// Number of rows (product of the outer dimensions).
    pub fn rows(&self) -> usize {
        self.shape[..self.shape.len().saturating_sub(1)]
            .iter()
            .product()
    }

    pub fn row_bytes(&self) -> usize {
        self.len / self.rows().max(1)
    }

    /// The stored bytes of row `i`.
    pub fn row(&self, i: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.bytes()[i * rb..(i + 1) * rb]
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether two views read the very same bytes (tied embeddings).
    pub fn same_bytes(&self, other: &WeightView) -> bool {
        std::ptr::eq(self.bytes().as_ptr(), other.bytes().as_ptr()) && self.len == other.len
    }
}

/// Anything that hands out weight views by tensor name.
pub trait WeightProvider {
    fn weight(&self, name: &str) -> Option<WeightView>;
}
