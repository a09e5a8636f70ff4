//! The playground's CPU and GPU engines behind a three-call JavaScript API, so `bench/bench.js`
//! can time them beside onnxruntime-web in one page on the same weights:
//!
//! ```js
//! const engine = await BenchEngine.load("cpu", configJson, safetensorsBytes);
//! const lastLogits = await engine.forward(tokens); // Float32Array; every output is read back
//! ```
//!
//! Each forward reads back what the page draws (every position's logits, every attention map,
//! the head norms), like the onnxruntime-web side, which returns logits and every layer's
//! attention probabilities. Only built for wasm32.
#![cfg(target_arch = "wasm32")]

use attn_gpu::{AnyEngine, GpuContext, Readback};
use attn_model::Model;
use wasm_bindgen::prelude::*;
/// With the feature `threads`: `await initThreadPool(n)` starts rayon's pool of `n` web workers
/// sharing this module's memory, before the first forward.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// One engine on one model.
#[wasm_bindgen]
pub struct BenchEngine {
    engine: AnyEngine,
    // The GPU engine's device lives as long as the engine.
    _context: Option<GpuContext>,
}

fn js_error(error: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&error.to_string())
}

#[wasm_bindgen]
impl BenchEngine {
    /// `kind` is `"cpu"` or `"gpu"`; the model is a Hugging Face GPT-2 (`config.json` and
    /// `model.safetensors`).
    pub async fn load(
        kind: String,
        config_json: String,
        weights: Vec<u8>,
    ) -> Result<BenchEngine, JsValue> {
        let model = Model::from_hf(&config_json, &[&weights]).map_err(js_error)?;
        match kind.as_str() {
            "cpu" => Ok(BenchEngine {
                engine: AnyEngine::cpu(model).map_err(js_error)?,
                _context: None,
            }),
            "gpu" => {
                let context = GpuContext::new().await.map_err(js_error)?;
                let engine = AnyEngine::gpu(&context, model).map_err(js_error)?;
                Ok(BenchEngine {
                    engine,
                    _context: Some(context),
                })
            }
            other => Err(js_error(format!("unknown engine {other:?}: cpu or gpu"))),
        }
    }

    /// The adapter's name (GPU) or `"cpu"`.
    pub fn describe(&self) -> String {
        self.engine.describe()
    }

    /// One forward pass that reads every output back; returns the last position's logits.
    pub async fn forward(&mut self, tokens: Vec<u32>) -> Result<Vec<f32>, JsValue> {
        // With the feature `threads` the CPU engine's forward runs on rayon's pool and this
        // thread (the page's main thread, which may not block) awaits it (`attn_model::pool`).
        let output = self
            .engine
            .forward(&tokens, &Readback::everything())
            .await
            .map_err(js_error)?;
        let vocab = self.engine.model().config.vocab_size;
        let logits = output.logits;
        Ok(logits[logits.len() - vocab..].to_vec())
    }
}
