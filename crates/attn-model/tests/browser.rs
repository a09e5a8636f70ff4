//! The CPU engine inside a browser — the wasm build (with `simd128` on the web app's targets)
//! that every visitor without a hardware GPU runs — against the same PyTorch/transformers
//! fixtures as natively, embedded in the test: every variant of the GPT-2 fixture, the family
//! fixtures (Llama, Qwen2, GPT-NeoX, f16 and bf16), the tokenizer cases, and bad input.
//!
//! `wasm-pack test --headless --chrome` in this crate, or `cargo test -p attn-model --target
//! wasm32-unknown-unknown --test browser` with `wasm-bindgen-test-runner` (scripts/test.sh).
//! The native suites (`hf_parity.rs`, `families.rs`, …) read the fixtures from disk and run
//! natively only.
#![cfg(target_arch = "wasm32")]

use attn_model::{CpuEngine, LoadedTensors, Model, Output, Precision, Variant};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

macro_rules! fixture {
    ($path:expr) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/",
            $path
        ))
    };
}

/// `|a − b| ≤ 1e-4 · max(1, |b|)` elementwise, as the native suites check.
fn assert_close(what: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, b)) in actual.iter().zip(expected).enumerate() {
        let err = (a - b).abs() / b.abs().max(1.0);
        assert!(
            err <= 1e-4,
            "{what}[{i}]: {a} against {b} (relative error {err:e})"
        );
    }
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
