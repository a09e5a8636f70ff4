//! The same parity checks inside a browser's WebGPU (headless Chromium: SwiftShader), through
//! wasm-bindgen-test, plus an in-browser benchmark that prints forward times to the console.
//! See the crate README for the command; `webdriver.json` beside Cargo.toml passes Chromium the
//! flags WebGPU needs.
#![cfg(target_arch = "wasm32")]

use crate::common;

use attn_gpu::{EngineOptions, GpuEngine};
use attn_model::{CpuEngine, Model, ModelConfig};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

#[wasm_bindgen_test]
async fn pytorch_fixture_matches_in_the_browser() {
    let ctx = common::new_context().await;
    console_log!("adapter: {:?}", ctx.adapter());
    let cases = common::check_fixture(&ctx).await;
    assert!(cases >= 20, "the fixture has {cases} cases");
}

#[wasm_bindgen_test]
async fn family_fixtures_match_transformers_in_the_browser() {
    // Llama (GQA, tied; untied with llama3 scaling; float16), Qwen2 (and bfloat16), GPT-NeoX.
    let ctx = common::new_context().await;
    assert_eq!(common::check_family_fixtures(&ctx).await, 6);
}

#[wasm_bindgen_test]
async fn every_variant_matches_the_cpu_in_the_browser() {
    // SwiftShader is slow: every model shape, every variant, two short lengths.
    let ctx = common::new_context().await;
    for (name, config) in common::model_configs() {
        let checked = common::check_variants(&ctx, name, &config, common::VARIANTS, &[1, 5]).await;
        assert!(checked >= 24, "{name}: only {checked} cases ran");
    }
}

#[wasm_bindgen_test]
async fn the_gpu_trainer_matches_the_cpu_trainer_in_the_browser() {
    // The training kernels compiled by Chromium's own WGSL compiler: one batch's gradients on
    // two options (the head penalty; grouped-query attention with an MLP), then five steps.
    use attn_gpu::training::{loss_and_gradients, GpuTrainer};
    use attn_model::training::backprop::{check_gradients, loss_and_gradients as cpu_gradients};
    use attn_model::training::{initial_model, model_config, Task, TrainConfig, Trainer};
    use rand_chacha::rand_core::SeedableRng;

    let ctx = common::new_context().await;
    // The trainers' agreement options (attn-train writes them with burn's results): the head
    // penalty, and grouped-query attention; batches of 3, for SwiftShader.
    let fixture: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/training/agreement.json"
    )))
    .unwrap();
    for case in [&fixture["cases"][0], &fixture["cases"][2]] {
        let task = Task::from_name(case["task"].as_str().unwrap()).unwrap();
        let mut config: TrainConfig = serde_json::from_value(case["config"].clone()).unwrap();
        config.batch_size = 3;
        config.steps = 5;
        let data = task.synthetic_data().unwrap();
        let model = initial_model(&model_config(&config, data.as_ref()).unwrap(), 3).unwrap();
        let batch = data.batch(&mut rand_chacha::ChaCha8Rng::seed_from_u64(5), 3);
        let penalty = config.head_penalty as f32;
        let (cpu_loss, cpu) = cpu_gradients(&model, &batch, penalty).unwrap();
        let (gpu_loss, gpu) = loss_and_gradients(&ctx, &model, &batch, penalty)
            .await
            .unwrap();
        assert!(
            (gpu_loss.loss - cpu_loss.loss).abs() < 1e-5 * (1.0 + cpu_loss.loss),
            "{task:?}: loss {} vs CPU {}",
            gpu_loss.loss,
            cpu_loss.loss
        );
        check_gradients(&gpu, &cpu, 1e-4).unwrap_or_else(|e| panic!("{task:?}: {e}"));

        let mut cpu_run =
            Trainer::new(task, task.synthetic_data().unwrap(), config.clone()).unwrap();
        let mut gpu_run =
            GpuTrainer::new(&ctx, task, task.synthetic_data().unwrap(), config).unwrap();
        for step in 1..=5 {
            let (a, b) = (cpu_run.step().unwrap(), gpu_run.step().await.unwrap());
            assert!(
                (a.batch.loss - b.batch.loss).abs() < 1e-3,
                "{task:?} step {step}: CPU {} vs GPU {}",
                a.batch.loss,
                b.batch.loss
            );
        }
    }
}

fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

#[wasm_bindgen_test]
async fn browser_benchmark() {
    // The model of the onnxruntime-web reference figure in docs/BENCHMARKS.md (GPT-2 shape,
    // L=4, d=128), at T = 64.
    let config = ModelConfig {
        vocab_size: 512,
        n_ctx: 64,
        d_model: 128,
        n_layer: 4,
        n_head: 4,
        ..ModelConfig::tiny(512)
    };
    let model = Model::random(config, 1, 0.3).unwrap();
    let tokens: Vec<u32> = (0..64).map(|i| (i * 7 + 3) % 512).collect();
    let ctx = common::new_context().await;
    let mut gpu =
        GpuEngine::with_options(&ctx, model.clone().into(), EngineOptions::default()).unwrap();
    let cpu = CpuEngine::new(model).unwrap();
    let runs = 5;
    let mut gpu_ms = Vec::new();
    let mut cpu_ms = Vec::new();
    gpu.forward(&tokens).await.unwrap(); // warm-up: builds the plan
    cpu.forward(&tokens).unwrap();
    for _ in 0..runs {
        let start = now_ms();
        gpu.forward(&tokens).await.unwrap();
        gpu_ms.push(now_ms() - start);
        let start = now_ms();
        cpu.forward(&tokens).unwrap();
        cpu_ms.push(now_ms() - start);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let stats = gpu.stats().last_forward;
    console_log!(
        "BENCH browser adapter={:?} model=L4,d128,H4,V512 T=64 gpu_median_ms={:.1} cpu_median_ms={:.1} \
         dispatches={} submits={} flops={}",
        ctx.adapter().name,
        median(&mut gpu_ms),
        median(&mut cpu_ms),
        stats.dispatches,
        stats.submits,
        stats.flops
    );
}

/// A model of SmolLM2-135M's shape (Llama: 30 layers, d_model 576, 9 query / 3 key-value heads,
/// SwiGLU 1536, vocabulary 49 152) with random bf16 weights, which time as trained ones do.
fn smollm2_shape() -> Model {
    use attn_model::config::{Norm, Positional, Rope, RopeScaling};
    let config = ModelConfig {
        vocab_size: 49_152,
        n_ctx: 128,
        d_model: 576,
        n_layer: 30,
        n_head: 9,
        n_kv_head: Some(3),
        d_mlp: Some(1536),
        norm: Norm::RmsNorm,
        positional: Positional::Rope(Rope {
            theta: 100_000.0,
            rotary_dim: 64,
            scaling: RopeScaling::None,
        }),
        ..ModelConfig::tiny_llama(49_152)
    };
    Model::random(config, 0, 0.02)
        .unwrap()
        .to_precision(attn_model::Precision::Bf16)
}

/// Generation's decode step on the CPU engine's wasm build (what the page runs without a
/// hardware GPU), on a SmolLM2-135M-shaped Llama with random bf16 weights: the prompt's prefill,
/// then tokens decoded from the KV cache, beside recomputing the text. Prints the medians
/// (`BENCH decode` in the console; docs/BENCHMARKS.md) and checks that the last decoded token's
/// logits are the forward's.
#[wasm_bindgen_test]
async fn browser_decode_benchmark() {
    use attn_model::Decoder;
    let model = smollm2_shape();
    let engine = CpuEngine::new(model).unwrap();
    let (prompt_len, decoded, recomputed) = (32, 16, 3);
    let text: Vec<u32> = (0..prompt_len + decoded)
        .map(|i| ((i * 7919 + 3) % 49_152) as u32)
        .collect();
    let mut decoder = Decoder::new(engine.prepared()).unwrap();
    let start = now_ms();
    decoder.prefill(&text[..prompt_len]).unwrap();
    let prefill_ms = now_ms() - start;
    let mut step_ms = Vec::new();
    let mut last = Vec::new();
    for &token in &text[prompt_len..] {
        let start = now_ms();
        last = decoder.step(token).unwrap().logits;
        step_ms.push(now_ms() - start);
    }
    let mut recompute_ms = Vec::new();
    let mut full = None;
    for end in (text.len() - recomputed + 1)..=text.len() {
        let start = now_ms();
        full = Some(engine.forward(&text[..end]).unwrap());
        recompute_ms.push(now_ms() - start);
    }
    let full = full.unwrap();
    attn_test_support::assert_close("decoded logits", &last, full.logits_at(text.len() - 1));
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let step = median(&mut step_ms);
    console_log!(
        "BENCH decode model=SmolLM2-135M-shape(bf16) prompt={prompt_len} prefill_ms={prefill_ms:.0} \
         decode_median_ms={step:.1} decode_tokens_per_s={:.1} recompute_median_ms={:.0} \
         kv_cache_bytes={}",
        1000.0 / step,
        median(&mut recompute_ms),
        decoder.cache().bytes()
    );
}

/// The GPU engine's KV cache under Chromium's WebGPU: every step of a generation, from the
/// prefill to the end of the context, gives the CPU decoder's logits and attention rows.
#[wasm_bindgen_test]
async fn gpu_decoding_matches_the_cpu_decoder_in_the_browser() {
    use attn_model::{Decoder, Readback, Variant};
    let ctx = common::new_context().await;
    let configs = [
        ("gpt2", ModelConfig::tiny(40)),
        ("llama", ModelConfig::tiny_llama(40)),
    ];
    let variants = [
        "{}",
        r#"{"kv_groups": 1, "window": 4}"#,
        r#"{"kv_rank": 3}"#,
    ];
    for (name, config) in configs {
        for json in variants {
            let what = format!("{name} {json}");
            let variant = Variant::from_json(json).unwrap();
            let model = Model::random(config.clone(), 5, 0.3).unwrap();
            let mut gpu = GpuEngine::new(&ctx, model.clone()).unwrap();
            gpu.set_variant(&variant).unwrap();
            let mut cpu = CpuEngine::new(model).unwrap();
            cpu.set_variant(&variant).unwrap();
            let mut decoder = Decoder::new(cpu.prepared()).unwrap();
            let prompt = [3, 17, 5];
            let prefill = gpu.prefill(&prompt, &Readback::everything()).await;
            let prefill = prefill.unwrap().expect("decoded from the GPU's cache");
            common::assert_same_output(&what, &prefill, &decoder.prefill(&prompt).unwrap());
            for position in prompt.len()..config.n_ctx {
                let token = ((position * 7 + 3) % config.vocab_size) as u32;
                let step = gpu.decode_step(token).await.unwrap();
                let want = decoder.step(token).unwrap();
                let at = format!("{what}, position {position}");
                common::assert_close(&format!("{at}: logits"), &step.logits, &want.logits);
                common::assert_close(&format!("{at}: rows"), &step.attention, &want.attention);
            }
        }
    }
}

/// The GPU engine's decode step on the SmolLM2-135M shape in Chromium's WebGPU (SwiftShader
/// here: a CPU pretending to be a GPU, so the ratio to recomputing is what the figure says),
/// `BENCH gpu-decode` in the console. Two minutes on SwiftShader, so not part of the suite's
/// run: `… --test gpu -- --include-ignored --nocapture browser_gpu_decode`.
#[wasm_bindgen_test]
#[ignore]
async fn browser_gpu_decode_benchmark() {
    use attn_model::Readback;
    let model = smollm2_shape();
    let ctx = common::new_context().await;
    let mut engine = GpuEngine::new(&ctx, model).unwrap();
    let (prompt_len, decoded, recomputed) = (32, 8, 2);
    let text: Vec<u32> = (0..prompt_len + decoded)
        .map(|i| ((i * 7919 + 3) % 49_152) as u32)
        .collect();
    let next = Readback::next_token();
    let start = now_ms();
    let prefill = engine.prefill(&text[..prompt_len], &next);
    prefill.await.unwrap().expect("decoded from the cache");
    let prefill_ms = now_ms() - start;
    let mut step_ms = Vec::new();
    let mut last = Vec::new();
    for &token in &text[prompt_len..] {
        let start = now_ms();
        last = engine.decode_step(token).await.unwrap().logits;
        step_ms.push(now_ms() - start);
    }
    let kv_cache_bytes = engine.kv_cache_bytes().unwrap();
    let mut recompute_ms = Vec::new();
    let mut full = Vec::new();
    for end in (text.len() - recomputed + 1)..=text.len() {
        let start = now_ms();
        let output = engine.forward_with(&text[..end], &next);
        full = output.await.unwrap().logits_at(end - 1).to_vec();
        recompute_ms.push(now_ms() - start);
    }
    attn_test_support::assert_close("decoded logits", &last, &full);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let step = median(&mut step_ms);
    console_log!(
        "BENCH gpu-decode adapter={:?} model=SmolLM2-135M-shape(bf16) prompt={prompt_len} \
         prefill_ms={prefill_ms:.0} decode_median_ms={step:.1} decode_tokens_per_s={:.1} \
         recompute_median_ms={:.0} kv_cache_bytes={kv_cache_bytes}",
        ctx.adapter().name,
        1000.0 / step,
        median(&mut recompute_ms),
    );
}

/// GPT-2 small's shape (12 layers, d_model 768, 12 heads, MLP 3072, vocabulary 50 257) with
/// random f32 weights and a 128-token context, which times as trained weights do.
fn gpt2_small_shape() -> Model {
    let config = ModelConfig {
        vocab_size: 50_257,
        n_ctx: 128,
        d_model: 768,
        n_layer: 12,
        n_head: 12,
        d_mlp: Some(3072),
        ..ModelConfig::tiny(50_257)
    };
    Model::random(config, 0, 0.02).unwrap()
}

/// `windows` windows of 128 ids for the head-metric benchmarks.
fn id_windows(windows: usize) -> attn_model::corpus::HeadCorpus {
    attn_model::corpus::HeadCorpus {
        name: "random ids".into(),
        windows: (0..windows)
            .map(|w| {
                (0..128)
                    .map(|i| ((w * 131 + i * 7919 + 3) % 50_257) as u32)
                    .collect()
            })
            .collect(),
    }
}

/// Head metrics over `corpus` on `engine`: the metrics and the seconds they took.
async fn timed_heads<E: attn_model::Engine>(
    engine: &mut E,
    corpus: &attn_model::corpus::HeadCorpus,
) -> (attn_model::corpus::CorpusHeads, f64)
where
    E::Error: std::fmt::Debug,
{
    use attn_model::engine::{unwatched, Outcome};
    let start = now_ms();
    let outcome = attn_model::corpus::corpus_heads(engine, corpus, &mut unwatched()).await;
    let Outcome::Done(heads) = outcome.unwrap() else {
        panic!("nothing cancels an unwatched run")
    };
    (heads, (now_ms() - start) / 1e3)
}

/// Head metrics over a corpus of 200 windows × 128 tokens (`attn_model::corpus`, what *Look
/// inside → Heads over a corpus* runs) on a GPT-2-small-shaped model, on the CPU engine's wasm
/// build (one thread). Prints a `BENCH heads` line. A benchmark of minutes, so not part of the
/// suite: `cargo test --release --target wasm32-unknown-unknown -p attn-model -p attn-gpu -p
/// attn-web --features attn-web/relaxed-simd --test gpu -- --include-ignored
/// browser_head_metrics` (docs/BENCHMARKS.md).
#[wasm_bindgen_test]
#[ignore]
async fn browser_head_metrics_benchmark_on_the_cpu_engine() {
    let mut cpu = CpuEngine::new(gpt2_small_shape()).unwrap();
    let (heads, seconds) = timed_heads(&mut cpu, &id_windows(200)).await;
    assert_eq!(heads.heads.len(), 144);
    console_log!(
        "BENCH heads engine=cpu(wasm, relaxed SIMD, 1 thread) model=GPT-2-small-shape \
         windows=200 tokens=128 seconds={seconds:.1}"
    );
}

/// The same on the GPU engine under Chromium's WebGPU, over 4 windows (a software WebGPU takes
/// minutes a window at this shape), checked against the CPU engine's metrics on them.
#[wasm_bindgen_test]
#[ignore]
async fn browser_head_metrics_benchmark_on_the_gpu_engine() {
    let (model, corpus) = (gpt2_small_shape(), id_windows(4));
    let ctx = common::new_context().await;
    let mut gpu = GpuEngine::new(&ctx, model.clone()).unwrap();
    let (on_gpu, seconds) = timed_heads(&mut gpu, &corpus).await;
    console_log!(
        "BENCH heads engine=gpu({:?}) model=GPT-2-small-shape windows=4 tokens=128 seconds={seconds:.1}",
        ctx.adapter()
    );
    let (on_cpu, _) = timed_heads(&mut CpuEngine::new(model).unwrap(), &corpus).await;
    let scores = |h: &attn_model::corpus::CorpusHeads| -> Vec<f64> {
        h.heads
            .iter()
            .flat_map(|s| [s.previous_token, s.first_token, s.entropy, s.distance_mean])
            .collect()
    };
    common::assert_close("head metrics", &scores(&on_gpu), &scores(&on_cpu));
}
