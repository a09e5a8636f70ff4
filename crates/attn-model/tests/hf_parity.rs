//! The CPU engine against PyTorch: a tiny random GPT-2 saved by `transformers`, and every variant
//! computed in PyTorch from the definitions in docs/VARIANTS.md
//! (`tests/fixtures/generate_fixtures.py` writes the fixture; see the README beside it).
// Reads its fixtures from disk, so it runs natively; tests/browser.rs runs the fixture parity,
// family, tokenizer and bad-input checks inside a browser.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use attn_model::{load_model, CpuEngine, Model, Output, Variant};
use attn_test_support::assert_close;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::Deserialize;

fn fixture_dir() -> PathBuf {
    Path::new(&*std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gpt2-tiny")
}

#[derive(Deserialize)]
struct Case {
    name: String,
    variant: serde_json::Value,
    kv_bytes_per_token: usize,
}

#[derive(Deserialize)]
struct TokenizerCase {
    text: String,
    ids: Vec<u32>,
}

struct Expected {
    prompt: String,
    input_ids: Vec<u32>,
    cases: Vec<Case>,
    tokenizer_cases: Vec<TokenizerCase>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn expected() -> Expected {
    let bytes = std::fs::read(fixture_dir().join("expected.safetensors"))
        .expect("tests/fixtures/gpt2-tiny/expected.safetensors is committed");
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32);
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect();
    Expected {
        prompt: meta["prompt"].clone(),
        input_ids: serde_json::from_str(&meta["input_ids"]).unwrap(),
        cases: serde_json::from_str(&meta["cases"]).unwrap(),
        tokenizer_cases: serde_json::from_str(&meta["tokenizer_cases"]).unwrap(),
        tensors,
    }
}

fn check_case(out: &Output, exp: &Expected, case: &Case) {
    let get = |suffix: &str| &exp.tensors[&format!("{}.{suffix}", case.name)];
    let (shape, logits) = get("logits");
    assert_eq!(shape, &vec![out.seq_len, out.n_out]);
    assert_close(&format!("{} logits", case.name), &out.logits, logits);
    assert_close(
        &format!("{} attention", case.name),
        &out.attention,
        &get("attention").1,
    );
    assert_close(
        &format!("{} head_out_norms", case.name),
        &out.head_out_norms,
        &get("head_out_norms").1,
    );
    assert_eq!(
        out.kv_bytes_per_token, case.kv_bytes_per_token,
        "{} kv bytes",
        case.name
    );
}

#[test]
fn every_variant_matches_pytorch() {
    let exp = expected();
    let model = load_model(fixture_dir()).unwrap();
    assert!(exp.cases.len() >= 20, "the fixture covers every variant");
    let mut engine = CpuEngine::new(model).unwrap();
    for case in &exp.cases {
        let variant = Variant::from_json(&case.variant.to_string()).unwrap();
        engine.set_variant(&variant).unwrap();
        let out = engine.forward(&exp.input_ids).unwrap();
        check_case(&out, &exp, case);
    }
}

#[test]
fn the_prompt_tokenises_like_transformers() {
    let exp = expected();
    let model = load_model(fixture_dir()).unwrap();
    let tokenizer = model
        .build_tokenizer()
        .unwrap()
        .expect("the fixture has a tokenizer");
    assert_eq!(tokenizer.encode(&exp.prompt).unwrap(), exp.input_ids);
    assert!(exp.tokenizer_cases.len() >= 8);
    for case in &exp.tokenizer_cases {
        assert_eq!(
            tokenizer.encode(&case.text).unwrap(),
            case.ids,
            "{:?}",
            case.text
        );
        assert_eq!(tokenizer.decode(&case.ids).unwrap(), case.text);
    }
    // tokenizer.json gives the same tokenizer as vocab.json + merges.txt.
    let json = std::fs::read_to_string(fixture_dir().join("tokenizer.json")).unwrap();
    let from_json = attn_model::load::hf_tokenizer(None, None, Some(&json))
        .unwrap()
        .unwrap();
    let from_json = attn_model::Tokenizer::from_spec(from_json).unwrap();
    for case in &exp.tokenizer_cases {
        assert_eq!(from_json.encode(&case.text).unwrap(), case.ids);
    }
}

/// Writes the fixture's tensors under new names (and extra buffers) into a temporary HF
/// directory, as other exporters lay GPT-2 out.
fn rewritten_dir(
    tag: &str,
    rename: impl Fn(&str) -> String,
    extra: &[(&str, Vec<usize>)],
) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("attn-hf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "vocab.json", "merges.txt"] {
        std::fs::copy(fixture_dir().join(f), dir.join(f)).unwrap();
    }
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let zeros: Vec<Vec<u8>> = extra
        .iter()
        .map(|(_, s)| vec![0u8; s.iter().product::<usize>() * 4])
        .collect();
    let mut views: Vec<(String, TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (rename(&n), v))
        .collect();
    for ((name, shape), data) in extra.iter().zip(&zeros) {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::F32, shape.clone(), data).unwrap(),
        ));
    }
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn prefixed_names_mask_buffers_and_a_stored_lm_head_load_the_same_model() {
    let base = load_model(fixture_dir()).unwrap();
    let strip = |n: &str| n.strip_prefix("transformer.").unwrap_or(n).to_string();
    let prefixed = rewritten_dir(
        "prefixed",
        |n| format!("transformer.{}", strip(n)),
        &[
            ("transformer.h.0.attn.bias", vec![1, 1, 32, 32]),
            ("transformer.h.1.attn.masked_bias", vec![]),
        ],
    );
    let plain = rewritten_dir("plain", strip, &[]);
    for dir in [&prefixed, &plain] {
        let m = load_model(dir).unwrap();
        assert_eq!(strip_meta(&m), strip_meta(&base), "{}", dir.display());
        let _ = std::fs::remove_dir_all(dir);
    }
    // A stored (tied) lm_head is accepted and ignored.
    let with_head = rewritten_dir(
        "lm-head",
        strip,
        &[(
            "lm_head.weight",
            vec![base.config.vocab_size, base.config.d_model],
        )],
    );
    assert_eq!(
        strip_meta(&load_model(&with_head).unwrap()),
        strip_meta(&base)
    );
}

fn strip_meta(m: &Model) -> Model {
    let mut m = m.clone();
    m.metadata.clear();
    m
}

#[test]
fn an_untied_hf_model_uses_its_lm_head() {
    let base = load_model(fixture_dir()).unwrap();
    let dir = rewritten_dir(
        "untied",
        |n| n.strip_prefix("transformer.").unwrap_or(n).to_string(),
        &[(
            "lm_head.weight",
            vec![base.config.vocab_size, base.config.d_model],
        )],
    );
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
    config["tie_word_embeddings"] = serde_json::Value::Bool(false);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let m = load_model(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(m.lm_head.is_some());
    // The zero head gives zero logits everywhere.
    let out = CpuEngine::new(m).unwrap().forward(&[1, 2, 3]).unwrap();
    assert!(out.logits.iter().all(|&l| l == 0.0));
}
