//! # attn-gpu
//!
//! The WebGPU engine: attn-model's transformer forward pass, with every attention variant, as
//! WGSL compute kernels on wgpu — WebGPU in the browser, Vulkan/Metal/DX12 natively. It returns
//! the same [`attn_model::Output`] as the CPU engine and is tested against it kernel by kernel and
//! variant by variant.
//!
//! ```no_run
//! # // The blocking calls are native only; the browser awaits `new()` and `forward()`.
//! # #[cfg(target_arch = "wasm32")] fn main() {}
//! # #[cfg(not(target_arch = "wasm32"))]
//! # fn main() -> Result<(), attn_gpu::GpuError> {
//! use attn_gpu::{GpuContext, GpuEngine};
//! use attn_model::{Model, ModelConfig, Variant};
//!
//! let ctx = GpuContext::new_blocking()?; // `GpuContext::new().await` in the browser
//! let model = Model::random(ModelConfig::tiny(50), 7, 0.3)?;
//! let mut engine = GpuEngine::new(&ctx, model)?;
//! engine.set_variant(&Variant::from_json(r#"{"window": 4, "kv_groups": 2}"#)?)?;
//! let output = engine.forward_blocking(&[1, 2, 3])?;
//! assert_eq!(engine.stats().last_forward.submits, 1);
//! # let _ = output; Ok(()) }
//! ```
//!
//! When buffers, bind groups and pipelines are created is described in [`engine`]; which
//! launches make up a forward in `forward_plan`; the kernels, one `.rs` + `.wgsl` pair per op
//! family, in `ops`.

mod any_engine;
mod context;
mod cost;
pub mod engine;
mod error;
mod forward_plan;
mod ops;
mod plan;
mod readback;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod testing;
pub mod training;
mod weights;

pub use any_engine::{is_device_failure, AnyEngine, EngineKind, EnginePair};
pub use context::{AdapterSummary, GpuContext};
pub use cost::forward_flops;
pub use engine::{
    AttentionMaps, EngineOptions, EngineStats, ForwardStats, GpuEngine, KernelTime, LogitRows,
    Readback,
};
pub use error::{GpuError, Result};
pub use ops::attention::MAX_SEQ_LEN;
