//! A lesson file: parse, and check every step's measurement against a small model.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    attn_model::fuzzing::lesson(data);
});
