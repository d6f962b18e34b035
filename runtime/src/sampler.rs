//! Token sampling: greedy, or temperature with top-k, top-p, min-p, and a
//! repetition penalty, from a seeded generator so runs repeat. A step samples from the
//! whole logits row, or from its largest values where they decide the same token
//! ([`Sampler::candidates`]), which a GPU selects without reading back the row.

/// How to pick the next token. `temperature == 0` (or `greedy`) takes the argmax.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    pub greedy: bool,
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: none).
    pub min_p: f32,
    /// Divides positive (multiplies negative) logits of recently seen tokens (1: off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            greedy: false,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5eed,
        }
    }
}

impl SamplerParams {
    pub fn greedy() -> Self {
        SamplerParams {
            greedy: true,
            ..Default::default()
        }
    }

    /// Takes the argmax of the logits as they are (no penalty): a step the model can
    /// pick on its own device.
    pub fn is_plain_greedy(&self) -> bool {
        (self.greedy || self.temperature <= 0.0) && self.repeat_penalty == 1.0
    }

    /// Refuses values that would sample nonsense silently (a NaN temperature, a top-p
    /// of 2, a zero repetition penalty), naming the first one out of range.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let check = |name, found: f32, expected, ok: bool| match ok {
            true => Ok(()),
            false => Err(SamplerError {
                name,
                expected,
                found,
            }),
        };
        let (t, p, m, r) = (
            self.temperature,
            self.top_p,
            self.min_p,
            self.repeat_penalty,
        );
        check(
            "temperature",
            t,
            "finite and ≥ 0",
            t.is_finite() && t >= 0.0,
        )?;
        check("top_p", p, "in (0, 1]", p > 0.0 && p <= 1.0)?;
        check("min_p", m, "in [0, 1]", (0.0..=1.0).contains(&m))?;
        check(
            "repeat_penalty",
            r,
            "finite and > 0",
            r.is_finite() && r > 0.0,
        )
    }
}

/// A sampler setting out of range.
#[derive(Debug, thiserror::Error)]
#[error("sampler: {name} must be {expected}, found {found}")]
pub struct SamplerError {
    pub name: &'static str,
    pub expected: &'static str,
    pub found: f32,
}

pub use weft_backend::argmax;
use weft_backend::by_value_desc;

/// Top-1 minus top-2 logit: how decided a greedy step was.
pub fn top_gap(logits: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in logits {
        if v > a {
            b = a;
            a = v;
        } else if v > b {
            b = v;
        }
    }
    a - b
}

pub struct Sampler {
    params: SamplerParams,
    state: u64,
    scratch: Vec<(f32, u32)>,
    /// The distinct tokens the repetition penalty applies to at this step, sorted.
    recent: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Self {
        let state = params.seed;
        Sampler {
            params,
            state,
            scratch: Vec::new(),
            recent: Vec::new(),
        }
    }

    /// splitmix64: small, fast, and good enough to draw one token.
    fn next_f32(&mut self) -> f32 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Sets `recent` to the distinct tokens the penalty applies to after `history`.
    fn penalised(&mut self, history: &[u32]) {
        let p = &self.params;
        self.recent.clear();
        if p.repeat_penalty != 1.0 {
            let from = history.len().saturating_sub(p.repeat_last_n);
            self.recent.extend_from_slice(&history[from..]);
            self.recent.sort_unstable();
            self.recent.dedup();
        }
    }

    /// How many of the row's largest values ([`weft_backend::top_k`]) decide the next
    /// token after `history` exactly as the whole row does, if at most `max`: the
    /// sampler's top-k (1 when greedy) plus the R distinct tokens the penalty demotes.
    /// A penalty ≥ 1 only lowers values, so a token outside the row's top k + R has k
    /// unpenalised tokens above it and stays outside the penalised top k; candidates and
    /// row are ordered alike ([`by_value_desc`]), ties included. `None` (sample the
    /// whole row): no top-k, a penalty below 1 (it raises values), or more than `max`.
    pub fn candidates(&mut self, history: &[u32], max: usize) -> Option<usize> {
        self.penalised(history);
        let p = &self.params;
        let k = match p.greedy || p.temperature <= 0.0 {
            true => 1,
            false => p.top_k,
        };
        let r = self.recent.len();
        if k == 0 || (r > 0 && p.repeat_penalty < 1.0) {
            return None;
        }
        k.checked_add(r).filter(|&n| n <= max)
    }

    /// Picks the next token from `logits` given the tokens so far (for the penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if (p.greedy || p.temperature <= 0.0) && p.repeat_penalty == 1.0 {
            return argmax(logits);
        }
        self.sample_from(logits.iter().copied().zip(0..), history)
    }

    /// Picks the next token from the row's `top` values (as [`weft_backend::top_k`]
    /// gives them), [`Sampler::candidates`] of them: the token [`Sampler::sample`]
    /// picks from the whole row, with the same draw.
    pub fn sample_top(&mut self, top: &[(f32, u32)], history: &[u32]) -> u32 {
        self.sample_from(top.iter().copied(), history)
    }

    /// The penalty, then top-k, softmax at the temperature, min-p and top-p over
    /// `(value, id)` pairs of the row (or of its largest values).
    fn sample_from(&mut self, row: impl Iterator<Item = (f32, u32)>, history: &[u32]) -> u32 {
        self.penalised(history);
        let p = &self.params;
        let recent = &self.recent;
        let penalty = |(v, id): (f32, u32)| -> (f32, u32) {
            match recent.binary_search(&id).is_ok() {
                true if v > 0.0 => (v / p.repeat_penalty, id),
                true => (v * p.repeat_penalty, id),
                false => (v, id),
            }
        };
        let greedy = p.greedy || p.temperature <= 0.0;
        let (top_k, top_p, min_p, temp) = (p.top_k, p.top_p, p.min_p, p.temperature);
        let top_k = if greedy { 1 } else { top_k };
        let mut c = std::mem::take(&mut self.scratch);
        c.clear();
        c.extend(row.map(penalty));
        if top_k > 0 && top_k < c.len() {
            c.select_nth_unstable_by(top_k - 1, by_value_desc);
            c.truncate(top_k);
        }
        c.sort_unstable_by(by_value_desc);
        if greedy {
            let pick = c[0].1;
            self.scratch = c;
            return pick;
        }
        // Softmax at the temperature, then top-p and min-p on the probabilities.
        let m = c[0].0;
        let mut sum = 0.0;
        for e in c.iter_mut() {
            e.0 = ((e.0 - m) / temp).exp();
            sum += e.0;
        }
        let mut keep = c.len();
        let mut acc = 0.0;
        for (i, e) in c.iter().enumerate() {
            let prob = e.0 / sum;
            if min_p > 0.0 && prob < min_p * (c[0].0 / sum) {
                keep = i;
                break;
            }
            acc += prob;
            if acc >= top_p {
                keep = i + 1;
                break;
            }
        }
        c.truncate(keep.max(1));
        let total: f32 = c.iter().map(|e| e.0).sum();
        let mut r = self.next_f32() * total;
        let mut pick = c[c.len() - 1].1;
        for e in &c {
            if r < e.0 {
                pick = e.1;
                break;
            }
            r -= e.0;
        }
        self.scratch = c;
        pick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(SamplerParams::default().validate().is_ok());
        for (p, says) in [
            (
                SamplerParams {
                    temperature: f32::NAN,
                    ..Default::default()
                },
                "temperature must be finite and ≥ 0, found NaN",
            ),
            (
                SamplerParams {
                    temperature: -1.0,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplerParams {
                    top_p: 2.0,
                    ..Default::default()
                },
                "top_p must be in (0, 1], found 2",
            ),
            (
                SamplerParams {
                    top_p: 0.0,
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplerParams {
                    min_p: f32::NAN,
                    ..Default::default()
                },
                "min_p must be in [0, 1], found NaN",
            ),
            (
                SamplerParams {
                    repeat_penalty: 0.0,
                    ..Default::default()
                },
                "repeat_penalty must be finite and > 0, found 0",
            ),
        ] {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn greedy_takes_first_max() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        let mut s = Sampler::new(SamplerParams::greedy());
        assert_eq!(s.sample(&[0.1, 0.5, 0.2], &[]), 1);
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplerParams {
            repeat_penalty: 2.0,
            ..SamplerParams::greedy()
        });
        assert_eq!(s.sample(&[1.0, 1.5, 0.2], &[1]), 0);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_repeats() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let mut s = Sampler::new(SamplerParams {
            top_k: 1,
            temperature: 1.5,
            ..Default::default()
        });
        assert_eq!(s.sample(&logits, &[]), argmax(&logits));
        let draw = |seed| {
            let mut s = Sampler::new(SamplerParams {
                seed,
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                ..Default::default()
            });
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        let logits = [5.0, 4.9, -10.0, -10.0];
        for seed in 0..50 {
            let mut s = Sampler::new(SamplerParams {
                seed,
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.1,
                ..Default::default()
            });
            assert!(s.sample(&logits, &[]) < 2);
            let mut s = Sampler::new(SamplerParams {
                seed,
                temperature: 1.0,
                top_k: 0,
                top_p: 0.3,
                min_p: 0.0,
                ..Default::default()
            });
            assert_eq!(s.sample(&logits, &[]), 0);
        }
    }

    /// Sampling from the row's top `candidates` gives the token and the draw that
    /// sampling the whole row gives: random rows on a coarse grid (ties, +0 and -0),
    /// histories of recent top tokens, penalties above and below 1, top-k, top-p,
    /// min-p, temperatures and penalised greedy, many steps from one seed.
    #[test]
    fn candidates_sample_as_the_whole_row() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let (mut steps, mut from_top) = (0, 0);
        for case in 0..48u64 {
            let params = SamplerParams {
                greedy: case % 8 == 7,
                temperature: [0.3, 0.8, 1.5][case as usize % 3],
                top_k: [40, 40, 1, 5, 200, 0][case as usize % 6],
                top_p: [0.9, 1.0, 0.5, 0.95][case as usize % 4],
                min_p: [0.0, 0.05, 0.2][case as usize % 3],
                repeat_penalty: [1.3, 2.0, 1.0, 0.9, 1.1][case as usize % 5],
                repeat_last_n: [64, 8][case as usize % 2],
                seed: case,
            };
            let vocab = 50 + next() as usize % 3000;
            let (mut whole, mut top) = (Sampler::new(params.clone()), Sampler::new(params));
            let mut history: Vec<u32> = Vec::new();
            for _ in 0..40 {
                let row: Vec<f32> = (0..vocab)
                    .map(|_| match next() % 160 {
                        0 => -0.0,
                        v => v as f32 / 8.0 - 12.0,
                    })
                    .collect();
                // Penalise tokens near the top, where the penalty changes the choice.
                if let weft_backend::Top::Candidates(c) = weft_backend::top_k(&row, 60) {
                    history.push(c[next() as usize % c.len()].1);
                }
                let want = whole.sample(&row, &history);
                let got = match top.candidates(&history, weft_backend::MAX_TOP_K) {
                    Some(k) => match weft_backend::top_k(&row, k) {
                        weft_backend::Top::Candidates(c) => {
                            from_top += 1;
                            top.sample_top(&c, &history)
                        }
                        t => panic!("{t:?}"),
                    },
                    None => top.sample(&row, &history),
                };
                assert_eq!(got, want, "case {case}, step {steps}");
                history.push(want);
                steps += 1;
            }
        }
        assert!(
            from_top * 2 > steps,
            "{from_top} of {steps} from candidates"
        );
        // A top-k from a request's JSON may be any size: the whole row, no overflow.
        let mut s = Sampler::new(SamplerParams {
            top_k: usize::MAX,
            repeat_penalty: 1.5,
            ..Default::default()
        });
        assert_eq!(s.candidates(&[1, 2], 256), None);
    }
}
