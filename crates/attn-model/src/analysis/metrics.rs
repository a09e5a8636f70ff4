//! How far a variant's output is from the baseline's: KL divergence, top-1 agreement, and the
//! next-token loss on the input itself.

use serde::{Deserialize, Serialize};

use crate::engine::output::Output;
use crate::linalg::log_softmax;

/// Baseline-versus-variant numbers for one input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `KL(baseline ‖ variant)` of the output distributions, in nats, per position.
    pub kl_per_position: Vec<f64>,
    /// Mean of `kl_per_position`.
    pub mean_kl: f64,
    /// Fraction of positions where both outputs have the same most probable id.
    pub top1_agreement: f64,
    /// Mean next-token negative log-likelihood of the input under the baseline, in nats (`None`
    /// for a single token or a classifier).
    pub baseline_nll: Option<f64>,
    /// The same under the variant.
    pub variant_nll: Option<f64>,
}

/// `KL(p ‖ q)` between the softmax distributions of two logit rows.
pub fn kl_divergence(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let lp = log_softmax(p_logits);
    let lq = log_softmax(q_logits);
    lp.iter()
        .zip(&lq)
        .map(|(a, b)| a.exp() * (a - b))
        .sum::<f64>()
        .max(0.0)
}

/// Mean over positions `t < T − 1` of `−log p(tokens[t + 1] | tokens[..=t])`; `None` when there is
/// no next token to predict or the output is not over the vocabulary.
pub fn next_token_nll(output: &Output, tokens: &[u32]) -> Option<f64> {
    if output.seq_len < 2 || tokens.len() != output.seq_len {
        return None;
    }
    let mut total = 0.0;
    for t in 0..output.seq_len - 1 {
        let next = tokens[t + 1] as usize;
        if next >= output.n_out {
            return None;
        }
        total -= log_softmax(output.logits_at(t))[next];
    }
    Some(total / (output.seq_len - 1) as f64)
}

/// Compares a variant's output with the baseline's on the same `tokens`.
pub fn compare(baseline: &Output, variant: &Output, tokens: &[u32]) -> Comparison {
    assert_eq!(
        baseline.seq_len, variant.seq_len,
        "outputs of different inputs"
    );
    let t_len = baseline.seq_len;
    let kl_per_position: Vec<f64> = (0..t_len)
        .map(|t| kl_divergence(baseline.logits_at(t), variant.logits_at(t)))
        .collect();
    let agree = (0..t_len)
        .filter(|&t| baseline.argmax_at(t) == variant.argmax_at(t))
        .count();
    Comparison {
        mean_kl: kl_per_position.iter().sum::<f64>() / t_len.max(1) as f64,
        kl_per_position,
        top1_agreement: agree as f64 / t_len.max(1) as f64,
        baseline_nll: next_token_nll(baseline, tokens),
        variant_nll: next_token_nll(variant, tokens),
    }
}
