//! GPT-2's `vocab.json` and `merges.txt` (split at the first NUL), then encoding and decoding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    attn_model::fuzzing::gpt2_bpe(data);
});
