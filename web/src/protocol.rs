//! The messages between the page (main thread) and the compute worker. The page only renders;
//! loading, forwards and every analysis run in the worker (`compute/`). Every request that
//! concerns a model carries the page's number for that model (`model`), and every answer
//! repeats it, so the page drops answers about a model it has since replaced. Everything that
//! crosses the thread boundary is defined here: the requests and answers, and the payloads they
//! carry (`ModelInfo`, `RunResult` with its `SentMaps`, `EngineChoice`), so the page's modules
//! and the worker's import this file and never each other.

use attn_gpu::EngineKind;
use attn_model::engine::{AttentionMaps, Step};
use attn_model::training::TrainConfig;
use attn_model::{
    compare, AblationMode, Comparison, HeadImportance, HeadRoles, ModelConfig, Output, Sampling,
    TokenizerSpec, Variant,
};
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that crosses as JSON text inside a message. The worker's codec (bincode) is compact
/// and fast for the big arrays of an output, but cannot read back self-describing serde forms:
/// `Variant` (an untagged kernel, skipped empty fields) and `TokenizerSpec` (a tagged enum)
/// travel as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct AsJson<T>(pub T);

impl<T: Serialize> Serialize for AsJson<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(S::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for AsJson<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text)
            .map(AsJson)
            .map_err(D::Error::custom)
    }
}

/// Which attention maps a forward reads back and sends to the page: every map, or the layers
/// the grid shows and the enlarged map. A model of hundreds of heads shows a few layers at a
/// time, and its other maps would be megabytes per forward that nobody looks at. Where a map
/// has more cells a side than its grid cell has device pixels, the grid's maps cross as
/// thumbnails (`attn_model::thumbnail`) and only the enlarged one in full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapsWanted {
    /// Layers `first..=last`; `None`: every layer.
    pub layers: Option<(usize, usize)>,
    /// The enlarged map, when it is outside `layers` (or, with `pooled`, wherever it is: it is
    /// the one map sent in full).
    pub focus: Option<(usize, usize)>,
    /// The grid's maps pooled by this factor (`attn_model::thumbnail::pool_map`); `None`: in
    /// full.
    pub pooled: Option<usize>,
}

impl MapsWanted {
    /// Every map, in full.
    pub const ALL: MapsWanted = MapsWanted {
        layers: None,
        focus: None,
        pooled: None,
    };

    /// The layers `first..=last` of a model of `n_layer` layers and the enlarged map `focus`,
    /// the grid's maps pooled by `factor` (1: in full): [`MapsWanted::ALL`] when that is every
    /// layer in full.
    pub fn shown(
        (first, last): (usize, usize),
        focus: Option<(usize, usize)>,
        n_layer: usize,
        factor: usize,
    ) -> MapsWanted {
        let last = last.min(n_layer.saturating_sub(1));
        let layers = Some((first, last)).filter(|_| first > 0 || last + 1 < n_layer);
        let pooled = Some(factor).filter(|&f| f > 1);
        MapsWanted {
            layers,
            focus: focus.filter(|(l, _)| {
                pooled.is_some() || layers.is_some_and(|(a, b)| !(a..=b).contains(l))
            }),
            pooled,
        }
    }

    /// The `(layer, head)` maps of a model of `n_layer × n_head` that the engines read in full
    /// (`None`: all of them).
    pub fn maps(&self, n_layer: usize, n_head: usize) -> Option<Vec<(usize, usize)>> {
        let (first, last) = self.layers?;
        let mut maps: Vec<(usize, usize)> = (first..=last.min(n_layer.saturating_sub(1)))
            .flat_map(|l| (0..n_head).map(move |h| (l, h)))
            .collect();
        let focus = self.focus.filter(|&(l, h)| l < n_layer && h < n_head);
        maps.extend(focus.filter(|f| !maps.contains(f)));
        Some(maps)
    }

    /// Whether map `(layer, head)` goes to the page as a thumbnail: a map of the grid's layers,
    /// not the enlarged one, when the grid's maps are pooled.
    pub fn as_thumbnail(&self, (layer, head): (usize, usize)) -> bool {
        self.pooled.is_some()
            && self.focus != Some((layer, head))
            && self.layers.is_none_or(|(a, b)| (a..=b).contains(&layer))
    }

    /// What the engines read back.
    pub fn readback(&self, n_layer: usize, n_head: usize) -> AttentionMaps {
        match self.maps(n_layer, n_head) {
            None => AttentionMaps::All,
            Some(maps) => AttentionMaps::Only(maps),
        }
    }

    /// Whether a result read with `self` holds every map `wanted` asks for: the grid's layers,
    /// as full maps or thumbnails of the same size (the page pools full maps itself), and the
    /// enlarged map in full.
    pub fn covers(&self, wanted: &MapsWanted) -> bool {
        let layers = match (self.layers, wanted.layers) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((first, last)), Some((from, to))) => first <= from && to <= last,
        };
        let thumbnails = self.pooled.is_none() || self.pooled == wanted.pooled;
        let focus = wanted.focus.is_none_or(|f| {
            self.focus == Some(f)
                || (self.pooled.is_none()
                    && self.layers.is_none_or(|(a, b)| (a..=b).contains(&f.0)))
        });
        layers && thumbnails && focus
    }
}

/// Where a model comes from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ModelSource {
    /// A built-in model's file, relative to the page (the worker fetches it).
    Url(String),
    /// Files the user picked: their names and object URLs (`blob:`), which the worker reads
    /// itself, so a large model is never copied on the page.
    Files(Vec<(String, String)>),
    /// The weights of the worker's training run, as they are now.
    Trained,
}

/// What the page asks of the worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Open the WebGPU device in the worker and run on it from now on.
    UseGpu,
    /// Load a model and make it the one that runs (the previous one stays if this fails).
    Open {
        model: u32,
        source: ModelSource,
        title: String,
        description: String,
        examples: Vec<String>,
    },
    /// A forward of the variant (and of the unmodified model first when `with_baseline`),
    /// reading back and sending the attention maps `maps`.
    Run {
        model: u32,
        tokens: Vec<u32>,
        variant: AsJson<Variant>,
        with_baseline: bool,
        maps: MapsWanted,
        /// Steering of the variant's forward (the baseline stays unsteered).
        steer: Option<SteerIds>,
    },
    /// Rank heads by ablating each in turn on top of `base`.
    Importance {
        model: u32,
        job: u32,
        base: AsJson<Variant>,
        tokens: Vec<u32>,
        mode: AblationMode,
    },
    /// Continue `tokens` by `n` sampled tokens under `variant`; with `step_through`, pause
    /// after the first token (then `SteerGeneration`).
    Generate {
        model: u32,
        job: u32,
        tokens: Vec<u32>,
        variant: AsJson<Variant>,
        n: usize,
        sampling: Sampling,
        step_through: bool,
        /// Steering of every step (the text is then recomputed for each token: no cache).
        steer: Option<SteerIds>,
    },
    /// One of the interpretability tools on `tokens` under `variant`.
    Analyse {
        model: u32,
        job: u32,
        tokens: Vec<u32>,
        variant: AsJson<Variant>,
        tool: AnalysisTool,
        /// Steering of the engine the tool runs on, as the page's run is steered.
        steer: Option<SteerIds>,
    },
    /// A lesson step's measurement over its sample and on `tokens`, the input on screen
    /// (attn-model's `run_sampled` and `summarise`).
    Measure {
        model: u32,
        job: u32,
        tokens: Vec<u32>,
        step: Box<AsJson<attn_model::LessonStep>>,
    },
    /// Start a training run of `task` (a synthetic task's name) with `config` on `engine` (the
    /// GPU trainer, the CPU trainer, or the GPU where it is a hardware adapter that trains this
    /// architecture), replacing any run the worker holds; it reports as it goes
    /// (`Response::Training`).
    Train {
        job: u32,
        task: String,
        config: AsJson<TrainConfig>,
        engine: EngineChoice,
    },
    /// Heal model `model`: fine-tune it on its task for `steps` steps with `variant` built into
    /// its weights (attn-model's `Trainer::healing`, or attn-gpu's on `engine` as `Train`
    /// chooses it), as a training run.
    Heal {
        job: u32,
        model: u32,
        variant: AsJson<Variant>,
        steps: usize,
        engine: EngineChoice,
    },
    /// Continue the paused run as job `job`. (`Cancel` pauses a run; the worker keeps it.)
    ResumeTraining { job: u32 },
    /// Forget the run.
    ResetTraining,
    /// The run's weights as a model file (`Response::TrainedFile`).
    SaveTrained,
    /// Pause, continue or step the generation `job`.
    SteerGeneration { job: u32, steer: Steer },
    /// Stop a running importance ranking, generation, analysis, measurement or training run.
    Cancel { job: u32 },
    /// Fault injection, for the tests of the page's recovery: destroy the WebGPU devices, as a
    /// driver reset would (the next GPU forward fails and the worker moves to the CPU engine; a
    /// run training on the GPU stops with a message).
    SimulateDeviceLoss,
    /// Fault injection: panic, as a bug in the worker would (the page restarts the worker).
    Crash,
}

/// What the page asks of a generation under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Steer {
    /// Stop after the token being computed, and let other requests use the engines.
    Pause,
    /// Go on to the end.
    Continue,
    /// One more token, then pause again.
    Step,
}

/// Which interpretability tool to run (attn-model's `lens`, `attribution`, `patching`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AnalysisTool {
    /// The logit lens at the last position.
    Lens,
    /// Direct logit attribution of `target` (the predicted token when `None`) at the last
    /// position.
    Attribute { target: Option<u32> },
    /// Patching from `tokens` (clean) into `corrupt`, on the clean prediction against the
    /// corrupted one: attribution patching's estimates (one backward), and with `exact` the
    /// exact fractions too (a forward per patch), to compare.
    Patch { corrupt: Vec<u32>, exact: bool },
    /// Every head's QK and OV circuits and the composition scores between heads (from the
    /// weights alone).
    Circuits,
    /// The KV-cache / quality trade-off: every `kv_groups` and halving series of `kv_rank` and
    /// `kv_pca` on the current input, against the unmodified model.
    KvTradeoff,
    /// The layer-drop criterion of every attention layer on the current input
    /// (`attn_model::layer_similarity`).
    LayerDrop,
    /// Every head's metrics over a corpus (`attn_model::corpus`): the built-in one (the bundled
    /// plays through the model's tokenizer, or a task's held-out set) when `text` is `None`,
    /// else windows of `text`.
    Heads { text: Option<String> },
    /// QK attribution: head `head` of layer `layer`'s score of position `query` on position
    /// `key`, split into (query-side part, key-side part) contributions.
    Qk {
        layer: usize,
        head: usize,
        query: usize,
        key: usize,
    },
}

/// Activation steering as the worker applies it (attn-model's `Steered`): ActAdd's two prompts
/// as token ids, the layer before which the stream is steered, the coefficient and the first
/// position steered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SteerIds {
    pub layer: usize,
    pub coefficient: f32,
    pub from: usize,
    pub plus: Vec<u32>,
    pub minus: Vec<u32>,
    /// The vector is the lens direction toward the one token of `plus` (away from the one of
    /// `minus`, when it has one), scaled to the input's stream (attn-model's `lens_vector`).
    pub lens: bool,
}

/// What a tool found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Analysis {
    /// The most probable next outputs at the last position at every depth (the residual stream
    /// before each layer, then the output), and the depth the final top-1 settles at.
    Lens {
        top: Vec<Vec<(u32, f32)>>,
        settles_at: usize,
    },
    Attribution(attn_model::Attribution),
    /// The patching, with the target and contrast it measured.
    Patching {
        /// The exact fractions, when they were asked for.
        exact: Option<attn_model::Patching>,
        /// Attribution patching's estimates, or why the variant has none (a kernel without a
        /// softmax).
        attribution: Result<attn_model::Patching, String>,
        target: u32,
        contrast: u32,
    },
    Circuits(attn_model::Circuits),
    /// The points carry their `Variant`, so they travel as JSON like every variant.
    KvTradeoff(AsJson<Vec<attn_model::TradeoffPoint>>),
    /// Per layer, the cosine similarity of the stream before and after its attention.
    LayerDrop(Vec<f64>),
    /// Every head's metrics over a corpus, with the corpus's windows (to open one).
    Heads(attn_model::corpus::CorpusHeads),
    /// One attention score split into the residual stream's parts on both sides.
    Qk(attn_model::QkAttribution),
}

/// Where a training run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainState {
    Running,
    Paused,
    Finished,
}

/// What a training run reports between bursts of steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainUpdate {
    /// Steps done, and the run's length.
    pub step: usize,
    pub steps: usize,
    /// The training loss of every step since the previous update, `(step, loss)`.
    pub losses: Vec<(usize, f64)>,
    /// Held-out loss and accuracy, at checkpoints.
    pub held_out: Option<(f64, f64)>,
    /// The heads on the fixed probe, at checkpoints.
    pub probe: Option<AsJson<attn_model::training::Probe>>,
    /// Steps per second over the last burst.
    pub steps_per_second: f64,
    pub state: TrainState,
    /// Where the run trains, as the panel says it ("the CPU", "the GPU (adapter)", with the
    /// reason when it asked for the GPU and got the CPU).
    pub engine: String,
}

/// A long job's end: its result, `None` when cancelled, or a message.
pub type JobOutcome<T> = Result<Option<T>, String>;

/// One token as generation picked it, with what the step ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratedToken {
    /// The token as a chip shows it (its text with whitespace made visible, or its id).
    pub piece: String,
    /// Its position in the text.
    pub position: usize,
    /// With the first token: the prompt's tokens, as chips show them.
    pub prompt: Vec<String>,
    /// The attention rows of the positions this step ran (`(position, [n_layer, n_head,
    /// position + 1])`): the prompt's with the first token, the previous token's after.
    pub rows: Vec<(usize, Vec<f32>)>,
    /// Tokens picked so far, of how many asked.
    pub step: Step,
    /// The bytes the KV cache holds now (`None`: recomputing, no cache).
    pub kv_cache_bytes: Option<usize>,
    /// The bytes the variant's own cache holds for the same positions (a latent, PCA
    /// coordinates, a window's ring, linear attention's state: what the CPU engine keeps).
    /// The GPU engine keeps whole keys and values, so there the two may differ.
    pub variant_cache_bytes: usize,
    /// Tokens per second so far, counting only the time spent computing (not paused).
    pub tokens_per_second: f64,
}

/// A finished generation: the text, and how it was computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationReport {
    /// The generated text (the token ids where the model has no tokenizer).
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    /// Milliseconds the generation took in the worker.
    pub millis: f64,
    /// The bytes the KV cache held at the end (keys, values or recurrent state); `None` when
    /// every token recomputed the whole text (an engine without a cache, a variant that cannot
    /// be decoded from one).
    pub kv_cache_bytes: Option<usize>,
    /// Positions the cache held then.
    pub cached_positions: usize,
}

impl GenerationReport {
    /// The line under the generated text: how fast, and what the cache held.
    pub fn summary(&self) -> String {
        let rate = self.tokens as f64 / (self.millis / 1000.0).max(1e-9);
        let how = match self.kv_cache_bytes {
            Some(bytes) => format!(
                "decoded from the KV cache, which holds {bytes} bytes after {} positions",
                self.cached_positions
            ),
            None => "recomputing the whole text for every token (no KV cache for this engine \
                     or variant)"
                .to_string(),
        };
        format!(
            "{} tokens in {:.2} s ({rate:.1} tokens/s), {how}",
            self.tokens,
            self.millis / 1000.0
        )
    }
}

/// What the worker answers.
// A response is built once, encoded for the page and dropped: boxing its larger variants would
// add allocations and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// The GPU engine is ready on this adapter.
    GpuReady {
        adapter: String,
    },
    /// The GPU could not be used; the CPU engine runs.
    GpuUnavailable {
        why: String,
    },
    /// What the page shows while a model loads.
    Loading {
        model: u32,
        what: String,
    },
    Opened {
        model: u32,
        info: ModelInfo,
        config: ModelConfig,
        tokenizer: AsJson<Option<TokenizerSpec>>,
        classes: Option<Vec<String>>,
        /// A model the GPU could not hold runs on the CPU engine: why.
        gpu_refused: Option<String>,
    },
    OpenFailed {
        model: u32,
        message: String,
    },
    /// Head-role scores of the unmodified model.
    Roles {
        model: u32,
        roles: Vec<HeadRoles>,
    },
    Ran {
        model: u32,
        baseline: Option<Result<RunResult, String>>,
        current: Result<RunResult, String>,
    },
    /// The GPU engine failed and the worker moved to the CPU engine for good: why.
    GpuFailed {
        why: String,
    },
    Progress {
        job: u32,
        step: Step,
    },
    Ranked {
        job: u32,
        outcome: JobOutcome<Vec<HeadImportance>>,
    },
    /// One token of generation `job`, as it is picked.
    GeneratedToken {
        job: u32,
        token: GeneratedToken,
    },
    Generated {
        job: u32,
        outcome: JobOutcome<GenerationReport>,
    },
    Analysed {
        job: u32,
        outcome: JobOutcome<Analysis>,
    },
    Measured {
        job: u32,
        outcome: JobOutcome<LessonMeasured>,
    },
    /// Progress of training job `job`.
    Training {
        job: u32,
        update: TrainUpdate,
    },
    /// A healing run started: held-out (loss, accuracy) of the unmodified model and right after
    /// the cut.
    HealStarted {
        job: u32,
        before: (f64, f64),
        cut: (f64, f64),
    },
    /// The training run failed (bad settings, a model the trainer cannot hold).
    TrainFailed {
        job: u32,
        message: String,
    },
    /// The run's weights, labelled, as a `.safetensors` file.
    TrainedFile {
        name: String,
        bytes: Vec<u8>,
    },
    /// The worker panicked (its panic hook sends this last): the page restarts it.
    Crashed {
        why: String,
    },
}

/// Which engine runs the model (or trains one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EngineChoice {
    /// WebGPU on a hardware adapter, the CPU otherwise.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl EngineChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Gpu => "gpu",
            EngineChoice::Cpu => "cpu",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(EngineChoice::Auto),
            "gpu" => Some(EngineChoice::Gpu),
            "cpu" => Some(EngineChoice::Cpu),
            _ => None,
        }
    }
}

/// The model as the page describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub title: String,
    pub description: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub d_model: usize,
    pub d_head: usize,
    pub n_ctx: usize,
    pub causal: bool,
    pub classifier: bool,
    pub parameters: usize,
    /// The family and its structure in words, e.g. "Llama: RMSNorm, SwiGLU MLP; rotary (θ 500,
    /// 8 of 8 dims per head); grouped-query (6 query heads share 2 key/value heads)".
    pub architecture: String,
    pub tokenizer: Option<String>,
    /// Why a model that came with a tokenizer file has none (it takes token ids).
    pub tokenizer_note: Option<String>,
    pub examples: Vec<String>,
    /// The built-in task it was trained on (`metadata.task`), e.g. `sort`.
    pub task: Option<String>,
    /// Trained with linear attention (`metadata.attention_kernel = "linear"`): the page runs it
    /// with that kernel.
    pub linear_attention: bool,
}

/// One forward's results as the page shows them. Its logits stay in the worker (a real
/// vocabulary makes them megabytes per run, and the page needs only `top` and `comparison`), and
/// only the attention maps the page shows cross ([`MapsWanted`]), so a result of a model with
/// hundreds of heads holds only those, not a buffer of every map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The input it ran on.
    pub tokens: Vec<u32>,
    /// The shape of the model's maps: `n_layer × n_head` maps of `seq_len × seq_len`.
    pub seq_len: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// The variant's KV-cache bytes per token.
    pub kv_bytes_per_token: usize,
    /// The most probable next outputs after the last position, most probable first.
    pub top: Vec<(u32, f32)>,
    /// For a variant's result: its cost against the unmodified model on the same input.
    pub comparison: Option<Comparison>,
    pub millis: f64,
    pub engine: EngineKind,
    /// The maps it holds.
    pub maps: MapsWanted,
    /// The maps read back in full.
    pub full: SentMaps,
    /// The grid's maps at display resolution, when `maps.pooled` asks for them (their full maps
    /// are not sent).
    pub thumbnails: SentMaps,
    /// Each head's role scores on this input (`attn_model::roles_on_input`), computed here from
    /// the full maps the page may not get; NaN for maps not read back, `None` when no token
    /// repeats.
    pub input_roles: Option<Vec<HeadRoles>>,
}

/// Some of a model's attention maps, each `side × side`: in full (`factor` 1) or pooled to
/// display resolution by `factor` (`attn_model::thumbnail`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SentMaps {
    /// Map cells per cell here along each side.
    pub factor: usize,
    /// Cells a side of each map.
    pub side: usize,
    /// Which maps, as `layer · n_head + head`, in ascending order (the order of `values`).
    pub maps: Vec<u32>,
    /// `side²` values per map, one map after another.
    #[serde(with = "crate::protocol::f32_bytes")]
    pub values: Vec<f32>,
}

impl SentMaps {
    fn new(t: usize, factor: usize) -> SentMaps {
        SentMaps {
            factor,
            side: attn_model::thumbnail::thumbnail_side(t, factor),
            ..SentMaps::default()
        }
    }

    /// Map `layer · n_head + head`, if it is here.
    pub fn get(&self, index: usize) -> Option<&[f32]> {
        let at = self.maps.binary_search(&u32::try_from(index).ok()?).ok()?;
        let size = self.side * self.side;
        self.values.get(at * size..(at + 1) * size)
    }
}

/// How many next outputs a result lists.
pub const TOP_OUTPUTS: usize = 10;

impl RunResult {
    /// The result the page gets from a full `output`: everything but the logits, which give its
    /// top outputs (and, against `baseline`, the comparison).
    pub fn for_page(
        output: Output,
        baseline: Option<&Output>,
        tokens: &[u32],
        timing: (f64, EngineKind),
        maps: MapsWanted,
    ) -> RunResult {
        let top = output.top_at(output.seq_len - 1, TOP_OUTPUTS);
        let comparison = baseline
            .filter(|b| b.seq_len == output.seq_len)
            .map(|b| compare(b, &output, tokens));
        RunResult::of(&output, tokens, (top, comparison), timing, maps)
    }

    /// What the page gets of `output`'s maps (those `maps` names that were read back: the
    /// grid's as thumbnails when it pools them, the rest in full), with its top outputs and
    /// comparison.
    pub fn of(
        output: &Output,
        tokens: &[u32],
        (top, comparison): (Vec<(u32, f32)>, Option<Comparison>),
        (millis, engine): (f64, EngineKind),
        maps: MapsWanted,
    ) -> RunResult {
        let t = output.seq_len;
        let factor = maps.pooled.unwrap_or(1);
        let (mut full, mut thumbnails) = (SentMaps::new(t, 1), SentMaps::new(t, factor));
        for (index, map) in output.attention.chunks_exact((t * t).max(1)).enumerate() {
            // A map not read back is NaN throughout.
            if map[0].is_nan() {
                continue;
            }
            let at = (index / output.n_head, index % output.n_head);
            let (sent, values) = if maps.as_thumbnail(at) {
                let pooled = attn_model::thumbnail::pool_map(map, t, factor);
                (&mut thumbnails, std::borrow::Cow::Owned(pooled))
            } else {
                (&mut full, std::borrow::Cow::Borrowed(map))
            };
            sent.maps.push(index as u32);
            sent.values.extend_from_slice(&values);
        }
        RunResult {
            input_roles: attn_model::roles_on_input(output, tokens),
            tokens: tokens.to_vec(),
            seq_len: t,
            n_layer: output.n_layer,
            n_head: output.n_head,
            kv_bytes_per_token: output.kv_bytes_per_token,
            top,
            comparison,
            millis,
            engine,
            maps,
            full,
            thumbnails,
        }
    }

    /// Map `(layer, head)` in full, if the result holds it.
    pub fn attention_map(&self, layer: usize, head: usize) -> Option<&[f32]> {
        self.full.get(layer * self.n_head + head)
    }
}

/// A lesson step measured over its sample: every input's curves, their mean, the input on
/// screen, and the step's numbers with their intervals and verdicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonMeasured {
    pub measured: attn_model::lesson::SampleMeasured,
    pub results: Vec<attn_model::lesson::SampledResult>,
    /// The engine that ran it, in words (a control on untrained weights runs on the CPU).
    pub engine: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message survives the worker's codec (bincode), including the variant's and the
    /// tokenizer's self-describing forms.
    #[test]
    fn messages_round_trip_through_the_worker_codec() {
        fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> T {
            bincode::deserialize(&bincode::serialize(value).unwrap()).unwrap()
        }
        let variant = Variant::from_json(
            r#"{"kernel": {"random_features": 8, "seed": 2}, "heads": {"ablate": [[0, 1]], "mode": "mean"}}"#,
        )
        .unwrap();
        let Request::Run { variant: back, .. } = round_trip(&Request::Run {
            model: 3,
            tokens: vec![1, 2],
            variant: AsJson(variant.clone()),
            with_baseline: true,
            maps: MapsWanted::ALL,
            steer: Some(SteerIds {
                layer: 1,
                coefficient: -2.5,
                from: 0,
                plus: vec![4, 5],
                minus: vec![6],
                lens: false,
            }),
        }) else {
            panic!("not a run")
        };
        assert_eq!(back.0, variant);
        let spec = TokenizerSpec::Words {
            vocab: vec!["a".into(), "b".into()],
        };
        // A rotary config with struct-carrying enums crosses as it is.
        let config = ModelConfig {
            positional: attn_model::Positional::Rope(attn_model::Rope {
                theta: 5e5,
                rotary_dim: 4,
                scaling: attn_model::RopeScaling::Llama3 {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 16,
                },
            }),
            ..ModelConfig::tiny_llama(2)
        };
        let info = ModelInfo {
            title: "t".into(),
            description: String::new(),
            n_layer: 2,
            n_head: 4,
            n_kv_head: 4,
            d_model: 16,
            d_head: 4,
            n_ctx: 16,
            causal: true,
            classifier: false,
            parameters: 1,
            architecture: "Llama".into(),
            tokenizer: Some("words".into()),
            tokenizer_note: Some("a note".into()),
            examples: vec!["a b".into()],
            task: None,
            linear_attention: true,
        };
        let Response::Opened {
            tokenizer,
            config: c,
            ..
        } = round_trip(&Response::Opened {
            model: 1,
            info,
            config: config.clone(),
            tokenizer: AsJson(Some(spec.clone())),
            classes: None,
            gpu_refused: None,
        })
        else {
            panic!("not opened")
        };
        assert_eq!(tokenizer.0, Some(spec));
        assert_eq!(c, config);
        // Analyses, the trade-off's points with their variants among them.
        let points = vec![attn_model::TradeoffPoint {
            label: "kv_rank 4".into(),
            variant: Variant::from_json(r#"{"kv_rank": 4}"#).unwrap(),
            kv_bytes_per_token: 32,
            mean_kl: 0.5,
            top1_agreement: 0.75,
        }];
        let analysis = Analysis::KvTradeoff(AsJson(points));
        let Response::Analysed { outcome, .. } = round_trip(&Response::Analysed {
            job: 2,
            outcome: Ok(Some(analysis.clone())),
        }) else {
            panic!("not analysed")
        };
        assert_eq!(outcome, Ok(Some(analysis)));
        // A lesson step over its sample, and the step itself (a tagged experiment).
        let curve = attn_model::Measured {
            x_label: "x".into(),
            y_label: "y".into(),
            x_log: false,
            unmodified: 1.0,
            series: Vec::new(),
        };
        let lesson = LessonMeasured {
            measured: attn_model::lesson::SampleMeasured {
                per_input: vec![curve.clone()],
                mean: curve.clone(),
                on_screen: Some(curve),
                scoring_name: "a".into(),
                ranking_name: "b".into(),
            },
            results: vec![attn_model::lesson::SampledResult {
                label: "l".into(),
                n: 1,
                mean: 0.5,
                low: 0.25,
                high: 0.75,
                values: vec![0.5],
                held: 1,
                on_screen: None,
                min: Some(0.0),
                max: None,
                verdict: attn_model::lesson::Verdict::Inconclusive,
                expected: attn_model::lesson::Verdict::NotReproduced,
                paper: Some("p".into()),
            }],
            engine: "the CPU engine".into(),
        };
        let Response::Measured { outcome, .. } = round_trip(&Response::Measured {
            job: 3,
            outcome: Ok(Some(lesson.clone())),
        }) else {
            panic!("not measured")
        };
        assert_eq!(outcome, Ok(Some(lesson)));
        let step: attn_model::LessonStep = serde_json::from_str(
            r#"{"title": "t", "text": "", "model": "m", "untrained": true, "measure": {"experiment": {"kind": "each_layer"}, "metric": "entropy"}}"#,
        )
        .unwrap();
        let Request::Measure { step: back, .. } = round_trip(&Request::Measure {
            model: 1,
            job: 4,
            tokens: vec![1],
            step: Box::new(AsJson(step.clone())),
        }) else {
            panic!("not a measurement")
        };
        assert_eq!(back.0, step);
    }

    #[test]
    fn the_maps_on_screen_are_what_a_forward_reads() {
        // Every layer on screen: every map.
        assert_eq!(
            MapsWanted::shown((0, usize::MAX), None, 4, 1),
            MapsWanted::ALL
        );
        assert_eq!(
            MapsWanted::shown((0, 3), Some((1, 1)), 4, 1),
            MapsWanted::ALL
        );
        // Layers 1–2 of 4 with 2 heads, and an enlarged map outside them.
        let wanted = MapsWanted::shown((1, 2), Some((3, 1)), 4, 1);
        assert_eq!(
            wanted.maps(4, 2),
            Some(vec![(1, 0), (1, 1), (2, 0), (2, 1), (3, 1)])
        );
        // One inside them adds nothing.
        assert_eq!(MapsWanted::shown((1, 2), Some((2, 0)), 4, 1).focus, None);
        assert_eq!(MapsWanted::ALL.readback(4, 2), AttentionMaps::All);
        // What a result holds covers what the page wants next.
        let held = MapsWanted::shown((0, 2), None, 4, 1);
        assert!(MapsWanted::ALL.covers(&held));
        assert!(held.covers(&MapsWanted::shown((1, 2), None, 4, 1)));
        assert!(held.covers(&MapsWanted::shown((1, 2), Some((0, 1)), 4, 1)));
        assert!(!held.covers(&MapsWanted::shown((2, 3), None, 4, 1)));
        assert!(!held.covers(&MapsWanted::shown((1, 2), Some((3, 0)), 4, 1)));
        assert!(!held.covers(&MapsWanted::ALL));
    }

    #[test]
    fn pooled_grids_send_thumbnails_and_the_enlarged_map_in_full() {
        // Every layer, pooled by 2: not ALL, and the enlarged map is named even inside them.
        let wanted = MapsWanted::shown((0, 3), Some((1, 1)), 4, 2);
        assert_ne!(wanted, MapsWanted::ALL);
        assert_eq!(wanted.layers, None);
        assert_eq!(wanted.focus, Some((1, 1)));
        assert_eq!(wanted.maps(4, 2), None);
        assert!(wanted.as_thumbnail((0, 0)) && wanted.as_thumbnail((1, 0)));
        assert!(!wanted.as_thumbnail((1, 1)));
        assert!(!MapsWanted::ALL.as_thumbnail((0, 0)));
        // Some layers: the enlarged one inside them is read once.
        let some = MapsWanted::shown((1, 2), Some((2, 0)), 4, 3);
        assert_eq!(some.maps(4, 2), Some(vec![(1, 0), (1, 1), (2, 0), (2, 1)]));
        assert!(!some.as_thumbnail((0, 0)) && !some.as_thumbnail((2, 0)));
        assert!(some.as_thumbnail((2, 1)));
        // Full maps cover thumbnails (the page pools them); thumbnails cover only their own
        // size, and an enlarged map only if it came in full.
        assert!(MapsWanted::ALL.covers(&wanted));
        assert!(wanted.covers(&MapsWanted::shown((0, 3), Some((1, 1)), 4, 2)));
        assert!(!wanted.covers(&MapsWanted::shown((0, 3), Some((1, 1)), 4, 3)));
        assert!(!wanted.covers(&MapsWanted::shown((0, 3), Some((0, 1)), 4, 2)));
        assert!(wanted.covers(&MapsWanted::shown((0, 3), None, 4, 2)));
        assert!(!wanted.covers(&MapsWanted::ALL));
        assert!(!MapsWanted::shown((0, 3), None, 4, 2).covers(&wanted));
    }

    /// An output of `n_layer × n_head` causal `t × t` maps, map `k` scaled by `k + 1` (NaN for
    /// the maps in `missing`: not read back).
    fn output_with_maps(t: usize, n_layer: usize, n_head: usize, missing: &[usize]) -> Output {
        let attention = (0..n_layer * n_head)
            .flat_map(|k| {
                (0..t * t).map(move |c| match (missing.contains(&k), c % t <= c / t) {
                    (true, _) => f32::NAN,
                    (false, true) => (k + 1) as f32 / (c / t + 1) as f32,
                    (false, false) => 0.0,
                })
            })
            .collect();
        Output {
            seq_len: t,
            n_layer,
            n_head,
            n_out: 3,
            logits: vec![0.5; t * 3],
            attention,
            head_out_norms: Vec::new(),
            kv_bytes_per_token: 64,
        }
    }

    fn result_of(output: &Output, maps: MapsWanted) -> RunResult {
        let timing = (1.5, attn_gpu::EngineKind::Cpu);
        RunResult::of(output, &[1, 2], (vec![(2, 0.5)], None), timing, maps)
    }

    fn round_trip(result: &RunResult) -> (RunResult, usize) {
        let bytes = bincode::serialize(result).unwrap();
        (bincode::deserialize(&bytes).unwrap(), bytes.len())
    }

    #[test]
    fn maps_not_read_back_do_not_cross() {
        // 3 layers × 1 head of 8 × 8 maps; the middle one was not read back.
        let output = output_with_maps(8, 3, 1, &[1]);
        let wanted = MapsWanted::shown((0, 0), Some((2, 0)), 3, 1);
        let result = result_of(&output, wanted);
        let (back, bytes) = round_trip(&result);
        assert_eq!(back, result);
        assert_eq!(back.full.maps, vec![0, 2]);
        assert_eq!(back.attention_map(0, 0), Some(output.attention_map(0, 0)));
        assert_eq!(back.attention_map(2, 0), Some(output.attention_map(2, 0)));
        assert_eq!(back.attention_map(1, 0), None);
        // The same result had the middle map been read back: one map more crosses.
        let every_map = result_of(&output_with_maps(8, 3, 1, &[]), wanted);
        let (_, every_map) = round_trip(&every_map);
        assert!(
            bytes + 4 * 64 <= every_map,
            "a map not read back does not cross: {bytes} against {every_map} bytes"
        );
    }

    #[test]
    fn the_grid_maps_cross_as_thumbnails_and_the_enlarged_one_in_full() {
        // 2 layers × 2 heads of 12 × 12 causal maps, pooled by 3; (1, 1) is enlarged.
        let output = output_with_maps(12, 2, 2, &[]);
        let wanted = MapsWanted::shown((0, 1), Some((1, 1)), 2, 3);
        let result = result_of(&output, wanted);
        assert_eq!((result.thumbnails.factor, result.thumbnails.side), (3, 4));
        assert_eq!(result.thumbnails.maps, vec![0, 1, 2]);
        assert_eq!(result.full.maps, vec![3]);
        let (back, bytes) = round_trip(&result);
        assert_eq!(back, result);
        for index in 0..3 {
            let full = output.attention_map(index / 2, index % 2);
            let want = attn_model::thumbnail::pool_map(full, 12, 3);
            assert_eq!(back.thumbnails.get(index), Some(&want[..]));
            assert_eq!(back.attention_map(index / 2, index % 2), None);
        }
        assert_eq!(back.thumbnails.get(3), None);
        assert_eq!(back.attention_map(1, 1), Some(output.attention_map(1, 1)));
        // The roles on the input come from the full maps, thumbnails or not.
        let tokens: Vec<u32> = (0..12).map(|i| i % 5).collect();
        let timing = (1.0, attn_gpu::EngineKind::Cpu);
        let with_repeats = RunResult::of(&output, &tokens, (Vec::new(), None), timing, wanted);
        let roles = with_repeats.input_roles.expect("tokens repeat");
        assert_eq!(
            Some(roles.clone()),
            attn_model::roles_on_input(&output, &tokens)
        );
        assert!(roles.iter().all(|r| r.induction.is_finite()), "{roles:?}");
        // Three 16-value thumbnails and one full map instead of four full maps.
        let (_, unpooled) = round_trip(&result_of(&output, MapsWanted::ALL));
        assert!(
            bytes + 3 * 4 * (144 - 16) <= unpooled + 64,
            "{bytes} against {unpooled} bytes"
        );
    }

    #[test]
    fn results_cross_unchanged() {
        let mut output = output_with_maps(2, 1, 1, &[]);
        output.attention = vec![1.0, -0.0, 1e-30, 0.75];
        let result = RunResult {
            comparison: Some(attn_model::Comparison {
                kl_per_position: vec![0.0, 0.25],
                mean_kl: 0.125,
                top1_agreement: 0.5,
                baseline_nll: Some(1.5),
                variant_nll: None,
            }),
            ..result_of(&output, MapsWanted::ALL)
        };
        let (back, _) = round_trip(&result);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(back.attention_map(0, 0).unwrap()),
            bits(&output.attention)
        );
        assert_eq!(back.kv_bytes_per_token, 64);
        assert_eq!(back.top, result.top);
        assert_eq!(back.comparison, result.comparison);
        assert_eq!(back, result);
    }

    #[test]
    fn the_page_gets_the_top_outputs_and_the_cost_but_not_the_logits() {
        let output = |logits: Vec<f32>| Output {
            logits,
            ..output_with_maps(2, 1, 1, &[])
        };
        let base = output(vec![0.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        let variant = output(vec![0.0, 1.0, 2.0, 1.0, 2.0, 3.0]);
        let page = RunResult::for_page(
            variant.clone(),
            Some(&base),
            &[1, 2],
            (3.0, attn_gpu::EngineKind::Cpu),
            MapsWanted::ALL,
        );
        assert_eq!(page.attention_map(0, 0), Some(variant.attention_map(0, 0)));
        assert_eq!(page.top, variant.top_at(1, TOP_OUTPUTS));
        assert_eq!(page.top[0].0, 2);
        assert_eq!(
            page.comparison,
            Some(attn_model::compare(&base, &variant, &[1, 2]))
        );
        let cpu = (3.0, attn_gpu::EngineKind::Cpu);
        let alone = RunResult::for_page(variant, None, &[1, 2], cpu, MapsWanted::ALL);
        assert_eq!(alone.comparison, None);
    }
}

/// A `Vec<f32>` as raw little-endian bytes for the worker's codec, so a forward's maps cross in
/// one copy instead of one call per number. Used as `#[serde(with = "f32_bytes")]`.
pub mod f32_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::ByteBuf;

    pub fn serialize<S: Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        ByteBuf::from(bytes).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        let bytes = ByteBuf::deserialize(deserializer)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}
