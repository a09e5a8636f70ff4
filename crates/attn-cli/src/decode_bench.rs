//! `attn bench --decode N`: generation's two phases timed on each engine — the prefill of the
//! prompt, then each new token decoded from the KV cache — beside recomputing the whole text for
//! every token (what generation did without a cache), with the bytes the cache holds at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use attn_gpu::{AnyEngine, GpuEngine, Readback};
use attn_model::{
    Engine, Model, ModelConfig, Norm, Positional, Precision, Rope, RopeScaling, Variant,
};
use pollster::block_on;
use serde_json::{json, Value};

use crate::failure::Failure;
use crate::gpu::{gpu_context, BenchEngines};

/// A model of a published shape with random weights, for timing (`attn bench random:NAME`):
/// `smollm2-135m` (Llama: 30 layers, d_model 576, 9 query / 3 key-value heads, SwiGLU 1536,
/// vocabulary 49 152, tied, bf16, context cut to 2048) or `gpt2-small` (12 layers, d_model 768,
/// 12 heads, vocabulary 50 257, context 1024, f32). `None` for any other path.
pub(crate) fn random_model(path: &std::path::Path) -> Result<Option<Model>, Failure> {
    let Some(name) = path.to_str().and_then(|p| p.strip_prefix("random:")) else {
        return Ok(None);
    };
    let (config, precision) = match name {
        "smollm2-135m" => (
            ModelConfig {
                vocab_size: 49_152,
                n_ctx: 2048,
                d_model: 576,
                n_layer: 30,
                n_head: 9,
                n_kv_head: Some(3),
                d_mlp: Some(1536),
                norm: Norm::RmsNorm,
                layer_norm_eps: 1e-5,
                positional: Positional::Rope(Rope {
                    theta: 100_000.0,
                    rotary_dim: 64,
                    scaling: RopeScaling::None,
                }),
                ..ModelConfig::tiny_llama(49_152)
            },
            Precision::Bf16,
        ),
        "gpt2-small" => (
            ModelConfig {
                vocab_size: 50_257,
                n_ctx: 1024,
                d_model: 768,
                n_layer: 12,
                n_head: 12,
                d_mlp: Some(3072),
                ..ModelConfig::tiny(50_257)
            },
            Precision::F32,
        ),
        other => {
            return Err(Failure(format!(
                "random:{other}: the random shapes are random:smollm2-135m and random:gpt2-small"
            )))
        }
    };
    let model = Model::random(config, 0, 0.02)?;
    Ok(Some(model.to_precision(precision)))
}

/// What `attn bench --decode` runs.
pub(crate) struct DecodeBench {
    pub engines: BenchEngines,
    /// Prompt length.
    pub prompt: usize,
    /// Tokens decoded after it.
    pub tokens: usize,
    /// Timed prefills (the decode runs after the last).
    pub runs: usize,
    pub json: bool,
}

/// Median, 10th and 90th percentile in milliseconds (nearest rank).
fn spread(times: &[Duration]) -> Value {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    json!({ "median": at(0.5), "p10": at(0.1), "p90": at(0.9), "n": ms.len() })
}

/// The weights one decoded token reads: every projection of every block and the unembedding
/// table (the token's own embedding row is negligible). Over the memory bandwidth, the floor of
/// a decode step.
fn bytes_read_per_token(model: &Model) -> usize {
    let linears = model.blocks.iter().flat_map(|b| {
        let attn = [&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o];
        let mlp = b
            .mlp
            .iter()
            .flat_map(|m| [Some(&m.fc), m.gate.as_ref(), Some(&m.proj)]);
        attn.into_iter().chain(mlp.flatten())
    });
    let projections: usize = linears.map(|l| l.weight.byte_len()).sum();
    let unembedding = model.lm_head.as_ref().unwrap_or(&model.token_embedding);
    projections + unembedding.byte_len()
}

/// One engine's figures.
fn time_engine(
    engine: &mut AnyEngine,
    prompt: &[u32],
    continuation: &[u32],
    runs: usize,
) -> Result<Value, Failure> {
    let next = Readback::next_token();
    // Warm-up, then the timed prefills.
    block_on(engine.prefill(prompt, &next))?;
    let mut prefills = Vec::with_capacity(runs);
    let mut cached = false;
    for _ in 0..runs {
        let start = Instant::now();
        cached = block_on(engine.prefill(prompt, &next))?.is_some();
        prefills.push(start.elapsed());
    }
    let mut steps = Vec::with_capacity(continuation.len());
    if cached {
        for &token in continuation {
            let start = Instant::now();
            block_on(engine.decode_step(token))?;
            steps.push(start.elapsed());
        }
    }
    let kv_cache_bytes = engine.kv_cache_bytes();
    let mut recomputes = Vec::with_capacity(continuation.len());
    let mut text = prompt.to_vec();
    for &token in continuation {
        text.push(token);
        let start = Instant::now();
        block_on(engine.forward(&text, &next))?;
        recomputes.push(start.elapsed());
    }
    let per_second = |times: &[Duration]| -> Option<f64> {
        let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
        (!times.is_empty()).then(|| times.len() as f64 / total)
    };
    Ok(json!({
        "engine": engine.describe(),
        "cached": cached,
        "prefill_ms": spread(&prefills),
        "decode_ms_per_token": (!steps.is_empty()).then(|| spread(&steps)),
        "decode_tokens_per_second": per_second(&steps),
        "recompute_ms_per_token": spread(&recomputes),
        "recompute_tokens_per_second": per_second(&recomputes),
        "kv_cache_bytes": kv_cache_bytes,
    }))
}

/// `attn bench --decode`.
pub(crate) fn bench_decode(
    model: Model,
    variant: &Variant,
    bench: &DecodeBench,
) -> Result<(), Failure> {
    let c = model.config.clone();
    if bench.runs == 0 || bench.tokens == 0 || bench.prompt == 0 {
        return Err(Failure(
            "--runs, --decode and --seq must be at least 1".into(),
        ));
    }
    if c.n_classes.is_some() {
        return Err(Failure(
            "--decode needs a language model, not a classifier".into(),
        ));
    }
    if bench.prompt + bench.tokens > c.n_ctx {
        return Err(Failure(format!(
            "--seq {} and --decode {} need {} positions, but the model's context holds {}",
            bench.prompt,
            bench.tokens,
            bench.prompt + bench.tokens,
            c.n_ctx
        )));
    }
    let walk = |i: usize| ((i * 7 + 3) % c.vocab_size) as u32;
    let prompt: Vec<u32> = (0..bench.prompt).map(walk).collect();
    let continuation: Vec<u32> = (bench.prompt..bench.prompt + bench.tokens)
        .map(walk)
        .collect();
    let weight_bytes = bytes_read_per_token(&model);
    let model = Arc::new(model);
    let mut engines = Vec::new();
    if matches!(bench.engines, BenchEngines::Cpu | BenchEngines::Both) {
        let mut engine = AnyEngine::cpu_shared(model.clone())?;
        engine.set_variant(variant)?;
        engines.push(time_engine(
            &mut engine,
            &prompt,
            &continuation,
            bench.runs,
        )?);
    }
    if matches!(bench.engines, BenchEngines::Gpu | BenchEngines::Both) {
        let ctx = gpu_context()?;
        let mut engine = AnyEngine::Gpu(Box::new(GpuEngine::shared(&ctx, model.clone())?));
        engine.set_variant(variant)?;
        engines.push(time_engine(
            &mut engine,
            &prompt,
            &continuation,
            bench.runs,
        )?);
    }
    let report = json!({
        "model": {
            "n_layer": c.n_layer, "n_head": c.n_head, "n_kv_head": c.kv_heads(),
            "d_model": c.d_model, "parameters": c.parameter_count(),
            "weight_bytes_read_per_token": weight_bytes,
        },
        "variant": variant,
        "prompt_tokens": bench.prompt,
        "decode_tokens": bench.tokens,
        "engines": engines,
    });
    if bench.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("JSON values always serialise")
        );
        return Ok(());
    }
    println!(
        "model: {} layers × {} heads (kv {}), d_model {}, {:.1} MB of weights; prompt {} tokens, \
         then {} decoded",
        c.n_layer,
        c.n_head,
        c.kv_heads(),
        c.d_model,
        weight_bytes as f64 / 1e6,
        bench.prompt,
        bench.tokens
    );
    for e in report["engines"].as_array().expect("a list") {
        let ms = |key: &str| e[key]["median"].as_f64();
        println!(
            "{}: prefill {:.2} ms; {}; recompute {:.2} ms per token ({:.1} tokens/s); KV cache {}",
            e["engine"].as_str().unwrap_or("?"),
            ms("prefill_ms").unwrap_or(f64::NAN),
            match ms("decode_ms_per_token") {
                Some(step) => format!(
                    "decode {step:.2} ms per token ({:.1} tokens/s)",
                    e["decode_tokens_per_second"].as_f64().unwrap_or(f64::NAN)
                ),
                None => "no KV cache on this engine".into(),
            },
            ms("recompute_ms_per_token").unwrap_or(f64::NAN),
            e["recompute_tokens_per_second"]
                .as_f64()
                .unwrap_or(f64::NAN),
            match e["kv_cache_bytes"].as_u64() {
                Some(bytes) => format!("{bytes} bytes at the end"),
                None => "none".into(),
            }
        );
    }
    Ok(())
}
