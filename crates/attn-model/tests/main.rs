//! attn-model's integration tests, linked into one test binary (one link of the engine instead of one per file).
//!
//! Each module is the file of the same name beside this one; `cargo test --test model MODULE::`
//! runs one of them.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod analysis;
mod attribution_patching;
mod browser;
mod corpus;
mod decode;
mod families;
mod files;
mod healing;
mod hf_parity;
mod kv_pca;
mod layering;
mod lessons;
mod qk;
mod robustness;
mod steer;
mod stream;
mod tokenizers;
mod variants;
