//! The GPU engine's KV cache (`GpuEngine::prefill` / `decode_step`) against the CPU engine's
//! decoder and the forward it replaces: for every variant it decodes on the GPT-2, Llama
//! (grouped-query, rotary), Qwen2 and GPT-NeoX shapes, each decoded token's logits and attention
//! row equal the CPU decoder's and the GPU's own forward over the same prefix; the bytes it
//! reports are the bytes its buffers hold for the text; and what it does not decode says so.
#![cfg(not(target_arch = "wasm32"))]

use crate::common;

use std::sync::OnceLock;

use attn_gpu::{AnyEngine, GpuContext, GpuEngine, Readback};
use attn_model::config::{Family, ModelConfig};
use attn_model::engine::unwatched;
use attn_model::{generate_with, CpuEngine, Decoder, Decoding, Engine, Model, Sampling, Variant};
use attn_test_support::assert_close_within;

/// GPU against the CPU engine: the engines' parity tolerance.
const ENGINE_TOLERANCE: f64 = 1e-4;
/// A decoded position against the same engine's forward over its prefix.
const DECODE_TOLERANCE: f64 = 1e-5;

const PROMPT: [u32; 3] = [3, 17, 5];

fn ctx() -> GpuContext {
    static CONTEXT: OnceLock<GpuContext> = OnceLock::new();
    CONTEXT
        .get_or_init(|| pollster::block_on(common::new_context()))
        .clone()
}

fn shapes() -> Vec<(&'static str, ModelConfig)> {
    let qwen2 = ModelConfig {
        family: Family::Qwen2,
        qkv_bias: true,
        ..ModelConfig::tiny_llama(40)
    };
    // Longer than a step's first plan (64 keys): the plan is rebuilt once on the way.
    let long_llama = ModelConfig {
        n_ctx: 80,
        ..ModelConfig::tiny_llama(40)
    };
    vec![
        ("gpt2", ModelConfig::tiny(40)),
        ("llama", ModelConfig::tiny_llama(40)),
        ("qwen2", qwen2),
        ("neox", ModelConfig::tiny_neox(40)),
        ("llama, 80 positions", long_llama),
    ]
}

/// The variants the GPU engine decodes from its cache.
const CACHED: [&str; 10] = [
    "{}",
    r#"{"kv_groups": 1}"#,
    r#"{"window": 4}"#,
    r#"{"drop_attention_layers": [0]}"#,
    r#"{"top_k": 2}"#,
    r#"{"top_k": 3, "window": 6, "beta": 0.5}"#,
    r#"{"heads": {"ablate": [[1, 0], [0, 3]]}}"#,
    r#"{"route_heads": 2}"#,
    r#"{"kv_rank": 3}"#,
    r#"{"kv_pca": 2}"#,
];

/// The variants it recomputes instead (the CPU engine keeps linear attention's state).
const RECOMPUTED: [&str; 3] = [
    r#"{"kernel": "linear"}"#,
    r#"{"kernel": {"random_features": 16, "seed": 3}}"#,
    r#"{"heads": {"ablate": [[1, 0]], "mode": "mean"}}"#,
];

fn next_token(len: usize, vocab: usize) -> u32 {
    ((len * 7 + 3) % vocab) as u32
}

fn model(config: &ModelConfig) -> Model {
    Model::random(config.clone(), 5, 0.3).unwrap()
}

fn gpu(config: &ModelConfig, variant: &str) -> GpuEngine {
    let mut engine = GpuEngine::new(&ctx(), model(config)).unwrap();
    engine
        .set_variant(&Variant::from_json(variant).unwrap())
        .unwrap();
    engine
}

#[test]
fn every_decoded_position_equals_the_cpu_decoder_and_the_forward() {
    for (shape, config) in shapes() {
        for variant in CACHED {
            let what = format!("{shape} {variant}");
            let mut engine = gpu(&config, variant);
            let mut cpu = CpuEngine::new(model(&config)).unwrap();
            cpu.set_variant(&Variant::from_json(variant).unwrap())
                .unwrap();
            let mut decoder = Decoder::new(cpu.prepared()).unwrap();
            let (n_layer, n_head) = (config.n_layer, config.n_head);

            let prefill = pollster::block_on(engine.prefill(&PROMPT, &Readback::everything()))
                .unwrap()
                .unwrap_or_else(|| panic!("{what}: the GPU engine decodes it"));
            common::assert_same_output(
                &format!("{what}: prefill"),
                &prefill,
                &decoder.prefill(&PROMPT).unwrap(),
            );
            // The GPU's own forward over each prefix, on a second engine.
            let mut whole = gpu(&config, variant);
            let mut tokens = PROMPT.to_vec();
            while tokens.len() < config.n_ctx {
                let next = next_token(tokens.len(), config.vocab_size);
                tokens.push(next);
                let t = tokens.len();
                let at = format!("{what}, position {}", t - 1);
                let step = pollster::block_on(engine.decode_step(next)).unwrap();
                let want = decoder.step(next).unwrap();
                assert_eq!(step.position, t - 1, "{at}");
                assert_close_within(
                    &format!("{at}: logits against the CPU"),
                    &step.logits,
                    &want.logits,
                    ENGINE_TOLERANCE,
                );
                assert_close_within(
                    &format!("{at}: attention rows against the CPU"),
                    &step.attention,
                    &want.attention,
                    ENGINE_TOLERANCE,
                );
                let full = whole.forward_blocking(&tokens).unwrap();
                assert_close_within(
                    &format!("{at}: logits against the forward"),
                    &step.logits,
                    full.logits_at(t - 1),
                    DECODE_TOLERANCE,
                );
                for layer in 0..n_layer {
                    for head in 0..n_head {
                        let map = full.attention_map(layer, head);
                        assert_close_within(
                            &format!("{at}: attention ({layer}, {head}) against the forward"),
                            step.attention_row(n_head, layer, head),
                            &map[(t - 1) * t..t * t],
                            DECODE_TOLERANCE,
                        );
                    }
                }
                let pooled = &engine.prepared().config;
                let kv_width = pooled.kv_heads() * pooled.d_head();
                let caching = (0..n_layer)
                    .filter(|&l| !engine.prepared().attention_dropped[l])
                    .count();
                assert_eq!(
                    engine.kv_cache_bytes(),
                    Some(t * caching * 2 * kv_width * 4),
                    "{at}: the bytes held"
                );
            }
            let full = pollster::block_on(engine.decode_step(1)).unwrap_err();
            assert!(
                full.to_string().contains("fills the model's context"),
                "{what}: {full}"
            );
        }
    }
}

#[test]
fn pooled_heads_shrink_the_cache_it_holds() {
    let config = ModelConfig::tiny_llama(40);
    let bytes = |variant: &str| {
        let mut engine = gpu(&config, variant);
        pollster::block_on(engine.prefill(&PROMPT, &Readback::next_token()))
            .unwrap()
            .unwrap();
        pollster::block_on(engine.decode_step(1)).unwrap();
        engine.kv_cache_bytes().unwrap()
    };
    let full = bytes("{}");
    let pooled = bytes(r#"{"kv_groups": 1}"#);
    assert_eq!(
        full / pooled,
        config.kv_heads(),
        "one key/value head instead of {}",
        config.kv_heads()
    );
    assert_eq!(
        full,
        4 * 2 * config.n_layer * config.kv_heads() * config.d_head() * 4
    );
}

#[test]
fn what_it_does_not_cache_is_recomputed_with_the_same_tokens() {
    let config = ModelConfig::tiny_llama(40);
    for variant in RECOMPUTED {
        let mut engine = gpu(&config, variant);
        let prefill = pollster::block_on(engine.prefill(&PROMPT, &Readback::next_token())).unwrap();
        assert!(prefill.is_none(), "{variant}: not from a cache on the GPU");
        assert_eq!(engine.kv_cache_bytes(), None);
        let err = pollster::block_on(engine.decode_step(1)).unwrap_err();
        assert!(err.to_string().contains("prefill"), "{variant}: {err}");
    }
}

#[test]
fn greedy_generation_gives_the_same_tokens_cached_or_recomputed_on_both_engines() {
    let config = ModelConfig::tiny_llama(40);
    for variant in ["{}", r#"{"kv_groups": 1, "window": 5}"#] {
        let greedy = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        };
        let generate = |engine: &mut AnyEngine, decoding| {
            let mut progress = unwatched();
            let run = generate_with(engine, &PROMPT, 10, &greedy, decoding, &mut progress);
            pollster::block_on(run).unwrap().done().unwrap()
        };
        let variant = Variant::from_json(variant).unwrap();
        let mut on_gpu = AnyEngine::Gpu(Box::new(GpuEngine::new(&ctx(), model(&config)).unwrap()));
        on_gpu.set_variant(&variant).unwrap();
        let mut on_cpu = AnyEngine::cpu(model(&config)).unwrap();
        on_cpu.set_variant(&variant).unwrap();
        let cached = generate(&mut on_gpu, Decoding::Cached);
        assert!(on_gpu.kv_cache_bytes().is_some(), "the GPU kept a cache");
        assert_eq!(
            cached,
            generate(&mut on_gpu, Decoding::Recompute),
            "{variant:?}"
        );
        assert_eq!(
            cached,
            generate(&mut on_cpu, Decoding::Cached),
            "{variant:?}"
        );
    }
}
