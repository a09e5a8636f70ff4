//! Per-head PCA of keys and values (`kv_pca`) against NumPy on the tiny GPT-2 fixture
//! (`tests/fixtures/generate_kv_pca_fixtures.py` writes `tests/fixtures/gpt2-tiny/kv_pca.safetensors`),
//! and what the variant does to a forward: every component kept changes nothing, fewer cost less
//! cache, and the calibration text is the model's own examples.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;
use std::sync::Arc;

use attn_model::prepare::{calibration_inputs, project_on_principal_components, KvProjection};
use attn_model::{load_model, prepare, CpuEngine, LoadedTensors, Model, ModelConfig, Variant};
use attn_test_support::max_abs_diff;

#[test]
fn the_projected_keys_and_values_match_numpy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt2-tiny");
    let model = Arc::new(load_model(&dir).unwrap());
    let fixture =
        LoadedTensors::from_bytes(&std::fs::read(dir.join("kv_pca.safetensors")).unwrap()).unwrap();
    let calibration: Vec<Vec<u32>> =
        serde_json::from_str(&fixture.metadata()["calibration"]).unwrap();
    let components: usize = serde_json::from_str(&fixture.metadata()["components"]).unwrap();
    let mut layers: Vec<KvProjection> = model
        .blocks
        .iter()
        .map(|b| KvProjection {
            k: b.attn.k.clone(),
            v: b.attn.v.clone(),
            codec: None,
        })
        .collect();
    project_on_principal_components(&model, &mut layers, &calibration, components).unwrap();
    let d = model.config.d_model;
    for (name, pick) in [("k", 0), ("v", 1)] {
        let weights = fixture.values(&format!("{name}_weight")).unwrap();
        let biases = fixture.values(&format!("{name}_bias")).unwrap();
        for (layer, kv) in layers.iter().enumerate() {
            let linear = if pick == 0 { &kv.k } else { &kv.v };
            let w = linear.weight.f32();
            let diff = max_abs_diff(&w, &weights[layer * d * d..(layer + 1) * d * d]);
            assert!(diff < 1e-4, "{name} weight of layer {layer}: {diff}");
            let b = linear.bias.as_ref().unwrap();
            let diff = max_abs_diff(b, &biases[layer * d..(layer + 1) * d]);
            assert!(diff < 1e-4, "{name} bias of layer {layer}: {diff}");
        }
    }
}

#[test]
fn every_component_kept_changes_nothing_and_fewer_cost_less_cache() {
    let config = ModelConfig::tiny(30);
    let model = Model::random(config.clone(), 3, 0.4).unwrap();
    let d_head = config.d_head();
    let mut engine = CpuEngine::new(model).unwrap();
    let tokens = [3, 1, 4, 1, 5, 9, 2, 6];
    let base = engine.forward(&tokens).unwrap();
    let set = |e: &mut CpuEngine, json: &str| e.set_variant(&Variant::from_json(json).unwrap());
    set(&mut engine, &format!(r#"{{"kv_pca": {d_head}}}"#)).unwrap();
    let full = engine.forward(&tokens).unwrap();
    assert!(max_abs_diff(&base.logits, &full.logits) < 1e-4);
    assert_eq!(full.kv_bytes_per_token, base.kv_bytes_per_token);
    set(&mut engine, r#"{"kv_pca": 1, "kv_groups": 2}"#).unwrap();
    let low = engine.forward(&tokens).unwrap();
    assert_eq!(low.kv_bytes_per_token, config.n_layer * 2 * 2 * 4);
    assert!(max_abs_diff(&base.logits, &low.logits) > 1e-4);
    // Bad settings are named.
    let e = set(&mut engine, r#"{"kv_pca": 99}"#).unwrap_err();
    assert!(e.to_string().contains("kv_pca"), "{e}");
    let e = set(&mut engine, r#"{"kv_pca": 2, "kv_rank": 4}"#).unwrap_err();
    assert!(e.to_string().contains("choose one"), "{e}");
}

#[test]
fn calibration_is_the_models_own_examples_or_the_probe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../static/models");
    let model = load_model(root.join("shakespeare.safetensors")).unwrap();
    let inputs = calibration_inputs(&model);
    assert_eq!(inputs.len(), 3, "the three example inputs");
    assert!(inputs[0].starts_with(&[model.tokenizer_encode("R")[0]]));
    let random = Model::random(ModelConfig::tiny(30), 1, 0.3).unwrap();
    assert!(
        !calibration_inputs(&random).is_empty(),
        "the probe, for a model without examples"
    );
    // The variant prepares on a real model and keeps the shapes.
    let prepared = prepare(
        &Arc::new(model),
        &Variant::from_json(r#"{"kv_pca": 4}"#).unwrap(),
    )
    .unwrap();
    assert_eq!(
        prepared.key(0).d_out,
        prepared.model().blocks[0].attn.k.d_out
    );
}

trait Encode {
    fn tokenizer_encode(&self, text: &str) -> Vec<u32>;
}

impl Encode for Model {
    fn tokenizer_encode(&self, text: &str) -> Vec<u32> {
        attn_model::Tokenizer::from_spec(self.tokenizer.clone().unwrap())
            .unwrap()
            .encode(text)
            .unwrap()
    }
}
