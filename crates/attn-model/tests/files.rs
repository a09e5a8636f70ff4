//! The own file format round-trips, and every kind of bad input gets a clear error, never a panic.
// Reads its fixtures from disk, so it runs natively; tests/browser.rs runs the fixture parity,
// family, tokenizer and bad-input checks inside a browser.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;

use attn_model::config::ModelConfig;
use attn_model::{CpuEngine, Model, ModelError, Variant};
use safetensors::tensor::{Dtype, TensorView};

fn model() -> Model {
    let mut m = Model::random(ModelConfig::tiny(30), 3, 0.3).unwrap();
    m.metadata.insert("title".into(), "test model".into());
    m
}

/// Rewrites a saved model's tensors with `edit` (name → optional (dtype, shape, bytes)), keeping
/// its metadata, so tests can corrupt one thing at a time.
fn rewrite(
    bytes: &[u8],
    edit: impl Fn(&str, Dtype, &[usize], &[u8]) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
    extra: Option<(&str, Vec<usize>)>,
) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        if let Some((dtype, shape, data)) = edit(&name, view.dtype(), view.shape(), view.data()) {
            owned.push((name, dtype, shape, data));
        }
    }
    if let Some((name, shape)) = extra {
        let n: usize = shape.iter().product();
        owned.push((name.to_string(), Dtype::F32, shape, vec![0u8; n * 4]));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, meta.metadata().clone()).unwrap()
}

fn keep(_: &str, d: Dtype, s: &[usize], b: &[u8]) -> Option<(Dtype, Vec<usize>, Vec<u8>)> {
    Some((d, s.to_vec(), b.to_vec()))
}

#[test]
fn own_format_round_trips_exactly() {
    let m = model();
    let bytes = m.to_safetensors_bytes().unwrap();
    let back = Model::from_safetensors_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    let tokens = [1, 2, 3, 4];
    assert_eq!(
        CpuEngine::new(back).unwrap().forward(&tokens).unwrap(),
        CpuEngine::new(m).unwrap().forward(&tokens).unwrap()
    );
}

#[test]
fn untied_classifier_and_attention_only_models_round_trip() {
    for config in [
        ModelConfig {
            tied_embeddings: false,
            ..ModelConfig::tiny(30)
        },
        ModelConfig {
            causal: false,
            n_classes: Some(2),
            ..ModelConfig::tiny(30)
        },
        ModelConfig {
            mlp: false,
            n_kv_head: Some(1),
            ..ModelConfig::tiny(30)
        },
    ] {
        let m = Model::random(config, 1, 0.3).unwrap();
        let back = Model::from_safetensors_bytes(&m.to_safetensors_bytes().unwrap()).unwrap();
        assert_eq!(back, m);
    }
}

#[test]
fn half_precision_tensors_are_converted() {
    let bytes = model().to_safetensors_bytes().unwrap();
    let f16 = rewrite(
        &bytes,
        |_, _, s, b| {
            let data = b
                .chunks_exact(4)
                .flat_map(|c| {
                    half::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes()
                })
                .collect();
            Some((Dtype::F16, s.to_vec(), data))
        },
        None,
    );
    let back = Model::from_safetensors_bytes(&f16).unwrap();
    let orig = model();
    let diff = back
        .token_embedding
        .f32()
        .iter()
        .zip(orig.token_embedding.f32().iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-2 && diff > 0.0);
    // Saved again, the 16-bit tensors stay 16-bit.
    let again = Model::from_safetensors_bytes(&back.to_safetensors_bytes().unwrap()).unwrap();
    assert_eq!(
        again.token_embedding.precision(),
        attn_model::Precision::F16
    );
    assert_eq!(again, back);
}

fn load_err(bytes: &[u8]) -> String {
    match Model::from_safetensors_bytes(bytes) {
        Ok(_) => panic!("a bad file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_tensor_is_named() {
    let bytes = model().to_safetensors_bytes().unwrap();
    let bad = rewrite(
        &bytes,
        |n, d, s, b| {
            (n != "blocks.1.attn.v.bias")
                .then(|| keep(n, d, s, b))
                .flatten()
        },
        None,
    );
    assert!(load_err(&bad).contains("missing tensor `blocks.1.attn.v.bias`"));
}

#[test]
fn extra_tensor_is_named() {
    let bytes = model().to_safetensors_bytes().unwrap();
    let bad = rewrite(&bytes, keep, Some(("blocks.0.attn.rotary", vec![4])));
    assert!(load_err(&bad).contains("unexpected tensor `blocks.0.attn.rotary`"));
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    let bytes = model().to_safetensors_bytes().unwrap();
    let bad = rewrite(
        &bytes,
        |n, d, s, b| {
            if n == "wpe" {
                Some((d, vec![s[0] / 2, s[1] * 2], b.to_vec()))
            } else {
                keep(n, d, s, b)
            }
        },
        None,
    );
    let err = load_err(&bad);
    assert!(
        err.contains("`wpe` has shape [8, 32], expected [16, 16]"),
        "{err}"
    );
}

#[test]
fn wrong_dtype_is_rejected() {
    let bytes = model().to_safetensors_bytes().unwrap();
    let bad = rewrite(
        &bytes,
        |n, d, s, b| {
            if n == "ln_f.bias" {
                Some((Dtype::I32, s.to_vec(), b.to_vec()))
            } else {
                keep(n, d, s, b)
            }
        },
        None,
    );
    let err = load_err(&bad);
    assert!(err.contains("`ln_f.bias` has dtype I32"), "{err}");
}

#[test]
fn truncated_and_garbage_files_are_rejected() {
    let bytes = model().to_safetensors_bytes().unwrap();
    for cut in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = load_err(&bytes[..cut]);
        assert!(err.contains("safetensors"), "cut at {cut}: {err}");
    }
    assert!(load_err(b"this is not a model at all").contains("safetensors"));
}

#[test]
fn config_that_does_not_match_the_weights_is_rejected() {
    let m = model();
    let bytes = m.to_safetensors_bytes().unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta: HashMap<String, String> = meta.metadata().clone().unwrap();
    let mut config = m.config.clone();
    config.n_layer = 3;
    meta.insert("config".into(), serde_json::to_string(&config).unwrap());
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let bad = safetensors::serialize(file.tensors(), Some(meta.clone())).unwrap();
    assert!(load_err(&bad).contains("missing tensor `blocks.2."));

    config = m.config.clone();
    config.d_model = 15;
    meta.insert("config".into(), serde_json::to_string(&config).unwrap());
    let bad = safetensors::serialize(file.tensors(), Some(meta.clone())).unwrap();
    assert!(load_err(&bad).contains("not divisible by n_head"));

    meta.insert("config".into(), "{\"vocab_size\": 3".into());
    let bad = safetensors::serialize(file.tensors(), Some(meta)).unwrap();
    assert!(load_err(&bad).contains("invalid JSON in config"));
}

#[test]
fn a_plain_safetensors_file_points_to_the_hf_loader() {
    let bytes = model().to_safetensors_bytes().unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let bare = safetensors::serialize(file.tensors(), None).unwrap();
    assert!(load_err(&bare).contains("config.json"));
}

#[test]
fn variants_that_do_not_fit_are_rejected_and_the_engine_keeps_its_variant() {
    let mut engine = CpuEngine::new(model()).unwrap();
    engine
        .set_variant(&Variant::from_json(r#"{"window": 2}"#).unwrap())
        .unwrap();
    for (json, needle) in [
        (r#"{"kv_groups": 3}"#, "kv_groups 3 must divide"),
        (r#"{"kv_groups": 0}"#, "kv_groups 0 must divide"),
        (r#"{"kv_rank": 0}"#, "kv_rank must be between 1 and 16"),
        (r#"{"kv_rank": 17}"#, "kv_rank must be between 1 and 16"),
        (
            r#"{"kv_groups": 1, "kv_rank": 9}"#,
            "kv_rank must be between 1 and 8",
        ),
        (
            r#"{"heads": {"ablate": [[2, 0]]}}"#,
            "heads.ablate has [2, 0]",
        ),
        (
            r#"{"heads": {"ablate": [[0, 4]]}}"#,
            "heads.ablate has [0, 4]",
        ),
        (
            r#"{"drop_attention_layers": [5]}"#,
            "drop_attention_layers has layer 5",
        ),
        (r#"{"window": 0}"#, "window must be at least 1"),
        (r#"{"top_k": 0}"#, "top_k must be at least 1"),
        (r#"{"beta": 0}"#, "beta must be a positive number"),
        (r#"{"beta": -1}"#, "beta must be a positive number"),
        (
            r#"{"kernel": {"random_features": 0}}"#,
            "random_features must be at least 1",
        ),
    ] {
        let err = engine
            .set_variant(&Variant::from_json(json).unwrap())
            .unwrap_err();
        assert!(matches!(err, ModelError::Variant(_)));
        assert!(err.to_string().contains(needle), "{json}: {err}");
        assert_eq!(engine.variant().window, Some(2), "the old variant survives");
    }
    for json in [
        r#"{"kernel": "cosine"}"#,
        r#"{"window": -1}"#,
        r#"{"beta": "x"}"#,
        "[1]",
    ] {
        assert!(Variant::from_json(json).is_err(), "{json}");
    }
}

#[test]
fn bad_token_input_is_rejected() {
    let engine = CpuEngine::new(model()).unwrap();
    let err = |tokens: &[u32]| engine.forward(tokens).unwrap_err().to_string();
    assert!(err(&[]).contains("no tokens"));
    assert!(err(&[1; 17]).contains("17 tokens but the model's context holds 16"));
    assert!(err(&[1, 30]).contains("token 30 at position 1 is outside the vocabulary (size 30)"));
    assert!(engine.forward(&[0; 16]).is_ok());
}

#[test]
fn bad_hf_configs_are_rejected() {
    let st = model().to_safetensors_bytes().unwrap();
    let base = r#"{"model_type": "gpt2", "vocab_size": 30, "n_positions": 16, "n_embd": 16,
        "n_layer": 2, "n_head": 4"#;
    for (config, needle) in [
        ("{".to_string(), "invalid JSON in config.json"),
        (
            format!("{base}}}"),
            "missing tensor `h.0.attn.c_attn.weight`",
        ),
        (
            format!("{base}, \"activation_function\": \"relu\"}}"),
            "activation_function `relu`",
        ),
        (
            format!("{base}, \"scale_attn_by_inverse_layer_idx\": true}}"),
            "attention scaling",
        ),
        (
            base.replace("gpt2", "mistral") + "}",
            "model type `mistral` is not supported; this build reads GPT-2 (gpt2), Llama",
        ),
        (
            base.replace("\"n_head\": 4", "\"n_head\": 3") + "}",
            "not divisible",
        ),
    ] {
        let err = Model::from_hf_gpt2(&config, &st).unwrap_err().to_string();
        assert!(err.contains(needle), "{config}: {err}");
    }
}

#[test]
fn missing_files_name_the_path() {
    let err = attn_model::load_model("/nonexistent/model.safetensors")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/model.safetensors"), "{err}");
}
