//! The GPU device and everything that lives as long as it: the queue, the adapter's description,
//! the kernels compiled on it (a per-device cache: `ops/kernel.rs`), and the error and device-lost reports that wgpu delivers by callback.
//!
//! A [`GpuContext`] is cheap to clone (every field is shared), so several engines — the
//! unmodified model and a variant, say — can run on one device with one set of pipelines.

use std::sync::{Arc, Mutex};

use crate::error::{GpuError, Result};
use crate::ops::kernel::{Kernel, KernelCache, KernelSpec};

/// What the app needs to know about the adapter to pick an engine and to name its choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. `llvmpipe (LLVM 19.1.7, 256 bits)` or `NVIDIA H100`.
    pub name: String,
    /// The API underneath: `Vulkan`, `Metal`, `Dx12`, `Gl` or `BrowserWebGpu`.
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// A software rasteriser (lavapipe, SwiftShader, WARP): no GPU behind it. The
    /// app prefers the CPU engine on such adapters because it is faster there.
    pub is_software: bool,
}

impl AdapterSummary {
    fn from_info(info: &wgpu::AdapterInfo) -> Self {
        // Browsers may withhold the adapter's description; name it by what is known.
        let name = match (info.name.is_empty(), info.device_type) {
            (false, _) => info.name.clone(),
            (true, wgpu::DeviceType::Cpu) => "unnamed software adapter (isFallbackAdapter)".into(),
            (true, _) => "unnamed WebGPU adapter".into(),
        };
        AdapterSummary {
            name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            // The browser maps `isFallbackAdapter` to `DeviceType::Cpu`; native drivers report
            // lavapipe and WARP as `Cpu` as well.
            is_software: info.device_type == wgpu::DeviceType::Cpu,
        }
    }
}

/// Errors and device loss reported by wgpu callbacks, kept until the engine looks at them.
#[derive(Default)]
pub(crate) struct Reports {
    /// Errors that escaped every error scope (recorded instead of wgpu's default panic).
    uncaptured: Vec<String>,
    /// Why the device was lost, once it has been.
    lost: Option<String>,
}

/// A WebGPU device, with the engine's kernels compiled on it as they are first launched.
#[derive(Clone)]
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// The kernels compiled on this device so far (each the first time a plan launches it).
    kernels: Arc<KernelCache>,
    adapter: AdapterSummary,
    reports: Arc<Mutex<Reports>>,
    /// The largest buffer the engine may create: the device's limit unless lowered.
    buffer_limit: u64,
    /// Whether the device writes GPU timestamps (per-kernel profiles).
    timestamps: bool,
}

impl GpuContext {
    /// Finds an adapter and opens a device (kernels are compiled when first launched).
    ///
    /// The device asks for WebGPU's default limits, except the two buffer-size limits, which are
    /// raised to whatever the adapter offers so that larger models fit where the hardware allows
    /// (a model that still does not fit gets [`GpuError::BufferTooLarge`], never a panic).
    ///
    /// Natively the usual wgpu environment variables apply (`WGPU_BACKEND=gl`,
    /// `WGPU_ADAPTER_NAME=...`).
    pub async fn new() -> Result<Self> {
        Self::from_instance(wgpu::InstanceDescriptor::new_without_display_handle_from_env()).await
    }

    /// [`GpuContext::new`] restricted to some backends (e.g. `wgpu::Backends::GL`). An empty set
    /// finds no adapter, which is how the tests check the [`GpuError::NoAdapter`] path.
    pub async fn with_backends(backends: wgpu::Backends) -> Result<Self> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = backends;
        Self::from_instance(descriptor).await
    }

    async fn from_instance(descriptor: wgpu::InstanceDescriptor) -> Result<Self> {
        let instance = wgpu::Instance::new(descriptor);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        Self::from_adapter(&adapter).await
    }

    /// [`GpuContext::new`], blocking the current thread until it is done (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }

    /// Opens a device on a given adapter.
    pub async fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let summary = AdapterSummary::from_info(&info);
        let offered = adapter.limits();
        let mut limits = wgpu::Limits::defaults();
        limits.max_storage_buffer_binding_size = offered.max_storage_buffer_binding_size;
        limits.max_buffer_size = offered.max_buffer_size;
        let refused = |message: String| GpuError::DeviceRefused {
            adapter: summary.name.clone(),
            message,
        };
        // GPU timestamps where the adapter has them: only `attn bench --profile` uses them.
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("attn-gpu"),
                required_features: if timestamps {
                    wgpu::Features::TIMESTAMP_QUERY
                } else {
                    wgpu::Features::empty()
                },
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| refused(e.to_string()))?;

        let reports = Arc::new(Mutex::new(Reports::default()));
        {
            let reports = reports.clone();
            device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
                if let Ok(mut r) = reports.lock() {
                    r.uncaptured.push(error.to_string());
                }
            }));
        }
        {
            let reports = reports.clone();
            device.set_device_lost_callback(move |reason, message| {
                if let Ok(mut r) = reports.lock() {
                    r.lost = Some(format!("{reason:?}: {message}"));
                }
            });
        }

        let device_limits = device.limits();
        Ok(GpuContext {
            timestamps,
            buffer_limit: device_limits
                .max_buffer_size
                .min(device_limits.max_storage_buffer_binding_size),
            device,
            queue,
            kernels: Arc::new(KernelCache::default()),
            adapter: summary,
            reports,
        })
    }

    /// `spec` compiled on this device: from the cache, or compiled now the first time.
    pub(crate) fn kernel(&self, spec: &KernelSpec) -> Kernel {
        self.kernels.get(&self.device, spec)
    }

    /// How many kernels have been compiled on this device (each once, when first launched).
    pub fn compiled_kernels(&self) -> usize {
        self.kernels.len()
    }

    /// Whether the device writes GPU timestamps ([`crate::GpuEngine::set_profiling`]).
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The limits the device was created with.
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// The wgpu device, for callers that want to share it (e.g. to draw the heatmaps).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Whether the device has been lost (a driver reset, a removed GPU): nothing more runs on it.
    pub fn is_lost(&self) -> bool {
        self.reports.lock().map_or(true, |r| r.lost.is_some())
    }

    /// Fails if the device has been lost, or if an error escaped an error scope since the last
    /// check (the error is consumed).
    pub(crate) fn check_health(&self) -> Result<()> {
        let mut reports = self
            .reports
            .lock()
            .map_err(|_| GpuError::DeviceLost("the error report lock was poisoned".into()))?;
        if let Some(lost) = &reports.lost {
            return Err(GpuError::DeviceLost(lost.clone()));
        }
        if !reports.uncaptured.is_empty() {
            let errors = std::mem::take(&mut reports.uncaptured).join("; ");
            if errors.contains("out of memory") || errors.contains("OutOfMemory") {
                return Err(GpuError::OutOfMemory(errors));
            }
            return Err(GpuError::Validation(errors));
        }
        Ok(())
    }

    /// The largest buffer (and storage binding) the engine may create on this device.
    pub fn max_buffer_bytes(&self) -> u64 {
        self.buffer_limit
    }

    /// The same device, but engines created from the returned context refuse buffers larger
    /// than `bytes` ([`GpuError::BufferTooLarge`]). Lets a native run check what would fit under
    /// a browser's default limit (128 MiB per storage binding), and the tests reach that error.
    pub fn with_buffer_limit(&self, bytes: u64) -> GpuContext {
        GpuContext {
            buffer_limit: bytes.min(self.buffer_limit),
            ..self.clone()
        }
    }

    /// Destroys the device, as a driver reset would. Later calls fail with
    /// [`GpuError::DeviceLost`]. Meant for testing the app's fallback path.
    pub fn simulate_device_loss(&self) {
        self.device.destroy();
    }
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}
