//! Claims over samples: a lesson step's measurement runs on a seeded sample of inputs of the
//! step's kind, its rankings (head importance, head roles, the layer-drop criterion) come from a
//! separate, disjoint set of inputs, and each number the step reports is given as the sample's
//! mean with a 95 % bootstrap interval, every input's value, and a verdict that compares the
//! whole interval with the claim's range.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::engine::api::{Engine, Outcome, Progress, Step};
use crate::error::{ModelError, Result};
use crate::lesson::measure::{plan, rank, ranking_work, score_plan, shuffled, Counter, Rankings};
use crate::lesson::{Measured, Measurement, Metric, ResultSpec, Verdict};
use crate::tokenizer::Tokenizer;
use crate::training::tasks::Task;

/// Inputs a step scores on a task model (drawn from the task's held-out set).
pub const TASK_INPUTS: usize = 32;
/// Windows of held-out text a step scores on a language model.
pub const TEXT_INPUTS: usize = 20;
/// Inputs rankings are measured on (disjoint from the scored ones).
pub const RANKING_INPUTS: usize = 8;
/// Characters in a window of held-out text (cut to the model's context after tokenising).
pub const TEXT_WINDOW: usize = 96;
/// Tokens in each half of a repeated-random-token sequence (cut to half the model's context).
pub const REPEATED_HALF: usize = 32;
/// Resamples of the bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The inputs a step is measured on: the scored sample and the disjoint set its rankings come
/// from, each with a sentence saying what it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub scoring_name: String,
    pub scoring: Vec<Vec<u32>>,
    pub ranking_name: String,
    pub ranking: Vec<Vec<u32>>,
}

/// Indices `0..n` in a seeded random order.
fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    shuffled((0..n).collect(), seed)
}

impl Sample {
    /// `inputs` sequences of a synthetic task's fixed held-out set (never trained on) to score
    /// and `ranking` others of it to rank on, picked by `seed`; `None` for the character model,
    /// whose sample is text ([`Sample::from_text`]).
    pub fn from_task(task: Task, inputs: usize, ranking: usize, seed: u64) -> Option<Sample> {
        let data = task.synthetic_data()?;
        let held_out = data.held_out();
        let order = shuffled_indices(held_out.len(), seed);
        let pick = |range: std::ops::Range<usize>| -> Vec<Vec<u32>> {
            order[range]
                .iter()
                .map(|&i| held_out[i].tokens.clone())
                .collect()
        };
        let inputs = inputs.min(held_out.len() / 2);
        let ranking = ranking.min(held_out.len() - inputs);
        Some(Sample {
            scoring_name: format!(
                "{inputs} sequences of the {} task's held-out set (seed {seed})",
                task.name()
            ),
            scoring: pick(0..inputs),
            ranking_name: format!("{ranking} other sequences of the same set"),
            ranking: pick(inputs..inputs + ranking),
        })
    }

    /// Windows of held-out text (`texts`, e.g. [`crate::training::tasks::held_out_text`]): the
    /// text is cut into windows of [`TEXT_WINDOW`] characters that do not overlap, `inputs +
    /// ranking` of them spread evenly over it are picked, shuffled by `seed`, the first `inputs`
    /// scored and the rest ranked on. Each window is tokenised and cut to `n_ctx` tokens.
    pub fn from_text(
        texts: &[String],
        tokenizer: &Tokenizer,
        n_ctx: usize,
        inputs: usize,
        ranking: usize,
        seed: u64,
    ) -> Result<Sample> {
        let mut windows: Vec<String> = Vec::new();
        for text in texts {
            let chars: Vec<char> = text.chars().collect();
            windows.extend(
                chars
                    .chunks_exact(TEXT_WINDOW)
                    .map(|w| w.iter().collect::<String>()),
            );
        }
        let wanted = inputs + ranking;
        if windows.len() < wanted {
            return Err(ModelError::Input(format!(
                "the held-out text has {} windows of {TEXT_WINDOW} characters; {wanted} are needed",
                windows.len()
            )));
        }
        let spread: Vec<&String> = (0..wanted)
            .map(|i| &windows[i * windows.len() / wanted])
            .collect();
        let order = shuffled_indices(wanted, seed);
        let encode = |i: usize| -> Result<Vec<u32>> {
            let mut tokens = tokenizer.encode(spread[i])?;
            tokens.truncate(n_ctx);
            Ok(tokens)
        };
        Ok(Sample {
            scoring_name: format!(
                "{inputs} windows of {TEXT_WINDOW} characters of held-out text (seed {seed})"
            ),
            scoring: order[..inputs]
                .iter()
                .map(|&i| encode(i))
                .collect::<Result<_>>()?,
            ranking_name: format!("{ranking} other windows of the same text"),
            ranking: order[inputs..]
                .iter()
                .map(|&i| encode(i))
                .collect::<Result<_>>()?,
        })
    }
}

impl Sample {
    /// `inputs + ranking` sequences of [`REPEATED_HALF`] random token ids repeated once (half
    /// the context at most), drawn uniformly from the vocabulary without the ids in `skip`
    /// (the model's special tokens), seeded: the first `inputs` scored, the rest ranked on. In
    /// the second half every next token can be copied from the first, and nothing but copying
    /// predicts it — the probe TransformerLens and Olsson et al. find induction heads with.
    pub fn repeated_random_tokens(
        vocab_size: usize,
        n_ctx: usize,
        skip: &[u32],
        inputs: usize,
        ranking: usize,
        seed: u64,
    ) -> Result<Sample> {
        let ids: Vec<u32> = (0..vocab_size as u32)
            .filter(|id| !skip.contains(id))
            .collect();
        let half = REPEATED_HALF.min(n_ctx / 2);
        if ids.len() < 2 || half < 2 {
            return Err(ModelError::Input(format!(
                "repeated random tokens need a vocabulary of two tokens and a context of four \
                 (this model: {} tokens, context {n_ctx})",
                ids.len()
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = || {
            let first: Vec<u32> = (0..half)
                .map(|_| ids[(rng.next_u64() % ids.len() as u64) as usize])
                .collect();
            [first.clone(), first].concat()
        };
        let scoring: Vec<Vec<u32>> = (0..inputs).map(|_| draw()).collect();
        let ranking: Vec<Vec<u32>> = (0..ranking).map(|_| draw()).collect();
        Ok(Sample {
            scoring_name: format!(
                "{inputs} sequences of {half} random tokens, each repeated once (seed {seed})"
            ),
            scoring,
            ranking_name: format!("{} other such sequences", ranking.len()),
            ranking,
        })
    }
}

/// What a measurement found on every input of a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleMeasured {
    /// One measurement per scored input (the inputs the measurement's positions apply to).
    pub per_input: Vec<Measured>,
    /// The mean over the inputs, point by point: the curve the page draws.
    pub mean: Measured,
    /// The input on screen, measured with the same plan (rankings from the ranking set).
    pub on_screen: Option<Measured>,
    pub scoring_name: String,
    pub ranking_name: String,
}

/// The point-by-point mean of measurements with one plan.
fn mean_of(measured: &[&Measured]) -> Measured {
    let n = measured.len().max(1) as f64;
    let mut mean = measured[0].clone();
    mean.unmodified = measured.iter().map(|m| m.unmodified).sum::<f64>() / n;
    for (s, series) in mean.series.iter_mut().enumerate() {
        for (p, point) in series.points.iter_mut().enumerate() {
            point.y = measured
                .iter()
                .map(|m| m.series[s].points[p].y)
                .sum::<f64>()
                / n;
        }
    }
    mean
}

/// Runs `measurement` over `sample`: its rankings on the ranking set, then every point on each
/// scored input the measurement's positions apply to (and on `on_screen`, the input the page
/// shows). The engine's variant is put back when it ends.
pub async fn run_sampled<E: Engine>(
    engine: &mut E,
    measurement: &Measurement,
    sample: &Sample,
    on_screen: Option<&[u32]>,
    progress: &mut impl Progress,
) -> std::result::Result<Outcome<SampleMeasured>, E::Error> {
    let previous = engine.variant().clone();
    let outcome = measure_sample(engine, measurement, sample, on_screen, progress).await;
    crate::engine::api::restore_variant(engine, &previous, outcome)
}

async fn measure_sample<E: Engine>(
    engine: &mut E,
    m: &Measurement,
    sample: &Sample,
    on_screen: Option<&[u32]>,
    progress: &mut impl Progress,
) -> std::result::Result<Outcome<SampleMeasured>, E::Error> {
    let config = engine.model().config.clone();
    let next = m.metric != Metric::Entropy;
    let scored: Vec<&Vec<u32>> = sample
        .scoring
        .iter()
        .filter(|t| !m.positions.select(t, next).is_empty())
        .collect();
    let on_screen = on_screen.filter(|t| !m.positions.select(t, next).is_empty());
    let runs = scored.len() + usize::from(on_screen.is_some());
    let points = plan(m, &config, &Rankings::placeholder(&config))
        .points
        .len();
    let mut counter = Counter {
        progress,
        done: 0,
        total: ranking_work(m, &config, sample.ranking.len()) + runs * (points + 1),
    };
    let Outcome::Done(rankings) = rank(engine, &sample.ranking, m, &mut counter).await? else {
        return Ok(Outcome::Cancelled);
    };
    let plan = plan(m, &config, &rankings);
    let ranking_name = if ranking_work(m, &config, 1) == 0 {
        "no inputs (this measurement ranks nothing)".to_string()
    } else {
        sample.ranking_name.clone()
    };
    // The input on screen is scored with the sample, last.
    let mut inputs: Vec<&[u32]> = scored.iter().map(|t| t.as_slice()).collect();
    inputs.extend(on_screen);
    let mut per_input = match score_plan(engine, &inputs, m, &plan, &mut counter).await? {
        Outcome::Done(measured) => measured,
        Outcome::Cancelled => return Ok(Outcome::Cancelled),
    };
    let on_screen = on_screen.and_then(|_| per_input.pop());
    counter.progress.go_on(Step {
        done: counter.total,
        total: counter.total,
    });
    let Some(first) = per_input.first().or(on_screen.as_ref()) else {
        // Nothing to score: an empty sample, reported as such by `summarise`.
        return Ok(Outcome::Done(SampleMeasured {
            per_input: Vec::new(),
            mean: Measured {
                x_label: String::new(),
                y_label: m.metric.name().into(),
                x_log: false,
                unmodified: 0.0,
                series: Vec::new(),
            },
            on_screen,
            scoring_name: sample.scoring_name.clone(),
            ranking_name: sample.ranking_name.clone(),
        }));
    };
    let mean = if per_input.is_empty() {
        first.clone()
    } else {
        mean_of(&per_input.iter().collect::<Vec<_>>())
    };
    Ok(Outcome::Done(SampleMeasured {
        per_input,
        mean,
        on_screen,
        scoring_name: sample.scoring_name.clone(),
        ranking_name,
    }))
}

/// One number a step reports, over the sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampledResult {
    pub label: String,
    /// Inputs scored.
    pub n: usize,
    /// The number on the sample's mean measurement.
    pub mean: f64,
    /// The 95 % percentile-bootstrap interval of `mean` (inputs resampled).
    pub low: f64,
    pub high: f64,
    /// The number on each input alone.
    pub values: Vec<f64>,
    /// Inputs on which the number alone lies in the claim's range.
    pub held: usize,
    /// The number on the input on screen.
    pub on_screen: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub verdict: Verdict,
    /// The verdict the lesson expects: "reproduced" unless it says otherwise (a control, or a
    /// claim its text says this model does not reproduce).
    pub expected: Verdict,
    /// What the paper states, with its condition.
    pub paper: Option<String>,
}

/// The sorted percentile `q` (0..1) of `sorted`, by linear interpolation.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (i, frac) = (at.floor() as usize, at - at.floor());
    if i + 1 < sorted.len() {
        sorted[i] * (1.0 - frac) + sorted[i + 1] * frac
    } else {
        sorted[i]
    }
}

/// The numbers `specs` name, over the sample: each on the mean measurement with a 95 % bootstrap
/// interval (the inputs resampled with replacement [`BOOTSTRAP_RESAMPLES`] times, seeded, the
/// number recomputed on each resample's mean), each input's own value, and the verdict. A
/// number that needs the extreme of a series takes it on the mean curve, so "the largest loss
/// over heads" is the head whose mean loss is largest.
pub fn summarise(
    measured: &SampleMeasured,
    specs: &[ResultSpec],
    paper: Option<&str>,
    seed: u64,
) -> std::result::Result<Vec<SampledResult>, String> {
    let n = measured.per_input.len();
    if n == 0 {
        return Err("no input of the sample has a position this measurement scores".into());
    }
    // The resamples' mean measurements, once for every number.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let resampled: Vec<Measured> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let chosen: Vec<&Measured> = (0..n)
                .map(|_| &measured.per_input[(rng.next_u64() % n as u64) as usize])
                .collect();
            mean_of(&chosen)
        })
        .collect();
    specs
        .iter()
        .map(|spec| {
            let mean = measured.mean.result(spec)?;
            let values = measured
                .per_input
                .iter()
                .map(|m| m.result(spec))
                .collect::<std::result::Result<Vec<f64>, String>>()?;
            let mut boot = resampled
                .iter()
                .map(|m| m.result(spec))
                .collect::<std::result::Result<Vec<f64>, String>>()?;
            boot.sort_by(f64::total_cmp);
            let (low, high) = (percentile(&boot, 0.025), percentile(&boot, 0.975));
            Ok(SampledResult {
                label: spec.label.clone(),
                n,
                mean,
                low,
                high,
                held: values.iter().filter(|&&v| spec.holds(v)).count(),
                values,
                on_screen: measured
                    .on_screen
                    .as_ref()
                    .map(|m| m.result(spec))
                    .transpose()?,
                min: spec.min,
                max: spec.max,
                verdict: Verdict::of(low, high, spec.min, spec.max),
                expected: spec.expect.unwrap_or(Verdict::Reproduced),
                paper: spec.paper.clone().or(paper.map(String::from)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::api::{now, unwatched};
    use crate::lesson::{MeasuredPoint, Pick, Series};
    use crate::{CpuEngine, Model, ModelConfig};

    fn measured(unmodified: f64, ys: &[f64]) -> Measured {
        Measured {
            x_label: "x".into(),
            y_label: "y".into(),
            x_log: false,
            unmodified,
            series: vec![Series {
                name: "s".into(),
                points: ys
                    .iter()
                    .enumerate()
                    .map(|(i, &y)| MeasuredPoint {
                        label: format!("p{i}"),
                        x: i as f64,
                        y,
                    })
                    .collect(),
            }],
        }
    }

    fn spec(min: Option<f64>, max: Option<f64>) -> ResultSpec {
        ResultSpec {
            label: "drop".into(),
            value: Pick::Point("unmodified".into()),
            minus: Some(Pick::At("s".into(), 0.0)),
            min,
            max,
            paper: None,
            relative: false,
            expect: None,
        }
    }

    fn sample_of(values: &[f64]) -> SampleMeasured {
        let per_input: Vec<Measured> = values.iter().map(|&v| measured(1.0, &[1.0 - v])).collect();
        SampleMeasured {
            mean: mean_of(&per_input.iter().collect::<Vec<_>>()),
            per_input,
            on_screen: Some(measured(1.0, &[1.0])),
            scoring_name: "test".into(),
            ranking_name: "none".into(),
        }
    }

    #[test]
    fn a_claim_that_holds_on_one_input_only_is_not_reproduced() {
        // The value is 0 on the input on screen and on one of 32 inputs, 0.3 on the rest: a
        // claim of "at most 0.1" holds on the screen's input but not over the sample.
        let mut values = vec![0.3; 32];
        values[0] = 0.0;
        let m = sample_of(&values);
        let r = &summarise(&m, &[spec(None, Some(0.1))], None, 0).unwrap()[0];
        assert_eq!(r.on_screen, Some(0.0));
        assert_eq!(r.held, 1);
        assert_eq!(r.verdict, Verdict::NotReproduced);
        assert!((r.mean - 0.3 * 31.0 / 32.0).abs() < 1e-12);
        // Half the inputs near the bound: the interval straddles it.
        let values: Vec<f64> = (0..32)
            .map(|i| if i % 2 == 0 { 0.0 } else { 0.2 })
            .collect();
        let r = &summarise(&sample_of(&values), &[spec(None, Some(0.1))], None, 0).unwrap()[0];
        assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
        assert!(r.low < 0.1 && r.high > 0.1);
        // Every input well inside.
        let r = &summarise(&sample_of(&[0.01; 32]), &[spec(None, Some(0.1))], None, 0).unwrap()[0];
        assert_eq!(r.verdict, Verdict::Reproduced);
        assert!((r.low - 0.01).abs() < 1e-12 && (r.high - 0.01).abs() < 1e-12);
    }

    #[test]
    fn the_interval_covers_the_mean_and_narrows_with_more_inputs() {
        let spread = |n: usize| {
            let values: Vec<f64> = (0..n).map(|i| (i % 7) as f64 / 7.0).collect();
            let r = summarise(&sample_of(&values), &[spec(Some(0.0), None)], None, 3).unwrap();
            assert!(r[0].low <= r[0].mean && r[0].mean <= r[0].high);
            r[0].high - r[0].low
        };
        assert!(spread(200) < spread(20) * 0.5);
        assert_eq!(
            Verdict::of(0.2, 0.3, Some(0.0), Some(1.0)),
            Verdict::Reproduced
        );
        assert_eq!(
            Verdict::of(-0.2, 0.3, Some(0.0), None),
            Verdict::Inconclusive
        );
        assert_eq!(
            Verdict::of(1.2, 1.3, None, Some(1.0)),
            Verdict::NotReproduced
        );
    }

    #[test]
    fn rankings_come_from_the_ranking_set_and_every_input_is_scored_with_one_plan() {
        let config = ModelConfig {
            mlp: true,
            ..ModelConfig::tiny(30)
        };
        let mut engine = CpuEngine::new(Model::random(config, 5, 0.4).unwrap()).unwrap();
        let m: Measurement = serde_json::from_str(
            r#"{"experiment": {"kind": "ablate", "sets": [{"least_important": 2}]}, "metric": "loss"}"#,
        )
        .unwrap();
        let sample = Sample {
            scoring_name: "a".into(),
            scoring: vec![
                vec![3, 1, 4, 1, 5, 9, 2, 6],
                vec![2, 7, 1, 8, 2, 8],
                vec![1],
            ],
            ranking_name: "b".into(),
            ranking: vec![vec![1, 4, 1, 4, 2, 1, 3, 5], vec![5, 3, 5, 8, 9, 7]],
        };
        let on_screen = [9, 8, 7, 6, 5];
        let mut steps = Vec::new();
        let mut watch = |s: Step| {
            steps.push(s);
            true
        };
        let got = now(run_sampled(
            &mut engine,
            &m,
            &sample,
            Some(&on_screen),
            &mut watch,
        ))
        .unwrap()
        .done()
        .unwrap();
        // The one-token input has no next token to score: left out.
        assert_eq!(got.per_input.len(), 2);
        let last = steps.last().unwrap();
        assert_eq!(last.done, last.total);
        assert!(steps.windows(2).all(|w| w[0].done <= w[1].done));
        // The heads ablated are the same on every input: the two with the least summed loss
        // increase over the ranking set.
        let labels: Vec<&str> = got
            .per_input
            .iter()
            .chain(&got.on_screen)
            .map(|m| m.series[0].points[0].label.as_str())
            .collect();
        assert!(labels.windows(2).all(|w| w[0] == w[1]), "{labels:?}");
        let mut total = [0.0; 8];
        for tokens in &sample.ranking {
            let ranked = now(crate::head_importance(
                &mut engine,
                &crate::Variant::default(),
                tokens,
                crate::AblationMode::Zero,
                &mut unwatched(),
            ))
            .unwrap()
            .done()
            .unwrap();
            for h in ranked {
                total[h.layer * 4 + h.head] += h.loss_increase;
            }
        }
        let mut order: Vec<usize> = (0..8).collect();
        order.sort_by(|&a, &b| total[b].total_cmp(&total[a]));
        let least: Vec<String> = order[6..]
            .iter()
            .rev()
            .map(|&i| format!("L{} H{}", i / 4, i % 4))
            .collect();
        assert_eq!(labels[0], format!("{}: least important", least.join(", ")));
        // The mean is the mean of the inputs' values.
        let y = |m: &Measured| m.series[0].points[0].y;
        let mean = (y(&got.per_input[0]) + y(&got.per_input[1])) / 2.0;
        assert!((y(&got.mean) - mean).abs() < 1e-12);
    }

    #[test]
    fn task_and_text_samples_are_disjoint_and_fixed() {
        let a = Sample::from_task(Task::Sort, 32, 8, 0).unwrap();
        assert_eq!((a.scoring.len(), a.ranking.len()), (32, 8));
        assert_eq!(a, Sample::from_task(Task::Sort, 32, 8, 0).unwrap());
        assert_ne!(
            a.scoring,
            Sample::from_task(Task::Sort, 32, 8, 1).unwrap().scoring
        );
        assert!(Sample::from_task(Task::Shakespeare, 32, 8, 0).is_none());
        let text = "To be, or not to be, that is the question: ".repeat(80);
        let tokenizer = Tokenizer::from_spec(crate::TokenizerSpec::Char {
            vocab: {
                let mut v: Vec<String> = text.chars().map(String::from).collect();
                v.sort();
                v.dedup();
                v
            },
        })
        .unwrap();
        let t = Sample::from_text(std::slice::from_ref(&text), &tokenizer, 64, 20, 8, 0).unwrap();
        assert_eq!((t.scoring.len(), t.ranking.len()), (20, 8));
        assert!(t.scoring.iter().all(|w| w.len() == 64));
        let e = Sample::from_text(&[text[..500].to_string()], &tokenizer, 64, 20, 8, 0);
        assert!(e.unwrap_err().to_string().contains("windows"));
    }
}
