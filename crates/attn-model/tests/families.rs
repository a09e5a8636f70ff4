//! The CPU engine against transformers on the Llama, Qwen2 and GPT-NeoX families: tiny random
//! checkpoints saved by `transformers` with the logits and attention maps it computes for them
//! (`tests/fixtures/generate_family_fixtures.py` writes `tests/fixtures/families/`), then the
//! variants' hand-checkable cases on each family and the errors a bad directory gets.
// Reads its fixtures from disk, so it runs natively; tests/browser.rs runs the fixture parity,
// family, tokenizer and bad-input checks inside a browser.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};

use attn_model::{
    load_model, CpuEngine, Family, LoadedTensors, Model, ModelConfig, Norm, Output, Positional,
    Precision, Variant,
};
use attn_test_support::assert_close;
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/families")
}

/// Every fixture: its directory name and family.
const FIXTURES: [(&str, Family); 7] = [
    ("llama-gqa-tied", Family::Llama),
    ("llama-untied-llama3", Family::Llama),
    ("qwen2", Family::Qwen2),
    ("neox-parallel", Family::GptNeox),
    ("neox-sequential", Family::GptNeox),
    ("llama-gqa-tied-f16", Family::Llama),
    ("qwen2-bf16", Family::Qwen2),
];

struct Expected {
    prompt: String,
    input_ids: Vec<u32>,
    logits: Vec<f32>,
    attention: Vec<f32>,
}

fn expected(name: &str) -> Expected {
    let bytes = std::fs::read(fixtures().join(name).join("expected.safetensors"))
        .expect("the fixture is committed");
    let file = LoadedTensors::from_bytes(&bytes).unwrap();
    let meta = file.metadata();
    Expected {
        prompt: meta["prompt"].clone(),
        input_ids: serde_json::from_str(&meta["input_ids"]).unwrap(),
        logits: file.values("logits").unwrap().to_vec(),
        attention: file.values("attention").unwrap().to_vec(),
    }
}

fn load(name: &str) -> Model {
    load_model(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_family_matches_transformers() {
    for (name, family) in FIXTURES {
        let model = load(name);
        assert_eq!(model.config.family, family, "{name}");
        let want = expected(name);
        let output = CpuEngine::new(model)
            .unwrap()
            .forward(&want.input_ids)
            .unwrap();
        assert_close(&format!("{name} logits"), &output.logits, &want.logits);
        assert_close(
            &format!("{name} attention"),
            &output.attention,
            &want.attention,
        );
    }
}

#[test]
fn each_directory_brings_its_tokenizer() {
    // The directory's tokenizer.json turns the prompt into the ids transformers was given: the
    // BOS of the Llama tokenizers first (SentencePiece-style for TinyLlama, Llama 3's).
    for (name, bos) in [
        ("llama-gqa-tied", Some("<s>")),
        ("llama-untied-llama3", Some("<|begin_of_text|>")),
        ("qwen2", None),
        ("neox-parallel", None),
        ("neox-sequential", None),
    ] {
        let model = load(name);
        let tokenizer = model.build_tokenizer().unwrap().expect("a tokenizer");
        assert_eq!(tokenizer.kind(), "hugging_face", "{name}");
        let want = expected(name);
        let ids = tokenizer.encode(&want.prompt).unwrap();
        assert_eq!(ids, want.input_ids, "{name}");
        assert_eq!(
            tokenizer.token_label(ids[0]).as_deref() == bos,
            bos.is_some(),
            "{name}"
        );
    }
}

#[test]
fn configs_are_read_in_both_forms() {
    let llama = load("llama-gqa-tied").config;
    assert_eq!((llama.n_head, llama.kv_heads()), (6, 2));
    assert!(llama.tied_embeddings && llama.gated_mlp && !llama.qkv_bias);
    assert_eq!(llama.norm, Norm::RmsNorm);
    let Positional::Rope(rope) = llama.positional else {
        panic!("rotary")
    };
    assert_eq!((rope.theta, rope.rotary_dim), (500.0, 8));

    // Hub form: top-level rope_theta and rope_scaling.
    let llama3 = load("llama-untied-llama3").config;
    assert!(!llama3.tied_embeddings);
    assert!(matches!(
        llama3.rope().unwrap().scaling,
        attn_model::RopeScaling::Llama3 {
            factor: 4.0,
            original_max_position_embeddings: 16,
            ..
        }
    ));

    let qwen = load("qwen2").config;
    assert!(qwen.qkv_bias && !qwen.out_bias && !qwen.mlp_bias);
    assert_eq!(qwen.rope().unwrap().theta, 1e6);

    // Hub form (rotary_pct, rotary_emb_base) and transformers 5 form (rope_parameters).
    for name in ["neox-parallel", "neox-sequential"] {
        let neox = load(name).config;
        assert_eq!(
            neox.rope().unwrap().rotary_dim,
            4,
            "{name}: a quarter of d_head 16"
        );
        assert_eq!(neox.parallel_residual, name == "neox-parallel");
        assert!(!neox.tied_embeddings && neox.qkv_bias && neox.norm == Norm::LayerNorm);
    }
}

#[test]
fn sixteen_bit_copies_load_the_rounded_weights_and_stay_sixteen_bit() {
    for (copy, original, precision) in [
        ("llama-gqa-tied-f16", "llama-gqa-tied", Precision::F16),
        ("qwen2-bf16", "qwen2", Precision::Bf16),
    ] {
        let (a, b) = (load(copy), load(original));
        assert_eq!(a.config, b.config);
        // The large matrices keep the file's precision; the model takes about half the memory.
        assert_eq!(a.token_embedding.precision(), precision, "{copy}");
        assert_eq!(
            a.blocks[0].mlp.as_ref().unwrap().fc.weight.precision(),
            precision
        );
        assert!(
            (a.memory_bytes() as f64) < 0.6 * b.memory_bytes() as f64,
            "{copy}: {} bytes against {}",
            a.memory_bytes(),
            b.memory_bytes()
        );
        let (x, y) = (a.token_embedding.f32(), b.token_embedding.f32());
        assert_ne!(x, y, "{copy} is rounded");
        let close = x
            .iter()
            .zip(y.iter())
            .all(|(x, y)| (x - y).abs() <= 1e-2 * y.abs().max(1e-2));
        assert!(close, "{copy} is {original} rounded");
        // The page and `attn inspect` say so, in KB for models this small.
        assert_eq!(
            a.weights_label(),
            format!(
                "{} weights, {:.0} KB",
                precision.label(),
                a.memory_bytes() as f64 / 1e3
            )
        );
        // Rounding the f32 model to the same precision gives exactly the stored copy.
        assert_eq!(b.to_precision(precision).token_embedding, a.token_embedding);
    }
}

#[test]
fn the_own_format_keeps_every_family() {
    for (name, _) in FIXTURES {
        let model = load(name);
        let again = Model::from_safetensors_bytes(&model.to_safetensors_bytes().unwrap()).unwrap();
        assert_eq!(again.config, model.config, "{name}");
        assert_eq!(again.named_tensors(), model.named_tensors(), "{name}");
    }
}

fn run(model: &Model, variant: &str, tokens: &[u32]) -> Output {
    let mut engine = CpuEngine::new(model.clone()).unwrap();
    engine
        .set_variant(&Variant::from_json(variant).unwrap())
        .unwrap();
    engine.forward(tokens).unwrap()
}

#[test]
fn hand_checkable_variants_on_every_family() {
    for name in ["llama-gqa-tied", "qwen2", "neox-parallel"] {
        let model = load(name);
        let tokens = expected(name).input_ids;
        let t = tokens.len();
        let plain = run(&model, "{}", &tokens);

        // kv_groups equal to the model's own key/value heads changes nothing.
        let own = model.config.kv_heads();
        let noop = run(&model, &format!(r#"{{"kv_groups": {own}}}"#), &tokens);
        assert_close(
            &format!("{name} kv_groups no-op"),
            &noop.logits,
            &plain.logits,
        );

        // A window of one: every query attends to itself only.
        let window = run(&model, r#"{"window": 1}"#, &tokens);
        for i in 0..t {
            assert!(
                (window.attention_map(0, 0)[i * t + i] - 1.0).abs() < 1e-6,
                "{name}"
            );
        }

        // Top-1: one key per row, the one plain attention weighs most (in the first layer, whose
        // input the variant does not change).
        let top1 = run(&model, r#"{"top_k": 1}"#, &tokens);
        let (map, plain_map) = (top1.attention_map(0, 1), plain.attention_map(0, 1));
        for i in 0..t {
            let row = &map[i * t..(i + 1) * t];
            assert_eq!(
                row.iter().filter(|p| **p > 0.0).count(),
                1,
                "{name} row {i}"
            );
            let kept = row.iter().position(|p| *p == 1.0).unwrap();
            let best = attn_model::forward::argmax(&plain_map[i * t..(i + 1) * t]) as usize;
            assert_eq!(kept, best, "{name} row {i}");
        }

        // Pooling to one key/value head, low rank, kernels, ablation and dropped layers run and
        // change the output; the KV cache shrinks with pooling.
        let mqa = run(&model, r#"{"kv_groups": 1}"#, &tokens);
        assert!(mqa.kv_bytes_per_token < plain.kv_bytes_per_token, "{name}");
        for variant in [
            r#"{"kv_groups": 1}"#,
            r#"{"kv_rank": 4}"#,
            r#"{"kernel": "linear"}"#,
            r#"{"kernel": {"random_features": 16, "seed": 3}}"#,
            r#"{"heads": {"ablate": [[0, 1]], "mode": "mean"}}"#,
            r#"{"drop_attention_layers": [1]}"#,
            r#"{"beta": 2.0}"#,
        ] {
            let out = run(&model, variant, &tokens);
            assert!(out.logits.iter().all(|v| v.is_finite()), "{name} {variant}");
            let moved = out
                .logits
                .iter()
                .zip(&plain.logits)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(moved > 1e-3, "{name} {variant} changes nothing");
        }
    }
}

/// A copy of fixture `name` in a fresh temporary directory.
fn copy_fixture(name: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("attn-families-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

fn load_error(dir: &Path) -> String {
    load_model(dir).unwrap_err().to_string()
}

#[test]
fn bad_directories_get_clear_messages() {
    // An architecture this build does not read.
    let dir = copy_fixture("llama-gqa-tied", "arch");
    edit_config(&dir, |c| c["model_type"] = "mistral".into());
    let err = load_error(&dir);
    assert!(
        err.contains("`mistral` is not supported") && err.contains("Qwen2"),
        "{err}"
    );

    // A rope kind that is not supported.
    let dir = copy_fixture("llama-gqa-tied", "rope");
    edit_config(&dir, |c| c["rope_parameters"]["rope_type"] = "yarn".into());
    let err = load_error(&dir);
    assert!(
        err.contains("rope scaling `yarn` is not supported"),
        "{err}"
    );

    // A head size the hidden size does not split into.
    let dir = copy_fixture("llama-gqa-tied", "head-dim");
    edit_config(&dir, |c| c["head_dim"] = 16.into());
    let err = load_error(&dir);
    assert!(err.contains("head_dim 16"), "{err}");

    // A missing shard.
    let dir = copy_fixture("neox-sequential", "shard");
    std::fs::remove_file(dir.join("model-00003-of-00010.safetensors")).unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("model-00003-of-00010.safetensors") && err.contains("missing"),
        "{err}"
    );

    // A shard without one of its tensors.
    let dir = copy_fixture("llama-gqa-tied", "tensor");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "model.layers.1.mlp.up_proj.weight")
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(kept, None).unwrap(),
    )
    .unwrap();
    let err = load_error(&dir);
    assert!(err.contains("layers.1.mlp.up_proj.weight"), "{err}");

    // A dtype that is not f32, f16 or bf16.
    let dir = copy_fixture("llama-gqa-tied", "dtype");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let ints = vec![0u8; 48 * 4];
    let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "model.norm.weight")
        .collect();
    tensors.push((
        "model.norm.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![48], &ints).unwrap(),
    ));
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(tensors, None).unwrap(),
    )
    .unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("model.norm.weight") && err.contains("I32"),
        "{err}"
    );
}

#[test]
fn random_models_of_every_family_run() {
    for config in [
        ModelConfig::tiny(30),
        ModelConfig::tiny_llama(30),
        ModelConfig::tiny_neox(30),
    ] {
        let model = Model::random(config.clone(), 3, 0.3).unwrap();
        assert_eq!(model.parameter_count(), config.parameter_count());
        let out = CpuEngine::new(model)
            .unwrap()
            .forward(&[1, 2, 3, 4])
            .unwrap();
        assert!(out.logits.iter().all(|v| v.is_finite()));
    }
}
