//! `WEFT_GPU_PROFILE=1`: GPU time per kernel. Where the adapter writes timestamps
//! inside passes, the step runs in one pass as usual with a timestamp before the first
//! dispatch and after each (each written once everything before it has finished), so a
//! dispatch's time includes its launch and the barrier before it, and the times add up
//! to the step's. Elsewhere each dispatch runs in a pass of its own with timestamps at
//! its start and end (where the adapter has timestamp queries at all), whose start does
//! not wait for the previous dispatch. The session adds the times up by kernel name and
//! prints the table on stderr when it closes.

use crate::buffers::with_mapped;
use crate::device::Gpu;
use std::collections::HashMap;

/// Timestamps one submission holds at most (two a dispatch; later dispatches of a
/// larger schedule go untimed).
const MAX_QUERIES: u32 = 4096;

/// A query set of timestamps, its resolve buffer and its readback.
pub struct Stamps {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    capacity: u32,
    /// Nanoseconds a timestamp tick.
    period: f64,
}

impl Stamps {
    /// Room for `capacity` timestamps, where the adapter has timestamp queries.
    fn new(gpu: &Gpu, capacity: u32) -> Option<Stamps> {
        if !gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            return None;
        }
        let bytes = capacity as u64 * 8;
        let buffer = |label, usage| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(Stamps {
            queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: capacity,
            }),
            resolve: buffer(
                "timestamps resolve",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            read: buffer(
                "timestamps readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            capacity,
            period: gpu.queue.get_timestamp_period() as f64,
        })
    }

    /// Timestamps at the start and end of the `q`-th pass (2q and 2q + 1).
    fn pass_writes(&self, q: u32) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        (2 * q + 1 < self.capacity).then(|| wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * q),
            end_of_pass_write_index: Some(2 * q + 1),
        })
    }

    /// Copies the first `n` timestamps out (after the passes that write them).
    fn resolve(&self, enc: &mut wgpu::CommandEncoder, n: u32) {
        let n = n.min(self.capacity);
        if n > 0 {
            enc.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
            enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, n as u64 * 8);
        }
    }

    /// The first `n` timestamps resolved, in nanoseconds.
    fn read(&self, gpu: &Gpu, n: usize) -> Result<Vec<f64>, weft_backend::BackendError> {
        with_mapped(gpu, &self.read, n as u64 * 8, |b| {
            b.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) as f64 * self.period)
                .collect()
        })
    }
}

pub struct Profiler {
    stamps: Stamps,
    /// Timestamps between the dispatches of one pass (else a pass a dispatch).
    pub inside: bool,
    /// By kernel name: (dispatches, nanoseconds).
    totals: HashMap<String, (u64, f64)>,
}

impl Profiler {
    /// A profiler for up to `dispatches` dispatches a submission, when
    /// `WEFT_GPU_PROFILE` is set and the adapter has timestamp queries.
    pub fn new(gpu: &Gpu, dispatches: usize) -> Option<Profiler> {
        std::env::var_os("WEFT_GPU_PROFILE")?;
        let capacity = (2 * dispatches as u32).clamp(2, MAX_QUERIES);
        let Some(stamps) = Stamps::new(gpu, capacity) else {
            eprintln!("weft gpu: WEFT_GPU_PROFILE: the adapter has no timestamp queries");
            return None;
        };
        Some(Profiler {
            stamps,
            inside: gpu
                .features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            totals: HashMap::new(),
        })
    }

    /// The timestamp writes of the `q`-th dispatch recorded in a submission.
    pub fn writes(&self, q: u32) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        self.stamps.pass_writes(q)
    }

    /// In one pass: the timestamp before dispatch `q` (after dispatch q - 1).
    pub fn write_inside(&self, pass: &mut wgpu::ComputePass, q: u32) {
        if q < self.stamps.capacity {
            pass.write_timestamp(&self.stamps.queries, q);
        }
    }

    /// Copies the timestamps of `recorded` dispatches out (after the passes).
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder, recorded: u32) {
        self.stamps.resolve(
            enc,
            match self.inside {
                true => recorded + 1,
                false => 2 * recorded,
            },
        );
    }

    /// Adds the submitted dispatches' times to their kernels (`names`, in order).
    pub fn collect<'a>(
        &mut self,
        gpu: &Gpu,
        names: impl Iterator<Item = &'a str>,
    ) -> Result<(), weft_backend::BackendError> {
        let per = if self.inside { 1 } else { 2 };
        let names: Vec<&str> = names
            .take((self.stamps.capacity as usize - 1) / per)
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let ticks = self
            .stamps
            .read(gpu, names.len() * per + (self.inside as usize))?;
        for (q, name) in names.iter().enumerate() {
            let (a, b) = match self.inside {
                true => (ticks[q], ticks[q + 1]),
                false => (ticks[2 * q], ticks[2 * q + 1]),
            };
            let e = self.totals.entry(name.to_string()).or_default();
            e.0 += 1;
            e.1 += (b - a).max(0.0);
        }
        Ok(())
    }

    /// The table: kernels by total time.
    pub fn report(&self) -> String {
        let mut rows: Vec<_> = self.totals.iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let all: f64 = rows.iter().map(|r| r.1 .1).sum();
        let mut s = format!(
            "weft gpu profile: {:.3} ms of GPU time in timed dispatches\n{:<32} {:>9} {:>11} {:>9} {:>6}\n",
            all / 1e6,
            "kernel",
            "dispatches",
            "total ms",
            "µs each",
            "share"
        );
        for (name, (n, ns)) in rows {
            s += &format!(
                "{name:<32} {n:>9} {:>11.3} {:>9.1} {:>5.1}%\n",
                ns / 1e6,
                ns / 1e3 / *n as f64,
                100.0 * ns / all.max(1e-9)
            );
        }
        s
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        eprint!("{}", self.report());
    }
}

/// Chunk passes a step's clock times (two timestamps each; later ones go untimed).
const CLOCK_PASSES: u32 = 16;

/// `WEFT_GPU_TIMING=1`: where each forward call's time goes, printed per call and, for
/// the one-position calls (decode), as means when the session closes. The host's share
/// is split into preparing the parameter blocks, recording and submitting (or submitting
/// what was recorded ahead), recording the next decode step ahead, waiting for
/// the GPU until the readback is mapped, and copying the result out. Where the adapter has
/// timestamp queries, the GPU's share comes from timestamps at the start and end of each
/// submitted pass: the time inside passes (kernels, with their launches and barriers),
/// and its span from the first pass's start to the last one's end, so that the rest of
/// the call is time the GPU spent idle: waiting for the host to record the first pass,
/// between passes, and for the readback. That rest is a step's time outside kernels.
pub struct StepClock {
    stamps: Option<Stamps>,
    /// One-position calls: their count and the sums of their times.
    decode: (u64, CallTimes),
}

/// One call's times in nanoseconds (or their sums).
#[derive(Clone, Copy, Default)]
pub struct CallTimes {
    pub prep: f64,
    pub record: f64,
    /// Recording the next decode step's commands, while the GPU runs this one.
    pub ahead: f64,
    pub wait: f64,
    pub copy: f64,
    /// The GPU's time in passes and their span (NaN: not timed).
    pub inside: f64,
    pub span: f64,
}

impl CallTimes {
    fn fields(&mut self) -> [&mut f64; 7] {
        let CallTimes {
            prep,
            record,
            ahead,
            wait,
            copy,
            inside,
            span,
        } = self;
        [prep, record, ahead, wait, copy, inside, span]
    }

    /// "call … ms = prep … + …", then the GPU's share where it was timed.
    fn describe(&self) -> String {
        let ms = |ns: f64| ns / 1e6;
        let call = self.prep + self.record + self.ahead + self.wait + self.copy;
        let mut line = format!(
            "call {:.3} ms = prep {:.3} + record/submit {:.3} + record ahead {:.3} + wait {:.3} + copy {:.3}",
            ms(call),
            ms(self.prep),
            ms(self.record),
            ms(self.ahead),
            ms(self.wait),
            ms(self.copy),
        );
        if self.inside.is_finite() {
            line += &format!(
                "; GPU in passes {:.3} ms over a span of {:.3} ms: {:.3} ms outside kernels",
                ms(self.inside),
                ms(self.span),
                ms(call - self.inside)
            );
        }
        line
    }
}

impl StepClock {
    /// A clock when `WEFT_GPU_TIMING` is set.
    pub fn new(gpu: &Gpu) -> Option<StepClock> {
        std::env::var_os("WEFT_GPU_TIMING")?;
        Some(StepClock {
            stamps: Stamps::new(gpu, 2 * CLOCK_PASSES),
            decode: (0, CallTimes::default()),
        })
    }

    /// The timestamp writes of the `c`-th pass of a call.
    pub fn writes(&self, c: u32) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        self.stamps.as_ref()?.pass_writes(c)
    }

    /// Copies the timestamps of `passes` passes out (after the last one).
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder, passes: u32) {
        if let Some(p) = &self.stamps {
            p.resolve(enc, 2 * passes.min(CLOCK_PASSES));
        }
    }

    /// Reads the GPU's share of the call `t` (after the wait), prints the call's line,
    /// and adds a decode call to the means.
    pub fn report(
        &mut self,
        gpu: &Gpu,
        seq: usize,
        dispatches: usize,
        passes: u32,
        mut t: CallTimes,
    ) -> Result<(), weft_backend::BackendError> {
        (t.inside, t.span) = match &self.stamps {
            Some(p) if passes > 0 => {
                let s = p.read(gpu, 2 * passes.min(CLOCK_PASSES) as usize)?;
                let inside = s.chunks_exact(2).map(|c| (c[1] - c[0]).max(0.0)).sum();
                let span = s.last().zip(s.first()).map_or(0.0, |(b, a)| b - a);
                (inside, span)
            }
            _ => (f64::NAN, f64::NAN),
        };
        eprintln!(
            "weft gpu: {seq} position(s), {dispatches} dispatches in {passes} pass(es): {}",
            t.describe()
        );
        if seq == 1 {
            let (n, sums) = &mut self.decode;
            *n += 1;
            for (a, v) in sums.fields().into_iter().zip(t.fields()) {
                *a += *v;
            }
        }
        Ok(())
    }
}

impl Drop for StepClock {
    fn drop(&mut self) {
        let (n, mut mean) = self.decode;
        if n == 0 {
            return;
        }
        for v in mean.fields() {
            *v /= n as f64;
        }
        eprintln!(
            "weft gpu timing, mean of {n} one-position call(s): {}",
            mean.describe()
        );
    }
}
