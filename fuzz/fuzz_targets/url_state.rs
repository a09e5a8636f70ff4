//! A link's query string: the variant read from it, written back, read again, unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    attn_model::fuzzing::url_state(data);
});
