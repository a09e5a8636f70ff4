//! Harnesses over every parser of outside data — model files (the own format, streamed or whole,
//! and Hugging Face directories), tokenizer files, variant JSON, link state and lesson files —
//! shared by the libFuzzer targets in `fuzz/` and the stable property test
//! (`tests/robustness.rs`). Each takes arbitrary bytes and must return without panicking, and
//! without allocating from an untrusted length: whatever parses is also exercised (a forward,
//! encoding and decoding, a round trip), and the round trips must hold. `docs/RELIABILITY.md`
//! records the runs.

use crate::config::ModelConfig;
use crate::engine::cpu::CpuEngine;
use crate::lesson::Lesson;
use crate::model::Model;
use crate::tensors::TensorStream;
use crate::tokenizer::Tokenizer;
use crate::url::{variant_from_query, variant_to_query};
use crate::variant::Variant;

/// Models with more parameters than this are parsed but not run (a fuzzer's time is better
/// spent on parsing).
const MAX_RUN_PARAMETERS: usize = 1 << 18;

/// Runs a model that loaded on a couple of tokens, when it is small.
fn exercise(model: Model) {
    let c = &model.config;
    if model.parameter_count() > MAX_RUN_PARAMETERS || c.vocab_size == 0 || c.n_ctx == 0 {
        return;
    }
    let tokens: Vec<u32> = [0u32, 1, 0]
        .into_iter()
        .map(|t| t % c.vocab_size as u32)
        .take(c.n_ctx.min(3))
        .collect();
    if let Ok(engine) = CpuEngine::new(model) {
        let _ = engine.forward(&tokens);
    }
}

/// The project's own `.safetensors` file, whole.
pub fn own_format(data: &[u8]) {
    if let Ok(model) = Model::from_safetensors_bytes(data) {
        // What loads also saves and loads back.
        let saved = model.to_safetensors_bytes().expect("a loaded model saves");
        let back = Model::from_safetensors_bytes(&saved).expect("a saved model loads");
        assert_eq!(back.config, model.config);
        exercise(model);
    }
}

/// The same file through the streaming loader, in pieces of `1 + 7 · data[0]` bytes.
pub fn tensor_stream(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let piece = 1 + 7 * first as usize;
    let mut stream = TensorStream::new();
    for chunk in rest.chunks(piece) {
        if stream.push(chunk).is_err() {
            return;
        }
    }
    if let Ok(loaded) = stream.finish() {
        if let Ok(model) = Model::from_loaded(loaded) {
            exercise(model);
        }
    }
}

/// Splits `data` at NUL bytes into at most `n` parts.
fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |&b| b == 0).collect()
}

/// A Hugging Face directory: `config.json`, `model.safetensors.index.json` and one safetensors
/// file, separated by NUL bytes.
pub fn hf_model(data: &[u8]) {
    let p = parts(data, 3);
    let text = |i: usize| p.get(i).and_then(|b| std::str::from_utf8(b).ok());
    if let Some(index) = text(1) {
        let _ = crate::hf::shard_files(index);
    }
    let Some(config) = text(0) else { return };
    let _ = crate::hf::hf_config(config);
    let shard = p.get(2).copied().unwrap_or_default();
    if let Ok(model) = Model::from_hf(config, &[shard]) {
        exercise(model);
    }
}

/// Encodes and decodes a little text of every kind with a tokenizer that loaded.
fn exercise_tokenizer(tokenizer: &Tokenizer) {
    for text in ["Hello world", " héllo,  wörld!\n\t", "日本語 🙂", ""] {
        if let Ok(ids) = tokenizer.encode(text) {
            let _ = tokenizer.decode(&ids);
            for &id in ids.iter().take(8) {
                let _ = tokenizer.token_label(id);
            }
        }
    }
    let n = tokenizer.vocab_size().min(16) as u32;
    let _ = tokenizer.decode(&(0..n).collect::<Vec<_>>());
    let _ = tokenizer.decode(&[u32::MAX]);
}

/// GPT-2's `vocab.json` and `merges.txt`, separated by a NUL byte.
pub fn gpt2_bpe(data: &[u8]) {
    let p = parts(data, 2);
    let (Some(vocab), Some(merges)) = (
        p.first().and_then(|b| std::str::from_utf8(b).ok()),
        p.get(1).and_then(|b| std::str::from_utf8(b).ok()),
    ) else {
        return;
    };
    if let Ok(tokenizer) = Tokenizer::gpt2_from_files(vocab, merges) {
        exercise_tokenizer(&tokenizer);
    }
}

/// A `tokenizer.json` (the hand-written GPT-2 BPE or Hugging Face's `tokenizers`).
pub fn tokenizer_json(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tokenizer) = Tokenizer::from_tokenizer_json(json) {
        exercise_tokenizer(&tokenizer);
    }
}

/// A small model every variant and lesson is checked against.
fn small_model() -> Model {
    Model::random(ModelConfig::tiny(12), 1, 0.3).expect("a small random model")
}

/// Variant JSON: parsed, validated against a small model, run when it fits; normalising twice
/// changes nothing.
pub fn variant(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(variant) = Variant::from_json(json) else {
        return;
    };
    let normalised = variant.normalised();
    assert_eq!(normalised.normalised(), normalised);
    let model = small_model();
    if variant.validate(&model.config).is_ok() && cheap(&variant) {
        let mut engine = CpuEngine::new(model).expect("the small model runs");
        engine
            .set_variant(&variant)
            .expect("a valid variant is accepted");
        engine.forward(&[1, 2, 3, 1]).expect("a valid variant runs");
    }
}

/// Whether a variant is quick to run (random features cost `m` per key).
fn cheap(variant: &Variant) -> bool {
    !matches!(
        variant.kernel,
        Some(crate::variant::Kernel::RandomFeatures { random_features, .. }) if random_features > 4096
    )
}

/// A link's query string (`key=value&…`, no percent-decoding): the variant it describes,
/// written back as a query and read again, is the same variant.
pub fn url_state(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    let (variant, _problems) = variant_from_query(pairs);
    let written = variant_to_query(&variant);
    let (back, problems) =
        variant_from_query(written.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(problems.is_empty(), "{problems:?} reading back {written:?}");
    assert_eq!(back.normalised(), variant.normalised(), "{written:?}");
}

/// A lesson file: parsed, and every step's measurement checked against a small model.
pub fn lesson(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(lesson) = Lesson::from_json(json) else {
        return;
    };
    let model = small_model();
    for step in &lesson.steps {
        let _ = step.variant.validate(&model.config);
        if let Some(measure) = &step.measure {
            let _ = measure.check(&model.config, &[1, 2, 3, 1, 2, 3]);
        }
    }
    // What parsed writes back and parses again.
    let text = serde_json::to_string(&lesson).expect("a lesson serialises");
    assert_eq!(Lesson::from_json(&text).expect("it parses back"), lesson);
}
