//! Fallible buffers: sizes that come from flags, files or plans must give an error
//! saying how much they needed, never abort the process.

/// A buffer too large to allocate (or whose size overflows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("needs {bytes} bytes")]
pub struct TooBig {
    /// What the buffer would take, saturated at `u128::MAX`.
    pub bytes: u128,
}

/// The f32 elements of a buffer of `dims`, with checked arithmetic.
fn elements(dims: &[usize]) -> Result<usize, TooBig> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|n| n.checked_mul(4).is_some_and(|b| b <= isize::MAX as usize))
        .ok_or(TooBig {
            bytes: dims.iter().fold(4u128, |a, &d| a.saturating_mul(d as u128)),
        })
}

/// Zeros for a buffer of `dims` (their product), reserved fallibly.
pub fn try_zeros(dims: &[usize]) -> Result<Vec<f32>, TooBig> {
    let mut v = Vec::new();
    try_resize(&mut v, dims)?;
    Ok(v)
}

/// Resizes `v` to the product of `dims` (new values zero), reserving fallibly.
pub fn try_resize(v: &mut Vec<f32>, dims: &[usize]) -> Result<(), TooBig> {
    let n = elements(dims)?;
    v.try_reserve_exact(n.saturating_sub(v.len()))
        .map_err(|_| TooBig {
            bytes: n as u128 * 4,
        })?;
    v.resize(n, 0.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_overflow_or_cannot_be_had_are_errors() {
        assert_eq!(try_zeros(&[3, 2]).unwrap(), vec![0.0; 6]);
        let e = try_zeros(&[usize::MAX, 2]).unwrap_err();
        assert_eq!(e.bytes, usize::MAX as u128 * 8);
        assert!(try_zeros(&[1 << 40, 1 << 20]).is_err());
        let mut v = vec![1.0];
        try_resize(&mut v, &[3]).unwrap();
        assert_eq!(v, [1.0, 0.0, 0.0]);
        assert!(try_resize(&mut v, &[usize::MAX]).is_err());
    }
}
