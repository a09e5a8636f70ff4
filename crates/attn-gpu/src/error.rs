//! The errors the GPU engine reports. Each one is something the app can show to a person and
//! answer by falling back to the CPU engine; none of them is a panic or a hang.

use attn_model::ModelError;

/// Everything that can go wrong while setting up or running the GPU engine.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No WebGPU/Vulkan/Metal/DX12 adapter could be found (or the browser refused one).
    #[error("no GPU adapter is available: {0}")]
    NoAdapter(String),
    /// An adapter was found but refused to create a device with the limits the engine needs.
    #[error("the GPU adapter {adapter:?} refused to create a device: {message}")]
    DeviceRefused { adapter: String, message: String },
    /// The device was lost (driver reset, the tab was backgrounded for too long, `destroy`).
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    /// A buffer would be larger than the device allows.
    #[error(
        "the {what} buffer needs {bytes} bytes but this GPU allows at most {limit} bytes per buffer"
    )]
    BufferTooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
    /// A dispatch would need more workgroups than the device allows in one dimension.
    #[error(
        "the {what} kernel needs {count} workgroups in one dimension but this GPU allows {limit}"
    )]
    TooManyWorkgroups {
        what: String,
        count: u64,
        limit: u32,
    },
    /// The input is valid for the model but beyond what the GPU kernels support.
    #[error("unsupported on the GPU engine: {0}")]
    Unsupported(String),
    /// The GPU ran out of memory while allocating buffers.
    #[error("the GPU ran out of memory: {0}")]
    OutOfMemory(String),
    /// WebGPU rejected a command: a bug in this crate, reported rather than hidden.
    #[error("the GPU rejected a command (this is a bug in attn-gpu): {0}")]
    Validation(String),
    /// Reading the results back failed.
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),
    /// The GPU did not finish within the engine's time limit.
    #[error("the GPU did not finish the forward pass within {0} seconds")]
    Timeout(u64),
    /// The model, variant or input was rejected (the same checks as the CPU engine).
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// `Result` with [`GpuError`].
pub type Result<T, E = GpuError> = std::result::Result<T, E>;

impl From<wgpu::Error> for GpuError {
    fn from(error: wgpu::Error) -> Self {
        match error {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(error.to_string()),
            other => GpuError::Validation(other.to_string()),
        }
    }
}
