//! Tokenizers of every family against Python's `tokenizers`: small `tokenizer.json` files trained
//! with each family's configuration (Llama 3's and Qwen2's split patterns, GPT-NeoX's byte-level
//! BPE, SentencePiece-style BPE with byte fallback) and the ids Python gives for a corpus of
//! multilingual, emoji, whitespace and digit texts (`tests/fixtures/generate_tokenizer_fixtures.py`
//! writes `tests/fixtures/tokenizers/`).
// Reads its fixtures from disk, so it runs natively; tests/browser.rs runs the fixture parity,
// family, tokenizer and bad-input checks inside a browser.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};

use attn_model::{Tokenizer, TokenizerSpec};
use serde::Deserialize;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tokenizers")
        .join(name)
}

#[derive(Deserialize)]
struct Cases {
    vocab_size: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    plain_ids: Vec<u32>,
    decoded: String,
}

fn check(name: &str, bos: Option<&str>) {
    let json = std::fs::read_to_string(fixture(name).join("tokenizer.json")).unwrap();
    let cases: Cases =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("cases.json")).unwrap())
            .unwrap();
    let tokenizer = Tokenizer::from_tokenizer_json(&json).unwrap();
    assert_eq!(tokenizer.kind(), "hugging_face", "{name}");
    assert_eq!(tokenizer.vocab_size(), cases.vocab_size, "{name}");
    for case in &cases.cases {
        let ids = tokenizer.encode(&case.text).unwrap();
        assert_eq!(ids, case.ids, "{name}: {:?}", case.text);
        assert_eq!(
            tokenizer.decode(&case.plain_ids).unwrap(),
            case.decoded,
            "{name}: {:?}",
            case.text
        );
        // Every token has a label to show.
        for &id in &ids {
            assert!(
                tokenizer.token_label(id).is_some_and(|l| !l.is_empty()),
                "{name}: {id}"
            );
        }
        // The BOS the model expects comes first, and only then.
        match bos {
            Some(bos) => {
                assert_eq!(
                    tokenizer.token_label(ids[0]).as_deref(),
                    Some(bos),
                    "{name}"
                );
                assert_eq!(&ids[1..], case.plain_ids.as_slice(), "{name}");
            }
            None => assert_eq!(ids, case.plain_ids, "{name}"),
        }
    }
    // The spec round-trips through the own format's JSON.
    let spec: TokenizerSpec =
        serde_json::from_str(&serde_json::to_string(tokenizer.spec()).unwrap()).unwrap();
    assert_eq!(&spec, tokenizer.spec());
}

#[test]
fn llama3_split_pattern_with_its_bos() {
    check("llama3", Some("<|begin_of_text|>"));
}

#[test]
fn qwen2_split_pattern_and_nfc() {
    check("qwen2", None);
}

#[test]
fn gpt_neox_byte_level() {
    check("neox", None);
}

#[test]
fn sentencepiece_style_bpe_with_byte_fallback_and_its_bos() {
    check("sentencepiece", Some("<s>"));
}

#[test]
fn a_broken_tokenizer_json_is_a_clear_error() {
    let err = Tokenizer::from_tokenizer_json(r#"{"model": {"type": "Nonsense"}}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizer"), "{err}");
}

#[test]
fn out_of_range_ids_are_an_error() {
    let json = std::fs::read_to_string(fixture("llama3").join("tokenizer.json")).unwrap();
    let tokenizer = Tokenizer::from_tokenizer_json(&json).unwrap();
    let err = tokenizer.decode(&[5, 100_000]).unwrap_err().to_string();
    assert!(err.contains("100000"), "{err}");
}

/// Found by fuzzing: `tokenizers` accepts a template naming a special token that the
/// post-processor does not define, then panics when encoding. The loader refuses it by name.
#[test]
fn a_template_with_an_undefined_special_token_is_refused_with_its_name() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/tokenizer_json/undefined-template-special-token.json"
    );
    let json = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let Err(error) = attn_model::Tokenizer::from_tokenizer_json(&json) else {
        panic!("refused")
    };
    let error = error.to_string();
    assert!(error.contains("\"<s6\""), "{error}");
}
