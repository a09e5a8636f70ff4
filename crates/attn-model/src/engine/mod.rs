//! The engine: the CPU reference forward (`forward`), the variant overlay it runs with
//! (`prepare`), its numerics (`linalg`, `fastmath`, `rope`, the browser's matrix product
//! `gemm_simd128` and its thread `pool`), and — in this file — the engine API.
//!
//! One engine API for every analysis: the CPU engine here and the GPU engine in `attn-gpu` both
//! implement [`Engine`], and head importance, generation and role scores take `&mut impl Engine`,
//! so they run on whichever engine the caller (the page, the CLI) holds. A forward says what to
//! read back ([`Readback`]); long loops report progress and can be cancelled ([`Progress`]).

pub mod api;
pub mod backward;
pub mod cpu;
pub mod decode;
pub mod fastmath;
pub mod forward;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod gemm_simd128;
pub mod hooks;
pub mod inputs;
pub mod linalg;
pub mod output;
pub mod pool;
pub mod prepare;
pub mod prepared;
pub mod rope;

// The engine API under its short path (`attn_model::engine::Engine`, …).
pub use api::{
    now, restore_variant, unwatched, AttentionMaps, Engine, LogitRows, Outcome, Progress, Readback,
    Step,
};
pub use decode::{kv_cache_bytes, Decoder, KvCache, LayerCache, StepOutput};
pub use hooks::{Captured, HookPoint, Hooks};
