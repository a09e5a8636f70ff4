//! Lessons: short guided tours of one research claim each, written as data (one JSON file per
//! lesson, `docs/LESSONS.md` has the format), and the measurements they run on whatever engine the
//! page uses. A step sets the page (model, input, variant), asks the learner to predict, runs one
//! [`Measurement`] — a series of forwards, each a variant of the unmodified model — and compares
//! the measured number with the range the lesson's text claims.

mod measure;
mod report;
mod sample;

pub use measure::{layer_similarity, run_measurement};
#[cfg(not(target_arch = "wasm32"))]
pub use report::run_lesson;
pub use report::{
    is_language_model, is_language_model_of, model_task, reads_held_out_text, report_step,
    sample_for, special_tokens, step_fits, untrained_twin, uptraining, LessonReport, StepReport,
    SAMPLE_SEED,
};
pub use sample::{
    run_sampled, summarise, Sample, SampleMeasured, SampledResult, BOOTSTRAP_RESAMPLES,
    RANKING_INPUTS, REPEATED_HALF, TASK_INPUTS, TEXT_INPUTS, TEXT_WINDOW,
};

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::variant::{AblationMode, Kernel, Variant};

/// One lesson: a title, where its claim comes from, and its steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    pub id: String,
    pub title: String,
    /// One or two sentences: what the learner will see.
    pub summary: String,
    /// The research the claim comes from (authors, title, year).
    pub source: String,
    /// The parts of the page the lesson uses besides itself, kept in `embed=1` mode: any of
    /// `input`, `controls`, `output`, `cost`, `heatmaps`, `importance`, `analysis`.
    #[serde(default)]
    pub uses: Vec<String>,
    pub steps: Vec<LessonStep>,
}

/// What one step shows, sets and measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonStep {
    pub title: String,
    /// The explanation (plain text; blank lines separate paragraphs).
    pub text: String,
    /// The built-in model the step runs on (its id in the model list).
    pub model: String,
    /// The step's claim is about language models in general, and its measurement fits any of
    /// them (picks relative to the model's size, no token ids of its own): the page runs it on
    /// a language model loaded from disk when one is open, and `attn lesson ID --model PATH`
    /// runs only such steps.
    #[serde(default)]
    pub any_language_model: bool,
    /// What the step is measured over: the model's own kind of input when absent.
    #[serde(default)]
    pub sample: SampleKind,
    /// The input; the model's first example when absent.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Run on the model before training instead: its architecture and tokenizer with the
    /// trainer's initial weights (seed 0) — a control for claims about what training finds.
    #[serde(default)]
    pub untrained: bool,
    /// Uptrain first: the step measures its model converted (`variant` built into the weights)
    /// and fine-tuned for a fraction of the steps it was trained with — Ainslie et al.'s
    /// conversion followed by uptraining. Models of a built-in synthetic task only.
    #[serde(default)]
    pub uptrain: Option<Uptrain>,
    /// The page's variant during the step (the unmodified model when absent).
    #[serde(default)]
    pub variant: Variant,
    /// The question the learner answers before measuring.
    #[serde(default)]
    pub ask: Option<String>,
    #[serde(default)]
    pub measure: Option<Measurement>,
    /// The numbers the step reports from the measurement, each with the range its claim holds in.
    #[serde(default)]
    pub results: Vec<ResultSpec>,
    /// What the paper reports, shown beside the measured number.
    #[serde(default)]
    pub reported: Option<String>,
}

/// A variant built into the weights and fine-tuned in ([`LessonStep::uptrain`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uptrain {
    /// What is built in (e.g. `{"kv_groups": 2}`: key/value heads mean-pooled into two).
    pub variant: Variant,
    /// The fraction of the steps the task's recipe trains for (e.g. 0.05: 200 of the sort
    /// model's 4000).
    pub fraction: f64,
}

/// The inputs a step's measurement runs over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleKind {
    /// The model's own kind: its task's held-out set, or windows of held-out text.
    #[default]
    Model,
    /// Sequences of random tokens repeated once (the second half copies the first): what
    /// induction heads are found and tested on in any language model, whatever its tokenizer
    /// and training text.
    RepeatedRandomTokens,
}

impl LessonStep {
    /// The step as it runs on a model other than its built-in one: the numbers keep their
    /// claimed ranges, but what the lesson expects of its own model (`expect`) says nothing
    /// about another, so every claim is expected to hold.
    pub fn on_another_model(&self) -> LessonStep {
        let mut step = self.clone();
        for r in &mut step.results {
            r.expect = None;
        }
        step
    }
}

/// An experiment, the metric it measures and the positions it scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    pub experiment: Experiment,
    pub metric: Metric,
    #[serde(default)]
    pub positions: Positions,
    /// How ablated heads are replaced (zeros unless `"mean"`).
    #[serde(default)]
    pub ablation: AblationMode,
    /// Ranges of the metric to shade and name on the plot (e.g. the regimes of β).
    #[serde(default)]
    pub bands: Vec<Band>,
}

/// A named range of the metric, shaded on the plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

/// A variant with a name, for [`Experiment::Variants`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedVariant {
    pub label: String,
    pub variant: Variant,
    /// The series the point belongs to (`variants` when absent): points of one series can be
    /// averaged by a result (`{"mean": series}`), e.g. one setting over several seeds.
    #[serde(default)]
    pub series: Option<String>,
}

/// What a measurement varies. Every experiment also measures the unmodified model (the point
/// labelled `unmodified`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Experiment {
    /// Any variants, one point each (in order).
    Variants { variants: Vec<NamedVariant> },
    /// Ablate each set of heads (one point per set, in order).
    Ablate { sets: Vec<HeadSet> },
    /// Ablate every head on its own (one point per head).
    EachHead,
    /// The unmodified model's metric read from each layer alone (one point per layer; the
    /// entropy metric only).
    EachLayer,
    /// The logit lens: the unmodified model's residual stream before each layer (x = the
    /// layer, 0 the embeddings) and after the last (x = the number of layers: the model's
    /// output), read through the final norm and the unembedding and scored as the output
    /// would be (`loss`, `accuracy`, or `kl` to the output). Series `logit lens`.
    LogitLens,
    /// One setting of the variant at several values.
    Sweep { setting: Setting, values: Vec<f64> },
    /// Ablate more and more heads in each order, `step` at a time: the metric against the
    /// number of heads kept.
    PruneHeads {
        orders: Vec<HeadOrder>,
        #[serde(default = "one")]
        step: usize,
    },
    /// Drop more and more attention layers in each order: the metric against layers dropped.
    DropLayers { orders: Vec<LayerOrder> },
    /// Every `kv_groups` that divides the key/value heads and halving series of `kv_rank` and
    /// `kv_pca`: the metric against KV-cache bytes per token.
    KvCache,
    /// Generation from a KV cache: the unmodified model continues each input greedily by
    /// `tokens` tokens; then each variant runs over the same text one position at a time from
    /// its own cache (prefill of the input, a decode step per token). The metric (`kl` only)
    /// compares its next-token distributions along the continuation with the unmodified
    /// model's; x is the bytes its cache holds at the end of the text, as the engine reports
    /// them (or, where the engine recomputes that variant, the per-token formula times the
    /// length).
    Decode {
        variants: Vec<NamedVariant>,
        tokens: usize,
    },
}

fn one() -> usize {
    1
}

/// A set of heads to ablate together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HeadSet {
    /// These `[layer, head]` pairs.
    Heads(Vec<[usize; 2]>),
    /// The `n` heads with the highest score.
    Top { score: HeadScore, n: usize },
    /// The `n` heads the importance ranking puts last.
    LeastImportant(usize),
    /// `n` heads drawn at random (seeded) from those no earlier set of the experiment ablates.
    Random { n: usize, seed: u64 },
}

/// What ranks heads for [`HeadSet::Top`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadScore {
    /// Induction score on this input (`roles_on_input`).
    Induction,
    /// Previous-token score on this input.
    PreviousToken,
    /// Duplicate-token score on this input.
    DuplicateToken,
    /// Copying score of the OV circuit (from the weights).
    Copying,
    /// Loss increase when ablated alone (`head_importance`).
    Importance,
}

impl HeadScore {
    fn name(self) -> &'static str {
        match self {
            HeadScore::Induction => "induction",
            HeadScore::PreviousToken => "previous-token",
            HeadScore::DuplicateToken => "duplicate-token",
            HeadScore::Copying => "copying",
            HeadScore::Importance => "importance",
        }
    }
}

/// The order heads are pruned in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadOrder {
    /// Least important first (by `head_importance`).
    Importance,
    /// A seeded random order.
    Random(u64),
}

/// The order attention layers are dropped in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerOrder {
    /// The layer-drop criterion: highest cosine similarity between the attention sub-layer's
    /// input and output residual first (the layer that changes the stream least).
    Similarity,
    /// Lowest similarity first: the criterion turned around.
    ReverseSimilarity,
}

/// A variant setting a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    Beta,
    RandomFeatures,
    KvGroups,
    KvRank,
    KvPca,
    RouteHeads,
    TopK,
    Window,
}

impl Setting {
    /// The variant with this setting at `value`.
    pub fn variant(self, value: f64) -> Variant {
        let n = value.round().max(1.0) as usize;
        let mut v = Variant::default();
        match self {
            Setting::Beta => v.beta = Some(value as f32),
            Setting::RandomFeatures => {
                v.kernel = Some(Kernel::RandomFeatures {
                    random_features: n,
                    seed: 0,
                    iid: false,
                })
            }
            Setting::KvGroups => v.kv_groups = Some(n),
            Setting::KvRank => v.kv_rank = Some(n),
            Setting::KvPca => v.kv_pca = Some(n),
            Setting::RouteHeads => v.route_heads = Some(n),
            Setting::TopK => v.top_k = Some(n),
            Setting::Window => v.window = Some(n),
        }
        v
    }

    /// The axis name.
    pub fn name(self) -> &'static str {
        match self {
            Setting::Beta => "inverse temperature β",
            Setting::RandomFeatures => "random features m",
            Setting::KvGroups => "key/value heads",
            Setting::KvRank => "joint K/V rank",
            Setting::KvPca => "PCA components per K/V head",
            Setting::RouteHeads => "heads per token (routing proxy)",
            Setting::TopK => "keys kept (top-k)",
            Setting::Window => "window",
        }
    }

    /// Whether the values span orders of magnitude (drawn on a log axis).
    pub fn is_logarithmic(self) -> bool {
        matches!(self, Setting::Beta | Setting::RandomFeatures)
    }
}

/// What each forward is scored by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction of scored positions whose most probable next token is the input's next token.
    Accuracy,
    /// Mean next-token loss (nats) over scored positions.
    Loss,
    /// Mean `KL(unmodified ‖ variant)` (nats) over scored positions.
    Kl,
    /// Mean attention entropy over heads and scored positions, as a fraction of the most it can
    /// be (`ln` of the number of keys a query may see): 1 averages uniformly, 0 picks one key.
    Entropy,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Loss => "loss (nats)",
            Metric::Kl => "KL to the unmodified model (nats)",
            Metric::Entropy => "attention entropy / maximum",
        }
    }
}

/// Which positions a metric scores (position `t` predicts token `t + 1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// Every position that has a next token (the last one too for KL and entropy).
    #[default]
    All,
    /// Positions `t ≥ n`.
    From(usize),
    /// Positions from the first occurrence of this token id on (e.g. a task's separator: the
    /// answer after it, whatever the length of what comes before).
    FromToken(u32),
    /// Positions whose next token can be copied from an earlier occurrence of the current one:
    /// the token after the latest earlier occurrence of `tokens[t]` is `tokens[t + 1]`.
    Repeats,
}

impl Positions {
    /// The positions scored in a `tokens.len()`-token input; `next` when the metric needs the
    /// next token.
    pub fn select(self, tokens: &[u32], next: bool) -> Vec<usize> {
        let end = if next {
            tokens.len().saturating_sub(1)
        } else {
            tokens.len()
        };
        match self {
            Positions::All => (0..end).collect(),
            Positions::From(n) => (n.min(end)..end).collect(),
            Positions::FromToken(id) => match tokens.iter().position(|&t| t == id) {
                Some(n) => (n.min(end)..end).collect(),
                None => Vec::new(),
            },
            Positions::Repeats => (0..tokens.len().saturating_sub(1))
                .filter(|&t| {
                    (0..t)
                        .rev()
                        .find(|&s| tokens[s] == tokens[t])
                        .is_some_and(|s| tokens[s + 1] == tokens[t + 1])
                })
                .collect(),
        }
    }
}

/// The number a step reports: `value − minus` (or relative to `minus`), and the range the
/// lesson's claim holds in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultSpec {
    /// What the number is, e.g. "accuracy lost".
    pub label: String,
    pub value: Pick,
    #[serde(default)]
    pub minus: Option<Pick>,
    /// Report `(value − minus) / minus`: the change as a fraction of `minus` (e.g. 0.05 is
    /// 5 % more loss).
    #[serde(default)]
    pub relative: bool,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// The paper's sentence and number the range comes from, with its condition (the step's
    /// `reported` when absent).
    #[serde(default)]
    pub paper: Option<String>,
    /// The verdict the lesson expects when it is not "reproduced" — a control that must not
    /// show the effect, or a claim the lesson's text says this model does not reproduce (and
    /// why).
    #[serde(default)]
    pub expect: Option<Verdict>,
}

/// Whether a claim was reproduced over the sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The whole 95 % interval lies in the claim's range.
    #[serde(rename = "reproduced")]
    Reproduced,
    /// The whole interval lies outside it.
    #[serde(rename = "not reproduced")]
    NotReproduced,
    /// The interval straddles an end of the range.
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Verdict {
    /// The verdict for an interval `[low, high]` against `[min, max]` (either end open).
    pub fn of(low: f64, high: f64, min: Option<f64>, max: Option<f64>) -> Verdict {
        let inside = min.is_none_or(|a| low >= a) && max.is_none_or(|b| high <= b);
        let outside = min.is_some_and(|a| high < a) || max.is_some_and(|b| low > b);
        if inside {
            Verdict::Reproduced
        } else if outside {
            Verdict::NotReproduced
        } else {
            Verdict::Inconclusive
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One number out of a measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Pick {
    /// The point with this label (`unmodified` is always there).
    Point(String),
    /// The lowest value of a series.
    Lowest(String),
    /// The highest value of a series.
    Highest(String),
    /// The x of the point with this label (`unmodified` where a curve starts or ends at it):
    /// e.g. the cache bytes a variant holds.
    X(String),
    /// The mean of a series' values (e.g. over the seeds of a random draw).
    Mean(String),
    /// A series' value at `x`.
    At(String, f64),
    /// A series' value at the point whose x is nearest `fraction` of the series' largest x
    /// (ties to the larger x): e.g. half the layers of any model, `["by similarity", 0.5]`.
    AtFraction(String, f64),
}

/// A measured point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasuredPoint {
    pub label: String,
    pub x: f64,
    pub y: f64,
}

/// A named line of points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<MeasuredPoint>,
}

/// What a measurement found: the reference (unmodified) value and the series, with axis names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub x_label: String,
    pub y_label: String,
    /// Draw x on a log scale.
    pub x_log: bool,
    /// The metric of the unmodified model.
    pub unmodified: f64,
    pub series: Vec<Series>,
}

impl Measured {
    fn points(&self) -> impl Iterator<Item = (&Series, &MeasuredPoint)> {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().map(move |p| (s, p)))
    }

    /// One number out of the measurement, or why it is not there.
    pub fn pick(&self, pick: &Pick) -> std::result::Result<f64, String> {
        let series = |name: &str| {
            self.series
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("no series called {name:?}"))
        };
        let ys = |name: &str| series(name).map(|s| s.points.iter().map(|p| p.y));
        match pick {
            Pick::Point(label) if label == "unmodified" => Ok(self.unmodified),
            Pick::Point(label) => self
                .points()
                .find(|(_, p)| &p.label == label)
                .map(|(_, p)| p.y)
                .ok_or_else(|| format!("no point labelled {label:?}")),
            Pick::Lowest(name) => Ok(ys(name)?.fold(f64::INFINITY, f64::min)),
            Pick::Highest(name) => Ok(ys(name)?.fold(f64::NEG_INFINITY, f64::max)),
            Pick::X(label) => self
                .points()
                .find(|(_, p)| &p.label == label)
                .map(|(_, p)| p.x)
                .ok_or_else(|| format!("no point labelled {label:?}")),
            Pick::Mean(name) => {
                let values: Vec<f64> = ys(name)?.collect();
                Ok(values.iter().sum::<f64>() / values.len().max(1) as f64)
            }
            Pick::At(name, x) => series(name)?
                .points
                .iter()
                .find(|p| (p.x - x).abs() < 1e-9)
                .map(|p| p.y)
                .ok_or_else(|| format!("series {name:?} has no point at {x}")),
            Pick::AtFraction(name, fraction) => {
                let points = &series(name)?.points;
                let largest = points.iter().map(|p| p.x).fold(f64::NEG_INFINITY, f64::max);
                let target = fraction * largest;
                points
                    .iter()
                    .min_by(|a, b| {
                        let (da, db) = ((a.x - target).abs(), (b.x - target).abs());
                        da.total_cmp(&db).then(b.x.total_cmp(&a.x))
                    })
                    .map(|p| p.y)
                    .ok_or_else(|| format!("series {name:?} has no points"))
            }
        }
    }

    /// The step's number: `value − minus`, or `(value − minus) / minus` when relative.
    pub fn result(&self, spec: &ResultSpec) -> std::result::Result<f64, String> {
        let minus = match &spec.minus {
            Some(p) => self.pick(p)?,
            None => 0.0,
        };
        let difference = self.pick(&spec.value)? - minus;
        Ok(if spec.relative {
            difference / minus
        } else {
            difference
        })
    }
}

impl ResultSpec {
    /// Whether `value` is in the claimed range.
    pub fn holds(&self, value: f64) -> bool {
        self.min.is_none_or(|m| value >= m) && self.max.is_none_or(|m| value <= m)
    }

    /// The claimed range in words, e.g. "at least 0.3".
    pub fn range_text(&self) -> String {
        range_text(self.min, self.max)
    }
}

/// A claimed range in words, e.g. "at least 0.3".
pub fn range_text(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("between {a} and {b}"),
        (Some(a), None) => format!("at least {a}"),
        (None, Some(b)) => format!("at most {b}"),
        (None, None) => "no range (refused when a lesson loads)".into(),
    }
}

impl Lesson {
    /// Parses a lesson file, with a message that names what is wrong.
    pub fn from_json(text: &str) -> Result<Lesson> {
        let lesson: Lesson = serde_json::from_str(text).map_err(|e| ModelError::Json {
            what: "lesson".into(),
            message: e.to_string(),
        })?;
        if lesson.steps.is_empty() {
            return Err(ModelError::Json {
                what: "lesson".into(),
                message: format!("lesson {:?} has no steps", lesson.id),
            });
        }
        for (n, step) in lesson.steps.iter().enumerate() {
            if let Some(spec) = step
                .results
                .iter()
                .find(|r| r.min.is_none() && r.max.is_none())
            {
                return Err(ModelError::Json {
                    what: "lesson".into(),
                    message: format!(
                        "lesson {:?} step {}: the result {:?} has neither min nor max, so no \
                         measurement could fail it",
                        lesson.id,
                        n + 1,
                        spec.label
                    ),
                });
            }
        }
        Ok(lesson)
    }
}

/// The lesson ids a lesson index lists (`static/lessons/index.json`: `{"lessons": [ids]}`), in
/// order.
pub fn lesson_index(text: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Index {
        lessons: Vec<String>,
    }
    serde_json::from_str::<Index>(text)
        .map(|i| i.lessons)
        .map_err(|e| ModelError::Json {
            what: "lessons/index.json".into(),
            message: e.to_string(),
        })
}

/// Every lesson `dir/index.json` lists, read from `dir/<id>.json`; a lesson whose `id` is not its
/// file name is an error.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_lessons(dir: &std::path::Path) -> Result<Vec<Lesson>> {
    let read = |name: String| {
        std::fs::read_to_string(dir.join(&name))
            .map_err(|e| ModelError::Input(format!("{name}: {e}")))
    };
    lesson_index(&read("index.json".into())?)?
        .into_iter()
        .map(|id| {
            let lesson = Lesson::from_json(&read(format!("{id}.json"))?)?;
            if lesson.id != id {
                return Err(ModelError::Input(format!(
                    "{id}.json holds the lesson {:?}: a lesson's id is its file name",
                    lesson.id
                )));
            }
            Ok(lesson)
        })
        .collect()
}

impl Measurement {
    /// Checks the measurement against the model and the input before any forward runs.
    pub fn check(&self, config: &ModelConfig, tokens: &[u32]) -> Result<()> {
        let bad = |m: String| Err(ModelError::Input(m));
        if self
            .positions
            .select(tokens, self.metric != Metric::Entropy)
            .is_empty()
        {
            return bad(match self.positions {
                Positions::Repeats => "the input has no position whose next token repeats an \
                                       earlier pair: type text in which a stretch occurs twice"
                    .into(),
                Positions::FromToken(id) => {
                    format!("the measurement scores what follows token {id}, which the input lacks")
                }
                _ => "the input is too short for this measurement".into(),
            });
        }
        let heads = config.n_layer * config.n_head;
        match &self.experiment {
            Experiment::Ablate { sets } => {
                for set in sets {
                    match set {
                        HeadSet::Heads(pairs) => {
                            if let Some([l, h]) = pairs
                                .iter()
                                .find(|[l, h]| *l >= config.n_layer || *h >= config.n_head)
                            {
                                return bad(format!(
                                    "head L{l} H{h} is not in a model of {} layers × {} heads",
                                    config.n_layer, config.n_head
                                ));
                            }
                        }
                        HeadSet::Top { n, .. }
                        | HeadSet::LeastImportant(n)
                        | HeadSet::Random { n, .. } => {
                            if *n == 0 || *n > heads {
                                return bad(format!("the model has {heads} heads, not {n}"));
                            }
                        }
                    }
                    if let HeadSet::Top { score, .. } = set {
                        let needs_repeats =
                            matches!(score, HeadScore::Induction | HeadScore::DuplicateToken);
                        if needs_repeats && Positions::Repeats.select(tokens, true).is_empty() {
                            return bad(format!(
                                "the {} score needs a token that repeats in the input",
                                score.name()
                            ));
                        }
                    }
                }
            }
            Experiment::Sweep { setting, values } => {
                for &value in values {
                    setting.variant(value).validate(config)?;
                }
            }
            Experiment::Variants { variants } => {
                for v in variants {
                    v.variant.validate(config)?;
                }
            }
            Experiment::PruneHeads { step, .. } if *step == 0 => {
                return bad("prune_heads needs a step of at least 1".into())
            }
            Experiment::EachLayer if self.metric != Metric::Entropy => {
                return bad("each_layer reads the attention entropy of each layer".into())
            }
            Experiment::LogitLens if self.metric == Metric::Entropy => {
                return bad("the logit lens reads predictions: loss, accuracy or kl".into())
            }
            Experiment::Decode { variants, tokens } => {
                if self.metric != Metric::Kl {
                    return bad("decode compares distributions along a continuation: kl".into());
                }
                if !config.causal || config.n_classes.is_some() {
                    return bad("decode needs a model that predicts the next token".into());
                }
                if *tokens == 0 {
                    return bad("decode needs at least one token to generate".into());
                }
                for v in variants {
                    v.variant.validate(config)?;
                }
            }
            _ => {}
        }
        if self.metric != Metric::Kl && self.metric != Metric::Entropy && config.n_classes.is_some()
        {
            return bad("accuracy and loss need a model that predicts the next token".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_the_positions_an_earlier_copy_predicts() {
        // a b c x a b c: at t = 4 (a) the earlier a was followed by b, as now; likewise t = 5.
        let tokens = [1, 2, 3, 9, 1, 2, 3];
        assert_eq!(Positions::Repeats.select(&tokens, true), vec![4, 5]);
        assert_eq!(Positions::From(5).select(&tokens, true), vec![5]);
        assert_eq!(Positions::All.select(&tokens, false).len(), 7);
        assert!(Positions::Repeats.select(&[1, 2, 3], true).is_empty());
    }

    #[test]
    fn a_fraction_picks_the_nearest_point_of_any_length() {
        let curve = |n: usize| Measured {
            x_label: String::new(),
            y_label: String::new(),
            x_log: false,
            unmodified: 0.0,
            series: vec![Series {
                name: "s".into(),
                points: (0..=n)
                    .map(|x| MeasuredPoint {
                        label: x.to_string(),
                        x: x as f64,
                        y: 10.0 * x as f64,
                    })
                    .collect(),
            }],
        };
        let at = |n: usize, f: f64| curve(n).pick(&Pick::AtFraction("s".into(), f)).unwrap();
        assert_eq!(at(4, 0.5), 20.0);
        assert_eq!(at(30, 0.5), 150.0);
        // Halfway between two points: the larger.
        assert_eq!(at(2, 0.25), 10.0);
        assert_eq!(at(2, 0.75), 20.0);
        assert_eq!(at(4, 0.0), 0.0);
        assert_eq!(at(4, 1.0), 40.0);
        assert!(curve(4).pick(&Pick::AtFraction("t".into(), 0.5)).is_err());
    }

    #[test]
    fn lesson_files_name_what_is_wrong() {
        let bad = Lesson::from_json(
            r#"{"id": "x", "title": "t", "summary": "", "source": "", "steps": [{"title": "s", "text": "", "model": "m", "measure": {"experiment": {"kind": "nope"}, "metric": "loss"}}]}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("nope"));
        let empty = Lesson::from_json(
            r#"{"id": "x", "title": "t", "summary": "", "source": "", "steps": []}"#,
        );
        assert!(empty.unwrap_err().to_string().contains("no steps"));
        // A number no measurement could fail is refused.
        let open = Lesson::from_json(
            r#"{"id": "x", "title": "t", "summary": "", "source": "", "steps": [{"title": "s", "text": "", "model": "m", "measure": {"experiment": {"kind": "each_head"}, "metric": "loss"}, "results": [{"label": "any", "value": {"point": "unmodified"}}]}]}"#,
        );
        let e = open.unwrap_err().to_string();
        assert!(
            e.contains("neither min nor max") && e.contains("any"),
            "{e}"
        );
        let m: Measurement =
            serde_json::from_str(r#"{"experiment": {"kind": "ablate", "sets": [{"heads": [[5, 0]]}]}, "metric": "loss"}"#)
                .unwrap();
        let e = m.check(&ModelConfig::tiny(30), &[1, 2, 3]).unwrap_err();
        assert!(e.to_string().contains("L5 H0"), "{e}");
        let m: Measurement = serde_json::from_str(
            r#"{"experiment": {"kind": "each_head"}, "metric": "loss", "positions": "repeats"}"#,
        )
        .unwrap();
        let e = m.check(&ModelConfig::tiny(30), &[1, 2, 3]).unwrap_err();
        assert!(e.to_string().contains("repeats"), "{e}");
    }
}
