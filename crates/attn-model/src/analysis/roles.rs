//! Head-role scores by their published definitions, measured on a probe the user can reproduce:
//! a batch of sequences, each `n` distinct random tokens repeated twice, so that induction
//! (attending to the token after the earlier occurrence of the current token) is told apart from
//! merely looking back, plus a copying score from the head's OV circuit ("A Mathematical Framework
//! for Transformer Circuits").

use serde::{Deserialize, Serialize};

use crate::engine::api::{Engine, Readback};
use crate::engine::output::Output;
use crate::linalg::{matmul, MatRef};
use crate::model::Model;

// The probe the roles are scored on, where it was defined before `engine/inputs.rs`.
pub use crate::engine::inputs::{role_probe, PROBE_SEQUENCES};

/// A score below which no role is named.
pub const ROLE_THRESHOLD: f32 = 0.4;

/// Role scores of one head: each attention score is a mean attention weight in `[0, 1]` over
/// the probe batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadRoles {
    pub layer: usize,
    pub head: usize,
    /// Weight on the previous position, `A[i, i−1]`, over `i ≥ 1`.
    pub previous_token: f32,
    /// Over the second copy, weight on the token after the earlier occurrence of the current
    /// one, `A[i, i−n+1]`.
    pub induction: f32,
    /// Over the second copy, weight on the earlier occurrence of the current token, `A[i, i−n]`.
    pub duplicate_token: f32,
    /// Weight on the first position, `A[i, 0]`, over `i ≥ 1`: attention sinks.
    pub first_token: f32,
    /// Weight on the query's own position, `A[i, i]`, over `i ≥ 1`.
    pub self_attention: f32,
    /// `Σλ / Σ|λ|` over the eigenvalues of the OV circuit `W_E W_V W_O W_U` (in `[−1, 1]`; 1: the
    /// head copies the tokens it attends to into the output). `None` for a classifier.
    pub copying: Option<f32>,
    /// The strongest attention role when it reaches [`ROLE_THRESHOLD`].
    pub role: Option<String>,
}

impl HeadRoles {
    /// The name of the strongest attention role when it clearly dominates (score ≥ `threshold`).
    pub fn dominant(&self, threshold: f32) -> Option<&'static str> {
        [
            ("induction", self.induction),
            ("previous-token", self.previous_token),
            ("duplicate-token", self.duplicate_token),
            ("sink", self.first_token),
            ("self", self.self_attention),
        ]
        .into_iter()
        .filter(|(_, score)| *score >= threshold)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(name, _)| name)
    }
}

/// Scores every head of the engine's current variant on the probe (one forward per sequence,
/// reading back the attention maps only). The copying scores are left out (`None`): they come
/// from the weights alone and cost a `d_model² × vocabulary` product, so callers that show them
/// add them with [`copying_scores`].
pub async fn head_roles<E: Engine>(engine: &mut E, seed: u64) -> Result<Vec<HeadRoles>, E::Error> {
    let c = &engine.model().config;
    let probe = role_probe(c.vocab_size, c.n_ctx, seed);
    let mut outputs = Vec::with_capacity(probe.len());
    for tokens in &probe {
        outputs.push(engine.forward(tokens, &Readback::attention_maps()).await?);
    }
    Ok(roles_from_outputs(&outputs))
}

/// Attention role scores from outputs on sequences each repeated once (period half their
/// length), averaged over the outputs.
pub fn roles_from_outputs(outputs: &[Output]) -> Vec<HeadRoles> {
    let Some(first) = outputs.first() else {
        return Vec::new();
    };
    let mut roles = Vec::with_capacity(first.n_layer * first.n_head);
    for layer in 0..first.n_layer {
        for head in 0..first.n_head {
            let mut sums = [0.0f32; 5];
            for output in outputs {
                let t_len = output.seq_len;
                let n = t_len / 2;
                let map = output.attention_map(layer, head);
                let at = |i: usize, j: usize| map[i * t_len + j];
                let mean = |values: &mut dyn Iterator<Item = f32>, count: usize| -> f32 {
                    if count == 0 {
                        0.0
                    } else {
                        values.sum::<f32>() / count as f32
                    }
                };
                let later = t_len.saturating_sub(1);
                sums[0] += mean(&mut (1..t_len).map(|i| at(i, i - 1)), later);
                sums[1] += mean(&mut (n..t_len).map(|i| at(i, i + 1 - n)), t_len - n);
                sums[2] += mean(&mut (n..t_len).map(|i| at(i, i - n)), t_len - n);
                sums[3] += mean(&mut (1..t_len).map(|i| at(i, 0)), later);
                sums[4] += mean(&mut (1..t_len).map(|i| at(i, i)), later);
            }
            let b = outputs.len() as f32;
            let mut r = HeadRoles {
                layer,
                head,
                previous_token: sums[0] / b,
                induction: sums[1] / b,
                duplicate_token: sums[2] / b,
                first_token: sums[3] / b,
                self_attention: sums[4] / b,
                copying: None,
                role: None,
            };
            r.role = r.dominant(ROLE_THRESHOLD).map(str::to_string);
            roles.push(r);
        }
    }
    roles
}

/// The attention role scores of every head on one input, `output` being the forward of
/// `tokens`: the "roles on this input" view. Where the probe repeats a whole sequence, here the
/// repeats are wherever they happen: for each position `i` whose token occurred before, `j` is
/// its latest earlier occurrence, and induction is the mean of `A[i, j+1]` (the token after it)
/// and duplicate-token the mean of `A[i, j]` over those positions. Previous-token, first-token
/// and self are as in the probe. `None` when no token repeats (the input has nothing to score
/// induction on); `copying` is left `None` (it depends on the weights only).
pub fn roles_on_input(output: &Output, tokens: &[u32]) -> Option<Vec<HeadRoles>> {
    let t_len = output.seq_len.min(tokens.len());
    // (i, j): a position and the latest earlier position of its token.
    let repeats: Vec<(usize, usize)> = (1..t_len)
        .filter_map(|i| {
            (0..i)
                .rev()
                .find(|&j| tokens[j] == tokens[i])
                .map(|j| (i, j))
        })
        .collect();
    if repeats.is_empty() {
        return None;
    }
    let mut roles = Vec::with_capacity(output.n_layer * output.n_head);
    for layer in 0..output.n_layer {
        for head in 0..output.n_head {
            let map = output.attention_map(layer, head);
            let at = |i: usize, j: usize| map[i * output.seq_len + j];
            let mean = |values: Vec<f32>| values.iter().sum::<f32>() / values.len().max(1) as f32;
            let mut r = HeadRoles {
                layer,
                head,
                previous_token: mean((1..t_len).map(|i| at(i, i - 1)).collect()),
                induction: mean(repeats.iter().map(|&(i, j)| at(i, j + 1)).collect()),
                duplicate_token: mean(repeats.iter().map(|&(i, j)| at(i, j)).collect()),
                first_token: mean((1..t_len).map(|i| at(i, 0)).collect()),
                self_attention: mean((1..t_len).map(|i| at(i, i)).collect()),
                copying: None,
                role: None,
            };
            r.role = r.dominant(ROLE_THRESHOLD).map(str::to_string);
            roles.push(r);
        }
    }
    Some(roles)
}

/// The copying score of every head, `[layer · n_head + head]`: `Σλ / Σ|λ|` over the eigenvalues
/// of the `d_head × d_head` matrix `W_O W_U W_E W_V`, which has the non-zero eigenvalues of the
/// vocabulary-sized OV circuit `W_E W_V W_O W_U` (the final norm left out, as in the paper).
/// `None` for a classifier, or for a head whose eigenvalues are all zero.
pub fn copying_scores(model: &Model) -> Vec<Option<f32>> {
    let c = &model.config;
    let heads = c.n_layer * c.n_head;
    if c.n_classes.is_some() {
        return vec![None; heads];
    }
    let (d, dh, vocab) = (c.d_model, c.d_head(), c.vocab_size);
    let embed = &model.token_embedding;
    let unembed = model.lm_head.as_ref().unwrap_or(embed);
    // W_U W_E (d × d) = Σ_v u_v e_vᵀ, once for every head, summed over blocks of the
    // vocabulary so that 16-bit tables are widened a block at a time.
    let mut ue = vec![0.0f32; d * d];
    const BLOCK: usize = 4096;
    for start in (0..vocab).step_by(BLOCK) {
        let end = (start + BLOCK).min(vocab);
        let (u, e) = (
            unembed.range_f32(start * d..end * d),
            embed.range_f32(start * d..end * d),
        );
        let part = matmul(
            MatRef::new(&u, end - start, d).t(),
            MatRef::new(&e, end - start, d),
        );
        ue.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    let mut scores = Vec::with_capacity(heads);
    for block in &model.blocks {
        let (o, v) = (block.attn.o.weight.f32(), &block.attn.v);
        let v_weight = v.weight.f32();
        for head in 0..c.n_head {
            let group = head / (c.n_head / c.kv_heads());
            // W_O^(h) W_U W_E (d_head × d), then × W_V^(g) (d × d_head).
            let o_ue = matmul(
                MatRef::new(&o[head * dh * d..(head + 1) * dh * d], dh, d),
                MatRef::new(&ue, d, d),
            );
            let circuit = matmul(
                MatRef::new(&o_ue, dh, d),
                MatRef::new(&v_weight, d, v.d_out).columns(group * dh, dh),
            );
            scores.push(eigen_ratio(&circuit, dh));
        }
    }
    scores
}

/// `Σλ / Σ|λ|` over the eigenvalues of the `n × n` row-major matrix `m`.
fn eigen_ratio(m: &[f32], n: usize) -> Option<f32> {
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| m[i * n + j] as f64);
    let eigenvalues = m.eigenvalues().ok()?;
    let sum: f64 = eigenvalues.iter().map(|l| l.re).sum();
    let total: f64 = eigenvalues
        .iter()
        .map(|l| (l.re * l.re + l.im * l.im).sqrt())
        .sum();
    (total > 1e-30).then(|| (sum / total) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;

    #[test]
    fn probe_sequences_repeat_distinct_tokens() {
        let probe = role_probe(26, 64, 3);
        assert_eq!(probe.len(), PROBE_SEQUENCES);
        for seq in &probe {
            let n = seq.len() / 2;
            assert_eq!(n, 26, "n is capped by the vocabulary");
            assert_eq!(seq[..n], seq[n..]);
            let mut half = seq[..n].to_vec();
            half.sort_unstable();
            half.dedup();
            assert_eq!(half.len(), n, "distinct tokens");
        }
        assert_eq!(role_probe(1000, 20, 1)[0].len(), 20);
        assert_eq!(role_probe(26, 64, 3), probe, "deterministic");
    }

    /// On an input with scattered repeats, a hand-built induction head (each repeated token
    /// attends to the token after its latest earlier occurrence, the rest to themselves) scores
    /// 1 for induction on this input; a previous-token head scores 1 for previous-token.
    #[test]
    fn roles_on_an_input_follow_its_own_repeats() {
        // a b c a d b a: position 3 repeats 0, 5 repeats 1, 6 repeats 3.
        let tokens = [0, 1, 2, 0, 3, 1, 0];
        let t = tokens.len();
        let mut induction = vec![0.0f32; t * t];
        let mut previous = vec![0.0f32; t * t];
        let targets = [(3, 1), (5, 2), (6, 4)];
        for i in 0..t {
            let j = targets.iter().find(|(q, _)| *q == i).map_or(i, |&(_, k)| k);
            induction[i * t + j] = 1.0;
            previous[i * t + i.saturating_sub(1)] = 1.0;
        }
        let output = Output {
            seq_len: t,
            n_layer: 1,
            n_head: 2,
            n_out: 4,
            logits: vec![0.0; t * 4],
            attention: [induction, previous].concat(),
            head_out_norms: vec![0.0; 2 * t],
            kv_bytes_per_token: 0,
        };
        let roles = roles_on_input(&output, &tokens).unwrap();
        assert_eq!(roles[0].induction, 1.0);
        assert_eq!(roles[0].role.as_deref(), Some("induction"));
        assert_eq!(roles[1].previous_token, 1.0);
        assert_eq!(roles[1].role.as_deref(), Some("previous-token"));
        // Position 6's duplicate is 3, its induction target 4: the previous-token head puts
        // its weight on 5, so it scores neither there.
        assert!(roles[1].induction < 0.5);
        assert!(roles_on_input(&output, &[0, 1, 2, 3, 4, 5, 6]).is_none());
    }

    /// The d_head × d_head product has the non-zero eigenvalues of the whole vocabulary-sized
    /// circuit: the score equals the one computed on W_E W_V W_O W_U itself.
    #[test]
    fn the_small_circuit_gives_the_full_circuits_score() {
        let model = Model::random(
            ModelConfig {
                n_kv_head: Some(2),
                tied_embeddings: false,
                ..ModelConfig::tiny(12)
            },
            5,
            0.5,
        )
        .unwrap();
        let c = &model.config;
        let (d, dh, vocab) = (c.d_model, c.d_head(), c.vocab_size);
        let scores = copying_scores(&model);
        for (index, score) in scores.iter().enumerate() {
            let (layer, head) = (index / c.n_head, index % c.n_head);
            let group = head / (c.n_head / c.kv_heads());
            let attn = &model.blocks[layer].attn;
            let e_v = matmul(
                MatRef::new(&model.token_embedding.f32(), vocab, d),
                MatRef::new(&attn.v.weight.f32(), d, attn.v.d_out).columns(group * dh, dh),
            );
            let e_v_o = matmul(
                MatRef::new(&e_v, vocab, dh),
                MatRef::new(
                    &attn.o.weight.f32()[head * dh * d..(head + 1) * dh * d],
                    dh,
                    d,
                ),
            );
            let unembed = model.lm_head.as_ref().unwrap();
            let full = matmul(
                MatRef::new(&e_v_o, vocab, d),
                MatRef::new(&unembed.f32(), vocab, d).t(),
            );
            let want = eigen_ratio(&full, vocab).unwrap();
            let got = score.unwrap();
            assert!(
                (got - want).abs() < 1e-4,
                "L{layer}H{head}: {got} vs {want}"
            );
        }
    }

    /// A head whose OV circuit is the identity on the embeddings copies perfectly.
    #[test]
    fn a_pure_copying_head_scores_one() {
        let mut model = Model::random(ModelConfig::tiny(40), 2, 0.5).unwrap();
        let d = model.config.d_model;
        let dh = model.config.d_head();
        // Head 0 of layer 0: W_V^(0) = first d_head columns of the identity, W_O^(0) its
        // transpose, so W_O W_U W_E W_V = (E Eᵀ restricted), symmetric positive definite.
        let attn = &mut model.blocks[0].attn;
        let v_width = attn.v.d_out;
        for r in 0..d {
            for col in 0..dh {
                attn.v.weight.make_f32()[r * v_width + col] = (r == col) as u8 as f32;
                attn.o.weight.make_f32()[col * d + r] = (r == col) as u8 as f32;
            }
        }
        let score = copying_scores(&model)[0].unwrap();
        assert!((score - 1.0).abs() < 1e-5, "{score}");
    }
}
