//! Buffers on the device: uploads, the per-step parameter block, one-off dispatches
//! (kernel tests, `decode_rows`) and readback.

use crate::device::{err, Gpu};
use weft_backend::BackendError;
use wgpu::util::DeviceExt;

/// Bytes of one step's parameter block in the uniform buffer (the usual minimum
/// uniform offset alignment; the kernels read the first `PARAM_WORDS` words).
pub const PARAM_STRIDE: u64 = 256;
pub const PARAM_WORDS: usize = 20;

/// A step's parameters: twenty words, f32 values as their bits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Params(pub [u32; PARAM_WORDS]);

impl Params {
    pub fn new(words: &[u32]) -> Params {
        let mut p = [0; PARAM_WORDS];
        p[..words.len()].copy_from_slice(words);
        Params(p)
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0; PARAM_WORDS * 4];
        self.write(&mut b);
        b
    }

    /// Writes the words into `out` (`PARAM_WORDS` · 4 bytes), with no allocation: the
    /// per-call path.
    pub fn write(&self, out: &mut [u8]) {
        for (o, w) in out.chunks_exact_mut(4).zip(&self.0) {
            o.copy_from_slice(&w.to_le_bytes());
        }
    }
}

/// The words of an f32 parameter.
pub fn f(v: f32) -> u32 {
    v.to_bits()
}

/// A read-only storage buffer holding `bytes` (padded to whole words), checked against
/// the device's binding limit.
pub fn upload(gpu: &Gpu, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer, BackendError> {
    let padded = bytes.len().div_ceil(4).max(1) * 4;
    check_size(gpu, label, padded as u64)?;
    let mut contents;
    let data = if padded == bytes.len() {
        bytes
    } else {
        contents = Vec::new();
        contents
            .try_reserve_exact(padded)
            .map_err(|_| BackendError::Alloc {
                what: format!("a padded copy of {label}"),
                bytes: padded as u128,
            })?;
        contents.extend_from_slice(bytes);
        contents.resize(padded, 0);
        &contents
    };
    Ok(gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: data,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        }))
}

/// A zeroed storage buffer of `bytes` that kernels write and the host can copy from.
pub fn storage(gpu: &Gpu, label: &str, bytes: u64) -> Result<wgpu::Buffer, BackendError> {
    let bytes = bytes.div_ceil(4).max(1) * 4;
    check_size(gpu, label, bytes)?;
    Ok(gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    }))
}

fn check_size(gpu: &Gpu, label: &str, bytes: u64) -> Result<(), BackendError> {
    let limit = gpu.limits.max_storage_buffer_binding_size;
    if bytes > limit {
        return Err(err(format!(
            "{label} needs a buffer of {bytes} bytes, past the adapter's storage binding \
             limit of {limit} bytes"
        )));
    }
    Ok(())
}

/// Dispatch groups `(x, y)` for `n` workgroups, x capped by the per-dimension limit.
pub fn groups(gpu: &Gpu, n: u32) -> (u32, u32) {
    let cap = gpu.limits.max_compute_workgroups_per_dimension.min(32768);
    if n <= cap {
        (n.max(1), 1)
    } else {
        (cap, n.div_ceil(cap))
    }
}

/// Copies `bytes` of `src` back to the host (waits for all submitted work).
pub fn read_back(gpu: &Gpu, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>, BackendError> {
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
    gpu.queue.submit([enc.finish()]);
    let mut out = vec![0f32; (bytes / 4) as usize];
    map_into(gpu, &staging, &mut out)?;
    Ok(out)
}

/// Maps `staging` (a MAP_READ buffer whose copy was submitted) and copies it into `out`;
/// returns when the mapping was ready, before the copy (for WEFT_GPU_TIMING).
pub fn map_into(
    gpu: &Gpu,
    staging: &wgpu::Buffer,
    out: &mut [f32],
) -> Result<std::time::Instant, BackendError> {
    with_mapped(gpu, staging, (out.len() * 4) as u64, |view| {
        let mapped = std::time::Instant::now();
        for (o, c) in out.iter_mut().zip(view.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        mapped
    })
}

/// Waits for the GPU, maps the first `bytes` of `staging` and hands them to `read`.
pub fn with_mapped<R>(
    gpu: &Gpu,
    staging: &wgpu::Buffer,
    bytes: u64,
    read: impl FnOnce(&[u8]) -> R,
) -> Result<R, BackendError> {
    let slice = staging.slice(..bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    let got = std::cell::Cell::new(None);
    gpu.wait_for(|| rx.try_recv().map(|r| got.set(Some(r))).is_ok())?;
    // Another thread's poll may be running the callback still: recv waits for it.
    match got.into_inner() {
        Some(r) => r,
        None => rx.recv().map_err(|_| err("the GPU dropped a readback"))?,
    }
    .map_err(|e| err(format!("reading back from the GPU: {e}")))?;
    let r = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| err(format!("reading back from the GPU: {e}")))?;
        read(&view)
    };
    staging.unmap();
    Ok(r)
}

/// Runs one kernel once: `params` at binding 0, then `bindings` in order (tests and
/// one-off decodes; sessions encode whole forward calls instead).
pub fn dispatch_once(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    params: Params,
    bindings: &[&wgpu::Buffer],
    groups: (u32, u32),
) {
    let ubuf = gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: &params.bytes(),
            usage: wgpu::BufferUsages::UNIFORM,
        });
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: ubuf.as_entire_binding(),
    }];
    for (i, b) in bindings.iter().enumerate() {
        entries.push(wgpu::BindGroupEntry {
            binding: i as u32 + 1,
            resource: b.as_entire_binding(),
        });
    }
    let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }
    gpu.queue.submit([enc.finish()]);
}
