//! The one generic generation loop: prompt → prefill (one step for the whole
//! prompt) → sample → decode step → … until EOS or the token budget. It drives any
//! [`Forward`]: a session of the graph executor on a backend, or the curated decoder.

use crate::sampler::{Sampler, SamplerParams};
use crate::RuntimeError;
use std::time::Instant;
use weft_backend::{check_top_k, first_non_finite, pick, top_k, Pick, Top, MAX_TOP_K};

/// A model forward pass with its own KV cache.
pub trait Forward {
    /// Runs `tokens` at the next positions (all at once) and returns the logits of
    /// the last one.
    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError>;
    /// Runs `tokens` and picks the last position's largest logit (a greedy step); a
    /// model that can pick on its device reads back the choice, not the logits.
    fn forward_pick(&mut self, tokens: &[u32]) -> Result<Pick, RuntimeError> {
        Ok(pick(self.forward(tokens)?))
    }
    /// Runs `tokens` and returns the last position's `k` largest logits (`k` in
    /// `1..=MAX_TOP_K`, clamped to the vocabulary; [`weft_backend::top_k`]) or its first
    /// non-finite one (a sampled step); a model that can select on its device reads
    /// back the candidates, not the logits.
    fn forward_top(&mut self, tokens: &[u32], k: usize) -> Result<Top, RuntimeError> {
        check_top_k(k)?;
        Ok(top_k(self.forward(tokens)?, k))
    }
    /// Starts a new sequence at position 0.
    fn reset(&mut self);
    /// Rewinds to the first `pos` positions (a prefix of what ran).
    fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError>;
    /// Positions held in the KV cache.
    fn position(&self) -> usize;
    /// The longest prefix of at most `pos` positions that `truncate` can keep (a
    /// sliding-window layer's ring may hold too little for a far rewind: then 0).
    fn rewind_point(&self, pos: usize) -> usize {
        pos.min(self.position())
    }
    /// After a forward call of `tokens` whose logits were not finite: reruns it checking
    /// every step and names the first whose output was not finite, where the model can.
    fn locate_non_finite(&mut self, _tokens: &[u32]) -> Option<String> {
        None
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenParams {
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Token ids that end generation (EOS, end of turn).
    pub stop_ids: Vec<u32>,
    /// Keep going past a stop id, up to `max_tokens`.
    pub ignore_eos: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    Eos,
    /// The callback asked to stop.
    Caller,
}

/// The outcome of one generation.
#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    /// Leading prompt positions whose KV rows were reused, not prefilled.
    pub reused_tokens: usize,
    pub tokens: Vec<u32>,
    /// Logits at the last prompt position (the first generated token's distribution).
    pub prompt_logits: Vec<f32>,
    pub stop: StopReason,
    pub prefill_secs: f64,
    pub decode_secs: f64,
}

impl Generation {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        (self.prompt_tokens.len() - self.reused_tokens) as f64 / self.prefill_secs.max(1e-9)
    }

    /// Decode speed over the steps after the first token (which prefill produced).
    pub fn decode_tokens_per_s(&self) -> f64 {
        let steps = self.tokens.len().saturating_sub(1);
        if steps == 0 {
            0.0
        } else {
            steps as f64 / self.decode_secs.max(1e-9)
        }
    }
}

/// The error for logits of generation step `step` (0: the prompt; k: the k-th generated
/// token's step) that are not finite, after `tokens` ran: the model reruns them to name
/// the first graph step whose output was not finite, where it can.
fn non_finite(
    model: &mut dyn Forward,
    tokens: &[u32],
    step: usize,
    (id, value): (usize, f32),
) -> RuntimeError {
    RuntimeError::NonFinite {
        step,
        id,
        value,
        origin: model.locate_non_finite(tokens),
    }
}

/// Generates from `prompt` on a fresh sequence. `on_token` sees each new token as it
/// is chosen and returns `false` to stop.
pub fn generate(
    model: &mut dyn Forward,
    prompt: &[u32],
    params: &GenParams,
    on_token: impl FnMut(u32) -> bool,
) -> Result<Generation, RuntimeError> {
    generate_from(model, 0, prompt, params, on_token)
}

/// The positions of `held` (the tokens `model` holds) that a generation from `prompt`
/// keeps: their common prefix, short of the prompt's last token (whose logits are
/// needed), and no further back than `model` can rewind.
pub fn reusable(model: &dyn Forward, held: &[u32], prompt: &[u32]) -> usize {
    let common = common_prefix(held, prompt);
    model.rewind_point(common.min(prompt.len().saturating_sub(1)))
}

/// The length of the longest common prefix.
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Like [`generate`], keeping the first `reuse` positions of the sequence the model
/// holds (they must be `prompt[..reuse]`): only the rest of the prompt is prefilled.
/// Keeps fewer where `reuse` is not less than the prompt's length (the last position
/// yields the logits) or the model cannot rewind that far ([`reusable`]'s rule).
pub fn generate_from(
    model: &mut dyn Forward,
    reuse: usize,
    prompt: &[u32],
    params: &GenParams,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Generation, RuntimeError> {
    if prompt.is_empty() {
        return Err(RuntimeError::EmptyPrompt);
    }
    params.sampler.validate()?;
    let reuse = model.rewind_point(reuse.min(prompt.len() - 1));
    model.truncate(reuse)?;
    let mut sampler = Sampler::new(params.sampler.clone());
    let greedy = params.sampler.is_plain_greedy();
    let mut history = prompt.to_vec();
    let t0 = Instant::now();
    let prompt_logits = model.forward(&prompt[reuse..])?.to_vec();
    if let Some(bad) = first_non_finite(&prompt_logits) {
        return Err(non_finite(model, &prompt[reuse..], 0, bad));
    }
    let mut next = sampler.sample(&prompt_logits, &history);
    let prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut tokens = Vec::new();
    let mut stop = StopReason::MaxTokens;
    while tokens.len() < params.max_tokens {
        tokens.push(next);
        history.push(next);
        if !params.ignore_eos && params.stop_ids.contains(&next) {
            stop = StopReason::Eos;
            break;
        }
        if !on_token(next) {
            stop = StopReason::Caller;
            break;
        }
        if tokens.len() == params.max_tokens {
            break;
        }
        // A plain greedy step picks on the model's device, a step whose token its
        // row's largest values decide samples from those (selected on the device where
        // the model can); otherwise the sampler reads the row inside the logits' borrow,
        // and a non-finite row is reported after it.
        let picked = match (greedy, sampler.candidates(&history, MAX_TOP_K)) {
            (true, _) => model.forward_pick(&[next])?,
            (false, Some(k)) => match model.forward_top(&[next], k)? {
                Top::Candidates(c) => Pick::Token(sampler.sample_top(&c, &history)),
                Top::NonFinite { id, value } => Pick::NonFinite { id, value },
            },
            (false, None) => {
                let logits = model.forward(&[next])?;
                match first_non_finite(logits) {
                    Some((id, value)) => Pick::NonFinite {
                        id: id as u32,
                        value,
                    },
                    None => Pick::Token(sampler.sample(logits, &history)),
                }
            }
        };
        next = match picked {
            Pick::Token(t) => t,
            Pick::NonFinite { id, value } => {
                return Err(non_finite(
                    model,
                    &[next],
                    tokens.len(),
                    (id as usize, value),
                ))
            }
        };
    }
    Ok(Generation {
        prompt_tokens: prompt.to_vec(),
        reused_tokens: reuse,
        tokens,
        prompt_logits,
        stop,
        prefill_secs,
        decode_secs: t1.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefixes() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2]), 2);
    }

    /// Logits with the largest value at `(position · 3) % vocab`, NaN from position `nan_at`;
    /// counts the greedy picks it was asked for.
    struct Scripted {
        pos: usize,
        nan_at: usize,
        row: Vec<f32>,
        picks: usize,
    }

    impl Forward for Scripted {
        fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
            self.pos += tokens.len();
            let hot = (self.pos * 3) % self.row.len();
            for (i, v) in self.row.iter_mut().enumerate() {
                *v = if self.pos > self.nan_at && i == 2 {
                    f32::NAN
                } else {
                    (i == hot) as u8 as f32
                };
            }
            Ok(&self.row)
        }
        fn forward_pick(&mut self, tokens: &[u32]) -> Result<Pick, RuntimeError> {
            self.picks += 1;
            Ok(pick(self.forward(tokens)?))
        }
        fn reset(&mut self) {
            self.pos = 0;
        }
        fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError> {
            self.pos = pos.min(self.pos);
            Ok(())
        }
        fn position(&self) -> usize {
            self.pos
        }
    }

    fn params(sampler: SamplerParams) -> GenParams {
        GenParams {
            max_tokens: 5,
            sampler,
            stop_ids: vec![],
            ignore_eos: true,
        }
    }

    /// A model that can rewind at most `back` positions (a sliding-window ring), or to 0.
    struct Ringed {
        pos: usize,
        back: usize,
        row: Vec<f32>,
    }

    impl Forward for Ringed {
        fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
            self.pos += tokens.len();
            Ok(&self.row)
        }
        fn reset(&mut self) {
            self.pos = 0;
        }
        fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError> {
            assert_eq!(self.rewind_point(pos), pos, "a rewind past the ring");
            self.pos = pos;
            Ok(())
        }
        fn position(&self) -> usize {
            self.pos
        }
        fn rewind_point(&self, pos: usize) -> usize {
            match self.pos - pos.min(self.pos) <= self.back {
                true => pos.min(self.pos),
                false => 0,
            }
        }
    }

    /// Reuse stops short of the prompt's last token and goes back no further than the
    /// model can: else the prompt runs from 0.
    #[test]
    fn reuse_stops_where_the_model_can_rewind() {
        let held: Vec<u32> = (0..20).collect();
        let prompt: Vec<u32> = (0..12).chain([99, 98]).collect();
        for (back, want) in [(8, 12), (6, 0)] {
            let mut m = Ringed {
                pos: 20,
                back,
                row: vec![0.0, 1.0],
            };
            assert_eq!(reusable(&m, &held, &prompt), want, "back {back}");
            let g = generate_from(
                &mut m,
                12,
                &prompt,
                &params(SamplerParams::greedy()),
                |_| true,
            )
            .unwrap();
            assert_eq!(g.reused_tokens, want, "back {back}");
        }
        let m = Ringed {
            pos: 20,
            back: 8,
            row: vec![],
        };
        assert_eq!(
            reusable(&m, &held, &held[..15]),
            14,
            "short of the last token"
        );
    }

    /// Plain greedy steps pick through `forward_pick` (on the device, where the model
    /// can); a repetition penalty needs the row, so the sampler reads it.
    #[test]
    fn plain_greedy_decode_steps_pick_on_the_model() {
        let mut m = Scripted {
            pos: 0,
            nan_at: usize::MAX,
            row: vec![0.0; 7],
            picks: 0,
        };
        let g = generate(&mut m, &[1, 2], &params(SamplerParams::greedy()), |_| true).unwrap();
        assert_eq!(g.tokens, [6, 2, 5, 1, 4]);
        assert_eq!(m.picks, 4);
        let penalised = SamplerParams {
            repeat_penalty: 1.3,
            ..SamplerParams::greedy()
        };
        m.picks = 0;
        generate(&mut m, &[1, 2], &params(penalised), |_| true).unwrap();
        assert_eq!(m.picks, 0);
    }

    /// A picked step whose logits hold a NaN is the generation error, naming the step,
    /// the logit and its value.
    #[test]
    fn a_non_finite_pick_is_an_error() {
        let mut m = Scripted {
            pos: 0,
            nan_at: 3,
            row: vec![0.0; 7],
            picks: 0,
        };
        let err =
            generate(&mut m, &[1, 2], &params(SamplerParams::greedy()), |_| true).unwrap_err();
        match err {
            RuntimeError::NonFinite {
                step, id, value, ..
            } => {
                assert_eq!((step, id), (2, 2));
                assert!(value.is_nan());
            }
            e => panic!("{e}"),
        }
    }

    /// Rows of pseudo-random logits on a coarse grid (ties), one a position; counts the
    /// candidate selections it was asked for.
    struct Noisy {
        pos: usize,
        row: Vec<f32>,
        tops: usize,
    }

    impl Forward for Noisy {
        fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], RuntimeError> {
            self.pos += tokens.len();
            let mut s = (self.pos as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for v in self.row.iter_mut() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *v = (s % 64) as f32 / 4.0;
            }
            Ok(&self.row)
        }
        fn forward_top(&mut self, tokens: &[u32], k: usize) -> Result<Top, RuntimeError> {
            self.tops += 1;
            Ok(top_k(self.forward(tokens)?, k))
        }
        fn reset(&mut self) {
            self.pos = 0;
        }
        fn truncate(&mut self, pos: usize) -> Result<(), RuntimeError> {
            self.pos = pos.min(self.pos);
            Ok(())
        }
        fn position(&self) -> usize {
            self.pos
        }
    }

    /// Sampled decode steps with a top-k sample from the model's candidates (selected
    /// on its device, where it can), and pick what sampling each whole row picks; a
    /// penalty below 1 needs the row.
    #[test]
    fn sampled_decode_steps_sample_from_candidates() {
        for (penalty, tops) in [(1.3, 19), (1.0, 19), (0.8, 0)] {
            let sampler = SamplerParams {
                repeat_penalty: penalty,
                temperature: 1.2,
                ..Default::default()
            };
            let mut m = Noisy {
                pos: 0,
                row: vec![0.0; 500],
                tops: 0,
            };
            let p = GenParams {
                max_tokens: 20,
                ..params(sampler.clone())
            };
            let g = generate(&mut m, &[1, 2], &p, |_| true).unwrap();
            assert_eq!(m.tops, tops, "penalty {penalty}");
            m.reset();
            let mut whole = Sampler::new(sampler);
            let mut history = vec![1, 2];
            let mut row = m.forward(&history).unwrap().to_vec();
            for _ in 0..20 {
                let t = whole.sample(&row, &history);
                history.push(t);
                row = m.forward(&[t]).unwrap().to_vec();
            }
            assert_eq!(g.tokens, history[2..], "penalty {penalty}");
        }
    }
}
