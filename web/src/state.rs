//! The page's state in one place: what the URL holds (model, input, variant, focused map, diff
//! view, engine choice), the installed model's description, the results the worker sent back, and
//! the progress of long jobs. Each field is a signal, so a panel re-renders only for what it
//! reads; panels get the state with `expect_context::<Ui>()`.

use attn_gpu::EngineKind;
use attn_model::engine::Step;
use attn_model::{
    AblationMode, HeadAblation, HeadImportance, HeadRoles, Kernel, KernelName, Lesson, ModelConfig,
    Sampling, Variant,
};

use crate::protocol::{Analysis, MapsWanted, ModelInfo, RunResult};
use attn_model::thumbnail::pooling_factor;
use leptos::prelude::*;

use crate::generation_state::GenerationView;
use crate::manifest::ModelEntry;
use crate::page_state::{PageState, SteerSpec};
use crate::protocol::EngineChoice;
use crate::train_state::{TrainSettings, TrainView};
use crate::worker_build::WorkerBuild;

/// Every signal of the page. `Copy`: signals are handles.
#[derive(Clone, Copy)]
pub struct Ui {
    /// The built-in models.
    pub manifest: RwSignal<Vec<ModelEntry>>,
    /// The built-in model shown (in the URL); `None` for one loaded from disk.
    pub model_id: RwSignal<Option<String>>,
    /// The installed model.
    pub info: RwSignal<Option<ModelInfo>>,
    pub loading: RwSignal<Option<String>>,
    pub notices: RwSignal<Vec<String>>,
    pub error: RwSignal<Option<String>>,
    pub prompt: RwSignal<String>,
    pub tokens: RwSignal<Vec<u32>>,
    pub labels: RwSignal<Vec<String>>,
    /// Set when the input is longer than the model's context and was cut to fit.
    pub input_notice: RwSignal<Option<String>>,
    pub variant: RwSignal<Variant>,
    pub ablate_mode: RwSignal<AblationMode>,
    /// The unmodified model's output on the current input, and the variant's.
    pub baseline: RwSignal<Option<RunResult>>,
    pub current: RwSignal<Option<RunResult>>,
    /// How many results the page has shown. The figures themselves can repeat from one run to
    /// the next, so this count (the cost panel's `data-results`) is what tells a watcher outside
    /// (the benchmark's input → repaint timer) that a new result has landed.
    pub results_shown: RwSignal<u64>,
    pub roles: RwSignal<Vec<HeadRoles>>,
    pub focus: RwSignal<Option<(usize, usize)>>,
    pub diff: RwSignal<bool>,
    /// Which layers the attention grid shows, and how large its maps are.
    pub grid: RwSignal<GridView>,
    /// Set while *Export JSON* waits for a result with every map.
    pub exporting: RwSignal<bool>,
    pub engine_choice: RwSignal<EngineChoice>,
    /// `simd=plain` in the URL: the worker built for plain wasm SIMD even where relaxed SIMD is.
    pub plain_simd: bool,
    /// `threads=1` in the URL: the worker without threads even where the page is cross-origin
    /// isolated.
    pub one_thread: bool,
    /// Which build of the compute worker is running.
    pub worker_build: RwSignal<WorkerBuild>,
    pub engine_badge: RwSignal<String>,
    pub importance: RwSignal<Vec<HeadImportance>>,
    /// The running head-importance ranking, and how the last one ended.
    pub ranking: RwSignal<Option<Step>>,
    pub rank_status: RwSignal<Option<String>>,
    pub generated: RwSignal<Option<String>>,
    /// How the last generation ran: its speed and what the KV cache held.
    pub generation_summary: RwSignal<Option<String>>,
    /// The generation's tokens as they arrive, and the one whose attention is shown.
    pub generation: RwSignal<GenerationView>,
    /// How *Generate* picks tokens (in the URL).
    pub sampling: RwSignal<Sampling>,
    /// Activation steering of the variant's runs and generations, when on.
    pub steer: RwSignal<Option<SteerSpec>>,
    /// The running analysis (lens, attribution, patching), and the last one's result.
    pub analysing: RwSignal<Option<Step>>,
    pub analysis: RwSignal<Option<Analysis>>,
    /// The running generation.
    pub generating: RwSignal<Option<Step>>,
    /// Bumped when a model is installed (or moves to another engine): results start over.
    pub model_version: RwSignal<u32>,
    /// The engine behind the latest result, for the cost panel.
    pub engine_used: RwSignal<Option<EngineKind>>,
    /// The built-in model being loaded, until it is installed (`None` while loading from disk).
    pub opening: StoredValue<Option<ModelEntry>>,
    /// The built-in lessons (`lessons/index.json`), the open one (its id, from the URL) and its
    /// step (0-based).
    pub lessons: RwSignal<Vec<Lesson>>,
    /// Whether the lesson list has been read (or failed to be).
    pub lessons_loaded: RwSignal<bool>,
    pub lesson_id: RwSignal<Option<String>>,
    pub lesson_step: RwSignal<usize>,
    /// Show only what the open lesson uses.
    pub embed: bool,
    /// The running lesson measurement, and the step's result (or why it failed).
    pub measuring: RwSignal<Option<Step>>,
    pub measured: RwSignal<Option<Result<crate::protocol::LessonMeasured, String>>>,
    /// A lesson step's variant, set once the step's model is installed.
    pub pending_variant: StoredValue<Option<Variant>>,
    /// The input to show once the model being opened is installed (a trained model's example).
    pub pending_prompt: StoredValue<Option<String>>,
    /// The files being opened from disk, by their title, until the model is installed.
    pub opening_files: StoredValue<Option<String>>,
    /// The last model opened from disk (lesson steps that fit it run on it), and whether it is
    /// the model shown now.
    pub yours: RwSignal<Option<YourModel>>,
    pub yours_shown: RwSignal<bool>,
    /// The training panel's settings (in the URL); `None` while the panel is closed.
    pub train: RwSignal<Option<TrainSettings>>,
    /// The training run as the page shows it.
    pub training: RwSignal<TrainView>,
}

/// A model the user opened from disk, as the lessons need to know it.
#[derive(Clone, Debug, PartialEq)]
pub struct YourModel {
    /// The page's title for it ("From disk: …").
    pub title: String,
    /// It predicts the next token of text (no synthetic task, no classes).
    pub language_model: bool,
    /// The built-in task it was trained on, if any.
    pub task: Option<String>,
}

impl YourModel {
    /// Whether a lesson step runs on this model in place of its built-in model (whose task is
    /// `built_in_task`).
    pub fn fits(&self, step: &attn_model::LessonStep, built_in_task: Option<&str>) -> bool {
        step.fits(built_in_task, self.language_model, self.task.as_deref())
    }
}

impl Ui {
    /// The state a URL describes; `problems` lists what in it could not be used.
    pub fn from_url(state: &PageState, problems: Vec<String>) -> Ui {
        Ui {
            manifest: RwSignal::new(Vec::new()),
            model_id: RwSignal::new(state.model.clone()),
            info: RwSignal::new(None),
            loading: RwSignal::new(Some("Loading the model list…".into())),
            notices: RwSignal::new(problems),
            error: RwSignal::new(None),
            prompt: RwSignal::new(state.prompt.clone().unwrap_or_default()),
            tokens: RwSignal::new(Vec::new()),
            labels: RwSignal::new(Vec::new()),
            input_notice: RwSignal::new(None),
            ablate_mode: RwSignal::new(
                state
                    .variant
                    .heads
                    .as_ref()
                    .map(|h| h.mode)
                    .unwrap_or_default(),
            ),
            variant: RwSignal::new(state.variant.clone()),
            baseline: RwSignal::new(None),
            current: RwSignal::new(None),
            results_shown: RwSignal::new(0),
            roles: RwSignal::new(Vec::new()),
            focus: RwSignal::new(state.focus),
            diff: RwSignal::new(state.diff),
            grid: RwSignal::new(GridView::default()),
            exporting: RwSignal::new(false),
            engine_choice: RwSignal::new(state.engine),
            plain_simd: state.plain_simd,
            one_thread: state.one_thread,
            worker_build: RwSignal::new(WorkerBuild::Simd128),
            engine_badge: RwSignal::new("Checking WebGPU…".into()),
            importance: RwSignal::new(Vec::new()),
            ranking: RwSignal::new(None),
            rank_status: RwSignal::new(None),
            generated: RwSignal::new(None),
            generation_summary: RwSignal::new(None),
            generation: RwSignal::new(GenerationView::default()),
            sampling: RwSignal::new(state.sampling),
            steer: RwSignal::new(state.steer.clone()),
            analysing: RwSignal::new(None),
            analysis: RwSignal::new(None),
            generating: RwSignal::new(None),
            model_version: RwSignal::new(0),
            engine_used: RwSignal::new(None),
            opening: StoredValue::new(None),
            lessons: RwSignal::new(Vec::new()),
            lessons_loaded: RwSignal::new(false),
            lesson_id: RwSignal::new(state.lesson.clone()),
            lesson_step: RwSignal::new(state.step),
            embed: state.embed,
            measuring: RwSignal::new(None),
            measured: RwSignal::new(None),
            pending_variant: StoredValue::new(None),
            pending_prompt: StoredValue::new(None),
            opening_files: StoredValue::new(None),
            yours: RwSignal::new(None),
            yours_shown: RwSignal::new(false),
            train: RwSignal::new(state.train.clone()),
            training: RwSignal::new(TrainView::default()),
        }
    }

    /// The URL's view of the state.
    pub fn page_state(&self) -> PageState {
        PageState {
            model: self.model_id.get(),
            prompt: Some(self.prompt.get()).filter(|p| !p.is_empty()),
            engine: self.engine_choice.get(),
            variant: self.variant.get(),
            focus: self.focus.get(),
            diff: self.diff.get(),
            lesson: self.lesson_id.get(),
            step: self.lesson_step.get(),
            embed: self.embed,
            train: self.train.get(),
            plain_simd: self.plain_simd,
            one_thread: self.one_thread,
            sampling: self.sampling.get(),
            steer: self.steer.get(),
        }
    }
}

impl Ui {
    /// The attention maps the page shows, which a forward reads back: the grid's layers and the
    /// enlarged map — every map while an export waits for them. The grid's maps come as
    /// thumbnails when the input has more tokens than a grid cell has device pixels a side.
    pub fn maps_wanted(&self) -> MapsWanted {
        let n_layer = self.info.with(|i| i.as_ref().map_or(0, |i| i.n_layer));
        if self.exporting.get() || n_layer == 0 {
            return MapsWanted::ALL;
        }
        let grid = self.grid.get();
        let pixels = grid.size.css_pixels() as f64 * crate::browser::device_pixel_ratio();
        let factor = pooling_factor(self.tokens.with(Vec::len), pixels.ceil() as usize);
        MapsWanted::shown((grid.first, grid.last), self.focus.get(), n_layer, factor)
    }

    /// The open lesson, once the lessons are loaded.
    pub fn lesson(&self) -> Option<Lesson> {
        let id = self.lesson_id.get()?;
        self.lessons
            .with(|all| all.iter().find(|l| l.id == id).cloned())
    }

    /// Whether a part of the page is shown: always, except in embed mode with a lesson open,
    /// where only what the lesson uses is.
    pub fn shows(&self, part: &str) -> bool {
        if !self.embed {
            return true;
        }
        let Some(id) = self.lesson_id.get() else {
            return true;
        };
        // Read in place: this runs for every panel on every change of the lesson list.
        self.lessons.with(|all| {
            all.iter()
                .find(|l| l.id == id)
                .is_some_and(|l| l.uses.iter().any(|u| u == part))
        })
    }
}

/// The page's transitions: what happens to the state when a model is installed, the GPU is
/// left, or a head is toggled. Panels and the controller call these; none of them needs the
/// worker.
impl Ui {
    /// Makes the model the worker just loaded the page's model, and resets what depended on the
    /// old one. The role scores arrive from the worker after.
    pub fn install(&self, info: ModelInfo, config: &ModelConfig) {
        let from_files = self.opening_files.try_update_value(Option::take).flatten();
        self.yours_shown.set(from_files.is_some());
        if let Some(title) = from_files {
            self.yours.set(Some(YourModel {
                title,
                language_model: attn_model::lesson::is_language_model_of(
                    info.causal,
                    info.classifier,
                    info.task.as_deref(),
                ),
                task: info.task.clone(),
            }));
        }
        match self.opening.try_update_value(Option::take).flatten() {
            Some(entry) => {
                if self.prompt.get_untracked().is_empty()
                    || self.model_id.get_untracked() != Some(entry.id.clone())
                {
                    if let Some(example) = entry.examples.first() {
                        self.prompt.set(example.clone());
                    }
                }
                self.model_id.set(Some(entry.id));
            }
            None => {
                self.model_id.set(None);
                if let Some(prompt) = self.pending_prompt.try_update_value(Option::take).flatten() {
                    self.prompt.set(prompt);
                }
            }
        }
        // A lesson step's variant, which waited for its model.
        if let Some(variant) = self
            .pending_variant
            .try_update_value(Option::take)
            .flatten()
        {
            self.variant.set(variant);
        }
        // Weights trained with linear attention run with it (their unmodified baseline does too),
        // unless a kernel was chosen.
        if info.linear_attention && self.variant.with_untracked(|v| v.kernel.is_none()) {
            self.variant
                .update(|v| v.kernel = Some(Kernel::Named(KernelName::Linear)));
        }
        // Variants that do not fit the new model are dropped with a message rather than failing.
        let fits = self.variant.with_untracked(|v| v.validate(config));
        if let Err(e) = fits {
            self.notices
                .update(|n| n.push(format!("The link's variant was reset: {e}")));
            self.variant.set(Variant::default());
        }
        if self
            .focus
            .get_untracked()
            .is_some_and(|(l, h)| l >= info.n_layer || h >= info.n_head)
        {
            self.focus.set(None);
        }
        self.roles.set(Vec::new());
        // The grid's view for the new model before its first forward, which reads back its maps.
        self.grid.set(GridView::at_open(info.n_layer, info.n_head));
        self.info.set(Some(info));
        self.baseline.set(None);
        self.current.set(None);
        self.importance.set(Vec::new());
        self.rank_status.set(None);
        self.generated.set(None);
        self.generation_summary.set(None);
        self.generation.set(GenerationView::default());
        self.model_version.update(|v| *v += 1);
    }

    /// Moves the page to the CPU engine for the rest of the visit, saying why.
    pub fn leave_gpu(&self, why: &str) {
        self.engine_badge.set(format!("CPU fallback — {why}"));
        self.notices.update(|n| {
            n.push(format!(
                "Switched to the CPU engine: {why}. Results are the same, only slower."
            ))
        });
    }

    /// Ablates head `(layer, head)` with the page's ablation mode, or restores it if it was
    /// ablated.
    pub fn toggle_head(&self, layer: usize, head: usize) {
        let mode = self.ablate_mode.get_untracked();
        self.variant.update(|v| {
            let mut ablate = v.heads.take().map(|h| h.ablate).unwrap_or_default();
            if let Some(pos) = ablate.iter().position(|p| *p == [layer, head]) {
                ablate.remove(pos);
            } else {
                ablate.push([layer, head]);
            }
            v.heads = (!ablate.is_empty()).then_some(HeadAblation { ablate, mode });
            *v = v.normalised();
        });
    }
}

/// How large the attention grid's maps are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapSize {
    Small,
    #[default]
    Medium,
    Large,
}

impl MapSize {
    pub const ALL: [MapSize; 3] = [MapSize::Small, MapSize::Medium, MapSize::Large];

    /// The name in the size menu and in the grid's CSS class (`size-small`, …).
    pub fn name(self) -> &'static str {
        match self {
            MapSize::Small => "small",
            MapSize::Medium => "medium",
            MapSize::Large => "large",
        }
    }

    /// The side of a grid cell's map in CSS pixels (`style.css`, `.grid.size-… .cell canvas`).
    pub fn css_pixels(self) -> usize {
        match self {
            MapSize::Small => 56,
            MapSize::Medium => 100,
            MapSize::Large => 160,
        }
    }
}

/// The part of the attention grid on screen: layers `first..=last` at one map size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridView {
    pub first: usize,
    pub last: usize,
    pub size: MapSize,
}

impl Default for GridView {
    fn default() -> Self {
        GridView {
            first: 0,
            last: usize::MAX,
            size: MapSize::Medium,
        }
    }
}

/// More maps than this and a new model opens showing only its first layers.
pub const MAX_MAPS_AT_OPEN: usize = 256;

impl GridView {
    /// What a newly opened model of `n_layer × n_head` shows: every layer while there are at most
    /// [`MAX_MAPS_AT_OPEN`] maps, else the first layers up to half that many maps; small maps
    /// when a layer has more than 16 heads.
    pub fn at_open(n_layer: usize, n_head: usize) -> GridView {
        let last = if n_layer * n_head <= MAX_MAPS_AT_OPEN {
            n_layer.saturating_sub(1)
        } else {
            ((MAX_MAPS_AT_OPEN / 2) / n_head.max(1)).clamp(1, n_layer) - 1
        };
        let size = if n_head > 16 {
            MapSize::Small
        } else {
            MapSize::Medium
        };
        GridView {
            first: 0,
            last,
            size,
        }
    }

    /// Whether layer `layer` is on screen.
    pub fn shows(&self, layer: usize) -> bool {
        (self.first..=self.last).contains(&layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_models_show_every_layer_and_large_ones_their_first() {
        assert_eq!(GridView::at_open(12, 12).last, 11, "GPT-2 small: 144 maps");
        let llama = GridView::at_open(32, 32);
        assert_eq!(
            (llama.first, llama.last, llama.size),
            (0, 3, MapSize::Small)
        );
        assert!(llama.shows(3) && !llama.shows(4));
        let wide = GridView::at_open(2, 300);
        assert_eq!(wide.last, 0, "at least one layer");
        assert_eq!(GridView::at_open(1, 1).last, 0);
    }
}
