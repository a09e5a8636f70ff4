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
/// `layer`: score the attention of that layer alone (entropy).
fn score(
    metric: Metric,
    output: &Output,
    reference: &Reference,
    tokens: &[u32],
    layer: Option<usize>,
) -> f64 {
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
            let layers = match layer {
                Some(l) => l..l + 1,
                None => 0..output.n_layer,
            };
            for layer in layers {
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

/// The logit lens over `inputs`: one hooked forward of the unmodified model each, every depth
/// of the plan scored from its decoded residual stream, against the deepest read (the model's
/// output) as the reference.
async fn score_lens<E: Engine, P: Progress>(
    engine: &mut E,
    inputs: &[&[u32]],
    m: &Measurement,
    plan: &Plan,
    counter: &mut Counter<'_, P>,
) -> std::result::Result<Outcome<Vec<Measured>>, E::Error> {
    engine.set_variant(&Variant::default())?;
    let config = engine.model().config.clone();
    let mut measured = Vec::with_capacity(inputs.len());
    for tokens in inputs {
        let lens = crate::lens::logit_lens(engine, tokens).await?;
        let read = |depth: usize| Output {
            seq_len: tokens.len(),
            n_layer: config.n_layer,
            n_head: config.n_head,
            n_out: lens.n_out,
            logits: lens.logits[depth].clone(),
            attention: Vec::new(),
            head_out_norms: Vec::new(),
            kv_bytes_per_token: 0,
        };
        let reference = Reference {
            positions: m.positions.select(tokens, true),
            output: read(config.n_layer),
            causal: config.causal,
        };
        let mut series = Vec::new();
        for point in &plan.points {
            let depth = point.layer.unwrap_or(config.n_layer);
            let y = score(m.metric, &read(depth), &reference, tokens, None);
            push_point(&mut series, &point.series, &point.label, point.x, y);
            if !counter.tick() {
                return Ok(Outcome::Cancelled);
            }
        }
        measured.push(Measured {
            x_label: plan.x_label.clone(),
            y_label: m.metric.name().into(),
            x_log: plan.x_log,
            unmodified: score(m.metric, &reference.output, &reference, tokens, None),
            series,
        });
        if !counter.tick() {
            return Ok(Outcome::Cancelled);
        }
    }
    Ok(Outcome::Done(measured))
}

/// A point to measure: which series, its x, its label and its variant.
pub(super) struct Planned {
    series: String,
    x: f64,
    label: String,
    variant: Variant,
    /// For [`Experiment::EachLayer`]: the one layer the metric reads.
    layer: Option<usize>,
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
pub(super) fn shuffled<T>(mut items: Vec<T>, seed: u64) -> Vec<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

/// Runs `measurement` on `tokens`: the unmodified model, whatever the experiment ranks heads or
/// layers by (ranked on `tokens` itself), then one forward per point, reporting progress. The
/// engine's variant is put back when it ends, also when it is cancelled or fails. Check the
/// measurement first ([`Measurement::check`]): a plan that does not fit the model fails in the
/// engine. [`crate::lesson::run_sampled`] measures over a sample instead, ranking on a separate set.
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
    let inputs = [tokens.to_vec()];
    let config = engine.model().config.clone();
    let mut counter = Counter {
        progress,
        done: 0,
        total: ranking_work(m, &config, 1)
            + plan(m, &config, &Rankings::placeholder(&config))
                .points
                .len()
            + 1,
    };
    let Outcome::Done(rankings) = rank(engine, &inputs, m, &mut counter).await? else {
        return Ok(Outcome::Cancelled);
    };
    let plan = plan(m, &config, &rankings);
    let Outcome::Done(mut measured) = score_plan(engine, &[tokens], m, &plan, &mut counter).await?
    else {
        return Ok(Outcome::Cancelled);
    };
    let measured = measured.remove(0);
    counter.progress.go_on(Step {
        done: counter.total,
        total: counter.total,
    });
    Ok(Outcome::Done(measured))
}

/// Counts the forwards of a measurement for its [`Progress`].
pub(super) struct Counter<'a, P: Progress> {
    pub(super) progress: &'a mut P,
    pub(super) done: usize,
    pub(super) total: usize,
}

impl<P: Progress> Counter<'_, P> {
    /// One more forward done; `false` cancels.
    pub(super) fn tick(&mut self) -> bool {
        self.done += 1;
        self.progress.go_on(Step {
            done: self.done.min(self.total),
            total: self.total,
        })
    }
}

/// What an experiment ranks heads and layers by, measured on the ranking inputs.
pub(super) struct Rankings {
    /// Heads from the most to the least important (mean loss increase when ablated alone).
    importance: Vec<[usize; 2]>,
    /// Per head (layer-major): the mean induction, previous-token and duplicate-token scores
    /// over the ranking inputs in which a token repeats.
    roles: Vec<[f64; 3]>,
    /// Per layer: the mean layer-drop criterion ([`layer_similarity`]).
    similarity: Vec<f64>,
    /// Per head: the copying score of its OV circuit (from the weights alone).
    copying: Vec<f64>,
}

impl Rankings {
    /// Rankings of the right shape with nothing measured (to count a plan's points).
    pub(super) fn placeholder(config: &crate::ModelConfig) -> Rankings {
        let heads = config.n_layer * config.n_head;
        Rankings {
            importance: (0..config.n_layer)
                .flat_map(|l| (0..config.n_head).map(move |h| [l, h]))
                .collect(),
            roles: vec![[0.0; 3]; heads],
            similarity: vec![0.0; config.n_layer],
            copying: vec![0.0; heads],
        }
    }
}

/// Which rankings the experiment's plan depends on: (importance, roles, layer similarity).
fn ranked_by(m: &Measurement) -> (bool, bool, bool) {
    match &m.experiment {
        Experiment::Ablate { sets } => (
            sets.iter().any(|s| {
                matches!(
                    s,
                    HeadSet::LeastImportant(_)
                        | HeadSet::Top {
                            score: HeadScore::Importance,
                            ..
                        }
                )
            }),
            sets.iter().any(|s| {
                matches!(
                    s,
                    HeadSet::Top {
                        score: HeadScore::Induction
                            | HeadScore::PreviousToken
                            | HeadScore::DuplicateToken,
                        ..
                    }
                )
            }),
            false,
        ),
        Experiment::PruneHeads { orders, .. } => {
            (orders.contains(&HeadOrder::Importance), false, false)
        }
        Experiment::DropLayers { .. } => (false, false, true),
        _ => (false, false, false),
    }
}

/// The forwards ranking takes over `inputs` ranking inputs.
pub(super) fn ranking_work(m: &Measurement, config: &crate::ModelConfig, inputs: usize) -> usize {
    let (importance, roles, similarity) = ranked_by(m);
    let heads = config.n_layer * config.n_head;
    inputs * (usize::from(importance) * (heads + 1) + usize::from(roles) + usize::from(similarity))
}

/// Measures the rankings the plan needs, averaged over `inputs`.
pub(super) async fn rank<E: Engine, P: Progress>(
    engine: &mut E,
    inputs: &[Vec<u32>],
    m: &Measurement,
    counter: &mut Counter<'_, P>,
) -> std::result::Result<Outcome<Rankings>, E::Error> {
    let config = engine.model().config.clone();
    let (by_importance, by_roles, by_similarity) = ranked_by(m);
    let heads = config.n_layer * config.n_head;
    let mut rankings = Rankings::placeholder(&config);
    let copies = matches!(&m.experiment, Experiment::Ablate { sets } if sets.iter().any(|s| matches!(s, HeadSet::Top { score: HeadScore::Copying, .. })));
    if copies {
        rankings.copying = copying_scores(engine.model())
            .into_iter()
            .map(|c| c.unwrap_or(0.0) as f64)
            .collect();
    }
    if by_importance {
        let mut total = vec![0.0; heads];
        for tokens in inputs {
            let offset = counter.done;
            let (outer_total, progress) = (counter.total, &mut *counter.progress);
            let mut inner = |s: Step| {
                progress.go_on(Step {
                    done: offset + s.done,
                    total: outer_total,
                })
            };
            let ranked =
                head_importance(engine, &Variant::default(), tokens, m.ablation, &mut inner)
                    .await?;
            let Outcome::Done(ranked) = ranked else {
                return Ok(Outcome::Cancelled);
            };
            for h in ranked {
                total[h.layer * config.n_head + h.head] += h.loss_increase;
            }
            counter.done += heads;
            if !counter.tick() {
                return Ok(Outcome::Cancelled);
            }
        }
        let mut order = rankings.importance.clone();
        let at = |[l, h]: [usize; 2]| total[l * config.n_head + h];
        // Most important first; ties in layer-major order.
        order.sort_by(|&a, &b| at(b).total_cmp(&at(a)));
        rankings.importance = order;
    }
    if by_roles {
        let mut sums = vec![[0.0; 3]; heads];
        let mut counted = 0;
        for tokens in inputs {
            engine.set_variant(&Variant::default())?;
            let output = engine.forward(tokens, &Readback::attention_maps()).await?;
            if let Some(roles) = roles_on_input(&output, tokens) {
                counted += 1;
                for (sum, r) in sums.iter_mut().zip(&roles) {
                    sum[0] += r.induction as f64;
                    sum[1] += r.previous_token as f64;
                    sum[2] += r.duplicate_token as f64;
                }
            }
            if !counter.tick() {
                return Ok(Outcome::Cancelled);
            }
        }
        for sum in &mut sums {
            for v in sum.iter_mut() {
                *v /= counted.max(1) as f64;
            }
        }
        rankings.roles = sums;
    }
    if by_similarity {
        let mut sums = vec![0.0; config.n_layer];
        for tokens in inputs {
            let similarity = layer_similarity(engine, tokens).await?;
            for (sum, s) in sums.iter_mut().zip(similarity) {
                *sum += s;
            }
            if !counter.tick() {
                return Ok(Outcome::Cancelled);
            }
        }
        rankings.similarity = sums
            .into_iter()
            .map(|s| s / inputs.len().max(1) as f64)
            .collect();
    }
    Ok(Outcome::Done(rankings))
}

/// The points of a measurement, once its rankings are known.
pub(super) struct Plan {
    x_label: String,
    x_log: bool,
    pub(super) points: Vec<Planned>,
}

/// The variants every point of the experiment runs, ranked by `rankings`.
pub(super) fn plan(m: &Measurement, config: &crate::ModelConfig, rankings: &Rankings) -> Plan {
    let all_heads: Vec<[usize; 2]> = (0..config.n_layer)
        .flat_map(|l| (0..config.n_head).map(move |h| [l, h]))
        .collect();
    let importance = &rankings.importance;
    let (x_label, x_log, points) = match &m.experiment {
        Experiment::Ablate { sets } => {
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
                            match score {
                                HeadScore::Induction => rankings.roles[i][0],
                                HeadScore::PreviousToken => rankings.roles[i][1],
                                HeadScore::DuplicateToken => rankings.roles[i][2],
                                HeadScore::Copying => rankings.copying[i],
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
                    layer: None,
                });
            }
            ("head set".to_string(), false, plan)
        }
        Experiment::Variants { variants } => {
            let plan = variants
                .iter()
                .enumerate()
                .map(|(i, v)| Planned {
                    series: v.series.clone().unwrap_or_else(|| "variants".into()),
                    x: (i + 1) as f64,
                    label: v.label.clone(),
                    variant: v.variant.clone(),
                    layer: None,
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
                    layer: None,
                })
                .collect();
            (
                "head ablated (layer · heads + head)".to_string(),
                false,
                plan,
            )
        }
        Experiment::LogitLens => {
            let plan = (0..=config.n_layer)
                .map(|layer| Planned {
                    series: "logit lens".into(),
                    x: layer as f64,
                    label: if layer == config.n_layer {
                        "the output".to_string()
                    } else {
                        format!("before layer {layer}")
                    },
                    variant: Variant::default(),
                    layer: Some(layer),
                })
                .collect();
            ("depth read (0: the embeddings)".to_string(), false, plan)
        }
        Experiment::EachLayer => {
            let plan = (0..config.n_layer)
                .map(|layer| Planned {
                    series: "each layer".into(),
                    x: layer as f64,
                    label: format!("layer {layer}"),
                    variant: Variant::default(),
                    layer: Some(layer),
                })
                .collect();
            ("layer".to_string(), false, plan)
        }
        Experiment::Sweep { setting, values } => {
            let plan = values
                .iter()
                .map(|&value| Planned {
                    series: setting.name().into(),
                    x: value,
                    label: format!("{} {value}", setting.name()),
                    variant: setting.variant(value),
                    layer: None,
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
                        layer: None,
                    });
                    removed += step;
                }
            }
            ("heads kept".to_string(), false, plan)
        }
        Experiment::DropLayers { orders } => {
            let similarity = &rankings.similarity;
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
                        layer: None,
                    });
                }
            }
            ("attention layers dropped".to_string(), false, plan)
        }
        Experiment::Decode { variants, .. } => {
            let plan = variants
                .iter()
                .map(|v| Planned {
                    series: v.series.clone().unwrap_or_else(|| "variants".into()),
                    x: 0.0,
                    label: v.label.clone(),
                    variant: v.variant.clone(),
                    layer: None,
                })
                .collect();
            (
                "KV cache bytes held at the end of the text".to_string(),
                false,
                plan,
            )
        }
        Experiment::KvCache => {
            let settings = tradeoff_variants(
                config.kv_heads(),
                Variant::default().max_kv_rank(config),
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
                    layer: None,
                })
                .collect();
            ("KV cache bytes per token".to_string(), false, plan)
        }
    };
    Plan {
        x_label,
        x_log,
        points,
    }
}

/// Scores every point of `plan` on each of `inputs` (one forward per input after the unmodified
/// model's). Points run in the outer loop, so each variant is set (and prepared) once.
pub(super) async fn score_plan<E: Engine, P: Progress>(
    engine: &mut E,
    inputs: &[&[u32]],
    m: &Measurement,
    plan: &Plan,
    counter: &mut Counter<'_, P>,
) -> std::result::Result<Outcome<Vec<Measured>>, E::Error> {
    if let Experiment::Decode { tokens: n, .. } = m.experiment {
        return score_decode(engine, inputs, n, m, plan, counter).await;
    }
    if m.experiment == Experiment::LogitLens {
        return score_lens(engine, inputs, m, plan, counter).await;
    }
    let config = engine.model().config.clone();
    let readback = if m.metric == Metric::Entropy {
        Readback::attention_maps()
    } else {
        Readback::logits()
    };
    engine.set_variant(&Variant::default())?;
    let mut references = Vec::with_capacity(inputs.len());
    for tokens in inputs {
        let output = engine.forward(tokens, &readback).await?;
        references.push(Reference {
            positions: m.positions.select(tokens, m.metric != Metric::Entropy),
            output,
            causal: config.causal,
        });
        if !counter.tick() {
            return Ok(Outcome::Cancelled);
        }
    }
    let mut series: Vec<Vec<Series>> = vec![Vec::new(); inputs.len()];
    for point in &plan.points {
        // A point of the unmodified model scored differently (one layer) needs no forward.
        let unmodified = point.variant == Variant::default();
        if !unmodified {
            engine.set_variant(&point.variant)?;
        }
        for ((tokens, reference), series) in inputs.iter().zip(&references).zip(&mut series) {
            let (x, y) = if unmodified {
                let y = score(m.metric, &reference.output, reference, tokens, point.layer);
                (point.x, y)
            } else {
                let output = engine.forward(tokens, &readback).await?;
                let y = score(m.metric, &output, reference, tokens, point.layer);
                match m.experiment {
                    Experiment::KvCache => (output.kv_bytes_per_token as f64, y),
                    _ => (point.x, y),
                }
            };
            push_point(series, &point.series, &point.label, x, y);
            if !counter.tick() {
                return Ok(Outcome::Cancelled);
            }
        }
    }
    let measured = references
        .iter()
        .zip(inputs)
        .zip(series)
        .map(|((reference, tokens), mut series)| {
            let unmodified_value = score(m.metric, &reference.output, reference, tokens, None);
            // The unmodified model is where pruning and dropping curves start and the KV
            // curves end.
            let start = match &m.experiment {
                Experiment::PruneHeads { .. } => Some((config.n_layer * config.n_head) as f64),
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
            Measured {
                x_label: plan.x_label.clone(),
                y_label: m.metric.name().into(),
                x_log: plan.x_log,
                unmodified: unmodified_value,
                series,
            }
        })
        .collect();
    Ok(Outcome::Done(measured))
}

/// [`Experiment::Decode`]: each input continued greedily by the unmodified model, then every
/// variant decoded along the same text from its own cache, scored by the mean KL over the
/// continuation's positions; x the bytes the cache holds at the end.
async fn score_decode<E: Engine, P: Progress>(
    engine: &mut E,
    inputs: &[&[u32]],
    n: usize,
    m: &Measurement,
    plan: &Plan,
    counter: &mut Counter<'_, P>,
) -> std::result::Result<Outcome<Vec<Measured>>, E::Error> {
    let n_ctx = engine.model().config.n_ctx;
    engine.set_variant(&Variant::default())?;
    // The continuation and the unmodified model's logits along it: (text, logits per
    // continuation position, full-cache bytes).
    let mut references: Vec<(Vec<u32>, Vec<Vec<f32>>, f64)> = Vec::new();
    for prompt in inputs {
        let prompt = &prompt[..prompt.len().min(n_ctx.saturating_sub(1)).max(1)];
        let steps = n.min(n_ctx - prompt.len());
        let (logits, bytes, text) = decode_along(engine, prompt, steps, None).await?;
        references.push((text, logits, bytes));
        if !counter.tick() {
            return Ok(Outcome::Cancelled);
        }
    }
    let mut series: Vec<Vec<Series>> = vec![Vec::new(); inputs.len()];
    for point in &plan.points {
        engine.set_variant(&point.variant)?;
        for ((text, reference, _), series) in references.iter().zip(&mut series) {
            let prompt_len = text.len() - reference.len();
            let (logits, bytes, _) =
                decode_along(engine, &text[..prompt_len], reference.len(), Some(text)).await?;
            let kl = logits
                .iter()
                .zip(reference)
                .map(|(v, r)| kl_divergence(r, v))
                .sum::<f64>()
                / reference.len().max(1) as f64;
            push_point(series, &point.series, &point.label, bytes, kl);
            if !counter.tick() {
                return Ok(Outcome::Cancelled);
            }
        }
    }
    Ok(Outcome::Done(
        references
            .iter()
            .zip(series)
            .map(|((_, _, full_bytes), mut series)| {
                for s in &mut series {
                    s.points.insert(
                        0,
                        MeasuredPoint {
                            label: "unmodified".into(),
                            x: *full_bytes,
                            y: 0.0,
                        },
                    );
                }
                Measured {
                    x_label: plan.x_label.clone(),
                    y_label: m.metric.name().into(),
                    x_log: plan.x_log,
                    unmodified: 0.0,
                    series,
                }
            })
            .collect(),
    ))
}

/// Decodes `steps` positions after `prompt` on the engine's variant: greedily, or along
/// `text` (teacher-forced) when given. Returns the next-token logits at the prompt's last
/// position and at each decoded one (one per generated token), the bytes the cache holds at the
/// end, and the whole text. Where the engine keeps no cache for the variant it recomputes, and
/// the bytes are the per-token formula times the length.
async fn decode_along<E: Engine>(
    engine: &mut E,
    prompt: &[u32],
    steps: usize,
    text: Option<&[u32]>,
) -> std::result::Result<(Vec<Vec<f32>>, f64, Vec<u32>), E::Error> {
    let mut all = prompt.to_vec();
    let mut logits = Vec::with_capacity(steps);
    let next = |all: &[u32], row: &[f32]| -> u32 {
        match text {
            Some(t) => t[all.len()],
            None => crate::engine::output::argmax(row),
        }
    };
    match engine.prefill(prompt, &Readback::next_token()).await? {
        Some(out) => {
            let mut row = out.logits_at(out.seq_len - 1).to_vec();
            for i in 0..steps {
                let token = next(&all, &row);
                all.push(token);
                logits.push(std::mem::take(&mut row));
                if i + 1 < steps {
                    row = engine.decode_step(token).await?.logits;
                }
            }
            let bytes = engine.kv_cache_bytes().unwrap_or(0) as f64;
            // The cache holds the positions run so far: the last token is not run yet.
            Ok((logits, bytes, all))
        }
        None => {
            let mut bytes = 0.0;
            for _ in 0..steps {
                let out = engine.forward(&all, &Readback::next_token()).await?;
                let row = out.logits_at(out.seq_len - 1).to_vec();
                bytes = (out.kv_bytes_per_token * all.len()) as f64;
                let token = next(&all, &row);
                all.push(token);
                logits.push(row);
            }
            Ok((logits, bytes, all))
        }
    }
}

fn push_point(series: &mut Vec<Series>, name: &str, label: &str, x: f64, y: f64) {
    let measured = MeasuredPoint {
        label: label.to_string(),
        x,
        y,
    };
    match series.iter_mut().find(|s| s.name == name) {
        Some(s) => s.points.push(measured),
        None => series.push(Series {
            name: name.to_string(),
            points: vec![measured],
        }),
    }
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
            paper: None,
            relative: false,
            expect: None,
        };
        let highest = points.iter().map(|p| p.y).fold(f64::MIN, f64::max);
        assert!((m.result(&spec).unwrap() - (highest - m.unmodified)).abs() < 1e-12);
        assert!(spec.holds(0.0) && !spec.holds(-101.0));
        assert!(m.pick(&Pick::Lowest("nothing".into())).is_err());
    }

    #[test]
    fn decoding_reports_the_bytes_each_cache_holds_and_the_drift_along_a_continuation() {
        let mut e = engine(true);
        let c = e.model().config.clone();
        let tokens = [3, 1, 4, 1, 5, 9, 2, 6];
        let m = run(
            &mut e,
            &tokens,
            r#"{"experiment": {"kind": "decode", "tokens": 5, "variants": [
                {"label": "same", "variant": {"kv_groups": 4}},
                {"label": "pooled", "variant": {"kv_groups": 1}},
                {"label": "window", "variant": {"window": 3}}]}, "metric": "kl"}"#,
        );
        let point = |label: &str| {
            m.series[0]
                .points
                .iter()
                .find(|p| p.label == label)
                .cloned()
                .unwrap()
        };
        // 8 prompt positions and 4 of the 5 generated tokens run: 12 cached positions.
        let per_position = 2 * c.kv_heads() * c.d_head() * c.n_layer * 4;
        assert_eq!(point("unmodified").x, (12 * per_position) as f64);
        assert_eq!(point("pooled").x, (12 * per_position / 4) as f64);
        assert_eq!(point("window").x, (3 * per_position) as f64);
        assert!(
            point("same").y.abs() < 1e-9,
            "an unchanged cache does not drift"
        );
        assert!(point("pooled").y > 1e-4 && point("window").y > 1e-4);
        // The drift is the mean KL along the continuation the unmodified model generated.
        let mut fresh = engine(true);
        let mut text = tokens.to_vec();
        for _ in 0..5 {
            let out = fresh.forward(&text).unwrap();
            text.push(out.argmax_at(text.len() - 1));
        }
        let reference = fresh.forward(&text[..12]).unwrap();
        fresh
            .set_variant(&Variant {
                kv_groups: Some(1),
                ..Variant::default()
            })
            .unwrap();
        let pooled = fresh.forward(&text[..12]).unwrap();
        let kl = (7..12)
            .map(|t| kl_divergence(reference.logits_at(t), pooled.logits_at(t)))
            .sum::<f64>()
            / 5.0;
        assert!(
            (point("pooled").y - kl).abs() < 1e-4,
            "{} vs {kl}",
            point("pooled").y
        );
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
