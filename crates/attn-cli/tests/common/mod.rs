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
