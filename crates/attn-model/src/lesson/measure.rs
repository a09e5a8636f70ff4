//! What a lesson step measures, on any engine: the unmodified model's reference, the heads or
//! layers an experiment ranks, then one forward per point of each series, scored by the step's
//! metric ([`run_measurement`]); and the layer-drop criterion ([`layer_similarity`]).

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::api::{Engine, Outcome, Progress, Readback, Step};
use crate::engine::hooks::{HookPoint, Hooks};
use crate::engine::output::Output;
use crate::importance::head_importance;
use crate::lesson::{
    Experiment, HeadOrder, HeadScore, HeadSet, LayerOrder, Measured, MeasuredPoint, Measurement,
    Metric, Series,
};
use crate::linalg::log_softmax;
use crate::metrics::kl_divergence;
use crate::roles::{copying_scores, roles_on_input};
use crate::tradeoff::tradeoff_variants;
use crate::variant::{AblationMode, HeadAblation, Variant};

/// What a measurement needs the unmodified model's output for.
struct Reference {
    output: Output,
    positions: Vec<usize>,
    /// Whether a query sees only earlier keys (the entropy's maximum depends on it).
    causal: bool,
}

/// The metric of one output.
fn score(metric: Metric, output: &Output, reference: &Reference, tokens: &[u32]) -> f64 {
    let positions = &reference.positions;
    let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len().max(1) as f64;
    match metric {
        Metric::Accuracy => mean(
            positions
                .iter()
                .map(|&t| f64::from(u8::from(output.argmax_at(t) == tokens[t + 1])))
                .collect(),
        ),
        Metric::Loss => mean(
            positions
                .iter()
                .map(|&t| -log_softmax(output.logits_at(t))[tokens[t + 1] as usize])
                .collect(),
        ),
        Metric::Kl => mean(
            positions
                .iter()
                .map(|&t| kl_divergence(reference.output.logits_at(t), output.logits_at(t)))
                .collect(),
        ),
        Metric::Entropy => {
            let t_len = output.seq_len;
            let causal = reference.causal;
            let mut values = Vec::new();
            for layer in 0..output.n_layer {
                for head in 0..output.n_head {
                    let map = output.attention_map(layer, head);
                    for &t in positions {
                        let row = &map[t * t_len..(t + 1) * t_len];
                        let visible = row.iter().filter(|p| **p > 0.0).count();
                        let allowed = if causal { t + 1 } else { t_len };
                        if allowed < 2 || visible == 0 {
                            continue;
                        }
                        let h: f64 = row
                            .iter()
                            .filter(|p| **p > 0.0)
                            .map(|&p| -(p as f64) * (p as f64).ln())
                            .sum();
                        values.push(h / (allowed as f64).ln());
                    }
                }
            }
            mean(values)
        }
    }
}

/// A point to measure: which series, its x, its label and its variant.
struct Planned {
    series: String,
    x: f64,
    label: String,
    variant: Variant,
}

fn ablating(heads: &[[usize; 2]], mode: AblationMode) -> Variant {
    Variant {
        heads: (!heads.is_empty()).then(|| HeadAblation {
            ablate: heads.to_vec(),
            mode,
        }),
        ..Variant::default()
    }
}

fn head_name([l, h]: [usize; 2]) -> String {
    format!("L{l} H{h}")
}

fn names(heads: &[[usize; 2]]) -> String {
    heads
        .iter()
        .map(|&h| head_name(h))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `items` in a seeded random order (Fisher–Yates on ChaCha8).
fn shuffled<T>(mut items: Vec<T>, seed: u64) -> Vec<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

/// Runs `measurement` on `tokens`: the unmodified model, whatever the experiment ranks heads or
/// layers by, then one forward per point, reporting progress. The engine's variant is put back
/// when it ends, also when it is cancelled or fails. Check the measurement first
/// ([`Measurement::check`]): a plan that does not fit the model fails in the engine.
pub async fn run_measurement<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
    measurement: &Measurement,
    progress: &mut impl Progress,
) -> std::result::Result<Outcome<Measured>, E::Error> {
    let previous = engine.variant().clone();
    let outcome = measure(engine, tokens, measurement, progress).await;
    crate::engine::api::restore_variant(engine, &previous, outcome)
}

async fn measure<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
    m: &Measurement,
    progress: &mut impl Progress,
) -> std::result::Result<Outcome<Measured>, E::Error> {
    let config = engine.model().config.clone();
    let all_heads: Vec<[usize; 2]> = (0..config.n_layer)
        .flat_map(|l| (0..config.n_head).map(move |h| [l, h]))
        .collect();
    let readback = if m.metric == Metric::Entropy {
        Readback::attention_maps()
    } else {
        Readback::logits()
    };
    engine.set_variant(&Variant::default())?;
    let unmodified = engine.forward(tokens, &Readback::everything()).await?;
    let reference = Reference {
        positions: m.positions.select(tokens, m.metric != Metric::Entropy),
        output: unmodified,
        causal: config.causal,
    };

    // Rankings the plan depends on, measured first.
    let needs_importance = match &m.experiment {
        Experiment::Ablate { sets } => sets.iter().any(|s| {
            matches!(
                s,
                HeadSet::LeastImportant(_)
                    | HeadSet::Top {
                        score: HeadScore::Importance,
                        ..
                    }
            )
        }),
        Experiment::PruneHeads { orders, .. } => orders.contains(&HeadOrder::Importance),
        _ => false,
    };
    let mut prepared_steps = 0;
    let mut importance: Vec<[usize; 2]> = Vec::new();
    if needs_importance {
        let total = all_heads.len();
        let mut inner = |s: Step| {
            progress.go_on(Step {
                done: s.done,
                total: total + 1,
            })
        };
        let ranked =
            head_importance(engine, &Variant::default(), tokens, m.ablation, &mut inner).await?;
        match ranked {
            Outcome::Done(r) => importance = r.iter().map(|h| [h.layer, h.head]).collect(),
            Outcome::Cancelled => return Ok(Outcome::Cancelled),
        }
        prepared_steps = total;
    }

    let (x_label, x_log, plan) = match &m.experiment {
        Experiment::Ablate { sets } => {
            let roles = roles_on_input(&reference.output, tokens);
            let copying = copying_scores(engine.model());
            let mut used: Vec<[usize; 2]> = Vec::new();
            let mut plan = Vec::new();
            for (i, set) in sets.iter().enumerate() {
                let (heads, why) = match set {
                    HeadSet::Heads(h) => (h.clone(), String::new()),
                    HeadSet::LeastImportant(n) => (
                        importance.iter().rev().take(*n).copied().collect(),
                        "least important".to_string(),
                    ),
                    HeadSet::Top { score, n } => {
                        let value = |[l, h]: [usize; 2]| -> f64 {
                            let i = l * config.n_head + h;
                            let role = roles.as_ref().map(|r| &r[i]);
                            match score {
                                HeadScore::Induction => role.map_or(0.0, |r| r.induction as f64),
                                HeadScore::PreviousToken => {
                                    role.map_or(0.0, |r| r.previous_token as f64)
                                }
                                HeadScore::DuplicateToken => {
                                    role.map_or(0.0, |r| r.duplicate_token as f64)
                                }
                                HeadScore::Copying => copying[i].unwrap_or(0.0) as f64,
                                HeadScore::Importance => {
                                    let rank = importance.iter().position(|&x| x == [l, h]);
                                    -(rank.unwrap_or(usize::MAX) as f64)
                                }
                            }
                        };
                        let mut ranked = all_heads.clone();
                        ranked.sort_by(|a, b| value(*b).total_cmp(&value(*a)));
                        ranked.truncate(*n);
                        (ranked, format!("top {}", score.name()))
                    }
                    HeadSet::Random { n, seed } => {
                        let free: Vec<[usize; 2]> = all_heads
                            .iter()
                            .filter(|h| !used.contains(h))
                            .copied()
                            .collect();
                        let mut picked = shuffled(free, *seed);
                        picked.truncate(*n);
                        (picked, "random".to_string())
                    }
                };
                used.extend(&heads);
                let label = if why.is_empty() {
                    names(&heads)
                } else {
                    format!("{}: {why}", names(&heads))
                };
                plan.push(Planned {
                    series: "ablated".into(),
                    x: (i + 1) as f64,
                    label,
                    variant: ablating(&heads, m.ablation),
                });
            }
            ("head set".to_string(), false, plan)
        }
        Experiment::Variants { variants } => {
            let plan = variants
                .iter()
                .enumerate()
                .map(|(i, v)| Planned {
                    series: "variants".into(),
                    x: (i + 1) as f64,
                    label: v.label.clone(),
                    variant: v.variant.clone(),
                })
                .collect();
            ("variant".to_string(), false, plan)
        }
        Experiment::EachHead => {
            let plan = all_heads
                .iter()
                .enumerate()
                .map(|(i, &h)| Planned {
                    series: "each head".into(),
                    x: i as f64,
                    label: head_name(h),
                    variant: ablating(&[h], m.ablation),
                })
                .collect();
            (
                "head ablated (layer · heads + head)".to_string(),
                false,
                plan,
            )
        }
        Experiment::Sweep { setting, values } => {
            let plan = values
                .iter()
                .map(|&value| Planned {
                    series: setting.name().into(),
                    x: value,
                    label: format!("{} {value}", setting.name()),
                    variant: setting.variant(value),
                })
                .collect();
            (setting.name().to_string(), setting.is_logarithmic(), plan)
        }
        Experiment::PruneHeads { orders, step } => {
            let mut plan = Vec::new();
            for order in orders {
                let (name, sequence) = match order {
                    HeadOrder::Importance => (
                        "by importance".to_string(),
                        importance.iter().rev().copied().collect::<Vec<_>>(),
                    ),
                    HeadOrder::Random(seed) => {
                        ("at random".to_string(), shuffled(all_heads.clone(), *seed))
                    }
                };
                let mut removed = *step;
                while removed <= sequence.len() {
                    let kept = sequence.len() - removed;
                    plan.push(Planned {
                        series: name.clone(),
                        x: kept as f64,
                        label: format!("{name}, {kept} kept"),
                        variant: ablating(&sequence[..removed], m.ablation),
                    });
                    removed += step;
                }
            }
            ("heads kept".to_string(), false, plan)
        }
        Experiment::DropLayers { orders } => {
            let similarity = layer_similarity(engine, tokens).await?;
            let mut by_similarity: Vec<usize> = (0..config.n_layer).collect();
            by_similarity.sort_by(|&a, &b| similarity[b].total_cmp(&similarity[a]));
            let mut plan = Vec::new();
            for order in orders {
                let (name, sequence) = match order {
                    LayerOrder::Similarity => ("by similarity", by_similarity.clone()),
                    LayerOrder::ReverseSimilarity => (
                        "least similar first",
                        by_similarity.iter().rev().copied().collect(),
                    ),
                };
                for dropped in 1..=sequence.len() {
                    let mut layers = sequence[..dropped].to_vec();
                    layers.sort_unstable();
                    plan.push(Planned {
                        series: name.into(),
                        x: dropped as f64,
                        label: format!(
                            "{name}: layers {} dropped",
                            layers
                                .iter()
                                .map(usize::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        variant: Variant {
                            drop_attention_layers: Some(layers),
                            ..Variant::default()
                        },
                    });
                }
            }
            ("attention layers dropped".to_string(), false, plan)
        }
        Experiment::KvCache => {
            let settings = tradeoff_variants(
                config.kv_heads(),
                Variant::default().max_kv_rank(&config),
                config.d_head(),
            );
            let plan = settings
                .into_iter()
                .skip(1)
                .map(|(label, variant)| Planned {
                    series: crate::tradeoff::cache_reduction(&variant).into(),
                    x: 0.0,
                    label,
                    variant,
                })
                .collect();
            ("KV cache bytes per token".to_string(), false, plan)
        }
    };

    let total = prepared_steps + plan.len() + 1;
    let mut series: Vec<Series> = Vec::new();
    let unmodified_value = score(m.metric, &reference.output, &reference, tokens);
    for (i, point) in plan.into_iter().enumerate() {
        if !progress.go_on(Step {
            done: prepared_steps + i,
            total,
        }) {
            return Ok(Outcome::Cancelled);
        }
        engine.set_variant(&point.variant)?;
        let output = engine.forward(tokens, &readback).await?;
        let x = if matches!(m.experiment, Experiment::KvCache) {
            output.kv_bytes_per_token as f64
        } else {
            point.x
        };
        let y = score(m.metric, &output, &reference, tokens);
        let measured = MeasuredPoint {
            label: point.label,
            x,
            y,
        };
        match series.iter_mut().find(|s| s.name == point.series) {
            Some(s) => s.points.push(measured),
            None => series.push(Series {
                name: point.series,
                points: vec![measured],
            }),
        }
    }
    // The unmodified model is where pruning and dropping curves start and the KV curves end.
    let start = match &m.experiment {
        Experiment::PruneHeads { .. } => Some(all_heads.len() as f64),
        Experiment::DropLayers { .. } => Some(0.0),
        Experiment::KvCache => Some(reference.output.kv_bytes_per_token as f64),
        _ => None,
    };
    if let Some(x) = start {
        for s in &mut series {
            s.points.insert(
                0,
                MeasuredPoint {
                    label: "unmodified".into(),
                    x,
                    y: unmodified_value,
                },
            );
        }
    }
    progress.go_on(Step { done: total, total });
    Ok(Outcome::Done(Measured {
        x_label,
        y_label: m.metric.name().into(),
        x_log,
        unmodified: unmodified_value,
        series,
    }))
}

/// The layer-drop criterion of every layer on `tokens` (unmodified model): the mean over
/// positions of the cosine similarity between the residual stream entering the attention
/// sub-layer, `x`, and the stream after it adds its output, `x + attn(x)`. Close to 1: the layer
/// changes little and is the first to drop.
pub async fn layer_similarity<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
) -> std::result::Result<Vec<f64>, E::Error> {
    let c = engine.model().config.clone();
    let mut capture = Vec::new();
    for layer in 0..c.n_layer {
        capture.push(HookPoint::ResidPre { layer });
        capture.extend((0..c.n_head).map(|head| HookPoint::HeadOutput { layer, head }));
    }
    let hooks = Hooks {
        capture,
        replace: Vec::new(),
    };
    let readback = Readback {
        logits: crate::engine::api::LogitRows::None,
        attention: crate::engine::api::AttentionMaps::None,
        head_out_norms: false,
    };
    engine.set_variant(&Variant::default())?;
    let (_, captured) = engine.forward_hooked(tokens, &readback, &hooks).await?;
    let model = engine.model();
    let (t_len, d, dh) = (tokens.len(), c.d_model, c.d_head());
    let per_layer = 1 + c.n_head;
    Ok((0..c.n_layer)
        .map(|layer| {
            let group = &captured[layer * per_layer..(layer + 1) * per_layer];
            let resid = &group[0].1;
            let o = &model.blocks[layer].attn.o;
            let w = o.weight.f32();
            let mut total = 0.0;
            for t in 0..t_len {
                // attn(x)_t = Σ_h z_h,t W_O[h] + b_O
                let mut out: Vec<f64> = o
                    .bias
                    .as_ref()
                    .map_or(vec![0.0; d], |b| b.iter().map(|&v| v as f64).collect());
                for (head, (_, z)) in group[1..].iter().enumerate() {
                    for (k, &zk) in z[t * dh..(t + 1) * dh].iter().enumerate() {
                        let row = &w[(head * dh + k) * d..(head * dh + k + 1) * d];
                        for (acc, &wv) in out.iter_mut().zip(row) {
                            *acc += zk as f64 * wv as f64;
                        }
                    }
                }
                let x = &resid[t * d..(t + 1) * d];
                let (mut dot, mut xx, mut yy) = (0.0, 0.0, 0.0);
                for (&a, &b) in x.iter().zip(&out) {
                    let y = a as f64 + b;
                    dot += a as f64 * y;
                    xx += a as f64 * a as f64;
                    yy += y * y;
                }
                total += dot / (xx.sqrt() * yy.sqrt()).max(1e-12);
            }
            total / t_len.max(1) as f64
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::api::unwatched;
    use crate::lesson::{Measured, Measurement, Pick, ResultSpec};
    use crate::{now, CpuEngine, Model, ModelConfig};

    fn engine(mlp: bool) -> CpuEngine {
        let config = ModelConfig {
            mlp,
            ..ModelConfig::tiny(30)
        };
        CpuEngine::new(Model::random(config, 5, 0.4).unwrap()).unwrap()
    }

    fn run(engine: &mut CpuEngine, tokens: &[u32], json: &str) -> Measured {
        let m: Measurement = serde_json::from_str(json).unwrap();
        m.check(&engine.model().config, tokens).unwrap();
        now(run_measurement(engine, tokens, &m, &mut unwatched()))
            .unwrap()
            .done()
            .unwrap()
    }

    #[test]
    fn ablations_score_what_a_fresh_engine_scores_and_restore_the_variant() {
        let mut e = engine(true);
        e.set_variant(&Variant {
            window: Some(2),
            ..Variant::default()
        })
        .unwrap();
        let tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
        let m = run(
            &mut e,
            &tokens,
            r#"{"experiment": {"kind": "ablate", "sets": [{"heads": [[0, 1]]}, {"least_important": 2}, {"random": {"n": 3, "seed": 4}}]}, "metric": "loss"}"#,
        );
        assert_eq!(e.variant().window, Some(2), "the engine's variant is back");
        let points = &m.series[0].points;
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].label, "L0 H1");
        // The loss of each point is the mean next-token loss of a fresh forward.
        let mut fresh = engine(true);
        let base = fresh.forward(&tokens).unwrap();
        let nll = crate::metrics::next_token_nll(&base, &tokens).unwrap();
        assert!((m.unmodified - nll).abs() < 1e-9);
        fresh
            .set_variant(&ablating(&[[0, 1]], AblationMode::Zero))
            .unwrap();
        let ablated = fresh.forward(&tokens).unwrap();
        let nll = crate::metrics::next_token_nll(&ablated, &tokens).unwrap();
        assert!((points[0].y - nll).abs() < 1e-9);
        // The random set avoids the heads earlier sets ablate.
        let random: Vec<&str> = points[2]
            .label
            .split(": ")
            .next()
            .unwrap()
            .split(", ")
            .collect();
        assert_eq!(random.len(), 3);
        assert!(!random.contains(&"L0 H1"));
        // Picks: labels, series extremes, points by x; differences.
        assert_eq!(m.pick(&Pick::At("ablated".into(), 1.0)), Ok(points[0].y));
        let spec = ResultSpec {
            label: "lost".into(),
            value: Pick::Highest("ablated".into()),
            minus: Some(Pick::Point("unmodified".into())),
            min: Some(-100.0),
            max: None,
        };
        let highest = points.iter().map(|p| p.y).fold(f64::MIN, f64::max);
        assert!((m.result(&spec).unwrap() - (highest - m.unmodified)).abs() < 1e-12);
        assert!(spec.holds(0.0) && !spec.holds(-101.0));
        assert!(m.pick(&Pick::Lowest("nothing".into())).is_err());
    }

    #[test]
    fn pruning_curves_start_at_every_head_and_end_at_none() {
        let mut e = engine(true);
        let tokens = [3, 1, 4, 1, 5, 9, 2, 6];
        let m = run(
            &mut e,
            &tokens,
            r#"{"experiment": {"kind": "prune_heads", "orders": ["importance", {"random": 1}], "step": 2}, "metric": "kl"}"#,
        );
        assert_eq!(m.series.len(), 2);
        let heads = 2 * 4;
        for s in &m.series {
            let xs: Vec<f64> = s.points.iter().map(|p| p.x).collect();
            assert_eq!(xs, [8.0, 6.0, 4.0, 2.0, 0.0]);
            assert_eq!(s.points[0].y, 0.0, "nothing pruned: no KL");
        }
        // With every head pruned both orders are the same model.
        let last = |i: usize| m.series[i].points.last().unwrap().y;
        assert!((last(0) - last(1)).abs() < 1e-9);
        assert_eq!(m.series[0].points.len(), heads / 2 + 1);
    }

    #[test]
    fn entropy_is_one_for_uniform_attention_and_falls_with_beta() {
        let mut e = engine(true);
        let tokens = [3, 1, 4, 1, 5, 9, 2, 6];
        let m = run(
            &mut e,
            &tokens,
            r#"{"experiment": {"kind": "sweep", "setting": "beta", "values": [0.000001, 1, 100]}, "metric": "entropy"}"#,
        );
        let ys: Vec<f64> = m.series[0].points.iter().map(|p| p.y).collect();
        assert!(
            (ys[0] - 1.0).abs() < 1e-5,
            "β → 0 attends uniformly: {ys:?}"
        );
        assert!(ys[0] > ys[1] && ys[1] > ys[2], "{ys:?}");
        assert!((ys[1] - m.unmodified).abs() < 1e-9);
        assert!(m.x_log);
    }

    #[test]
    fn layer_similarity_is_the_cosine_between_the_stream_before_and_after_attention() {
        // Attention-only: the stream after layer l's attention is the stream entering l + 1.
        let mut e = engine(false);
        let tokens = [3, 1, 4, 1, 5, 9];
        let similarity = now(layer_similarity(&mut e, &tokens)).unwrap();
        let hooks = Hooks {
            capture: (0..=2).map(|layer| HookPoint::ResidPre { layer }).collect(),
            replace: Vec::new(),
        };
        let (_, captured) =
            now(e.forward_hooked(&tokens, &Readback::everything(), &hooks)).unwrap();
        let d = e.model().config.d_model;
        for layer in 0..2 {
            let (x, y) = (&captured[layer].1, &captured[layer + 1].1);
            let mut total = 0.0;
            for t in 0..tokens.len() {
                let (a, b) = (&x[t * d..(t + 1) * d], &y[t * d..(t + 1) * d]);
                let dot: f64 = a.iter().zip(b).map(|(p, q)| *p as f64 * *q as f64).sum();
                let n = |v: &[f32]| v.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
                total += dot / (n(a) * n(b));
            }
            let expected = total / tokens.len() as f64;
            assert!(
                (similarity[layer] - expected).abs() < 1e-4,
                "layer {layer}: {} vs {expected}",
                similarity[layer]
            );
        }
        // Dropping layers: each order's curve starts at the unmodified model.
        let m = run(
            &mut e,
            &tokens,
            r#"{"experiment": {"kind": "drop_layers", "orders": ["similarity", "reverse_similarity"]}, "metric": "kl"}"#,
        );
        for s in &m.series {
            assert_eq!((s.points[0].x, s.points[0].y), (0.0, 0.0));
            assert_eq!(s.points.len(), 3);
        }
    }
}
