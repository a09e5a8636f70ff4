//! Decoding from the KV cache (`engine::decode`) against the forward it replaces: for every
//! variant the cache is shaped by, on the GPT-2, Llama (grouped-query, rotary), Qwen2 and
//! GPT-NeoX shapes, each decoded token's logits and attention row equal a whole forward over
//! the same prefix at its last position, and the bytes the cache holds equal the variant's
//! formula.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use attn_model::config::{Family, ModelConfig};
use attn_model::engine::{now, unwatched};
use attn_model::{
    generate_with, kv_cache_bytes, CpuEngine, Decoder, Decoding, Engine, Generation, LayerCache,
    Model, Readback, Sampling, Variant,
};
use attn_test_support::assert_close_within;

/// How close a decoded position must come to the forward (relative; absolute below 1).
const DECODE_TOLERANCE: f64 = 1e-5;

const PROMPT: [u32; 3] = [3, 17, 5];

fn shapes() -> Vec<(&'static str, ModelConfig)> {
    let qwen2 = ModelConfig {
        family: Family::Qwen2,
        qkv_bias: true,
        ..ModelConfig::tiny_llama(40)
    };
    vec![
        ("gpt2", ModelConfig::tiny(40)),
        ("llama", ModelConfig::tiny_llama(40)),
        ("qwen2", qwen2),
        ("neox", ModelConfig::tiny_neox(40)),
    ]
}

/// Every variant that shapes the cache, or changes what a decoded position computes.
const VARIANTS: [&str; 14] = [
    "{}",
    r#"{"kv_groups": 1}"#,
    r#"{"window": 4}"#,
    r#"{"drop_attention_layers": [0]}"#,
    r#"{"kernel": "linear"}"#,
    r#"{"kernel": "linear", "window": 5}"#,
    r#"{"kernel": {"random_features": 16, "seed": 3}}"#,
    r#"{"top_k": 2}"#,
    r#"{"beta": 2.5}"#,
    r#"{"top_k": 3, "window": 6, "beta": 0.5}"#,
    r#"{"heads": {"ablate": [[1, 0], [0, 3]]}}"#,
    r#"{"route_heads": 2}"#,
    r#"{"kv_rank": 3}"#,
    r#"{"kv_pca": 2}"#,
];

/// The tokens after the prompt: a fixed walk through the vocabulary.
fn next_token(len: usize, vocab: usize) -> u32 {
    ((len * 7 + 3) % vocab) as u32
}

/// A random model of `config` with `variant`. Weights of scale 0.3: large enough that every
/// head attends unevenly, small enough that the logits are not sums of huge cancelling terms,
/// where float32's rounding alone would differ between any two orders of summation.
fn engine(config: &ModelConfig, variant: &str) -> CpuEngine {
    let model = Model::random(config.clone(), 5, 0.3).unwrap();
    let mut engine = CpuEngine::new(model).unwrap();
    engine
        .set_variant(&Variant::from_json(variant).unwrap())
        .unwrap();
    engine
}

#[test]
fn every_decoded_position_equals_the_forward_over_its_prefix() {
    for (shape, config) in shapes() {
        for variant in VARIANTS {
            let what = format!("{shape} {variant}");
            let engine = engine(&config, variant);
            let prepared = engine.prepared();
            let (n_layer, n_head) = (config.n_layer, config.n_head);
            let mut decoder = Decoder::new(prepared).unwrap();
            let prefill = decoder.prefill(&PROMPT).unwrap();
            assert_eq!(
                prefill.logits,
                engine.forward(&PROMPT).unwrap().logits,
                "{what}: the prefill is the forward"
            );
            let recurrent = decoder
                .cache()
                .layers
                .iter()
                .any(|l| matches!(l, LayerCache::LinearState { .. }));
            let mut tokens = PROMPT.to_vec();
            while tokens.len() < config.n_ctx {
                let next = next_token(tokens.len(), config.vocab_size);
                tokens.push(next);
                let step = decoder.step(next).unwrap();
                let t = tokens.len();
                assert_eq!(step.position, t - 1);
                let full = engine.forward(&tokens).unwrap();
                let at = format!("{what}, position {}", t - 1);
                assert_close_within(
                    &format!("{at}: logits"),
                    &step.logits,
                    full.logits_at(t - 1),
                    DECODE_TOLERANCE,
                );
                for layer in 0..n_layer {
                    for head in 0..n_head {
                        let row = step.attention_row(n_head, layer, head);
                        let dropped = prepared.attention_dropped[layer];
                        if recurrent && !dropped {
                            // The state holds no keys to weigh: no row, and it says so.
                            assert!(row.iter().all(|p| p.is_nan()), "{at}: a row from a state");
                            continue;
                        }
                        let map = full.attention_map(layer, head);
                        assert_close_within(
                            &format!("{at}: attention ({layer}, {head})"),
                            row,
                            &map[(t - 1) * t..t * t],
                            DECODE_TOLERANCE,
                        );
                    }
                }
                assert_eq!(
                    decoder.cache().bytes(),
                    kv_cache_bytes(prepared, t),
                    "{at}: the bytes held are the formula's"
                );
            }
            let error = decoder.step(1).unwrap_err().to_string();
            assert!(error.contains("context"), "{what}: {error}");
        }
    }
}

#[test]
fn the_cache_holds_what_the_variant_implies() {
    // GPT-2's shape: 2 layers of 4 heads of 4 dimensions, f32.
    let config = ModelConfig::tiny(40);
    let bytes_after = |variant: &str, tokens: usize| {
        let engine = engine(&config, variant);
        let mut decoder = Decoder::new(engine.prepared()).unwrap();
        decoder.prefill(&PROMPT).unwrap();
        for t in PROMPT.len()..tokens {
            decoder.step(next_token(t, 40)).unwrap();
        }
        decoder.cache().bytes()
    };
    let per_token = 2 /* layers */ * 2 /* K and V */ * 4 /* heads */ * 4 /* dims */ * 4;
    assert_eq!(bytes_after("{}", 10), 10 * per_token);
    assert_eq!(bytes_after(r#"{"kv_groups": 1}"#, 10), 10 * per_token / 4);
    assert_eq!(bytes_after(r#"{"kv_groups": 2}"#, 10), 10 * per_token / 2);
    assert_eq!(
        bytes_after(r#"{"drop_attention_layers": [1]}"#, 10),
        10 * per_token / 2
    );
    // A window of 4 holds 4 positions however long the text.
    assert_eq!(bytes_after(r#"{"window": 4}"#, 10), 4 * per_token);
    assert_eq!(bytes_after(r#"{"window": 4}"#, 16), 4 * per_token);
    // A rank-3 latent per token and layer; 2 PCA coordinates per head for K and for V.
    assert_eq!(bytes_after(r#"{"kv_rank": 3}"#, 10), 10 * 2 * 3 * 4);
    assert_eq!(
        bytes_after(r#"{"kv_pca": 2}"#, 10),
        10 * 2 * (2 * 4 * 2) * 4
    );
    // Linear attention's state: per layer and head a 4×4 sum and a 4-long normaliser.
    let state = 2 * 4 * (4 * 4 + 4) * 4;
    assert_eq!(bytes_after(r#"{"kernel": "linear"}"#, 4), state);
    assert_eq!(bytes_after(r#"{"kernel": "linear"}"#, 16), state);
}

#[test]
fn the_kv_meter_per_token_is_what_the_cache_holds_per_token() {
    // Where the cache grows with the text (no window, no recurrent state), the meter's bytes
    // per token times the positions are the bytes held.
    for (shape, config) in shapes() {
        for variant in VARIANTS
            .iter()
            .filter(|v| !v.contains("window") && !v.contains("linear"))
        {
            let engine = engine(&config, variant);
            let prepared = engine.prepared();
            for tokens in [1, 7, 16] {
                assert_eq!(
                    kv_cache_bytes(prepared, tokens),
                    prepared.kv_bytes_per_token * tokens,
                    "{shape} {variant}"
                );
            }
        }
    }
}

#[test]
fn generation_from_the_cache_gives_the_tokens_of_recomputing() {
    for (shape, config) in shapes() {
        for variant in [r#"{}"#, r#"{"kv_groups": 1, "window": 5}"#] {
            let mut engine = engine(&config, variant);
            for sampling in [
                Sampling {
                    temperature: 0.0,
                    ..Sampling::default()
                },
                Sampling::default(),
            ] {
                // 20 tokens from a 3-token prompt: past the context of 16, so the window slides.
                let mut run = |decoding| {
                    now(generate_with(
                        &mut engine,
                        &PROMPT,
                        20,
                        &sampling,
                        decoding,
                        &mut unwatched(),
                    ))
                    .unwrap()
                    .done()
                    .unwrap()
                };
                let cached = run(Decoding::Cached);
                let recomputed = run(Decoding::Recompute);
                assert_eq!(cached, recomputed, "{shape} {variant} {sampling:?}");
            }
        }
    }
}

#[test]
fn a_generation_step_by_step_gives_every_position_its_attention_row() {
    for (shape, config) in shapes() {
        let mut engine = engine(&config, r#"{"kv_groups": 1}"#);
        let greedy = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        };
        let mut generation = Generation::new(&engine, &PROMPT, &greedy, Decoding::Cached).unwrap();
        let mut rows: Vec<(usize, Vec<f32>)> = Vec::new();
        for _ in 0..6 {
            rows.extend(now(generation.next(&mut engine, true)).unwrap().rows);
        }
        // The prompt's three rows from the prefill, then one per decoded token: every position
        // but the last token's, which has not run yet.
        let text = generation.tokens().to_vec();
        assert_eq!(text.len(), PROMPT.len() + 6);
        let positions: Vec<usize> = rows.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            positions,
            (0..text.len() - 1).collect::<Vec<_>>(),
            "{shape}"
        );
        let full = engine.forward(&text).unwrap();
        let t = text.len();
        for (p, row) in &rows {
            let mut want: Vec<f32> = Vec::new();
            for layer in 0..config.n_layer {
                for head in 0..config.n_head {
                    want.extend(&full.attention_map(layer, head)[p * t..p * t + p + 1]);
                }
            }
            assert_close_within(&format!("{shape}: row {p}"), row, &want, DECODE_TOLERANCE);
        }
    }
}

/// A cache that goes mid-generation (the variant set again, the engine replaced after a device
/// failure) is filled again from the text so far: the same tokens as an undisturbed run, and
/// each position's row reported once.
#[test]
fn a_generation_whose_cache_went_fills_it_again_and_goes_on() {
    let config = ModelConfig::tiny_llama(40);
    let greedy = Sampling {
        temperature: 0.0,
        ..Sampling::default()
    };
    let variant = Variant::from_json(r#"{"kv_groups": 1}"#).unwrap();
    let mut engine = engine(&config, r#"{"kv_groups": 1}"#);
    let mut undisturbed = Generation::new(&engine, &PROMPT, &greedy, Decoding::Cached).unwrap();
    for _ in 0..8 {
        now(undisturbed.next(&mut engine, false)).unwrap();
    }
    let mut generation = Generation::new(&engine, &PROMPT, &greedy, Decoding::Cached).unwrap();
    let mut positions = Vec::new();
    for i in 0..8 {
        if i == 4 {
            engine.set_variant(&variant).unwrap();
            assert_eq!(
                engine.kv_cache_bytes(),
                None,
                "a variant change empties the cache"
            );
        }
        let next = now(generation.next(&mut engine, true)).unwrap();
        positions.extend(next.rows.iter().map(|(p, _)| *p));
    }
    assert_eq!(generation.tokens(), undisturbed.tokens());
    let want: Vec<usize> = (0..PROMPT.len() + 7).collect();
    assert_eq!(positions, want, "every position's row once, in order");
    assert!(
        engine.kv_cache_bytes().is_some(),
        "the cache was filled again"
    );
}

#[test]
fn generation_stops_after_the_models_end_of_text_token() {
    let mut engine = engine(&ModelConfig::tiny_llama(40), "{}");
    let greedy = Sampling {
        temperature: 0.0,
        ..Sampling::default()
    };
    let run = |engine: &mut CpuEngine| {
        now(generate_with(
            engine,
            &PROMPT,
            10,
            &greedy,
            Decoding::Cached,
            &mut unwatched(),
        ))
        .unwrap()
        .done()
        .unwrap()
    };
    let free = run(&mut engine);
    assert_eq!(free.len(), 10);
    // The same model, told its fourth token ends a text: it stops there, that token included.
    let end = free[3];
    let first = free.iter().position(|&t| t == end).unwrap();
    let mut model = engine.model().clone();
    model
        .metadata
        .insert("eos_token_id".into(), serde_json::json!([39, end]));
    assert_eq!(model.end_of_text(), [39, end]);
    let mut ending = CpuEngine::new(model).unwrap();
    assert_eq!(run(&mut ending), free[..=first]);
}

#[test]
fn what_cannot_decode_says_why_and_generation_recomputes() {
    let config = ModelConfig::tiny(40);
    // Mean ablation averages over later tokens too: no cache, and generation still works.
    let mean = r#"{"heads": {"ablate": [[0, 1]], "mode": "mean"}}"#;
    let mut engine = engine(&config, mean);
    let error = Decoder::new(engine.prepared()).unwrap_err().to_string();
    assert!(error.contains("mean ablation"), "{error}");
    let prefilled = now(engine.prefill(&PROMPT, &Readback::next_token())).unwrap();
    assert!(prefilled.is_none());
    assert_eq!(engine.kv_cache_bytes(), None);
    let greedy = Sampling {
        temperature: 0.0,
        ..Sampling::default()
    };
    let tokens = now(generate_with(
        &mut engine,
        &PROMPT,
        5,
        &greedy,
        Decoding::Cached,
        &mut unwatched(),
    ))
    .unwrap()
    .done()
    .unwrap();
    assert_eq!(tokens.len(), 5);

    // A classifier has no next token.
    let classifier = ModelConfig {
        n_classes: Some(2),
        causal: false,
        ..ModelConfig::tiny(40)
    };
    let engine = CpuEngine::new(Model::random(classifier, 1, 0.5).unwrap()).unwrap();
    let error = Decoder::new(engine.prepared()).unwrap_err().to_string();
    assert!(error.contains("language model"), "{error}");

    // A step before any prefill, and a variant change, which empties the cache.
    let mut engine = self::engine(&config, "{}");
    assert!(now(engine.decode_step(1)).is_err());
    now(engine.prefill(&PROMPT, &Readback::next_token()))
        .unwrap()
        .unwrap();
    assert_eq!(engine.kv_cache_bytes(), Some(3 * 2 * 2 * 4 * 4 * 4));
    engine
        .set_variant(&Variant::from_json(r#"{"window": 2}"#).unwrap())
        .unwrap();
    assert_eq!(engine.kv_cache_bytes(), None);
    assert!(now(engine.decode_step(1)).is_err());
}

/// Greedy generation from the cache gives, token for token, what transformers'
/// `generate(do_sample=False)` gives on the GPT-2 fixture and every family fixture
/// (`tests/fixtures/generate_greedy_fixtures.py` writes `tests/fixtures/greedy.json`; each prompt
/// was drawn so that no step is a near tie). Natively: it reads the fixtures from disk.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn greedy_generation_is_the_tokens_transformers_generates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(root.join("greedy.json")).unwrap()).unwrap();
    assert_eq!(
        expected.len(),
        8,
        "the GPT-2 fixture and the seven family fixtures"
    );
    let ids = |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    let greedy = Sampling {
        temperature: 0.0,
        ..Sampling::default()
    };
    for (name, case) in &expected {
        let model = attn_model::load_model(root.join(name)).unwrap();
        let mut engine = CpuEngine::new(model).unwrap();
        let want = ids(&case["generated"]);
        for decoding in [Decoding::Cached, Decoding::Recompute] {
            let got = now(generate_with(
                &mut engine,
                &ids(&case["prompt"]),
                want.len(),
                &greedy,
                decoding,
                &mut unwatched(),
            ))
            .unwrap()
            .done()
            .unwrap();
            assert_eq!(got, want, "{name} ({decoding:?})");
        }
    }
}
