//! Head-role scores: what each head mostly attends to, measured on a repeated random sequence so
//! that induction (looking at the token after the previous occurrence of the current token) can
//! be told apart from merely looking back.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Readback};
use crate::forward::Output;

/// Role scores of one head, each a mean attention weight in `[0, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadRoles {
    pub layer: usize,
    pub head: usize,
    /// Mean weight on the previous position (`j = i − 1`), over `i ≥ 1`.
    pub previous_token: f32,
    /// Mean weight on the first position (`j = 0`), over `i ≥ 1`: attention sinks.
    pub first_token: f32,
    /// Mean weight on the query's own position (`j = i`), over `i ≥ 1`.
    pub self_attention: f32,
    /// Mean weight, over the second copy of the sequence, on the position right after the
    /// previous occurrence of the current token (`j = i − n + 1`).
    pub induction: f32,
}

impl HeadRoles {
    /// The name of the strongest role when it clearly dominates (score ≥ `threshold`).
    pub fn dominant(&self, threshold: f32) -> Option<&'static str> {
        [
            ("induction", self.induction),
            ("previous-token", self.previous_token),
            ("sink", self.first_token),
            ("self", self.self_attention),
        ]
        .into_iter()
        .filter(|(_, score)| *score >= threshold)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(name, _)| name)
    }
}

/// The repeated random sequence the scores are measured on: `n` random tokens, twice, with
/// `2n ≤ n_ctx` (and `n ≤ 32`, enough for stable means).
pub fn role_probe_tokens(vocab_size: usize, n_ctx: usize, seed: u64) -> Vec<u32> {
    let n = (n_ctx / 2).clamp(1, 32);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let half: Vec<u32> = (0..n)
        .map(|_| (rng.next_u64() % vocab_size as u64) as u32)
        .collect();
    half.iter().chain(&half).copied().collect()
}

/// Scores every head of the engine's current variant on the probe sequence (one forward,
/// reading back the attention maps only).
pub async fn head_roles<E: Engine>(engine: &mut E, seed: u64) -> Result<Vec<HeadRoles>, E::Error> {
    let c = &engine.model().config;
    let tokens = role_probe_tokens(c.vocab_size, c.n_ctx, seed);
    let output = engine.forward(&tokens, &Readback::attention_maps()).await?;
    Ok(roles_from_output(&output, tokens.len() / 2))
}

/// Role scores from an output computed on a sequence repeated once (period `n`).
pub fn roles_from_output(output: &Output, n: usize) -> Vec<HeadRoles> {
    let t_len = output.seq_len;
    let mut roles = Vec::with_capacity(output.n_layer * output.n_head);
    for layer in 0..output.n_layer {
        for head in 0..output.n_head {
            let map = output.attention_map(layer, head);
            let at = |i: usize, j: usize| map[i * t_len + j];
            let mean = |values: Vec<f32>| -> f32 {
                if values.is_empty() {
                    0.0
                } else {
                    values.iter().sum::<f32>() / values.len() as f32
                }
            };
            roles.push(HeadRoles {
                layer,
                head,
                previous_token: mean((1..t_len).map(|i| at(i, i - 1)).collect()),
                first_token: mean((1..t_len).map(|i| at(i, 0)).collect()),
                self_attention: mean((1..t_len).map(|i| at(i, i)).collect()),
                induction: mean((n..t_len).map(|i| at(i, i + 1 - n)).collect()),
            });
        }
    }
    roles
}
