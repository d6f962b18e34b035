//! The GPU device: one adapter, device and queue per process, opened on first use and
//! shared by every executable. Vulkan only (the one backend wgpu reaches on the
//! machines weft targets, including Mesa's software rasteriser in CI).

use crate::schedule::{COOP_BK, COOP_TM, COOP_TN};
use std::sync::{Arc, Mutex, OnceLock};
use weft_backend::BackendError;

/// Workgroup memory of gemm_coop.wgsl: its two tiles of rows of BK + 8 halves, and
/// eight 16 × 16 f32 staging tiles.
const COOP_WORKGROUP_BYTES: u32 = ((COOP_TM + COOP_TN) * (COOP_BK + 8) * 2 + 8 * 256 * 4) as u32;

/// The opened device and what it offers.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The tile shapes and types of the adapter's cooperative matrices (tensor cores).
    pub coop: Vec<wgpu::CooperativeMatrixProperties>,
    /// The device has 16 × 16 × 16 f16·f16 + f32 cooperative matrices enabled and
    /// 32-lane subgroups: what gemm_coop.wgsl needs.
    pub coop_gemm: bool,
    /// The first error the device reported outside an error scope (wgpu would
    /// otherwise panic): the next wait returns it.
    error: Arc<Mutex<Option<String>>>,
}

static GPU: OnceLock<Result<Arc<Gpu>, String>> = OnceLock::new();

pub(crate) fn err(message: impl Into<String>) -> BackendError {
    BackendError::Device {
        backend: crate::NAME,
        message: message.into(),
    }
}

/// The process's GPU, opened on first call; one clear error where no usable adapter is.
pub fn gpu() -> Result<Arc<Gpu>, BackendError> {
    GPU.get_or_init(|| open().map(Arc::new))
        .clone()
        .map_err(err)
}

fn open() -> Result<Gpu, String> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::VULKAN;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .map_err(|e| {
        format!(
            "no usable GPU adapter ({e}); weft's GPU backend needs a Vulkan driver \
             (on a machine without a GPU, Mesa's software one: Debian mesa-vulkan-drivers)"
        )
    })?;
    let info = adapter.get_info();
    let coop = adapter.cooperative_matrix_properties();
    let have = adapter.limits();
    // Ask for everything the adapter has: storage sizes and workgroup memory decide
    // which models fit.
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: have.max_storage_buffer_binding_size,
        max_buffer_size: have.max_buffer_size,
        max_storage_buffers_per_shader_stage: have.max_storage_buffers_per_shader_stage,
        max_compute_workgroup_storage_size: have.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: have.max_compute_invocations_per_workgroup,
        max_compute_workgroup_size_x: have.max_compute_workgroup_size_x,
        max_compute_workgroups_per_dimension: have.max_compute_workgroups_per_dimension,
        ..wgpu::Limits::default()
    };
    // Timestamps serve WEFT_GPU_PROFILE (profile.rs). Subgroup operations add the
    // matvecs' lane sums; WEFT_GPU_NO_SUBGROUPS leaves them off (an A/B, or a driver
    // that gets them wrong).
    let mut wanted = wgpu::Features::SHADER_F16
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
    if std::env::var_os("WEFT_GPU_NO_SUBGROUPS").is_none() {
        wanted |= wgpu::Features::SUBGROUP;
    }
    // Tensor cores for the prefill GEMM (activations int8; WEFT_GPU_NO_COOP=1 leaves
    // them off): wgpu's experimental cooperative matrices, where the adapter has the tile
    // gemm_coop.wgsl uses, 32-lane subgroups (its eight subgroups a workgroup) and the
    // workgroup memory and size it takes.
    let coop_tile = coop.iter().any(|c| {
        (c.m_size, c.n_size, c.k_size) == (16, 16, 16)
            && c.ab_type == wgpu::CooperativeScalarType::F16
            && c.cr_type == wgpu::CooperativeScalarType::F32
    });
    if coop_tile
        && (info.subgroup_min_size, info.subgroup_max_size) == (32, 32)
        && have.max_compute_workgroup_storage_size >= COOP_WORKGROUP_BYTES
        && have.max_compute_invocations_per_workgroup >= 256
        && wanted.contains(wgpu::Features::SUBGROUP)
        && std::env::var_os("WEFT_GPU_NO_COOP").is_none()
    {
        wanted |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    }
    let features = adapter.features() & wanted;
    let coop_gemm = features.contains(
        wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
            | wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP,
    );
    // SAFETY: the one experimental feature weft asks for is cooperative matrices, used by
    // one kernel (gemm_coop.wgsl) and only where the adapter lists its tile; that
    // kernel's parity with the other GEMMs is checked on such an adapter (scripts/gpu).
    let experimental_features = match coop_gemm {
        true => unsafe { wgpu::ExperimentalFeatures::enabled() },
        false => wgpu::ExperimentalFeatures::disabled(),
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("weft"),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features,
        ..Default::default()
    }))
    .map_err(|e| format!("the adapter '{}' refused a device: {e}", info.name))?;
    let error = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&error);
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| e.to_string());
    }));
    Ok(Gpu {
        error,
        device,
        queue,
        info,
        limits,
        features,
        coop,
        coop_gemm,
    })
}

impl Gpu {
    /// What `weft inspect --gpu` prints: the adapter, its features and limits.
    pub fn report(&self) -> String {
        let i = &self.info;
        let l = &self.limits;
        format!(
            "adapter: {} ({:?}, {:?} backend, driver {} {})\n\
             features: shader-f16 {}, subgroups {}\n\
             cooperative matrices (m×n×k a·b+c): {}\n\
             limits: storage binding {} MiB, buffer {} MiB, {} storage buffers per stage, \
             workgroup memory {} KiB, {} invocations per workgroup, {} workgroups per dimension",
            i.name,
            i.device_type,
            i.backend,
            i.driver,
            i.driver_info,
            yes(self.features.contains(wgpu::Features::SHADER_F16)),
            yes(self.features.contains(wgpu::Features::SUBGROUP)),
            coop_shapes(&self.coop),
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
        )
    }

    /// Waits for all submitted work; a lost device is an error.
    pub fn wait(&self) -> Result<(), BackendError> {
        self.poll(wgpu::PollType::wait_indefinitely())
    }

    /// Waits until `done` says so (a readback's map callback has run). On a hardware
    /// adapter it spins on polls that do not block, for up to [`SPIN`]: a thread blocked
    /// in the driver woke 0.1 to 0.16 ms after the GPU finished on an H200, a tenth of a
    /// small model's decode step. A CPU adapter (lavapipe) needs the cores for itself,
    /// so it blocks.
    pub fn wait_for(&self, done: impl Fn() -> bool) -> Result<(), BackendError> {
        if self.info.device_type != wgpu::DeviceType::Cpu {
            let start = std::time::Instant::now();
            while start.elapsed() < SPIN {
                self.poll(wgpu::PollType::Poll)?;
                if done() {
                    return Ok(());
                }
            }
        }
        self.wait()
    }

    fn poll(&self, how: wgpu::PollType) -> Result<(), BackendError> {
        self.device
            .poll(how)
            .map_err(|e| err(format!("waiting for the GPU: {e}")))?;
        let reported = self.error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match reported {
            Some(e) => Err(err(format!("the GPU reported an error: {e}"))),
            None => Ok(()),
        }
    }
}

/// How long [`Gpu::wait_for`] spins before it blocks.
const SPIN: std::time::Duration = std::time::Duration::from_millis(20);

fn coop_shapes(coop: &[wgpu::CooperativeMatrixProperties]) -> String {
    if coop.is_empty() {
        return "none".into();
    }
    let shapes: Vec<String> = coop
        .iter()
        .map(|c| {
            format!(
                "{}×{}×{} {:?}·{:?}+{:?}",
                c.m_size, c.n_size, c.k_size, c.ab_type, c.ab_type, c.cr_type
            )
        })
        .collect();
    shapes.join(", ")
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
