//! The project's own `.safetensors` model file, as picked from disk: parse, build the model,
//! and run one forward when it loads.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    attn_model::fuzzing::own_format(data);
});
