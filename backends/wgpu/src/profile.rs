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

pub struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    capacity: u32,
    /// Timestamps between the dispatches of one pass (else a pass a dispatch).
    pub inside: bool,
    /// Nanoseconds a timestamp tick.
    period: f64,
    /// By kernel name: (dispatches, nanoseconds).
    totals: HashMap<String, (u64, f64)>,
}

impl Profiler {
    /// A profiler for up to `dispatches` dispatches a submission, when
    /// `WEFT_GPU_PROFILE` is set and the adapter has timestamp queries.
    pub fn new(gpu: &Gpu, dispatches: usize) -> Option<Profiler> {
        std::env::var_os("WEFT_GPU_PROFILE")?;
        if !gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            eprintln!("weft gpu: WEFT_GPU_PROFILE: the adapter has no timestamp queries");
            return None;
        }
        let capacity = (2 * dispatches as u32).clamp(2, MAX_QUERIES);
        let bytes = capacity as u64 * 8;
        let buffer = |label, usage| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(Profiler {
            queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: capacity,
            }),
            resolve: buffer(
                "profile resolve",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            read: buffer(
                "profile readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            capacity,
            inside: gpu
                .features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            period: gpu.queue.get_timestamp_period() as f64,
            totals: HashMap::new(),
        })
    }

    /// The timestamp writes of the `q`-th dispatch recorded in a submission.
    pub fn writes(&self, q: u32) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        (2 * q + 1 < self.capacity).then(|| wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * q),
            end_of_pass_write_index: Some(2 * q + 1),
        })
    }

    /// In one pass: the timestamp before dispatch `q` (after dispatch q - 1).
    pub fn write_inside(&self, pass: &mut wgpu::ComputePass, q: u32) {
        if q < self.capacity {
            pass.write_timestamp(&self.queries, q);
        }
    }

    /// Copies the timestamps of `recorded` dispatches out (after the passes).
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder, recorded: u32) {
        let n = match self.inside {
            true => recorded + 1,
            false => 2 * recorded,
        }
        .min(self.capacity);
        if n > 0 {
            enc.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
            enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, n as u64 * 8);
        }
    }

    /// Adds the submitted dispatches' times to their kernels (`names`, in order).
    pub fn collect<'a>(
        &mut self,
        gpu: &Gpu,
        names: impl Iterator<Item = &'a str>,
    ) -> Result<(), weft_backend::BackendError> {
        let per = if self.inside { 1 } else { 2 };
        let names: Vec<&str> = names.take((self.capacity as usize - 1) / per).collect();
        if names.is_empty() {
            return Ok(());
        }
        let stamps = names.len() * per + (self.inside as usize);
        let ticks = with_mapped(gpu, &self.read, stamps as u64 * 8, |b| {
            b.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect::<Vec<_>>()
        })?;
        for (q, name) in names.iter().enumerate() {
            let (a, b) = match self.inside {
                true => (ticks[q], ticks[q + 1]),
                false => (ticks[2 * q], ticks[2 * q + 1]),
            };
            let e = self.totals.entry(name.to_string()).or_default();
            e.0 += 1;
            e.1 += b.saturating_sub(a) as f64 * self.period;
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
