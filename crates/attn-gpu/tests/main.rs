//! attn-gpu's integration tests, linked into one test binary: natively on whatever adapter wgpu finds (lavapipe on CI), and `browser` in headless Chromium's WebGPU.
//!
//! Each module is the file of the same name beside this one; `cargo test --test gpu MODULE::`
//! runs one of them.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod browser;
mod common;
mod decode;
mod engine;
mod engine_api;
mod layering;
mod parity;
mod training;
