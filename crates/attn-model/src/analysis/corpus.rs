//! Head metrics over a corpus: what each head does on average over many windows of text (or a
//! task's sequences), not on the one input on screen — the per-head dashboard HeadVis and
//! Neuronpedia precompute on servers, here for whatever model is loaded.
//!
//! Every score is a mean over every query position `i ≥ 1` of every window (pooled, not a mean
//! of window means), from the attention maps of the unmodified forward:
//!
//! - **self** `A[i, i]`, **previous-token** `A[i, i−1]` and **first-token** (sink) `A[i, 0]` —
//!   TransformerLens' definitions, as [`crate::roles::roles_on_input`] computes them on one input;
//! - **induction** on the corpus: over the positions whose token occurred before, `A[i, j+1]`
//!   with `j` its latest earlier occurrence (the token that followed it then); `None` when no
//!   token of the corpus repeats within a window. Beside it, **induction on the probe**: the
//!   same score on sequences of random tokens repeated once ([`crate::roles::head_roles`]);
//! - **entropy** `−Σ_k A[i,k] ln A[i,k] / ln(keys i may see)`: 1 spreads evenly, 0 picks one key;
//! - **query–key distance** `Σ_k A[i,k] |i − k|` (how far back the head looks, in tokens), its
//!   mean and its standard deviation over the queries.
//!
//! For each metric the five (window, position) pairs where a query's value is largest are kept
//! (from position [`TOP_FROM`] on), so a head's map can be opened where it does its thing.

use serde::{Deserialize, Serialize};

use crate::engine::api::{Engine, Outcome, Progress, Readback, Step};
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;
use crate::training::tasks::Task;

/// Windows a corpus has by default, and tokens in each (cut to the model's context).
pub const CORPUS_WINDOWS: usize = 200;
pub const WINDOW_TOKENS: usize = 128;
/// Positions kept per head and metric where the metric is largest.
pub const TOP: usize = 5;
/// The first query position the top lists consider: before it a query sees too few keys for its
/// largest values to say anything (at position 1 the previous and the first token are one key).
pub const TOP_FROM: usize = 4;
/// The seed of the repeated-random-token probe.
pub const PROBE_SEED: u64 = 0;

/// A per-query metric of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadMetric {
    SelfAttention,
    PreviousToken,
    FirstToken,
    Induction,
    Entropy,
    Distance,
}

impl HeadMetric {
    pub const ALL: [HeadMetric; 6] = [
        HeadMetric::SelfAttention,
        HeadMetric::PreviousToken,
        HeadMetric::FirstToken,
        HeadMetric::Induction,
        HeadMetric::Entropy,
        HeadMetric::Distance,
    ];

    /// The metric's key in the JSON (`self`, `previous_token`, …).
    pub fn key(self) -> &'static str {
        match self {
            HeadMetric::SelfAttention => "self",
            HeadMetric::PreviousToken => "previous_token",
            HeadMetric::FirstToken => "first_token",
            HeadMetric::Induction => "induction",
            HeadMetric::Entropy => "entropy",
            HeadMetric::Distance => "distance",
        }
    }
}

/// Windows of token ids to measure heads over, with a sentence saying what they are.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadCorpus {
    pub name: String,
    pub windows: Vec<Vec<u32>>,
}

impl HeadCorpus {
    /// `texts` tokenised and cut into consecutive windows of `window_tokens` tokens (the last,
    /// shorter piece of each text dropped); `windows` of them spread evenly over the whole, or
    /// all of them when there are fewer.
    pub fn from_text(
        name: &str,
        texts: &[String],
        tokenizer: &Tokenizer,
        window_tokens: usize,
        windows: usize,
    ) -> Result<HeadCorpus> {
        let window_tokens = window_tokens.max(2);
        let mut all: Vec<Vec<u32>> = Vec::new();
        for text in texts {
            let tokens = tokenizer.encode(text)?;
            all.extend(tokens.chunks_exact(window_tokens).map(<[u32]>::to_vec));
        }
        if all.is_empty() {
            return Err(ModelError::Input(format!(
                "the text holds no window of {window_tokens} tokens"
            )));
        }
        let picked: Vec<Vec<u32>> = if all.len() <= windows {
            all
        } else {
            (0..windows)
                .map(|i| all[i * all.len() / windows].clone())
                .collect()
        };
        Ok(HeadCorpus {
            name: format!(
                "{} windows of {window_tokens} tokens of {name}",
                picked.len()
            ),
            windows: picked,
        })
    }

    /// The first `windows` sequences of a synthetic task's held-out set; `None` for a task
    /// whose inputs are text.
    pub fn from_task(task: Task, windows: usize) -> Option<HeadCorpus> {
        let data = task.synthetic_data()?;
        let held_out = data.held_out();
        let picked: Vec<Vec<u32>> = held_out
            .iter()
            .take(windows)
            .map(|s| s.tokens.clone())
            .collect();
        Some(HeadCorpus {
            name: format!(
                "{} sequences of the {} task's held-out set",
                picked.len(),
                task.name()
            ),
            windows: picked,
        })
    }
}

/// A query where a metric is large: the metric (its key), the window, the query position in
/// it, and the value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopPosition {
    pub metric: String,
    pub window: usize,
    pub position: usize,
    pub value: f64,
}

/// One head's metrics over the corpus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadStats {
    pub layer: usize,
    pub head: usize,
    #[serde(rename = "self")]
    pub self_attention: f64,
    pub previous_token: f64,
    pub first_token: f64,
    /// Over the corpus's repeated tokens; `None` when none repeats within a window.
    pub induction: Option<f64>,
    /// On sequences of random tokens repeated once.
    pub induction_probe: f64,
    pub entropy: f64,
    pub distance_mean: f64,
    pub distance_std: f64,
    /// For each metric in turn, the queries where its value is largest, largest first.
    pub top: Vec<TopPosition>,
}

impl HeadStats {
    /// Where metric `key` is largest, largest first.
    pub fn top_of<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a TopPosition> + 'a {
        self.top.iter().filter(move |t| t.metric == key)
    }
}

/// Every head's metrics over a corpus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorpusHeads {
    /// What the corpus is.
    pub corpus: String,
    pub windows: usize,
    /// Query positions scored per head (every `i ≥ 1` of every window).
    pub queries: usize,
    /// Positions the corpus induction score is over.
    pub repeats: usize,
    /// What the induction probe is.
    pub probe: String,
    pub heads: Vec<HeadStats>,
    /// The windows' token ids (as measured, cut to the context), which `top` points into.
    pub window_tokens: Vec<Vec<u32>>,
}

/// Running sums of one head.
#[derive(Clone, Default)]
struct Sums {
    values: [f64; 6],
    counts: [usize; 6],
    distance_squares: f64,
    top: [Vec<TopPosition>; 6],
}

impl Sums {
    fn add(&mut self, metric: HeadMetric, window: usize, position: usize, value: f64) {
        let m = metric as usize;
        self.values[m] += value;
        self.counts[m] += 1;
        if position < TOP_FROM {
            return;
        }
        let top = &mut self.top[m];
        if top.len() < TOP || value > top[TOP - 1].value {
            let at = top.partition_point(|t| t.value >= value);
            top.insert(
                at,
                TopPosition {
                    metric: metric.key().to_string(),
                    window,
                    position,
                    value,
                },
            );
            top.truncate(TOP);
        }
    }

    fn mean(&self, metric: HeadMetric) -> Option<f64> {
        let m = metric as usize;
        (self.counts[m] > 0).then(|| self.values[m] / self.counts[m] as f64)
    }
}

/// Measures every head of the engine's current variant over `corpus` (one forward per window,
/// reading back the attention maps), and the induction probe; progress is one step per forward.
pub async fn corpus_heads<E: Engine>(
    engine: &mut E,
    corpus: &HeadCorpus,
    progress: &mut impl Progress,
) -> std::result::Result<Outcome<CorpusHeads>, E::Error> {
    let c = engine.model().config.clone();
    let causal = c.causal;
    let heads = c.n_layer * c.n_head;
    let probe_sequences = crate::roles::PROBE_SEQUENCES;
    let total = corpus.windows.len() + probe_sequences;
    let mut sums = vec![Sums::default(); heads];
    let (mut queries, mut repeats) = (0, 0);
    for (w, window) in corpus.windows.iter().enumerate() {
        let tokens = &window[..window.len().min(c.n_ctx)];
        let output = engine.forward(tokens, &Readback::attention_maps()).await?;
        let t_len = output.seq_len;
        // The latest earlier position of each position's token.
        let earlier: Vec<Option<usize>> = (0..t_len)
            .map(|i| (0..i).rev().find(|&j| tokens[j] == tokens[i]))
            .collect();
        queries += t_len.saturating_sub(1);
        repeats += earlier.iter().skip(1).filter(|e| e.is_some()).count();
        for layer in 0..c.n_layer {
            for head in 0..c.n_head {
                let s = &mut sums[layer * c.n_head + head];
                let map = output.attention_map(layer, head);
                for i in 1..t_len {
                    let row = &map[i * t_len..(i + 1) * t_len];
                    s.add(HeadMetric::SelfAttention, w, i, row[i] as f64);
                    s.add(HeadMetric::PreviousToken, w, i, row[i - 1] as f64);
                    s.add(HeadMetric::FirstToken, w, i, row[0] as f64);
                    if let Some(j) = earlier[i] {
                        s.add(HeadMetric::Induction, w, i, row[j + 1] as f64);
                    }
                    let keys = if causal { i + 1 } else { t_len };
                    let entropy: f64 = row[..keys]
                        .iter()
                        .filter(|&&p| p > 0.0)
                        .map(|&p| -(p as f64) * (p as f64).ln())
                        .sum();
                    s.add(HeadMetric::Entropy, w, i, entropy / (keys as f64).ln());
                    let distance: f64 = row[..keys]
                        .iter()
                        .enumerate()
                        .map(|(k, &p)| p as f64 * i.abs_diff(k) as f64)
                        .sum();
                    s.add(HeadMetric::Distance, w, i, distance);
                    s.distance_squares += distance * distance;
                }
            }
        }
        if !progress.go_on(Step { done: w + 1, total }) {
            return Ok(Outcome::Cancelled);
        }
    }
    let probe = crate::roles::head_roles(engine, PROBE_SEED).await?;
    progress.go_on(Step { done: total, total });
    let stats = sums
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let distance = s.mean(HeadMetric::Distance).unwrap_or(0.0);
            let n = s.counts[HeadMetric::Distance as usize].max(1) as f64;
            HeadStats {
                layer: i / c.n_head,
                head: i % c.n_head,
                self_attention: s.mean(HeadMetric::SelfAttention).unwrap_or(0.0),
                previous_token: s.mean(HeadMetric::PreviousToken).unwrap_or(0.0),
                first_token: s.mean(HeadMetric::FirstToken).unwrap_or(0.0),
                induction: s.mean(HeadMetric::Induction),
                induction_probe: probe[i].induction as f64,
                entropy: s.mean(HeadMetric::Entropy).unwrap_or(0.0),
                distance_mean: distance,
                distance_std: (s.distance_squares / n - distance * distance)
                    .max(0.0)
                    .sqrt(),
                top: HeadMetric::ALL
                    .iter()
                    .flat_map(|&m| s.top[m as usize].clone())
                    .collect(),
            }
        })
        .collect();
    Ok(Outcome::Done(CorpusHeads {
        corpus: corpus.name.clone(),
        windows: corpus.windows.len(),
        queries,
        repeats,
        probe: format!(
            "{probe_sequences} sequences of random tokens, each repeated once (seed {PROBE_SEED})"
        ),
        heads: stats,
        window_tokens: corpus
            .windows
            .iter()
            .map(|w| w[..w.len().min(c.n_ctx)].to_vec())
            .collect(),
    }))
}
