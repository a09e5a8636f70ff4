//! `attn train` and `attn eval` end to end: a tiny real training run, the JSON shape of the
//! metric, and a clear error for each kind of bad input.

use std::path::PathBuf;
use std::process::Output;

use crate::common::attn;

use attn_model::config::ModelConfig;
use attn_model::Model;
use serde_json::Value;

/// A fresh directory for one test's files, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("attn-train-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts that the command failed with an `error:` line containing every one of `needles`.
fn assert_fails_with(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure, got: {stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
}

/// The smallest useful run: reverse with a 1-layer, d_model 16 model for a few steps.
const TINY: &str = r#"{"model": {"d_model": 16, "n_layer": 1, "n_head": 2}, "batch_size": 8}"#;

#[test]
fn train_then_eval_reports_the_same_metric() {
    let dir = Scratch::new("roundtrip");
    let out_path = dir.path("reverse.safetensors");
    let out = attn(&[
        "train", "reverse", "--config", TINY, "--steps", "20", "--seed", "3", "--out", &out_path,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trained: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(trained["metric"], "accuracy");

    let out = attn(&["eval", &out_path, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evaluated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        evaluated, trained,
        "eval must reproduce the metric recorded at export"
    );
    assert!(evaluated["n"].as_u64().unwrap() > 1000);

    let model = Model::from_safetensors_bytes(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(model.metadata["task"], "reverse");
    assert_eq!(model.metadata["steps"], 20);
    assert_eq!(model.metadata["seed"], 3);
    assert_eq!(model.metadata["metrics"], trained);
    assert_eq!(model.metadata["train_config"]["model"]["d_model"], 16);

    // A variant changes the score but keeps the shape.
    let out = attn(&[
        "eval",
        &out_path,
        "--variant",
        r#"{"drop_attention_layers": [0]}"#,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ablated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ablated["n"], evaluated["n"]);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = Scratch::new("errors");
    let out_path = dir.path("m.safetensors");
    assert_fails_with(
        &attn(&["train", "sorting", "--out", &out_path]),
        &["unknown task `sorting`", "induction", "shakespeare"],
    );
    assert_fails_with(
        &attn(&[
            "train",
            "sort",
            "--config",
            r#"{"model": {"n_heads": 2}}"#,
            "--out",
            &out_path,
        ]),
        &["bad training config", "n_heads"],
    );
    assert_fails_with(
        &attn(&["train", "sort", "--config", "{oops", "--out", &out_path]),
        &["bad training config", "invalid JSON"],
    );
    assert_fails_with(
        &attn(&[
            "train",
            "sort",
            "--config",
            r#"{"model": {"d_model": 30, "n_head": 4}}"#,
            "--out",
            &out_path,
        ]),
        &["bad training config", "divisible"],
    );
    assert_fails_with(
        &attn(&[
            "train",
            "sort",
            "--config",
            r#"{"model": {"n_ctx": 64}}"#,
            "--out",
            &out_path,
        ]),
        &["n_ctx", "fixed"],
    );
    assert_fails_with(
        &attn(&["train", "sort", "--steps", "0", "--out", &out_path]),
        &["steps must be at least 1"],
    );
    let unwritable = dir.path("no/such/dir/m.safetensors");
    assert_fails_with(
        &attn(&[
            "train",
            "sort",
            "--config",
            TINY,
            "--steps",
            "1",
            "--out",
            &unwritable,
        ]),
        &["cannot write the model", "no/such/dir"],
    );
    assert!(!std::path::Path::new(&out_path).exists());

    // A model without a task in its metadata cannot be evaluated.
    let plain = dir.path("plain.safetensors");
    let model = Model::random(ModelConfig::tiny(20), 1, 0.3).unwrap();
    std::fs::write(&plain, model.to_safetensors_bytes().unwrap()).unwrap();
    assert_fails_with(&attn(&["eval", &plain]), &["cannot evaluate", "task"]);
}
