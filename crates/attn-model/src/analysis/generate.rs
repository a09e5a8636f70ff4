//! Text generation for language models: sample the next token with temperature and top-k, append
//! it, repeat. Deterministic for a given seed, so a shared link reproduces the continuation.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::engine::api::{AttentionMaps, Engine, Outcome, Progress, Readback, Step};
use crate::engine::output::{argmax, Output};
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

/// Appends up to `n` sampled tokens to `prompt` with the engine's current variant, computing
/// each next distribution as `decoding` says; both ways give the same tokens. It stops after the
/// model's end-of-text token ([`crate::Model::end_of_text`]), which it includes. The context window
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
    let mut generation = Generation::new(engine, prompt, sampling, decoding)?;
    for _ in 0..n {
        let next = generation.next(engine, false).await?;
        let step = Step {
            done: generation.generated().len(),
            total: n,
        };
        if !progress.go_on(step) {
            return Ok(Outcome::Cancelled);
        }
        if next.end {
            break;
        }
    }
    Ok(Outcome::Done(generation.generated().to_vec()))
}

/// A generation under way, one token at a time ([`Generation::next`]): what the page steps
/// through. [`generate_with`] is its loop.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The prompt and every token generated so far.
    tokens: Vec<u32>,
    prompt_len: usize,
    n_ctx: usize,
    sampling: Sampling,
    rng: ChaCha8Rng,
    /// Whether to decode from the engine's cache (until it turns out to keep none).
    use_cache: bool,
    /// How many of `tokens` the engine's cache holds (0: none yet, fill it).
    in_cache: usize,
    /// The model's end-of-text tokens ([`Model::end_of_text`](crate::Model::end_of_text)).
    end_of_text: Vec<u32>,
}

/// What one [`Generation::next`] ran and picked.
#[derive(Clone, Debug, PartialEq)]
pub struct NextToken {
    /// The token picked.
    pub token: u32,
    /// Whether it ends the text (the model's end-of-sequence token): generation stops there.
    pub end: bool,
    /// When asked for, the attention of the positions this step ran, each `(position,
    /// [n_layer, n_head, position + 1])`: every prompt position after the prefill, the previous
    /// token's position after a decode step. Empty otherwise (and once the text outgrew the
    /// context, where positions shift). NaN where a layer keeps no keys (linear attention's
    /// state).
    pub rows: Vec<(usize, Vec<f32>)>,
}

impl Generation {
    /// A generation of `engine`'s model from `prompt`. Refuses classifiers and empty prompts.
    pub fn new<E: Engine>(
        engine: &E,
        prompt: &[u32],
        sampling: &Sampling,
        decoding: Decoding,
    ) -> Result<Generation, ModelError> {
        let c = &engine.model().config;
        if c.n_classes.is_some() {
            return Err(ModelError::Input(
                "generation needs a language model, not a classifier".into(),
            ));
        }
        if prompt.is_empty() {
            return Err(ModelError::Input("generation needs a prompt".into()));
        }
        Ok(Generation {
            tokens: prompt.to_vec(),
            prompt_len: prompt.len(),
            n_ctx: c.n_ctx,
            sampling: *sampling,
            rng: ChaCha8Rng::seed_from_u64(sampling.seed),
            use_cache: decoding == Decoding::Cached,
            in_cache: 0,
            end_of_text: engine.model().end_of_text(),
        })
    }

    /// The tokens generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// The prompt and the tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Runs what the engine has not yet run (the prompt, or the last token picked), picks the
    /// next token and appends it. `rows` asks for the attention of the positions run.
    pub async fn next<E: Engine>(
        &mut self,
        engine: &mut E,
        rows: bool,
    ) -> Result<NextToken, E::Error> {
        let start = self.tokens.len().saturating_sub(self.n_ctx);
        let mut ran = Vec::new();
        // The engine's cache went (a variant change, a move to another engine): the text so far
        // fills it again, and only the positions not run yet report their rows.
        let mut refill_from = None;
        if self.use_cache && self.in_cache > 0 && engine.kv_cache_bytes().is_none() {
            refill_from = Some(self.in_cache);
            self.in_cache = 0;
        }
        let logits = if self.use_cache && self.in_cache > 0 && start == 0 {
            let position = self.in_cache;
            let step = engine.decode_step(self.tokens[position]).await?;
            self.in_cache += 1;
            if rows {
                ran.push((position, step.attention));
            }
            step.logits
        } else {
            let window = &self.tokens[start..];
            let readback = Readback {
                attention: match rows && start == 0 {
                    true => AttentionMaps::All,
                    false => AttentionMaps::None,
                },
                ..Readback::next_token()
            };
            let prefilled = match self.use_cache {
                true => engine.prefill(window, &readback).await?,
                false => None,
            };
            let out = match prefilled {
                Some(out) => {
                    // A slid window moved every position: the next token fills it again.
                    self.in_cache = if start == 0 { self.tokens.len() } else { 0 };
                    out
                }
                None => {
                    self.use_cache = false;
                    engine.forward(window, &readback).await?
                }
            };
            if rows && start == 0 {
                ran = prompt_rows(&out);
                ran.retain(|(position, _)| refill_from.is_none_or(|from| *position >= from));
            }
            out.logits_at(out.seq_len - 1).to_vec()
        };
        let uniform = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let token = sample_from_logits(&logits, &self.sampling, uniform);
        self.tokens.push(token);
        Ok(NextToken {
            token,
            end: self.end_of_text.contains(&token),
            rows: ran,
        })
    }
}

/// Every position's attention row of a forward's maps, `(position, [n_layer, n_head,
/// position + 1])` (a causal row is zero past its position).
fn prompt_rows(out: &Output) -> Vec<(usize, Vec<f32>)> {
    let t = out.seq_len;
    (0..t)
        .map(|i| {
            let mut row = Vec::with_capacity(out.n_layer * out.n_head * (i + 1));
            for layer in 0..out.n_layer {
                for head in 0..out.n_head {
                    row.extend(&out.attention_map(layer, head)[i * t..i * t + i + 1]);
                }
            }
            (i, row)
        })
        .collect()
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
