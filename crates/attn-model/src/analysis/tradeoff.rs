//! The KV-cache / quality trade-off: every way the playground shrinks the key/value cache —
//! pooling key/value heads (`kv_groups`, MHA → GQA → MQA), cutting the joint K/V rank
//! (`kv_rank`, an MLA-style latent) and keeping fewer principal components per head (`kv_pca`,
//! MatryoshkaKV-style) — run on one input and compared with the unmodified model.
//! The points of a bytes-against-KL plot (a Pareto front: lower-left is better).

use serde::{Deserialize, Serialize};

use crate::engine::api::{Engine, Outcome, Progress, Readback, Step};
use crate::metrics::compare;
use crate::variant::Variant;

/// One setting of the sweep and what it costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeoffPoint {
    /// What was changed, e.g. "kv_groups 2" or "kv_rank 16"; "unmodified" for the model itself.
    pub label: String,
    /// The variant (the user's other settings are left out: the sweep measures the cache alone).
    pub variant: Variant,
    pub kv_bytes_per_token: usize,
    /// Mean `KL(unmodified ‖ variant)` over positions.
    pub mean_kl: f64,
    /// Fraction of positions whose top-1 output is unchanged.
    pub top1_agreement: f64,
}

/// The settings the sweep runs: the unmodified model; every `kv_groups` that divides the model's
/// key/value heads, fewer than it has; `kv_rank` at the full joint rank halved again and again
/// down to 1; and `kv_pca` at `d_head` halved again and again down to 1.
pub fn tradeoff_variants(
    n_kv_head: usize,
    max_kv_rank: usize,
    d_head: usize,
) -> Vec<(String, Variant)> {
    let mut out = vec![("unmodified".to_string(), Variant::default())];
    for groups in (1..n_kv_head).rev().filter(|g| n_kv_head % g == 0) {
        out.push((
            format!("kv_groups {groups}"),
            Variant {
                kv_groups: Some(groups),
                ..Variant::default()
            },
        ));
    }
    let mut rank = max_kv_rank / 2;
    while rank >= 1 {
        out.push((
            format!("kv_rank {rank}"),
            Variant {
                kv_rank: Some(rank),
                ..Variant::default()
            },
        ));
        rank /= 2;
    }
    let mut components = d_head / 2;
    while components >= 1 {
        out.push((
            format!("kv_pca {components}"),
            Variant {
                kv_pca: Some(components),
                ..Variant::default()
            },
        ));
        components /= 2;
    }
    out
}

/// Which way of shrinking the cache a sweep setting is: the name of its line on a plot.
pub fn cache_reduction(variant: &Variant) -> &'static str {
    match (variant.kv_groups, variant.kv_rank, variant.kv_pca) {
        (Some(_), _, _) => "fewer key/value heads",
        (_, Some(_), _) => "lower K/V rank",
        (_, _, Some(_)) => "fewer PCA components",
        _ => "unmodified",
    }
}

/// Runs every setting of [`tradeoff_variants`] on `tokens` (one forward each, logits only),
/// reporting progress, and puts the engine's variant back when it ends.
pub async fn kv_cache_tradeoff<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
    progress: &mut impl Progress,
) -> Result<Outcome<Vec<TradeoffPoint>>, E::Error> {
    let previous = engine.variant().clone();
    let outcome = sweep(engine, tokens, progress).await;
    crate::engine::api::restore_variant(engine, &previous, outcome)
}

async fn sweep<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
    progress: &mut impl Progress,
) -> Result<Outcome<Vec<TradeoffPoint>>, E::Error> {
    let config = engine.model().config.clone();
    let settings = tradeoff_variants(
        config.kv_heads(),
        Variant::default().max_kv_rank(&config),
        config.d_head(),
    );
    let readback = Readback::logits();
    let total = settings.len();
    let mut points = Vec::with_capacity(total);
    let mut unmodified = None;
    for (done, (label, variant)) in settings.into_iter().enumerate() {
        if !progress.go_on(Step { done, total }) {
            return Ok(Outcome::Cancelled);
        }
        engine.set_variant(&variant)?;
        let output = engine.forward(tokens, &readback).await?;
        let reference = unmodified.get_or_insert_with(|| output.clone());
        let cost = compare(reference, &output, tokens);
        points.push(TradeoffPoint {
            label,
            variant,
            kv_bytes_per_token: output.kv_bytes_per_token,
            mean_kl: cost.mean_kl,
            top1_agreement: cost.top1_agreement,
        });
    }
    progress.go_on(Step { done: total, total });
    Ok(Outcome::Done(points))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::api::now;
    use crate::{CpuEngine, Model, ModelConfig};

    #[test]
    fn the_sweep_pools_heads_and_cuts_ranks_and_costs_what_each_variant_costs() {
        // 4 key/value heads of 4 dims in a 16-wide model: groups 2 and 1, ranks 8, 4, 2, 1,
        // components 2, 1.
        let labels: Vec<String> = tradeoff_variants(4, 16, 4)
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(
            labels,
            [
                "unmodified",
                "kv_groups 2",
                "kv_groups 1",
                "kv_rank 8",
                "kv_rank 4",
                "kv_rank 2",
                "kv_rank 1",
                "kv_pca 2",
                "kv_pca 1"
            ]
        );
        let model = Model::random(ModelConfig::tiny(30), 4, 0.4).unwrap();
        let mut engine = CpuEngine::new(model.clone()).unwrap();
        engine
            .set_variant(&Variant::from_json(r#"{"window": 3}"#).unwrap())
            .unwrap();
        let tokens = [3, 1, 4, 1, 5, 9, 2, 6];
        let mut steps = Vec::new();
        let points = now(kv_cache_tradeoff(&mut engine, &tokens, &mut |s: Step| {
            steps.push(s.done);
            true
        }))
        .unwrap()
        .done()
        .unwrap();
        assert_eq!(points.len(), labels.len());
        assert_eq!(steps, (0..=points.len()).collect::<Vec<_>>());
        // The engine's own variant is back.
        assert_eq!(engine.variant().window, Some(3));
        let first = &points[0];
        assert_eq!((first.mean_kl, first.top1_agreement), (0.0, 1.0));
        // Each point is what a fresh engine with that variant gives.
        let mut fresh = CpuEngine::new(model).unwrap();
        let base = fresh.forward(&tokens).unwrap();
        for p in &points[1..] {
            fresh.set_variant(&p.variant).unwrap();
            let out = fresh.forward(&tokens).unwrap();
            assert_eq!(p.kv_bytes_per_token, out.kv_bytes_per_token, "{}", p.label);
            assert!(
                p.kv_bytes_per_token < first.kv_bytes_per_token,
                "{}",
                p.label
            );
            let kl = compare(&base, &out, &tokens).mean_kl;
            assert!(
                (p.mean_kl - kl).abs() < 1e-9,
                "{}: {} vs {kl}",
                p.label,
                p.mean_kl
            );
        }
        // Cancelling stops the sweep and still restores the variant.
        let cancelled = now(kv_cache_tradeoff(&mut engine, &tokens, &mut cancel_at(2)));
        assert!(cancelled.unwrap().done().is_none());
        assert_eq!(engine.variant().window, Some(3));
    }

    /// Progress that cancels at step `n`.
    fn cancel_at(n: usize) -> impl Progress {
        move |s: Step| s.done < n
    }
}
