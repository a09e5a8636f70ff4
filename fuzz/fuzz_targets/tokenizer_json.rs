//! A `tokenizer.json`, then encoding and decoding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    attn_model::fuzzing::tokenizer_json(data);
});
