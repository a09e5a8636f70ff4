//! QK attribution: every part against an independent PyTorch computation from transformers'
//! modules (`tests/fixtures/generate_qk_fixtures.py` writes `qk.safetensors` beside the GPT-2,
//! Llama and Qwen2 fixtures); on every family fixture the parts sum to the score, and the scores
//! of a query on each of its keys, through a softmax, are the attention row transformers
//! computed; under the variants that change the key side (pooled heads, a latent rank) the scores
//! are the variant's own; and requests for a score that does not exist are clear errors.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};

use attn_test_support::assert_close;

use attn_model::{
    load_model, now, qk_attribution, CpuEngine, LoadedTensors, Model, ModelConfig, QkAttribution,
    Variant,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Every family fixture: its directory under `tests/fixtures`.
const FIXTURES: [&str; 8] = [
    "gpt2-tiny",
    "families/llama-gqa-tied",
    "families/llama-untied-llama3",
    "families/qwen2",
    "families/neox-parallel",
    "families/neox-sequential",
    "families/llama-gqa-tied-f16",
    "families/qwen2-bf16",
];

/// The input ids and the attention maps `[L, H, T, T]` transformers computed, for the fixtures
/// that record them (the family fixtures).
fn transformers_maps(dir: &Path) -> Option<(Vec<u32>, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("expected.safetensors")).ok()?;
    let file = LoadedTensors::from_bytes(&bytes).ok()?;
    let ids = serde_json::from_str(file.metadata().get("input_ids")?).ok()?;
    let attention = file.values("attention")?.to_vec();
    Some((ids, attention))
}

fn assert_sums(a: &QkAttribution, what: &str) {
    assert!(
        (a.total() - a.score).abs() <= 1e-4 * a.score.abs().max(1.0),
        "{what}: the parts sum to {} but the score is {}",
        a.total(),
        a.score
    );
    assert_eq!(a.parts.len(), a.components.len(), "{what}");
    assert!(a.parts.iter().all(|row| row.len() == a.components.len()));
}

/// Every key's score for `query`, through a softmax: the attention row.
fn softmax_row(
    engine: &mut CpuEngine,
    tokens: &[u32],
    layer: usize,
    head: usize,
    query: usize,
) -> Vec<f64> {
    let scores: Vec<f64> = (0..=query)
        .map(|key| {
            let a = now(qk_attribution(engine, tokens, layer, head, query, key)).unwrap();
            assert_sums(&a, &format!("L{layer}H{head} {query}→{key}"));
            a.score
        })
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

fn assert_row(what: &str, got: &[f64], want: &[f32]) {
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - *w as f64).abs() < 1e-5,
            "{what}, key {j}: softmax of the scores {g} vs attention {w}"
        );
    }
}

#[test]
fn scores_split_exactly_and_are_the_attention_transformers_computes() {
    for name in FIXTURES {
        let dir = fixtures().join(name);
        let model = load_model(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = model.config.clone();
        let (tokens, maps) =
            transformers_maps(&dir).unwrap_or_else(|| ((1..12).collect(), Vec::new()));
        let mut engine = CpuEngine::new(model).unwrap();
        let forward = engine.forward(&tokens).unwrap();
        let t = tokens.len();
        for layer in 0..c.n_layer {
            for head in [0, c.n_head - 1] {
                for query in [t / 2, t - 1] {
                    let got = softmax_row(&mut engine, &tokens, layer, head, query);
                    let row = ((layer * c.n_head + head) * t + query) * t;
                    let what = format!("{name} L{layer}H{head} query {query}");
                    // The engine's own map, and transformers' where the fixture has it.
                    assert_row(&what, &got, &forward.attention[row..row + query + 1]);
                    if !maps.is_empty() {
                        assert_row(
                            &format!("{what} (transformers)"),
                            &got,
                            &maps[row..row + query + 1],
                        );
                    }
                }
            }
        }
        // Layer 0 reads only the embeddings and the biases.
        let a = now(qk_attribution(&mut engine, &tokens, 0, 0, t - 1, 0)).unwrap();
        assert_eq!(a.components, ["embeddings", "biases"], "{name}");
        // The last layer reads every earlier head and MLP.
        let last = c.n_layer - 1;
        let a = now(qk_attribution(&mut engine, &tokens, last, 0, t - 1, 1)).unwrap();
        assert_eq!(
            a.components.len(),
            2 + last * (c.n_head + 1),
            "{name}: one MLP a block"
        );
        assert_eq!(a.components[1], "L0H0");
        assert_eq!(a.components[1 + last * c.n_head], "L0 MLP");
    }
}

#[test]
fn every_part_matches_pytorch() {
    for name in ["gpt2-tiny", "families/llama-gqa-tied", "families/qwen2"] {
        let dir = fixtures().join(name);
        let bytes = std::fs::read(dir.join("qk.safetensors")).expect("the fixture is committed");
        let file = LoadedTensors::from_bytes(&bytes).unwrap();
        let tokens: Vec<u32> = serde_json::from_str(&file.metadata()["tokens"]).unwrap();
        let cases: Vec<serde_json::Value> =
            serde_json::from_str(&file.metadata()["cases"]).unwrap();
        let mut engine = CpuEngine::new(load_model(&dir).unwrap()).unwrap();
        for (n, case) in cases.iter().enumerate() {
            let at = |key: &str| case[key].as_u64().unwrap() as usize;
            let a = now(qk_attribution(
                &mut engine,
                &tokens,
                at("layer"),
                at("head"),
                at("query"),
                at("key"),
            ))
            .unwrap();
            assert_eq!(
                serde_json::json!(a.components),
                case["components"],
                "{name} case {n}"
            );
            let got: Vec<f64> = a.parts.iter().flatten().copied().collect();
            let want = file.values(&format!("parts.{n}")).unwrap();
            assert_close(&format!("{name} case {n}"), &got, &want);
        }
    }
}

#[test]
fn the_variant_s_keys_are_the_ones_split() {
    let dir = fixtures().join("families/llama-gqa-tied");
    let model = load_model(&dir).unwrap();
    let tokens: Vec<u32> = vec![3, 17, 42, 5, 96, 11, 7, 60, 2, 33];
    let mut engine = CpuEngine::new(model).unwrap();
    for variant in [
        r#"{"kv_groups": 1}"#,
        r#"{"kv_rank": 8}"#,
        r#"{"beta": 2.0, "window": 4}"#,
        r#"{"heads": {"ablate": [[0, 1]], "mode": "mean"}, "top_k": 3}"#,
    ] {
        engine
            .set_variant(&Variant::from_json(variant).unwrap())
            .unwrap();
        let forward = engine.forward(&tokens).unwrap();
        let (c, t) = (engine.prepared().config.clone(), tokens.len());
        let (layer, query) = (1, t - 1);
        for head in 0..c.n_head {
            let row = ((layer * c.n_head + head) * t + query) * t;
            let window = engine.variant().window.unwrap_or(t);
            let first = (query + 1).saturating_sub(window);
            let scores: Vec<f64> = (first..=query)
                .map(|key| {
                    let a = now(qk_attribution(
                        &mut engine,
                        &tokens,
                        layer,
                        head,
                        query,
                        key,
                    ))
                    .unwrap();
                    assert_sums(&a, variant);
                    a.score
                })
                .collect();
            if engine.variant().top_k.is_some() {
                continue; // top-k keeps only some keys: the sum check is what applies
            }
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            let got: Vec<f64> = exps.iter().map(|e| e / sum).collect();
            assert_row(
                variant,
                &got,
                &forward.attention[row + first..row + query + 1],
            );
        }
    }
}

#[test]
fn every_shape_of_model_splits_its_scores() {
    // LayerNorm with biases (GPT-2), RMSNorm with grouped keys (Llama), partial rotary with a
    // parallel residual (GPT-NeoX), and a bidirectional classifier whose queries see later keys.
    for config in [
        ModelConfig::tiny(30),
        ModelConfig::tiny_llama(30),
        ModelConfig::tiny_neox(30),
        ModelConfig {
            n_classes: Some(3),
            causal: false,
            ..ModelConfig::tiny(30)
        },
    ] {
        let causal = config.causal;
        let mut engine = CpuEngine::new(Model::random(config, 4, 0.3).unwrap()).unwrap();
        engine
            .set_variant(&Variant::from_json(r#"{"drop_attention_layers": [0]}"#).unwrap())
            .unwrap();
        let tokens = [1, 5, 2, 7, 3, 9];
        let key = if causal { 2 } else { 5 };
        let a = now(qk_attribution(&mut engine, &tokens, 1, 1, 3, key)).unwrap();
        assert_sums(&a, "random model");
        // The dropped layer's heads write nothing.
        for (name, row) in a.components.iter().zip(&a.parts) {
            if name.starts_with("L0H") {
                assert!(row.iter().all(|v| *v == 0.0), "{name} writes {row:?}");
            }
        }
    }
}

#[test]
fn scores_that_do_not_exist_are_clear_errors() {
    let model = load_model(fixtures().join("gpt2-tiny")).unwrap();
    let mut engine = CpuEngine::new(model).unwrap();
    let tokens = [1, 2, 3, 4, 5];
    let err = |engine: &mut CpuEngine, layer, head, query, key| {
        now(qk_attribution(engine, &tokens, layer, head, query, key))
            .unwrap_err()
            .to_string()
    };
    assert!(err(&mut engine, 0, 0, 1, 3).contains("masked"));
    assert!(err(&mut engine, 0, 0, 1, 9).contains("positions of the 5 tokens"));
    assert!(err(&mut engine, 9, 0, 1, 0).contains("does not exist"));
    engine
        .set_variant(&Variant::from_json(r#"{"drop_attention_layers": [1]}"#).unwrap())
        .unwrap();
    assert!(err(&mut engine, 1, 0, 3, 1).contains("dropped"));
    engine
        .set_variant(&Variant::from_json(r#"{"kernel": "linear"}"#).unwrap())
        .unwrap();
    assert!(err(&mut engine, 1, 0, 3, 1).contains("softmax"));
    engine
        .set_variant(&Variant::from_json(r#"{"window": 2}"#).unwrap())
        .unwrap();
    assert!(err(&mut engine, 1, 0, 4, 1).contains("window of 2"));
}
