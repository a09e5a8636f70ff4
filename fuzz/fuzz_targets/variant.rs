//! Variant JSON: parse, validate against a small model, and run it when it fits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    attn_model::fuzzing::variant(data);
});
