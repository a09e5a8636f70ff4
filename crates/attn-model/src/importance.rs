//! Head importance: ablate each head in turn and measure how much worse the model gets, then keep
//! only the most important heads within a budget ("prune to budget").

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::forward::CpuEngine;
use crate::metrics::{compare, next_token_nll};
use crate::variant::{AblationMode, HeadAblation, Variant};

/// How much one head matters on one input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadImportance {
    pub layer: usize,
    pub head: usize,
    /// Next-token loss with the head ablated minus the loss without (nats; higher = more
    /// important). For a classifier or a single token, the mean KL to the unablated output.
    pub loss_increase: f64,
    /// Mean `KL(base ‖ ablated)` over positions.
    pub mean_kl: f64,
}

/// Ablates every head of `base` (a variant the user has set up, possibly with heads already
/// ablated) one at a time, on `tokens`, and returns the heads sorted most important first.
/// Heads that `base` already ablates are skipped.
pub fn head_importance(
    engine: &CpuEngine,
    base: &Variant,
    tokens: &[u32],
    mode: AblationMode,
) -> Result<Vec<HeadImportance>> {
    let c = &engine.model().config;
    let mut probe = engine.clone();
    probe.set_variant(base)?;
    let reference = probe.forward(tokens)?;
    let reference_loss = next_token_nll(&reference, tokens);
    let already: Vec<[usize; 2]> = base.heads.iter().flat_map(|h| h.ablate.clone()).collect();
    let mut scores = Vec::new();
    for layer in 0..c.n_layer {
        for head in 0..c.n_head {
            if already.contains(&[layer, head]) {
                continue;
            }
            let mut variant = base.clone();
            let mut ablate = already.clone();
            ablate.push([layer, head]);
            variant.heads = Some(HeadAblation { ablate, mode });
            probe.set_variant(&variant)?;
            let out = probe.forward(tokens)?;
            let cmp = compare(&reference, &out, tokens);
            let loss_increase = match (reference_loss, next_token_nll(&out, tokens)) {
                (Some(before), Some(after)) => after - before,
                _ => cmp.mean_kl,
            };
            scores.push(HeadImportance {
                layer,
                head,
                loss_increase,
                mean_kl: cmp.mean_kl,
            });
        }
    }
    scores.sort_by(|a, b| {
        b.loss_increase
            .total_cmp(&a.loss_increase)
            .then((a.layer, a.head).cmp(&(b.layer, b.head)))
    });
    Ok(scores)
}

/// The variant that keeps only the `keep` most important heads of `ranking` (as returned by
/// [`head_importance`]) and ablates the rest, on top of `base`.
pub fn prune_to_budget(
    base: &Variant,
    ranking: &[HeadImportance],
    keep: usize,
    mode: AblationMode,
) -> Variant {
    let mut ablate: Vec<[usize; 2]> = base.heads.iter().flat_map(|h| h.ablate.clone()).collect();
    ablate.extend(ranking.iter().skip(keep).map(|h| [h.layer, h.head]));
    let mut variant = base.clone();
    variant.heads = Some(HeadAblation { ablate, mode });
    variant.normalised()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Model, ModelConfig};

    #[test]
    fn ranking_covers_every_head_and_pruning_keeps_the_top() {
        let model = Model::random(ModelConfig::tiny(20), 4, 0.4).unwrap();
        let engine = CpuEngine::new(model).unwrap();
        let tokens = [1, 4, 2, 8, 5, 7, 1, 4, 2];
        let ranking =
            head_importance(&engine, &Variant::default(), &tokens, AblationMode::Zero).unwrap();
        assert_eq!(ranking.len(), 8);
        assert!(ranking
            .windows(2)
            .all(|w| w[0].loss_increase >= w[1].loss_increase));
        let pruned = prune_to_budget(&Variant::default(), &ranking, 3, AblationMode::Zero);
        let ablated = &pruned.heads.as_ref().unwrap().ablate;
        assert_eq!(ablated.len(), 5);
        for top in &ranking[..3] {
            assert!(!ablated.contains(&[top.layer, top.head]));
        }
        // Heads already ablated in the base are not ranked again.
        let base = Variant {
            heads: Some(HeadAblation {
                ablate: vec![[0, 0]],
                mode: AblationMode::Zero,
            }),
            ..Variant::default()
        };
        let ranking = head_importance(&engine, &base, &tokens, AblationMode::Zero).unwrap();
        assert_eq!(ranking.len(), 7);
        assert!(!ranking.iter().any(|h| (h.layer, h.head) == (0, 0)));
    }
}
