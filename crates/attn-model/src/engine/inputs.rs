//! Inputs a model is probed with when no text is given: the role probe (random tokens, a
//! stretch repeated, on which the head roles are scored) and the calibration text of per-head
//! PCA (the model's own example inputs, or the probe).

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::io::tokenizer::Tokenizer;
use crate::model::Model;

/// Sequences in the probe batch.
pub const PROBE_SEQUENCES: usize = 8;

/// The probe: [`PROBE_SEQUENCES`] sequences, each `n` distinct random tokens twice, with
/// `2n ≤ n_ctx`, `n ≤ 32` and `n ≤ vocab_size`. Deterministic in `seed`.
pub fn role_probe(vocab_size: usize, n_ctx: usize, seed: u64) -> Vec<Vec<u32>> {
    let n = (n_ctx / 2).min(32).min(vocab_size).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..PROBE_SEQUENCES)
        .map(|_| {
            // The first n of a partial Fisher–Yates shuffle of the vocabulary.
            let mut ids: Vec<u32> = (0..vocab_size as u32).collect();
            for i in 0..n {
                let j = i + (rng.next_u64() % (vocab_size - i) as u64) as usize;
                ids.swap(i, j);
            }
            let half = &ids[..n];
            half.iter().chain(half).copied().collect()
        })
        .collect()
}

/// How many tokens of each calibration input PCA uses at most.
const CALIBRATION_TOKENS: usize = 128;

/// The calibration text of per-head PCA (`kv_pca`): the model's example inputs (its metadata's
/// `example_inputs`, through its tokenizer), each cut to the context and to
/// `CALIBRATION_TOKENS` (128); for a model without examples or tokenizer, the role probe (random
/// tokens, a stretch repeated; [`role_probe`]).
pub fn calibration_inputs(model: &Model) -> Vec<Vec<u32>> {
    let c = &model.config;
    let limit = c.n_ctx.min(CALIBRATION_TOKENS);
    let examples: Vec<Vec<u32>> = model
        .tokenizer
        .clone()
        .and_then(|spec| Tokenizer::from_spec(spec).ok())
        .zip(
            model
                .metadata
                .get("example_inputs")
                .and_then(|e| e.as_array()),
        )
        .map(|(tokenizer, examples)| {
            examples
                .iter()
                .filter_map(|e| tokenizer.encode(e.as_str()?).ok())
                .map(|mut ids| {
                    ids.truncate(limit);
                    ids
                })
                .filter(|ids| ids.len() > 1 && ids.iter().all(|&t| (t as usize) < c.vocab_size))
                .collect()
        })
        .unwrap_or_default();
    if !examples.is_empty() {
        return examples;
    }
    role_probe(c.vocab_size, limit, 0)
        .into_iter()
        .map(|mut ids| {
            ids.truncate(limit);
            ids
        })
        .collect()
}
