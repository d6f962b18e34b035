//! Two forwards, one truth: runs two implementations on the same tokens and
//! measures how far their logits are apart.

use crate::sampler::{argmax, top_gap};
use crate::{Forward, RuntimeError};

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
}

impl ParityReport {
    pub fn max_rel(&self) -> f32 {
        self.rel_diffs.iter().cloned().fold(0.0, f32::max)
    }

    pub fn tokens_agree(&self) -> bool {
        self.tokens_a == self.tokens_b
    }

    pub fn passed(&self) -> bool {
        self.tokens_agree() && self.max_rel() <= self.tolerance
    }
}

/// max |a−b| / max |a|.
pub fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = a
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    if a.len() != b.len() {
        return f32::INFINITY;
    }
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
    };
    let mut input = prompt.to_vec();
    for _ in 0..=steps {
        let la = a.forward(&input)?.to_vec();
        let lb = b.forward(&input)?;
        r.rel_diffs.push(rel_diff(&la, lb));
        let (ta, tb) = (argmax(&la), argmax(lb));
        r.tokens_a.push(ta);
        r.tokens_b.push(tb);
        r.gaps.push(top_gap(&la));
        input = vec![ta];
    }
    Ok(r)
}
