//! The stable-toolchain property test over every parser of outside data (CI's share of the
//! fuzzing; `scripts/fuzz.sh` runs libFuzzer on the same harnesses, `attn_model::fuzzing`): each
//! target's committed corpus (`fuzz/corpus/<target>/`) and every input a fuzzer once crashed on
//! (`fuzz/regressions/<target>/`) run as they are, then seeded mutations of the corpus — bit
//! flips, interesting bytes, cuts, deletions, duplications and insertions. A harness panics on a
//! bug; this test fails and names the target and the input's seed.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::time::Instant;

use attn_model::fuzzing;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Harness = fn(&[u8]);

const TARGETS: [(&str, Harness); 8] = [
    ("own_format", fuzzing::own_format),
    ("tensor_stream", fuzzing::tensor_stream),
    ("hf_model", fuzzing::hf_model),
    ("gpt2_bpe", fuzzing::gpt2_bpe),
    ("tokenizer_json", fuzzing::tokenizer_json),
    ("variant", fuzzing::variant),
    ("url_state", fuzzing::url_state),
    ("lesson", fuzzing::lesson),
];

/// Mutations per target.
const MUTATIONS: usize = 10_000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// One random change to `data`.
fn mutate(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    const INTERESTING: &[u8] = b"\x00\xff\x7f\x80\"{}[]:,-0123456789eE.\\ \n";
    let mut below = |n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    let len = data.len();
    match below(7) {
        0 if len > 0 => {
            let i = below(len);
            data[i] ^= 1 << below(8);
        }
        1 if len > 0 => {
            let i = below(len);
            data[i] = INTERESTING[below(INTERESTING.len())];
        }
        2 => data.truncate(below(len + 1)),
        3 if len > 0 => {
            let start = below(len);
            let end = (start + 1 + below(16)).min(len);
            data.drain(start..end);
        }
        4 if len > 0 => {
            let start = below(len);
            let end = (start + 1 + below(64)).min(len);
            let copy = data[start..end].to_vec();
            let at = below(len + 1);
            data.splice(at..at, copy);
        }
        5 => {
            let at = below(len + 1);
            let bytes: Vec<u8> = (0..1 + below(8)).map(|_| below(256) as u8).collect();
            data.splice(at..at, bytes);
        }
        _ if len >= 8 => {
            // A little-endian length or offset in a binary header, made huge.
            let i = below(len - 7);
            data[i..i + 8].copy_from_slice(&u64::MAX.wrapping_shr(below(40) as u32).to_le_bytes());
        }
        _ => data.push(below(256) as u8),
    }
}

#[test]
fn every_parser_survives_its_corpus_past_crashes_and_mutations() {
    let started = Instant::now();
    for (target, harness) in TARGETS {
        let corpus = files(&root().join("fuzz/corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{target} has seeds (write_seed_corpus)"
        );
        for (name, data) in corpus
            .iter()
            .chain(&files(&root().join("fuzz/regressions").join(target)))
        {
            let result = std::panic::catch_unwind(|| harness(data));
            assert!(result.is_ok(), "{target}: {name} panics");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        for case in 0..MUTATIONS {
            let (_, seed) = &corpus[case % corpus.len()];
            let mut data = seed.clone();
            for _ in 0..1 + (rng.next_u64() % 4) {
                mutate(&mut rng, &mut data);
            }
            let result = std::panic::catch_unwind(|| harness(&data));
            if result.is_err() {
                let path = std::env::temp_dir().join(format!("attn-{target}-{case}.bin"));
                std::fs::write(&path, &data).unwrap();
                panic!(
                    "{target}: mutation {case} panics; the input is in {}",
                    path.display()
                );
            }
        }
    }
    println!(
        "{} targets × {MUTATIONS} mutations in {:.1?}",
        TARGETS.len(),
        started.elapsed()
    );
}

/// Writes the seed corpus from the project's own fixtures (run once, then commit
/// `fuzz/corpus/`): `cargo test -p attn-model --test robustness -- --ignored`.
#[test]
#[ignore]
fn write_seed_corpus() {
    let corpus = root().join("fuzz/corpus");
    let fixtures = root().join("tests/fixtures");
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    let join = |parts: &[&[u8]]| parts.join(&0u8);
    // Model files: a small random model in f32 and bf16, and the smallest built-in model.
    let small = attn_model::Model::random(attn_model::ModelConfig::tiny(12), 1, 0.3).unwrap();
    let f32_bytes = small.to_safetensors_bytes().unwrap();
    let bf16_bytes = small
        .to_precision(attn_model::Precision::Bf16)
        .to_safetensors_bytes()
        .unwrap();
    write("own_format", "tiny-f32.safetensors", &f32_bytes);
    write("own_format", "tiny-bf16.safetensors", &bf16_bytes);
    write(
        "own_format",
        "induction.safetensors",
        &read(root().join("static/models/induction.safetensors")),
    );
    write(
        "tensor_stream",
        "tiny-f32",
        &[[3u8].as_slice(), &f32_bytes].concat(),
    );
    write(
        "tensor_stream",
        "tiny-bf16",
        &[[200u8].as_slice(), &bf16_bytes].concat(),
    );
    // Hugging Face directories: config.json, the shard index, one safetensors file.
    let gpt2 = fixtures.join("gpt2-tiny");
    write(
        "hf_model",
        "gpt2-tiny",
        &join(&[
            &read(gpt2.join("config.json")),
            b"",
            &read(gpt2.join("model.safetensors")),
        ]),
    );
    let qwen2 = fixtures.join("families/qwen2");
    write(
        "hf_model",
        "qwen2",
        &join(&[
            &read(qwen2.join("config.json")),
            b"",
            &read(qwen2.join("model.safetensors")),
        ]),
    );
    let neox = fixtures.join("families/neox-sequential");
    write(
        "hf_model",
        "neox-shard",
        &join(&[
            &read(neox.join("config.json")),
            &read(neox.join("model.safetensors.index.json")),
            &read(neox.join("model-00003-of-00010.safetensors")),
        ]),
    );
    // Tokenizers.
    write(
        "gpt2_bpe",
        "gpt2-tiny",
        &join(&[
            &read(gpt2.join("vocab.json")),
            &read(gpt2.join("merges.txt")),
        ]),
    );
    write(
        "tokenizer_json",
        "gpt2-tiny.json",
        &read(gpt2.join("tokenizer.json")),
    );
    for kind in ["llama3", "neox", "qwen2", "sentencepiece"] {
        let path = fixtures
            .join("tokenizers")
            .join(kind)
            .join("tokenizer.json");
        if path.exists() {
            write("tokenizer_json", &format!("{kind}.json"), &read(path));
        }
    }
    // Variants, links and lessons.
    for (i, json) in [
        r#"{}"#,
        r#"{"window": 3, "top_k": 2, "beta": 1.5}"#,
        r#"{"kernel": {"random_features": 8, "seed": 2}, "heads": {"ablate": [[0, 1]], "mode": "mean"}}"#,
        r#"{"kernel": "linear", "drop_attention_layers": [1], "kv_groups": 2, "kv_rank": 3}"#,
        r#"{"kv_pca": 2, "route_heads": 1}"#,
    ]
    .iter()
    .enumerate()
    {
        write("variant", &format!("variant-{i}.json"), json.as_bytes());
    }
    for (i, query) in [
        "window=4&top_k=3&beta=1.5&kernel=rf:64:0&ablate=0.1,1.3&mode=mean&drop=1&kv_groups=2&kv_rank=8",
        "kv_pca=3&route=2&kernel=linear",
        "ablate=1.0&mode=zero&drop=0,1",
    ]
    .iter()
    .enumerate()
    {
        write("url_state", &format!("query-{i}"), query.as_bytes());
    }
    for (name, data) in files(&root().join("static/lessons")) {
        if name != "index.json" {
            write("lesson", &name, &data);
        }
    }
}
