//! Fallible buffers: sizes that come from flags, files or plans must give an error
//! saying how much they needed, never abort the process.

/// A buffer too large to allocate (or whose size overflows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("needs {bytes} bytes")]
pub struct TooBig {
    /// What the buffer would take, saturated at `u128::MAX`.
    pub bytes: u128,
}

/// The elements of a buffer of `dims` whose elements take `size` bytes, with checked
/// arithmetic.
fn elements(dims: &[usize], size: usize) -> Result<usize, TooBig> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|n| {
            n.checked_mul(size)
                .is_some_and(|b| b <= isize::MAX as usize)
        })
        .ok_or(TooBig {
            bytes: dims
                .iter()
                .fold(size as u128, |a, &d| a.saturating_mul(d as u128)),
        })
}

/// Zeros for a buffer of `dims` (their product), reserved fallibly: f32 values, or the
/// bits of a narrower type (an f16 KV cache's `u16`).
pub fn try_zeros<T: Copy + Default>(dims: &[usize]) -> Result<Vec<T>, TooBig> {
    let mut v = Vec::new();
    try_resize(&mut v, dims)?;
    Ok(v)
}

/// Resizes `v` to the product of `dims` (new values zero), reserving fallibly.
pub fn try_resize<T: Copy + Default>(v: &mut Vec<T>, dims: &[usize]) -> Result<(), TooBig> {
    let size = std::mem::size_of::<T>();
    let n = elements(dims, size)?;
    v.try_reserve_exact(n.saturating_sub(v.len()))
        .map_err(|_| TooBig {
            bytes: n as u128 * size as u128,
        })?;
    v.resize(n, T::default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_overflow_or_cannot_be_had_are_errors() {
        assert_eq!(try_zeros::<f32>(&[3, 2]).unwrap(), vec![0.0; 6]);
        let e = try_zeros::<f32>(&[usize::MAX, 2]).unwrap_err();
        assert_eq!(e.bytes, usize::MAX as u128 * 8);
        assert!(try_zeros::<f32>(&[1 << 40, 1 << 20]).is_err());
        // Element size counts: u16 buffers take half the bytes.
        assert_eq!(try_zeros::<u16>(&[3, 2]).unwrap(), vec![0u16; 6]);
        let e = try_zeros::<u16>(&[usize::MAX, 2]).unwrap_err();
        assert_eq!(e.bytes, usize::MAX as u128 * 4);
        let mut v = vec![1.0];
        try_resize(&mut v, &[3]).unwrap();
        assert_eq!(v, [1.0, 0.0, 0.0]);
        assert!(try_resize(&mut v, &[usize::MAX]).is_err());
    }
}
