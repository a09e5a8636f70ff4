//! Head importance: ablate each head in turn and measure how much worse the model gets, then keep
//! only the most important heads within a budget ("prune to budget").

use serde::{Deserialize, Serialize};

use crate::engine::api::{Engine, Outcome, Progress, Readback, Step};
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
///
/// Runs on `engine` (one forward per head, reading back logits only) and puts the engine's own
/// variant back when it ends, also when `progress` cancels it or a forward fails. Ablation is a
/// runtime setting, so no step copies or uploads weights.
pub async fn head_importance<E: Engine>(
    engine: &mut E,
    base: &Variant,
    tokens: &[u32],
    mode: AblationMode,
    progress: &mut impl Progress,
) -> Result<Outcome<Vec<HeadImportance>>, E::Error> {
    let previous = engine.variant().clone();
    let outcome = rank_heads(engine, base, tokens, mode, progress).await;
    crate::engine::api::restore_variant(engine, &previous, outcome)
}

async fn rank_heads<E: Engine>(
    engine: &mut E,
    base: &Variant,
    tokens: &[u32],
    mode: AblationMode,
    progress: &mut impl Progress,
) -> Result<Outcome<Vec<HeadImportance>>, E::Error> {
    let (n_layer, n_head) = {
        let c = &engine.model().config;
        (c.n_layer, c.n_head)
    };
    let readback = Readback::logits();
    engine.set_variant(base)?;
    let reference = engine.forward(tokens, &readback).await?;
    let reference_loss = next_token_nll(&reference, tokens);
    let already: Vec<[usize; 2]> = base.heads.iter().flat_map(|h| h.ablate.clone()).collect();
    let total = n_layer * n_head - already.len();
    let mut scores = Vec::with_capacity(total);
    for layer in 0..n_layer {
        for head in 0..n_head {
            if already.contains(&[layer, head]) {
                continue;
            }
            let mut variant = base.clone();
            let mut ablate = already.clone();
            ablate.push([layer, head]);
            variant.heads = Some(HeadAblation { ablate, mode });
            engine.set_variant(&variant)?;
            let out = engine.forward(tokens, &readback).await?;
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
            let step = Step {
                done: scores.len(),
                total,
            };
            if !progress.go_on(step) {
                return Ok(Outcome::Cancelled);
            }
        }
    }
    scores.sort_by(|a, b| {
        b.loss_increase
            .total_cmp(&a.loss_increase)
            .then((a.layer, a.head).cmp(&(b.layer, b.head)))
    });
    Ok(Outcome::Done(scores))
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
    use crate::engine::api::{now, unwatched};
    use crate::{CpuEngine, Model, ModelConfig};

    fn rank(engine: &mut CpuEngine, base: &Variant) -> Vec<HeadImportance> {
        let tokens = [1, 4, 2, 8, 5, 7, 1, 4, 2];
        now(head_importance(
            engine,
            base,
            &tokens,
            AblationMode::Zero,
            &mut unwatched(),
        ))
        .unwrap()
        .done()
        .unwrap()
    }

    #[test]
    fn ranking_covers_every_head_and_pruning_keeps_the_top() {
        let model = Model::random(ModelConfig::tiny(20), 4, 0.4).unwrap();
        let mut engine = CpuEngine::new(model).unwrap();
        let ranking = rank(&mut engine, &Variant::default());
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
        let ranking = rank(&mut engine, &base);
        assert_eq!(ranking.len(), 7);
        assert!(!ranking.iter().any(|h| (h.layer, h.head) == (0, 0)));
    }

    #[test]
    fn ranking_reports_progress_can_be_cancelled_and_restores_the_variant() {
        let model = Model::random(ModelConfig::tiny(20), 4, 0.4).unwrap();
        let mut engine = CpuEngine::new(model).unwrap();
        let own = Variant::from_json(r#"{"window": 3}"#).unwrap();
        engine.set_variant(&own).unwrap();
        let mut steps = Vec::new();
        let mut stop_after_three = |step: Step| {
            steps.push(step);
            step.done < 3
        };
        let outcome = now(head_importance(
            &mut engine,
            &Variant::default(),
            &[1, 2, 3, 4],
            AblationMode::Zero,
            &mut stop_after_three,
        ))
        .unwrap();
        assert_eq!(outcome, Outcome::Cancelled);
        assert_eq!(
            steps,
            (1..=3)
                .map(|done| Step { done, total: 8 })
                .collect::<Vec<_>>()
        );
        assert_eq!(engine.variant(), &own.normalised());
        // Ablating heads one by one changes runtime settings only: no weights are recomputed.
        assert_eq!(engine.stats().weight_preparations, 0);
    }
}
