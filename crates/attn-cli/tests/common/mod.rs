//! Helpers shared by the CLI tests: run the `attn` binary and read its JSON.
#![allow(dead_code)] // each test file uses its own subset

use std::process::{Command, Output};

use serde_json::Value;

/// Runs the `attn` binary built for these tests.
pub fn attn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attn"))
        .args(args)
        .output()
        .expect("the attn binary runs")
}

/// The JSON on stdout of a successful run.
pub fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "attn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// Every number of a nested JSON array, in order, as f32.
pub fn flatten_floats(value: &Value) -> Vec<f32> {
    match value {
        Value::Array(items) => items.iter().flat_map(flatten_floats).collect(),
        v => vec![v.as_f64().expect("a number") as f32],
    }
}

/// The committed Hugging Face GPT-2 fixture and the PyTorch outputs it was made with
/// (`tests/fixtures/generate_fixtures.py`).
pub struct HfFixture {
    /// The HF model directory, to pass to `attn`.
    pub dir: std::path::PathBuf,
    /// The prompt every case ran on.
    pub prompt: String,
    /// One JSON object per variant case (`name`, `variant`, ...).
    pub cases: Vec<Value>,
    expected: Vec<u8>,
}

impl HfFixture {
    /// Reads the fixture; the path is found at run time (see README, Toolchain).
    pub fn load() -> HfFixture {
        let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
        let dir = std::path::Path::new(&root).join("../../tests/fixtures/gpt2-tiny");
        let expected = std::fs::read(dir.join("expected.safetensors")).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&expected).unwrap();
        let meta = meta.metadata().clone().unwrap();
        HfFixture {
            prompt: meta["prompt"].clone(),
            cases: serde_json::from_str(&meta["cases"]).unwrap(),
            dir,
            expected,
        }
    }

    /// A PyTorch output tensor, flattened.
    pub fn tensor(&self, name: &str) -> Vec<f32> {
        safetensors::SafeTensors::deserialize(&self.expected)
            .unwrap()
            .tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}
