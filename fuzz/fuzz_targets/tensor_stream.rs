//! The streaming loader the page and the CLI use: the file in pieces whose sizes come from the
//! input's first byte.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    attn_model::fuzzing::tensor_stream(data);
});
