//! Timing in the manner of llama-bench: prompt processing (`pp<N>`: N tokens in one
//! step on a fresh sequence) and token generation (`tg<N>`: N one-token steps after a
//! one-token prefill; only the N steps are timed), each repeated. With a depth D
//! (llama-bench's `-d`), each run first fills D positions, untimed (`pp<N>@d<D>`). Token ids are
//! pseudo-random (a fixed seed) below the vocabulary size, so no tokenizer is needed.
//!
//! Nothing here prints: progress reaches the caller as [`BenchEvent`]s.

use crate::{Engine, Forward, RuntimeError};
use std::time::Instant;
use weft_ir::{Op, Plan};

/// One test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BenchTest {
    /// `pp<N>`: a prompt of N tokens in one step, after `depth` positions.
    Prompt { n: usize, depth: usize },
    /// `tg<N>`: N single-token decode steps after a one-token prefill, after `depth`
    /// positions.
    Gen { n: usize, depth: usize },
}

impl BenchTest {
    /// `pp512`, `tg128`, `tg128@d4096`: llama-bench's names, the depth where there is one.
    pub fn name(&self) -> String {
        let (kind, n, depth) = match *self {
            BenchTest::Prompt { n, depth } => ("pp", n, depth),
            BenchTest::Gen { n, depth } => ("tg", n, depth),
        };
        match depth {
            0 => format!("{kind}{n}"),
            d => format!("{kind}{n}@d{d}"),
        }
    }

    /// Tokens the timed part processes.
    pub fn tokens(&self) -> usize {
        match *self {
            BenchTest::Prompt { n, .. } | BenchTest::Gen { n, .. } => n,
        }
    }

    /// Untimed positions before the test.
    pub fn depth(&self) -> usize {
        match *self {
            BenchTest::Prompt { depth, .. } | BenchTest::Gen { depth, .. } => depth,
        }
    }

    /// KV-cache positions the test needs, its depth included.
    pub fn ctx(&self) -> usize {
        let own = match *self {
            BenchTest::Prompt { n, .. } => n,
            BenchTest::Gen { n, .. } => n.saturating_add(1),
        };
        own.saturating_add(self.depth())
    }
}

/// What to time: every prompt size, then every generation length, `reps` times each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchSpec {
    pub prompts: Vec<usize>,
    pub gens: Vec<usize>,
    pub reps: usize,
    /// Positions filled (untimed) before each run.
    pub depth: usize,
}

impl BenchSpec {
    /// The tests in the order they run (prompt sizes, then generation lengths, each
    /// size once).
    pub fn tests(&self) -> Vec<BenchTest> {
        let mut tests = Vec::new();
        let all = self
            .prompts
            .iter()
            .map(|&n| BenchTest::Prompt {
                n,
                depth: self.depth,
            })
            .chain(self.gens.iter().map(|&n| BenchTest::Gen {
                n,
                depth: self.depth,
            }));
        for t in all {
            if !tests.contains(&t) {
                tests.push(t);
            }
        }
        tests
    }

    /// Refuses an empty or zero size, zero repetitions, and (when the model's trained
    /// context `ctx_limit` is known) a test that needs more positions than it has.
    pub fn check(&self, ctx_limit: Option<usize>) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::Bench(m));
        if self.reps == 0 {
            return bad("-r (repetitions) must be at least 1".into());
        }
        if self.prompts.is_empty() && self.gens.is_empty() {
            return bad("nothing to time: give -p and/or -n sizes".into());
        }
        if self.prompts.contains(&0) {
            return bad("-p (prompt tokens) must be at least 1".into());
        }
        if self.gens.contains(&0) {
            return bad("-n (generated tokens) must be at least 1".into());
        }
        if let Some(limit) = ctx_limit {
            if let Some(t) = self.tests().into_iter().find(|t| t.ctx() > limit) {
                return bad(format!(
                    "{} needs {} positions, more than the model's context length {limit}",
                    t.name(),
                    t.ctx()
                ));
            }
        }
        Ok(())
    }
}

/// One test's timings.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    pub test: BenchTest,
    /// Tokens per second of each repetition, in the order they ran.
    pub tokens_per_s: Vec<f64>,
}

impl BenchResult {
    pub fn median(&self) -> f64 {
        let mut v = self.tokens_per_s.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.tokens_per_s.iter().copied().fold(f64::NAN, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.tokens_per_s.iter().copied().fold(f64::NAN, f64::max)
    }

    pub fn mean(&self) -> f64 {
        self.tokens_per_s.iter().sum::<f64>() / self.tokens_per_s.len() as f64
    }

    /// Sample standard deviation (0 for one repetition).
    pub fn stddev(&self) -> f64 {
        let n = self.tokens_per_s.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        let ss: f64 = self.tokens_per_s.iter().map(|x| (x - m) * (x - m)).sum();
        (ss / (n - 1) as f64).sqrt()
    }
}

/// What the benchmark is doing, for the caller to show.
#[derive(Clone, Copy, Debug)]
pub enum BenchEvent {
    /// The untimed run that precedes a test's repetitions (it sizes the session's
    /// buffers and brings the weights into memory).
    Warmup { test: BenchTest },
    /// Repetition `rep` (from 1) of `reps` finished.
    Run {
        test: BenchTest,
        rep: usize,
        reps: usize,
        tokens_per_s: f64,
    },
}

/// Times `spec`'s tests on `engine`. Each test opens a fresh session with room for
/// what it needs, runs once untimed, then `reps` timed runs with the session rewound
/// to position 0 between them. `ctx_limit` is the model's trained context length,
/// when known (see [`crate::Model::trained_context`]).
pub fn bench(
    engine: &Engine,
    spec: &BenchSpec,
    ctx_limit: Option<usize>,
    progress: &mut dyn FnMut(BenchEvent),
) -> Result<Vec<BenchResult>, RuntimeError> {
    spec.check(ctx_limit)?;
    let vocab = token_rows(engine.plan()).ok_or_else(|| {
        RuntimeError::Bench("the plan has no token embedding to draw token ids for".into())
    })?;
    let mut ids = TokenIds::new(vocab);
    let mut results = Vec::new();
    for test in spec.tests() {
        let mut session = engine.session(test.ctx())?;
        let tokens = ids.take(test.ctx());
        progress(BenchEvent::Warmup { test });
        run_once(&mut session, test, &tokens)?;
        let mut tokens_per_s = Vec::with_capacity(spec.reps);
        for rep in 1..=spec.reps {
            let secs = run_once(&mut session, test, &tokens)?;
            let tps = test.tokens() as f64 / secs.max(1e-9);
            tokens_per_s.push(tps);
            progress(BenchEvent::Run {
                test,
                rep,
                reps: spec.reps,
                tokens_per_s: tps,
            });
        }
        results.push(BenchResult { test, tokens_per_s });
    }
    Ok(results)
}

/// One run of `test` from position 0, its depth first; the seconds of its timed part.
fn run_once(
    session: &mut crate::GraphSession,
    test: BenchTest,
    tokens: &[u32],
) -> Result<f64, RuntimeError> {
    session.truncate(0)?;
    let (filled, tokens) = tokens.split_at(test.depth());
    if !filled.is_empty() {
        session.forward(filled)?;
    }
    match test {
        BenchTest::Prompt { .. } => {
            let t0 = Instant::now();
            session.forward(tokens)?;
            Ok(t0.elapsed().as_secs_f64())
        }
        BenchTest::Gen { .. } => {
            session.forward(&tokens[..1])?;
            let t0 = Instant::now();
            for t in &tokens[1..] {
                session.forward(std::slice::from_ref(t))?;
            }
            Ok(t0.elapsed().as_secs_f64())
        }
    }
}

/// Rows of the smallest token-embedding table the plan reads: every id below it is
/// valid for every table.
fn token_rows(plan: &Plan) -> Option<usize> {
    plan.steps
        .iter()
        .filter(|s| matches!(s.node.op, Op::TokenEmbed))
        .filter_map(|s| match &plan.steps.get(*s.inputs.first()?)?.node.op {
            Op::Weight { shape, .. } => shape.first().copied(),
            _ => None,
        })
        .filter(|&rows| rows > 0)
        .min()
}

/// Deterministic pseudo-random token ids below `vocab` (splitmix64, fixed seed).
struct TokenIds {
    state: u64,
    vocab: u64,
}

impl TokenIds {
    fn new(vocab: usize) -> Self {
        TokenIds {
            state: SEED,
            vocab: vocab as u64,
        }
    }

    fn take(&mut self, n: usize) -> Vec<u32> {
        (0..n).map(|_| self.next()).collect()
    }

    fn next(&mut self) -> u32 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % self.vocab) as u32
    }
}

/// The fixed seed of the token ids.
const SEED: u64 = 0x5eed;

/// This process's peak resident set (`VmHWM` in /proc/self/status), in bytes; `None`
/// where the kernel does not report it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut words = line["VmHWM:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(n * 1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_repetitions() {
        let r = BenchResult {
            test: BenchTest::Prompt { n: 4, depth: 0 },
            tokens_per_s: vec![3.0, 1.0, 2.0, 10.0],
        };
        assert_eq!(r.median(), 2.5);
        assert_eq!(r.min(), 1.0);
        assert_eq!(r.max(), 10.0);
        assert_eq!(r.mean(), 4.0);
        assert!((r.stddev() - (50.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn spec_checks_and_orders_tests() {
        let spec = BenchSpec {
            prompts: vec![128, 512, 128],
            gens: vec![128],
            reps: 1,
            depth: 0,
        };
        assert_eq!(
            spec.tests(),
            [
                BenchTest::Prompt { n: 128, depth: 0 },
                BenchTest::Prompt { n: 512, depth: 0 },
                BenchTest::Gen { n: 128, depth: 0 }
            ]
        );
        assert!(spec.check(Some(512)).is_ok());
        assert!(spec.check(Some(511)).is_err());
        // A depth counts towards the context and names the tests.
        let deep = BenchSpec {
            depth: 1000,
            ..spec.clone()
        };
        assert!(deep.check(Some(1512)).is_ok());
        assert!(deep.check(Some(1511)).is_err());
        let names: Vec<String> = deep.tests().iter().map(BenchTest::name).collect();
        assert_eq!(names, ["pp128@d1000", "pp512@d1000", "tg128@d1000"]);
        for bad in [
            BenchSpec {
                reps: 0,
                ..spec.clone()
            },
            BenchSpec {
                prompts: vec![0],
                ..spec.clone()
            },
            BenchSpec {
                gens: vec![4, 0],
                ..spec.clone()
            },
            BenchSpec {
                prompts: vec![],
                gens: vec![],
                reps: 1,
                depth: 0,
            },
        ] {
            assert!(bad.check(None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_ids_are_deterministic_and_in_range() {
        let a = TokenIds::new(7).take(100);
        assert_eq!(a, TokenIds::new(7).take(100));
        assert!(a.iter().all(|&t| t < 7));
        assert!(a.iter().any(|&t| t != a[0]));
    }

    #[test]
    fn peak_rss_is_read() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 0);
        }
    }
}
