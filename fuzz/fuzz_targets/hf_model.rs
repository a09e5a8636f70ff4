//! A Hugging Face directory: `config.json`, the shard index and one safetensors file, split from
//! the input at NUL bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    attn_model::fuzzing::hf_model(data);
});
