//! What the native and the browser parity tests share: the model shapes, the variants, the
//! comparison, and the PyTorch fixture (embedded, so the browser needs no file access).
#![allow(dead_code)]

use std::collections::HashMap;

use attn_gpu::{EngineOptions, GpuContext, GpuEngine};
use attn_model::{
    CpuEngine, Family, Model, ModelConfig, Output, Positional, Precision, Rope, RopeScaling,
    Variant,
};
use safetensors::SafeTensors;

pub use attn_test_support::assert_close;

/// The tolerance of the issue: `|gpu − reference| ≤ 1e-4 · max(1, |reference|)`.
pub const TOLERANCE: f32 = 1e-4;

/// Opens the device or fails loudly: a machine without an adapter must not pass these tests.
pub async fn new_context() -> GpuContext {
    match GpuContext::new().await {
        Ok(ctx) => ctx,
        Err(e) => panic!(
            "\n\n*** attn-gpu tests could not open the GPU engine: {e}\n\
             *** Natively, install Debian's `mesa-vulkan-drivers` (lavapipe); in Chromium, pass\n\
             *** --enable-unsafe-webgpu (see crates/attn-gpu/webdriver.json).\n\n"
        ),
    }
}

/// Every field of two outputs agrees.
pub fn assert_same_output(what: &str, gpu: &Output, reference: &Output) {
    assert_eq!(
        (gpu.seq_len, gpu.n_layer, gpu.n_head, gpu.n_out),
        (
            reference.seq_len,
            reference.n_layer,
            reference.n_head,
            reference.n_out
        ),
        "{what}: shapes"
    );
    assert_close(&format!("{what}: logits"), &gpu.logits, &reference.logits);
    assert_close(
        &format!("{what}: attention"),
        &gpu.attention,
        &reference.attention,
    );
    assert_close(
        &format!("{what}: head_out_norms"),
        &gpu.head_out_norms,
        &reference.head_out_norms,
    );
    assert_eq!(
        gpu.kv_bytes_per_token, reference.kv_bytes_per_token,
        "{what}: kv bytes"
    );
}

fn config(vocab: usize, d_model: usize, n_layer: usize, n_head: usize) -> ModelConfig {
    ModelConfig {
        n_ctx: 40,
        d_model,
        n_layer,
        n_head,
        ..ModelConfig::tiny(vocab)
    }
}

/// Model shapes: GPT-like, bidirectional classifier, attention-only with an untied head,
/// natively grouped (GQA and MQA) checkpoints, d_head = 1, and sizes off every tile.
pub fn model_configs() -> Vec<(&'static str, ModelConfig)> {
    vec![
        ("gpt", config(301, 32, 2, 4)),
        (
            "classifier",
            ModelConfig {
                causal: false,
                n_classes: Some(5),
                ..config(23, 24, 2, 3)
            },
        ),
        (
            "attention-only",
            ModelConfig {
                mlp: false,
                tied_embeddings: false,
                ..config(37, 16, 3, 2)
            },
        ),
        (
            "native-gqa",
            ModelConfig {
                n_kv_head: Some(2),
                ..config(50, 32, 2, 4)
            },
        ),
        (
            "native-mqa-bidirectional",
            ModelConfig {
                n_kv_head: Some(1),
                causal: false,
                ..config(19, 24, 1, 3)
            },
        ),
        (
            "d_head-1",
            ModelConfig {
                d_mlp: Some(7),
                ..config(11, 4, 2, 4)
            },
        ),
        // The Hugging Face families: RMSNorm, full rotary, SwiGLU, native GQA, no biases.
        (
            "llama",
            ModelConfig {
                positional: rope(500.0, 8, RopeScaling::None),
                ..family(ModelConfig::tiny_llama(50), 32, 2, 4)
            },
        ),
        // Qwen2's q/k/v biases, an untied head and llama3 rope scaling.
        (
            "qwen2-llama3-scaling",
            ModelConfig {
                family: Family::Qwen2,
                qkv_bias: true,
                tied_embeddings: false,
                positional: rope(
                    1e6,
                    8,
                    RopeScaling::Llama3 {
                        factor: 4.0,
                        low_freq_factor: 1.0,
                        high_freq_factor: 4.0,
                        original_max_position_embeddings: 8,
                    },
                ),
                ..family(ModelConfig::tiny_llama(50), 32, 2, 4)
            },
        ),
        // GPT-NeoX: partial rotary (one pair of 8 dimensions), parallel residual, exact GELU.
        (
            "neox",
            ModelConfig {
                positional: rope(10000.0, 2, RopeScaling::None),
                ..family(ModelConfig::tiny_neox(50), 32, 2, 4)
            },
        ),
    ]
}

/// A family's tiny config at these sizes, with 40 positions.
fn family(base: ModelConfig, d_model: usize, n_layer: usize, n_head: usize) -> ModelConfig {
    ModelConfig {
        n_ctx: 40,
        d_model,
        n_layer,
        n_head,
        ..base
    }
}

fn rope(theta: f32, rotary_dim: usize, scaling: RopeScaling) -> Positional {
    Positional::Rope(Rope {
        theta,
        rotary_dim,
        scaling,
    })
}

/// Every variant family of docs/VARIANTS.md, alone and combined.
pub const VARIANTS: &[(&str, &str)] = &[
    ("plain", "{}"),
    ("window1", r#"{"window": 1}"#),
    ("window3", r#"{"window": 3}"#),
    ("topk1", r#"{"top_k": 1}"#),
    ("topk3", r#"{"top_k": 3}"#),
    ("beta", r#"{"beta": 2.5}"#),
    ("beta_small", r#"{"beta": 0.3}"#),
    ("linear", r#"{"kernel": "linear"}"#),
    (
        "linear_beta_window",
        r#"{"kernel": "linear", "beta": 0.7, "window": 4}"#,
    ),
    (
        "random_features",
        r#"{"kernel": {"random_features": 16, "seed": 3}}"#,
    ),
    (
        "random_features_topk_window",
        r#"{"kernel": {"random_features": 7, "seed": 1}, "top_k": 2, "window": 5, "beta": 0.5}"#,
    ),
    (
        "ablate_zero",
        r#"{"heads": {"ablate": [[0, 1], [1, 0]], "mode": "zero"}}"#,
    ),
    (
        "ablate_mean",
        r#"{"heads": {"ablate": [[0, 0], [1, 1]], "mode": "mean"}}"#,
    ),
    ("drop1", r#"{"drop_attention_layers": [1]}"#),
    ("drop0", r#"{"drop_attention_layers": [0]}"#),
    ("gqa2", r#"{"kv_groups": 2}"#),
    ("mqa", r#"{"kv_groups": 1}"#),
    ("rank3", r#"{"kv_rank": 3}"#),
    ("gqa1_rank2", r#"{"kv_groups": 1, "kv_rank": 2}"#),
    ("pca2", r#"{"kv_pca": 2}"#),
    ("route1", r#"{"route_heads": 1}"#),
    (
        "route2_ablate_mean",
        r#"{"route_heads": 2, "heads": {"ablate": [[0, 1]], "mode": "mean"}, "window": 4}"#,
    ),
    ("gqa2_pca1", r#"{"kv_groups": 2, "kv_pca": 1}"#),
    (
        "combo",
        r#"{"window": 5, "top_k": 3, "beta": 1.5, "heads": {"ablate": [[1, 0]], "mode": "mean"}}"#,
    ),
    (
        "everything",
        r#"{"window": 6, "top_k": 4, "beta": 0.8, "kernel": "linear", "kv_groups": 1, "kv_rank": 2,
            "heads": {"ablate": [[0, 1]], "mode": "zero"}, "drop_attention_layers": [1]}"#,
    ),
];

/// Runs every variant that fits `config` at every length in `lengths` on both engines and
/// compares. Returns how many (variant, length) pairs were checked.
pub async fn check_variants(
    ctx: &GpuContext,
    name: &str,
    config: &ModelConfig,
    variants: &[(&str, &str)],
    lengths: &[usize],
) -> usize {
    check_variants_in(ctx, name, config, Precision::F32, variants, lengths).await
}

/// [`check_variants`] on a model whose weight matrices are held in `precision` (16-bit models
/// are stored packed on the GPU and widened by the kernels; the CPU engine widens them too).
pub async fn check_variants_in(
    ctx: &GpuContext,
    name: &str,
    config: &ModelConfig,
    precision: Precision,
    variants: &[(&str, &str)],
    lengths: &[usize],
) -> usize {
    let model = Model::random(config.clone(), 11, 0.4)
        .expect("a valid config")
        .to_precision(precision);
    assert_eq!(model.token_embedding.precision(), precision);
    let mut cpu = CpuEngine::new(model.clone()).unwrap();
    let options = EngineOptions {
        poison: true,
        ..Default::default()
    };
    let mut gpu = GpuEngine::with_options(ctx, model.into(), options).unwrap();
    let mut checked = 0;
    for (variant_name, json) in variants {
        let variant = Variant::from_json(json).unwrap();
        if variant.validate(config).is_err() {
            continue; // e.g. a layer index the model does not have
        }
        cpu.set_variant(&variant).unwrap();
        gpu.set_variant(&variant).unwrap();
        for &t in lengths {
            let tokens: Vec<u32> = (0..t)
                .map(|i| ((i * 7 + 3) % config.vocab_size) as u32)
                .collect();
            let want = cpu.forward(&tokens).unwrap();
            let got = gpu
                .forward(&tokens)
                .await
                .unwrap_or_else(|e| panic!("{name}/{variant_name}/T={t}: {e}"));
            assert_same_output(&format!("{name}/{variant_name}/T={t}"), &got, &want);
            assert_eq!(gpu.stats().last_forward.submits, 1);
            checked += 1;
        }
    }
    checked
}

/// The PyTorch fixture (tests/fixtures/gpt2-tiny), embedded.
pub struct Fixture {
    pub model: Model,
    pub input_ids: Vec<u32>,
    /// (name, variant JSON, kv bytes per token)
    pub cases: Vec<(String, String, usize)>,
    pub tensors: HashMap<String, Vec<f32>>,
}

pub fn fixture() -> Fixture {
    let config = include_str!("../../../../tests/fixtures/gpt2-tiny/config.json");
    let weights = include_bytes!("../../../../tests/fixtures/gpt2-tiny/model.safetensors");
    let expected = include_bytes!("../../../../tests/fixtures/gpt2-tiny/expected.safetensors");
    let model = Model::from_hf_gpt2(config, weights).expect("the fixture loads");
    let (_, meta) = SafeTensors::read_metadata(expected).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&meta["cases"]).unwrap();
    let cases = cases
        .into_iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["variant"].to_string(),
                c["kv_bytes_per_token"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    let file = SafeTensors::deserialize(expected).unwrap();
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    Fixture {
        model,
        input_ids: serde_json::from_str(&meta["input_ids"]).unwrap(),
        cases,
        tensors,
    }
}

/// Every case of the fixture on the GPU against PyTorch's numbers (and the CPU engine).
/// Returns the number of cases checked.
pub async fn check_fixture(ctx: &GpuContext) -> usize {
    let f = fixture();
    let options = EngineOptions {
        poison: true,
        ..Default::default()
    };
    let mut gpu = GpuEngine::with_options(ctx, f.model.clone().into(), options).unwrap();
    let mut cpu = CpuEngine::new(f.model.clone()).unwrap();
    for (name, json, kv_bytes) in &f.cases {
        let variant = Variant::from_json(json).unwrap();
        gpu.set_variant(&variant).unwrap();
        cpu.set_variant(&variant).unwrap();
        let got = gpu.forward(&f.input_ids).await.unwrap();
        let t = &f.tensors;
        assert_close(
            &format!("{name}: logits vs PyTorch"),
            &got.logits,
            &t[&format!("{name}.logits")],
        );
        assert_close(
            &format!("{name}: attention vs PyTorch"),
            &got.attention,
            &t[&format!("{name}.attention")],
        );
        assert_close(
            &format!("{name}: head_out_norms vs PyTorch"),
            &got.head_out_norms,
            &t[&format!("{name}.head_out_norms")],
        );
        assert_eq!(got.kv_bytes_per_token, *kv_bytes, "{name}: kv bytes");
        assert_same_output(
            &format!("{name}: GPU vs CPU"),
            &got,
            &cpu.forward(&f.input_ids).unwrap(),
        );
    }
    f.cases.len()
}

/// One of the Hugging Face family fixtures (tests/fixtures/families), embedded: the model and
/// what transformers computed for it.
pub struct FamilyFixture {
    pub name: &'static str,
    pub model: Model,
    pub input_ids: Vec<u32>,
    pub logits: Vec<f32>,
    pub attention: Vec<f32>,
}

macro_rules! family_fixture {
    ($name:literal) => {{
        let config = include_str!(concat!(
            "../../../../tests/fixtures/families/",
            $name,
            "/config.json"
        ));
        let weights: &[u8] = include_bytes!(concat!(
            "../../../../tests/fixtures/families/",
            $name,
            "/model.safetensors"
        ));
        let expected: &[u8] = include_bytes!(concat!(
            "../../../../tests/fixtures/families/",
            $name,
            "/expected.safetensors"
        ));
        family_fixture($name, config, weights, expected)
    }};
}

fn family_fixture(
    name: &'static str,
    config: &str,
    weights: &[u8],
    expected: &[u8],
) -> FamilyFixture {
    let model = Model::from_hf(config, &[weights]).expect("the fixture loads");
    let file = attn_model::LoadedTensors::from_bytes(expected).unwrap();
    FamilyFixture {
        name,
        model,
        input_ids: serde_json::from_str(&file.metadata()["input_ids"]).unwrap(),
        logits: file.values("logits").unwrap().to_vec(),
        attention: file.values("attention").unwrap().to_vec(),
    }
}

/// The single-file family fixtures: Llama (GQA, tied; untied with llama3 scaling; float16),
/// Qwen2 (and bfloat16) and GPT-NeoX (parallel residual).
pub fn family_fixtures() -> Vec<FamilyFixture> {
    vec![
        family_fixture!("llama-gqa-tied"),
        family_fixture!("llama-untied-llama3"),
        family_fixture!("qwen2"),
        family_fixture!("neox-parallel"),
        family_fixture!("llama-gqa-tied-f16"),
        family_fixture!("qwen2-bf16"),
    ]
}

/// Every family fixture on the GPU against transformers' numbers; the GPU's top-1 equals the
/// CPU engine's. Returns the number of fixtures checked.
pub async fn check_family_fixtures(ctx: &GpuContext) -> usize {
    let fixtures = family_fixtures();
    for f in &fixtures {
        let options = EngineOptions {
            poison: true,
            ..Default::default()
        };
        let mut gpu = GpuEngine::with_options(ctx, f.model.clone().into(), options)
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let got = gpu
            .forward(&f.input_ids)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_close(&format!("{} logits", f.name), &got.logits, &f.logits);
        assert_close(
            &format!("{} attention", f.name),
            &got.attention,
            &f.attention,
        );
        let cpu = CpuEngine::new(f.model.clone())
            .unwrap()
            .forward(&f.input_ids)
            .unwrap();
        let last = f.input_ids.len() - 1;
        assert_eq!(got.argmax_at(last), cpu.argmax_at(last), "{}", f.name);
    }
    fixtures.len()
}
