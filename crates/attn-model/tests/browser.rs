//! The CPU engine inside a browser — the wasm build (with `simd128` on the web app's targets)
//! that every visitor without a hardware GPU runs — against the same PyTorch/transformers
//! fixtures as natively, embedded in the test: every variant of the GPT-2 fixture, the family
//! fixtures (Llama, Qwen2, GPT-NeoX, f16 and bf16), the tokenizer cases, and bad input.
//!
//! `cargo test -p attn-model --target wasm32-unknown-unknown --test model` (cargo's runner for
//! wasm32 is `wasm-bindgen-test-runner`, .cargo/config.toml; scripts/test.sh runs it), or
//! `wasm-pack test --headless --chrome` in this crate.
//! The native suites (`hf_parity.rs`, `families.rs`, …) read the fixtures from disk and run
//! natively only.
#![cfg(target_arch = "wasm32")]

use attn_model::{CpuEngine, LoadedTensors, Model, Output, Precision, Variant};
use attn_test_support::assert_close;
use wasm_bindgen_test::wasm_bindgen_test;

macro_rules! fixture {
    ($path:expr) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/",
            $path
        ))
    };
}

fn gpt2_tiny() -> Model {
    let mut model = Model::from_hf(
        std::str::from_utf8(fixture!("gpt2-tiny/config.json")).unwrap(),
        &[fixture!("gpt2-tiny/model.safetensors")],
    )
    .unwrap();
    let tokenizer = attn_model::load::hf_tokenizer(
        Some(std::str::from_utf8(fixture!("gpt2-tiny/vocab.json")).unwrap()),
        Some(std::str::from_utf8(fixture!("gpt2-tiny/merges.txt")).unwrap()),
        None,
    );
    attn_model::load::attach_tokenizer(&mut model, tokenizer).unwrap();
    model
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    variant: serde_json::Value,
    kv_bytes_per_token: usize,
}

#[derive(serde::Deserialize)]
struct TokenizerCase {
    text: String,
    ids: Vec<u32>,
}

#[wasm_bindgen_test]
fn every_variant_matches_pytorch_in_the_browser() {
    let expected = LoadedTensors::from_bytes(fixture!("gpt2-tiny/expected.safetensors")).unwrap();
    let meta = expected.metadata();
    let input_ids: Vec<u32> = serde_json::from_str(&meta["input_ids"]).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&meta["cases"]).unwrap();
    assert!(cases.len() >= 20, "the fixture covers every variant");
    let mut engine = CpuEngine::new(gpt2_tiny()).unwrap();
    for case in &cases {
        engine
            .set_variant(&Variant::from_json(&case.variant.to_string()).unwrap())
            .unwrap();
        let out: Output = engine.forward(&input_ids).unwrap();
        let want = |part: &str| {
            expected
                .values(&format!("{}.{part}", case.name))
                .unwrap()
                .into_owned()
        };
        assert_close(
            &format!("{} logits", case.name),
            &out.logits,
            &want("logits"),
        );
        assert_close(
            &format!("{} attention", case.name),
            &out.attention,
            &want("attention"),
        );
        assert_close(
            &format!("{} head_out_norms", case.name),
            &out.head_out_norms,
            &want("head_out_norms"),
        );
        assert_eq!(
            out.kv_bytes_per_token, case.kv_bytes_per_token,
            "{}",
            case.name
        );
    }
}

#[wasm_bindgen_test]
fn the_prompt_tokenises_like_transformers_in_the_browser() {
    let expected = LoadedTensors::from_bytes(fixture!("gpt2-tiny/expected.safetensors")).unwrap();
    let meta = expected.metadata();
    let tokenizer = gpt2_tiny().build_tokenizer().unwrap().unwrap();
    let input_ids: Vec<u32> = serde_json::from_str(&meta["input_ids"]).unwrap();
    assert_eq!(tokenizer.encode(&meta["prompt"]).unwrap(), input_ids);
    let cases: Vec<TokenizerCase> = serde_json::from_str(&meta["tokenizer_cases"]).unwrap();
    assert!(cases.len() >= 8);
    for case in &cases {
        assert_eq!(
            tokenizer.encode(&case.text).unwrap(),
            case.ids,
            "{:?}",
            case.text
        );
        assert_eq!(tokenizer.decode(&case.ids).unwrap(), case.text);
    }
}

/// One family fixture: its model (weights as stored), the ids transformers ran and its logits
/// and attention.
fn family(config: &[u8], weights: &[u8], expected: &[u8]) -> (Model, Vec<u32>, Vec<f32>, Vec<f32>) {
    let model = Model::from_hf(std::str::from_utf8(config).unwrap(), &[weights]).unwrap();
    let file = LoadedTensors::from_bytes(expected).unwrap();
    let ids = serde_json::from_str(&file.metadata()["input_ids"]).unwrap();
    let logits = file.values("logits").unwrap().into_owned();
    let attention = file.values("attention").unwrap().into_owned();
    (model, ids, logits, attention)
}

macro_rules! family_fixture {
    ($name:literal) => {
        (
            $name,
            family(
                fixture!(concat!("families/", $name, "/config.json")),
                fixture!(concat!("families/", $name, "/model.safetensors")),
                fixture!(concat!("families/", $name, "/expected.safetensors")),
            ),
        )
    };
}

#[wasm_bindgen_test]
fn family_fixtures_match_transformers_in_the_browser() {
    for (name, (model, ids, logits, attention)) in [
        family_fixture!("llama-gqa-tied"),
        family_fixture!("llama-untied-llama3"),
        family_fixture!("qwen2"),
        family_fixture!("neox-parallel"),
        family_fixture!("llama-gqa-tied-f16"),
        family_fixture!("qwen2-bf16"),
    ] {
        if name.ends_with("f16") {
            // 16-bit checkpoints stay 16-bit in the browser's memory too.
            assert_ne!(model.weight_precision(), Precision::F32, "{name}");
        }
        let out = CpuEngine::new(model).unwrap().forward(&ids).unwrap();
        assert_close(&format!("{name} logits"), &out.logits, &logits);
        assert_close(&format!("{name} attention"), &out.attention, &attention);
    }
}

#[wasm_bindgen_test]
fn bad_files_are_clear_errors_in_the_browser() {
    let err = Model::from_safetensors_bytes(b"not a model").unwrap_err();
    assert!(
        err.to_string().contains("not a valid safetensors file"),
        "{err}"
    );
    // A file cut short, and a config for an architecture this build does not read.
    let weights = fixture!("gpt2-tiny/model.safetensors");
    let config = std::str::from_utf8(fixture!("gpt2-tiny/config.json")).unwrap();
    assert!(Model::from_hf(config, &[&weights[..weights.len() - 100]]).is_err());
    let mistral = config.replace("\"gpt2\"", "\"mistral\"");
    let err = Model::from_hf(&mistral, &[weights]).unwrap_err();
    assert!(err.to_string().contains("mistral"), "{err}");
    // A variant that does not fit the model, and a token outside the vocabulary.
    let mut engine = CpuEngine::new(gpt2_tiny()).unwrap();
    assert!(engine
        .set_variant(&Variant::from_json(r#"{"kv_groups": 3}"#).unwrap())
        .is_err());
    assert!(engine.forward(&[1, 99_999]).is_err());
}

/// The browser's matrix product (`gemm_simd128`: packed panels, a 4 × 8 micro-kernel; with the
/// feature `relaxed-simd`, fused multiply-adds)
/// against a plain f64 triple loop, on shapes that leave partial panels on every side, depths
/// over one packed block, more rows than one packed block of A, and every stride the forward
/// pass uses (a transposed B for the unembedding and Q·Kᵀ, one head's columns, a transposed A).
#[wasm_bindgen_test]
fn the_browser_matrix_product_matches_a_plain_loop() {
    use attn_model::linalg::{matmul, matmul_add, MatRef};
    let mut state = 0x2545_f491_u32;
    let mut random = move |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    };
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (4, 8, 8),
        (13, 300, 17),
        (64, 128, 384),
        (130, 33, 9),
        (65, 513, 24),
    ];
    for (m, k, n) in shapes {
        for (a_transposed, b_transposed) in [(false, false), (false, true), (true, false)] {
            let a_data = random(m * k);
            let b_data = random(k * n + 3 * k);
            let a = if a_transposed {
                MatRef::new(&a_data, k, m).t()
            } else {
                MatRef::new(&a_data, m, k)
            };
            // B as columns 2.. of a wider matrix, or as the transpose of an n × k one.
            let b = if b_transposed {
                MatRef::new(&b_data[..k * n], n, k).t()
            } else {
                MatRef::new(&b_data, k, n + 3).columns(2, n)
            };
            let start = random(m * n);
            let mut got = start.clone();
            matmul_add(a, b, &mut got);
            let fresh = matmul(a, b);
            for i in 0..m {
                for j in 0..n {
                    let at = |mat: MatRef<'_>, r: usize, c: usize| {
                        mat.data[r * mat.row_stride + c * mat.col_stride] as f64
                    };
                    let dot: f64 = (0..k).map(|p| at(a, i, p) * at(b, p, j)).sum();
                    let scale: f64 = (0..k).map(|p| (at(a, i, p) * at(b, p, j)).abs()).sum();
                    let tol = 1e-6 * scale.max(1.0);
                    let what =
                        format!("{m}×{k}×{n} (A^T {a_transposed}, B^T {b_transposed}) [{i},{j}]");
                    let sum = got[i * n + j] as f64;
                    assert!(
                        (sum - start[i * n + j] as f64 - dot).abs() <= tol,
                        "{what}: {sum}"
                    );
                    assert!(
                        (fresh[i * n + j] as f64 - dot).abs() <= tol,
                        "{what}: fresh"
                    );
                }
            }
        }
    }
}

/// The page's trainer in the browser against the offline trainer (burn's autodiff and AdamW,
/// which does not run here): for the same initial weights and batch, the loss, the head norms
/// and every parameter's gradient agree to 1e-4 of that parameter's largest gradient, on every
/// architecture option; 50 steps give the same loss curve within 1e-3. burn's side is the
/// fixture attn-train's `tests/agreement.rs` writes and keeps in step with burn natively.
#[wasm_bindgen_test]
fn the_page_trainer_agrees_with_the_offline_trainer_in_the_browser() {
    use attn_model::training::backprop::{
        check_gradients, loss_and_gradients, parameters_mut, zeros_like,
    };
    use attn_model::training::{initial_model, model_config, Task, TrainConfig, Trainer};
    use rand_chacha::rand_core::SeedableRng;

    let fixture: serde_json::Value =
        serde_json::from_slice(fixture!("training/agreement.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5, "one case per training option");
    for case in cases {
        let task = Task::from_name(case["task"].as_str().unwrap()).unwrap();
        let config: TrainConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let data = task.synthetic_data().unwrap();
        let model_config = model_config(&config, data.as_ref()).unwrap();
        let model = initial_model(&model_config, case["init_seed"].as_u64().unwrap()).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(case["batch_seed"].as_u64().unwrap());
        let batch = data.batch(&mut rng, config.batch_size);
        let (loss, grads) = loss_and_gradients(&model, &batch, config.head_penalty as f32).unwrap();

        let (burn_loss, burn_norms) = (
            case["loss"].as_f64().unwrap(),
            case["head_norms"].as_f64().unwrap(),
        );
        assert!(
            (loss.loss - burn_loss).abs() < 1e-5 * (1.0 + burn_loss),
            "{task:?}: loss {} vs burn {burn_loss}",
            loss.loss
        );
        assert!(
            (loss.head_norms - burn_norms).abs() < 1e-4 * (1.0 + burn_norms),
            "{task:?}: head norms {} vs burn {burn_norms}",
            loss.head_norms
        );
        let burn: Vec<Vec<f32>> = serde_json::from_value(case["gradients"].clone()).unwrap();
        let mut burn_grads = zeros_like(&model).unwrap();
        let slots = parameters_mut(&mut burn_grads);
        assert_eq!(slots.len(), burn.len(), "{task:?}: parameters");
        for (slot, values) in slots.into_iter().zip(burn) {
            *slot = values;
        }
        check_gradients(&grads, &burn_grads, 1e-4).unwrap_or_else(|e| panic!("{task:?}: {e}"));

        let Some(curve) = case["curve"].as_array() else {
            continue;
        };
        let config: TrainConfig = serde_json::from_value(case["curve_config"].clone()).unwrap();
        let mut trainer = Trainer::new(task, task.synthetic_data().unwrap(), config).unwrap();
        for (step, burn) in curve.iter().enumerate() {
            let page = trainer.step().unwrap().batch.loss;
            let burn = burn.as_f64().unwrap();
            assert!(
                (page - burn).abs() < 1e-3,
                "{task:?} step {}: page {page} vs offline {burn}",
                step + 1
            );
        }
    }
}
