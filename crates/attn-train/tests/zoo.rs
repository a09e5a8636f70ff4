//! The built-in model zoo under `static/models/`: every entry of `index.json` describes its file
//! truthfully (size, parameter count, task, metrics recorded at export), every file loads, and
//! the whole zoo stays small enough for a static site.

use std::path::PathBuf;

use attn_model::Model;
use serde_json::Value;

/// Ceiling on the zoo's total size (the budget).
const MAX_TOTAL_BYTES: u64 = 10 * 1024 * 1024;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../static/models")
}

#[test]
fn index_matches_the_model_files() {
    let index_path = models_dir().join("index.json");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let models = index["models"]
        .as_array()
        .expect("index.json has a `models` array");
    assert!(!models.is_empty());
    let mut total = 0;
    let mut ids = std::collections::HashSet::new();
    for entry in models {
        let id = entry["id"].as_str().unwrap();
        assert!(ids.insert(id), "duplicate id {id}");
        for field in ["title", "description", "task"] {
            assert!(
                entry[field].as_str().is_some_and(|s| !s.is_empty()),
                "{id}: `{field}` is missing"
            );
        }
        assert!(
            entry["example_inputs"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "{id}"
        );
        let file = models_dir().join(entry["file"].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(entry["size_bytes"], bytes.len() as u64, "{id}: size");
        total += bytes.len() as u64;
        let model = Model::from_safetensors_bytes(&bytes).unwrap();
        assert_eq!(
            entry["parameters"],
            model.parameter_count() as u64,
            "{id}: parameters"
        );
        assert_eq!(entry["task"], model.metadata["task"], "{id}: task");
        assert_eq!(entry["metrics"], model.metadata["metrics"], "{id}: metrics");
        assert!(model.tokenizer.is_some(), "{id}: no tokenizer");
    }
    assert!(total < MAX_TOTAL_BYTES, "the zoo is {total} bytes");
}
