//! The page's state in one place: what the URL holds (model, input, variant, focused map, diff
//! view, engine choice), the installed model's description, the results the worker sent back, and
//! the progress of long jobs. Each field is a signal, so a panel re-renders only for what it
//! reads; panels get the state with `expect_context::<Ui>()`.

use attn_gpu::EngineKind;
use attn_model::engine::Step;
use attn_model::{AblationMode, HeadImportance, HeadRoles, Variant};
use leptos::prelude::*;

use crate::manifest::ModelEntry;
use crate::page_state::{EngineChoice, PageState};
use crate::session::{ModelInfo, RunResult};

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
    pub variant: RwSignal<Variant>,
    pub ablate_mode: RwSignal<AblationMode>,
    /// The unmodified model's output on the current input, and the variant's.
    pub baseline: RwSignal<Option<RunResult>>,
    pub current: RwSignal<Option<RunResult>>,
    pub roles: RwSignal<Vec<HeadRoles>>,
    pub focus: RwSignal<Option<(usize, usize)>>,
    pub diff: RwSignal<bool>,
    pub engine_choice: RwSignal<EngineChoice>,
    pub engine_badge: RwSignal<String>,
    pub importance: RwSignal<Vec<HeadImportance>>,
    /// The running head-importance ranking, and how the last one ended.
    pub ranking: RwSignal<Option<Step>>,
    pub rank_status: RwSignal<Option<String>>,
    pub generated: RwSignal<Option<String>>,
    /// The running generation.
    pub generating: RwSignal<Option<Step>>,
    /// Bumped when a model is installed (or moves to another engine): results start over.
    pub model_version: RwSignal<u32>,
    /// The engine behind the latest result, for the cost panel.
    pub engine_used: RwSignal<Option<EngineKind>>,
    /// The built-in model being loaded, until it is installed (`None` while loading from disk).
    pub opening: StoredValue<Option<ModelEntry>>,
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
            roles: RwSignal::new(Vec::new()),
            focus: RwSignal::new(state.focus),
            diff: RwSignal::new(state.diff),
            engine_choice: RwSignal::new(state.engine),
            engine_badge: RwSignal::new("Checking WebGPU…".into()),
            importance: RwSignal::new(Vec::new()),
            ranking: RwSignal::new(None),
            rank_status: RwSignal::new(None),
            generated: RwSignal::new(None),
            generating: RwSignal::new(None),
            model_version: RwSignal::new(0),
            engine_used: RwSignal::new(None),
            opening: StoredValue::new(None),
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
        }
    }
}
