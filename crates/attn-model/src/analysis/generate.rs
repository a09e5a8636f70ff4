//! Text generation for language models: sample the next token with temperature and top-k, append
//! it, repeat. Deterministic for a given seed, so a shared link reproduces the continuation.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::engine::api::{Engine, Outcome, Progress, Readback, Step};
use crate::engine::output::argmax;
use crate::error::ModelError;
use crate::linalg::softmax;

/// How to pick each next token.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy (always the most probable token).
    pub temperature: f32,
    /// Sample only among the `top_k` most probable tokens (0 = all).
    pub top_k: usize,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.8,
            top_k: 20,
            seed: 0,
        }
    }
}

/// Picks a token from one row of logits. `uniform` is a number in `[0, 1)`.
pub fn sample_from_logits(logits: &[f32], sampling: &Sampling, uniform: f64) -> u32 {
    if sampling.temperature <= 0.0 {
        return argmax(logits);
    }
    let scaled: Vec<f32> = logits.iter().map(|l| l / sampling.temperature).collect();
    let mut ranked: Vec<(usize, f32)> = softmax(&scaled).into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if sampling.top_k > 0 {
        ranked.truncate(sampling.top_k);
    }
    let total: f64 = ranked.iter().map(|(_, p)| *p as f64).sum();
    let mut target = uniform * total;
    for &(id, p) in &ranked {
        target -= p as f64;
        if target < 0.0 {
            return id as u32;
        }
    }
    ranked.last().map_or(0, |&(id, _)| id as u32)
}

/// How generation computes each next token's distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// The prompt once ([`Engine::prefill`]), then one position per new token against the KV
    /// cache ([`Engine::decode_step`]). Where the engine keeps no cache, or the variant cannot
    /// be decoded from one, as [`Decoding::Recompute`].
    #[default]
    Cached,
    /// A whole forward over the text for every new token.
    Recompute,
}

/// Appends `n` sampled tokens to `prompt` with the engine's current variant, decoding from the
/// KV cache where the engine keeps one ([`Decoding::Cached`]). See [`generate_with`].
pub async fn generate<E: Engine>(
    engine: &mut E,
    prompt: &[u32],
    n: usize,
    sampling: &Sampling,
    progress: &mut impl Progress,
) -> Result<Outcome<Vec<u32>>, E::Error> {
    generate_with(engine, prompt, n, sampling, Decoding::Cached, progress).await
}

/// Appends `n` sampled tokens to `prompt` with the engine's current variant, computing each
/// next distribution as `decoding` says; both ways give the same tokens. The context window
/// slides when the sequence outgrows it (the model only ever sees its last `n_ctx` tokens; the
/// cache is then filled again, since every position moves). Each step reads back only the last
/// position's logits; `progress` is told after each token and may cancel.
pub async fn generate_with<E: Engine>(
    engine: &mut E,
    prompt: &[u32],
    n: usize,
    sampling: &Sampling,
    decoding: Decoding,
    progress: &mut impl Progress,
) -> Result<Outcome<Vec<u32>>, E::Error> {
    let (n_ctx, classifier) = {
        let c = &engine.model().config;
        (c.n_ctx, c.n_classes.is_some())
    };
    if classifier {
        return Err(ModelError::Input(
            "generation needs a language model, not a classifier".into(),
        )
        .into());
    }
    if prompt.is_empty() {
        return Err(ModelError::Input("generation needs a prompt".into()).into());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
    let mut tokens = prompt.to_vec();
    let mut generated = Vec::with_capacity(n);
    let readback = Readback::next_token();
    let mut use_cache = decoding == Decoding::Cached;
    // How many of `tokens` the engine's cache holds (0: none, fill it).
    let mut in_cache = 0;
    for _ in 0..n {
        let start = tokens.len().saturating_sub(n_ctx);
        let logits = if use_cache && in_cache > 0 && start == 0 {
            let step = engine.decode_step(tokens[in_cache]).await?;
            in_cache += 1;
            step.logits
        } else {
            let window = &tokens[start..];
            let prefilled = match use_cache {
                true => engine.prefill(window, &readback).await?,
                false => None,
            };
            let out = match prefilled {
                Some(out) => {
                    // A slid window moved every position: the next token fills it again.
                    in_cache = if start == 0 { tokens.len() } else { 0 };
                    out
                }
                None => {
                    use_cache = false;
                    engine.forward(window, &readback).await?
                }
            };
            out.logits_at(out.seq_len - 1).to_vec()
        };
        let uniform = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let next = sample_from_logits(&logits, sampling, uniform);
        tokens.push(next);
        generated.push(next);
        let step = Step {
            done: generated.len(),
            total: n,
        };
        if !progress.go_on(step) {
            return Ok(Outcome::Cancelled);
        }
    }
    Ok(Outcome::Done(generated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::api::{now, unwatched};
    use crate::{CpuEngine, Model, ModelConfig};

    #[test]
    fn greedy_and_top_one_pick_the_argmax() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        let greedy = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        };
        assert_eq!(sample_from_logits(&logits, &greedy, 0.99), 1);
        let top1 = Sampling {
            temperature: 1.0,
            top_k: 1,
            seed: 0,
        };
        assert_eq!(sample_from_logits(&logits, &top1, 0.99), 1);
        let top2 = Sampling { top_k: 2, ..top1 };
        assert_eq!(sample_from_logits(&logits, &top2, 0.99), 3);
    }

    #[test]
    fn generation_is_reproducible_and_slides_past_the_context() {
        let model = Model::random(ModelConfig::tiny(20), 2, 0.4).unwrap();
        let mut engine = CpuEngine::new(model).unwrap();
        let sampling = Sampling::default();
        let mut run = |prompt: &[u32]| {
            now(generate(
                &mut engine,
                prompt,
                20,
                &sampling,
                &mut unwatched(),
            ))
        };
        let a = run(&[1, 2, 3]).unwrap().done().unwrap();
        let b = run(&[1, 2, 3]).unwrap().done().unwrap();
        assert_eq!(a.len(), 20);
        assert_eq!(a, b);
        assert!(a.iter().all(|&t| t < 20));
        assert!(run(&[]).is_err());
        // From the cache and by recomputing: the same tokens, past the context's end too.
        let recomputed = now(generate_with(
            &mut engine,
            &[1, 2, 3],
            20,
            &sampling,
            Decoding::Recompute,
            &mut unwatched(),
        ))
        .unwrap()
        .done()
        .unwrap();
        assert_eq!(recomputed, a);
        // Cancelled after the fifth token.
        let mut five = |step: Step| step.done < 5;
        let cancelled = now(generate(&mut engine, &[1, 2, 3], 20, &sampling, &mut five));
        assert_eq!(cancelled.unwrap(), Outcome::Cancelled);
    }
}
