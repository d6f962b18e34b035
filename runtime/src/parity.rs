//! Two forwards, one truth: runs two implementations on the same tokens and
//! measures how far their logits are apart.

use crate::sampler::{argmax, top_gap};
use crate::{Forward, RuntimeError};
use weft_backend::first_non_finite;

/// The comparison of two forwards over a prompt and greedy steps.
#[derive(Clone, Debug)]
pub struct ParityReport {
    /// Per compared position (prompt end, then each step): max |Δlogit| / max |logit of a|.
    pub rel_diffs: Vec<f32>,
    /// Greedy tokens of each side (the sequence follows side a).
    pub tokens_a: Vec<u32>,
    pub tokens_b: Vec<u32>,
    /// Top-1/top-2 gap of side a at each step.
    pub gaps: Vec<f32>,
    pub tolerance: f32,
    /// The first compared position (0: the prompt's end) where either side's logits
    /// hold a NaN or an infinity: agreement in garbage is no agreement.
    pub non_finite: Option<usize>,
}

impl ParityReport {
    pub fn max_rel(&self) -> f32 {
        self.rel_diffs.iter().cloned().fold(0.0, f32::max)
    }

    pub fn tokens_agree(&self) -> bool {
        self.tokens_a == self.tokens_b
    }

    pub fn passed(&self) -> bool {
        self.non_finite.is_none() && self.tokens_agree() && self.max_rel() <= self.tolerance
    }
}

/// max |a−b| / max |a|; infinite when the lengths differ or a value is not finite
/// (`f32::max` would skip a NaN and report agreement).
pub fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || first_non_finite(a).or(first_non_finite(b)).is_some() {
        return f32::INFINITY;
    }
    let scale = a
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// Runs `prompt` and then `steps` greedy steps on both; side a's token feeds both.
pub fn compare(
    a: &mut dyn Forward,
    b: &mut dyn Forward,
    prompt: &[u32],
    steps: usize,
    tolerance: f32,
) -> Result<ParityReport, RuntimeError> {
    a.reset();
    b.reset();
    let mut r = ParityReport {
        rel_diffs: vec![],
        tokens_a: vec![],
        tokens_b: vec![],
        gaps: vec![],
        tolerance,
        non_finite: None,
    };
    let mut input = prompt.to_vec();
    for _ in 0..=steps {
        let la = a.forward(&input)?.to_vec();
        let lb = b.forward(&input)?;
        if first_non_finite(&la).or(first_non_finite(lb)).is_some() {
            r.non_finite.get_or_insert(r.rel_diffs.len());
        }
        r.rel_diffs.push(rel_diff(&la, lb));
        let (ta, tb) = (argmax(&la), argmax(lb));
        r.tokens_a.push(ta);
        r.tokens_b.push(tb);
        r.gaps.push(top_gap(&la));
        input = vec![ta];
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forward that returns fixed logits.
    struct Fixed(Vec<f32>, usize);

    impl Forward for Fixed {
        fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
            self.1 += tokens.len();
            Ok(&self.0)
        }
        fn reset(&mut self) {
            self.1 = 0;
        }
        fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError> {
            self.1 = pos.min(self.1);
            Ok(())
        }
        fn position(&self) -> usize {
            self.1
        }
    }

    #[test]
    fn nan_on_both_sides_fails() {
        let nan = vec![f32::NAN, 1.0, f32::NAN];
        let r = compare(
            &mut Fixed(nan.clone(), 0),
            &mut Fixed(nan, 0),
            &[1],
            2,
            1e-4,
        )
        .unwrap();
        assert!(r.tokens_agree());
        assert_eq!(r.non_finite, Some(0));
        assert!(r.max_rel().is_infinite());
        assert!(!r.passed());
        let ok = vec![0.5, 1.0, -1.0];
        let r = compare(&mut Fixed(ok.clone(), 0), &mut Fixed(ok, 0), &[1], 2, 1e-4).unwrap();
        assert!(r.passed());
    }
}
