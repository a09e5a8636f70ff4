//! # attn-model
//!
//! Small transformers in plain Rust, with no GPU and no browser: the model config and weights,
//! the project's own safetensors format and Hugging Face import (GPT-2, Llama, Qwen2, GPT-NeoX), tokenizers, the CPU
//! reference forward pass with every attention variant, and the metrics that compare a variant
//! with the unmodified model.
//!
//! ```
//! use attn_model::{CpuEngine, Model, ModelConfig, Variant};
//!
//! let model = Model::random(ModelConfig::tiny(50), 7, 0.3).unwrap();
//! let mut engine = CpuEngine::new(model).unwrap();
//! let baseline = engine.forward(&[1, 2, 3]).unwrap();
//! engine.set_variant(&Variant::from_json(r#"{"kv_groups": 1}"#).unwrap()).unwrap();
//! let mqa = engine.forward(&[1, 2, 3]).unwrap();
//! assert!(mqa.kv_bytes_per_token < baseline.kv_bytes_per_token);
//! let cost = attn_model::compare(&baseline, &mqa, &[1, 2, 3]);
//! assert!(cost.mean_kl >= 0.0);
//! ```
//!
//! The formulas of every variant are in `docs/VARIANTS.md`; the file format in `docs/FORMAT.md`.

// The crate's parts, one folder each; the modules keep their short paths (`attn_model::forward`,
// `attn_model::config`, …) through the re-exports below.
pub mod analysis;
pub mod engine;
pub mod error;
pub mod io;
pub mod lesson;
pub mod model;
pub mod training;

pub use analysis::{
    attribution, circuits, corpus, generate, importance, lens, metrics, patching, qk, roles, steer,
    thumbnail, tradeoff,
};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use engine::gemm_simd128;
pub use engine::{fastmath, forward, linalg, pool, prepare, rope};
pub use io::{format, fuzzing, hf, load, tensors, tokenizer};
pub use model::{config, schema, url, variant, weights};

pub use attribution::{direct_logit_attribution, Attribution};
pub use circuits::{circuits, Circuits, HeadCircuit};
pub use config::{Activation, Family, ModelConfig, Norm, Positional, Rope, RopeScaling};
pub use engine::cpu::{CpuEngine, CpuEngineStats};
pub use engine::output::Output;
pub use engine::{
    kv_cache_bytes, now, Captured, Decoder, Engine, HookPoint, Hooks, KvCache, LayerCache, Outcome,
    Progress, Readback, Step, StepOutput,
};
pub use error::{ModelError, Result};
pub use forward::{forward, forward_hooked};
pub use generate::{generate, generate_with, Decoding, Generation, NextToken, Sampling};
pub use importance::{head_importance, prune_to_budget, HeadImportance};
pub use lens::{logit_lens, LogitLens};
pub use lesson::{layer_similarity, run_measurement, Lesson, LessonStep, Measured, Measurement};
pub use load::load_model;
pub use metrics::{compare, Comparison};
pub use model::{Model, NormWeights};
pub use patching::{activation_patching, attribution_patching, Patching};
pub use prepare::{prepare, KvProjection, PreparedModel, WeightSettings};
pub use qk::{qk_attribution, QkAttribution};
pub use roles::{copying_scores, head_roles, role_probe, roles_on_input, HeadRoles};
pub use schema::{ParamRole, ParamSpec};
pub use steer::{actadd_vector, lens_direction, lens_vector, Steered, Steering};
pub use tensors::{Declared, LoadedTensors, TensorStream};
pub use tokenizer::{Tokenizer, TokenizerSpec};
pub use tradeoff::{kv_cache_tradeoff, TradeoffPoint};
pub use variant::{AblationMode, HeadAblation, Kernel, KernelName, Variant};
pub use weights::{Precision, Weights};
