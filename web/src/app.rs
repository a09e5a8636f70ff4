//! The playground page: a short composition of panels (`panels/`) over one page state
//! (`state.rs`), with the compute worker behind a controller (`controller.rs`). This file wires
//! them: the engine choice, the model list, input → tokens → forwards, state ↔ URL, and what
//! happens when a model is installed.

use attn_model::{ModelConfig, Variant};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::browser::{self, WebGpuStatus};
use crate::controller::{Controller, Job};
use crate::manifest::{parse_manifest, ModelEntry};
use crate::page_state::{EngineChoice, PageState};
use crate::panels::analysis::AnalysisPanel;
use crate::panels::controls::Controls;
use crate::panels::cost::CostPanel;
use crate::panels::heatmaps::{FocusView, HeatmapGrid};
use crate::panels::importance::ImportancePanel;
use crate::panels::input::InputPanel;
use crate::panels::model::ModelPanel;
use crate::panels::notices::Notices;
use crate::panels::output::OutputPanel;
use crate::protocol::ModelSource;
use crate::session::ModelInfo;
use crate::state::Ui;

/// Where the built-in models live, relative to the page.
const MODELS_BASE: &str = "models/";

#[component]
pub fn App() -> impl IntoView {
    let (state, problems) = PageState::from_pairs(&browser::query_pairs());
    let ui = Ui::from_url(&state, problems);
    let ctl = Controller::new(ui);
    provide_context(ui);
    provide_context(ctl);

    // The engine: WebGPU on a hardware adapter (or when the URL asks for it), the CPU engine
    // otherwise; the badge names the adapter and the engine in use, and why. The worker opens
    // the device itself.
    spawn_local(async move {
        let choice = ui.engine_choice.get_untracked();
        let status = browser::probe_webgpu().await;
        let wants_gpu = match (&status, choice) {
            (_, EngineChoice::Cpu) | (WebGpuStatus::Unavailable(_), _) => false,
            (WebGpuStatus::Adapter { fallback, .. }, EngineChoice::Auto) => !fallback,
            (WebGpuStatus::Adapter { .. }, EngineChoice::Gpu) => true,
        };
        if wants_gpu {
            ui.engine_badge
                .set("Opening the WebGPU device and compiling kernels…".into());
            ctl.use_gpu();
        } else {
            ui.engine_badge.set(engine_badge(&status, choice));
        }
    });

    // The model list, then the model the URL names (or the first one).
    spawn_local(async move {
        match browser::fetch_text(&format!("{MODELS_BASE}index.json"))
            .await
            .and_then(|t| parse_manifest(&t))
        {
            Ok(models) => {
                ui.manifest.set(models.clone());
                let wanted = ui.model_id.get_untracked();
                let entry = match &wanted {
                    Some(id) => match models.iter().find(|m| &m.id == id) {
                        Some(e) => Some(e.clone()),
                        None => {
                            ui.notices.update(|n| {
                                n.push(format!(
                                    "There is no built-in model called {id:?}; showing the first one instead."
                                ))
                            });
                            models.first().cloned()
                        }
                    },
                    None => models.first().cloned(),
                };
                match entry {
                    Some(entry) => load_builtin(ui, ctl, entry),
                    None => ui.loading.set(Some(
                        "No built-in models are listed; load one from disk.".into(),
                    )),
                }
            }
            Err(e) => {
                ui.loading.set(None);
                ui.error
                    .set(Some(format!("{e}. You can still load a model from disk.")));
            }
        }
    });

    // Input → tokens (the tokenizer runs here: it is quick, and the page needs the labels).
    Effect::new(move |_| {
        let text = ui.prompt.get();
        ui.model_version.track();
        let tokenized = ctl.with_text(|t| {
            t.tokenize_clamped(&text).map(|(tokens, notice)| {
                (
                    tokens.iter().map(|&id| t.label(id)).collect(),
                    tokens,
                    notice,
                )
            })
        });
        match tokenized {
            None => {}
            Some(Ok((labels, tokens, notice))) => {
                ui.labels.set(labels);
                ui.tokens.set(tokens);
                ui.input_notice.set(notice);
                ui.error.set(None);
            }
            Some(Err(e)) => {
                ui.tokens.set(Vec::new());
                ui.labels.set(Vec::new());
                ui.input_notice.set(None);
                ui.error.set(Some(e));
            }
        }
    });

    // Tokens or variant → forward passes in the worker (baseline and current). One runs at a
    // time and newer requests replace waiting ones, so a slider drag never queues up work.
    Effect::new(move |_| {
        let tokens = ui.tokens.get();
        let variant = ui.variant.get();
        ui.model_version.track();
        if !tokens.is_empty() {
            ctl.run(ui, Job { tokens, variant });
        }
    });

    // State → URL (replace while dragging; the model and prompt push history entries).
    Effect::new(move |prev: Option<(Option<String>, String)>| {
        let state = ui.page_state();
        let key = (
            state.model.clone(),
            state.prompt.clone().unwrap_or_default(),
        );
        let push = prev.as_ref().is_some_and(|p| p != &key);
        browser::set_query(&state.to_pairs(), push);
        key
    });

    // Back/forward: read the URL again.
    let _ = window_event_listener(leptos::ev::popstate, move |_| {
        let (state, problems) = PageState::from_pairs(&browser::query_pairs());
        ui.notices.set(problems);
        ui.variant.set(state.variant);
        ui.focus.set(state.focus);
        ui.diff.set(state.diff);
        if let Some(p) = state.prompt {
            ui.prompt.set(p);
        }
        if state.model != ui.model_id.get_untracked() {
            if let Some(entry) = state.model.and_then(|id| {
                ui.manifest
                    .with_untracked(|m| m.iter().find(|e| e.id == id).cloned())
            }) {
                load_builtin(ui, ctl, entry);
            }
        }
    });

    view! {
        <header class="top">
            <h1 data-testid="app-title">"Attention Playground"</h1>
            <span class="badge" data-testid="engine-badge">{move || ui.engine_badge.get()}</span>
        </header>
        <Notices />
        <main class="layout">
            <section class="panel model-panel"><ModelPanel /></section>
            <section class="panel input-panel"><InputPanel /></section>
            <section class="panel controls-panel"><Controls /></section>
            <section class="panel output-panel"><OutputPanel /></section>
            <section class="panel cost-panel-wrap"><CostPanel /></section>
            <section class="panel heatmap-panel">
                <HeatmapGrid />
                <FocusView />
            </section>
            <section class="panel importance-panel"><ImportancePanel /></section>
            <section class="panel analysis-panel"><AnalysisPanel /></section>
        </main>
        <footer class="foot">
            "Runs entirely in your browser. State lives in the URL: copy it to share this view."
        </footer>
    }
}

/// The badge when the page stays on the CPU engine: which adapter there is, and why it is not used.
fn engine_badge(status: &WebGpuStatus, choice: EngineChoice) -> String {
    match (status, choice) {
        (_, EngineChoice::Cpu) => "CPU engine (chosen in the URL)".into(),
        (WebGpuStatus::Unavailable(why), _) => format!("CPU fallback — {why}"),
        (
            WebGpuStatus::Adapter {
                name,
                fallback: true,
            },
            _,
        ) => format!(
            "CPU fallback — WebGPU adapter {name} is a software fallback (the CPU engine is \
             faster there; add engine=gpu to the URL to use it anyway)"
        ),
        (WebGpuStatus::Adapter { name, .. }, _) => {
            format!("WebGPU adapter: {name} · running on the CPU engine")
        }
    }
}

/// Starts loading a built-in model in the worker; [`install`] finishes when it is ready.
pub fn load_builtin(ui: Ui, ctl: Controller, entry: ModelEntry) {
    ui.loading.set(Some(format!("Loading {}…", entry.title)));
    ui.opening.set_value(Some(entry.clone()));
    ctl.open(
        ModelSource::Url(format!("{MODELS_BASE}{}", entry.file)),
        entry.title,
        entry.description,
        entry.examples,
    );
}

/// Moves the page to the CPU engine for the rest of the visit, saying why.
pub fn leave_gpu(ui: Ui, why: &str) {
    ui.engine_badge.set(format!("CPU fallback — {why}"));
    ui.notices.update(|n| {
        n.push(format!(
            "Switched to the CPU engine: {why}. Results are the same, only slower."
        ))
    });
}

/// Makes the model the worker just loaded the page's model, and resets what depended on the
/// old one. The role scores arrive from the worker after.
pub fn install(ui: Ui, info: ModelInfo, config: &ModelConfig) {
    match ui.opening.try_update_value(Option::take).flatten() {
        Some(entry) => {
            if ui.prompt.get_untracked().is_empty()
                || ui.model_id.get_untracked() != Some(entry.id.clone())
            {
                if let Some(example) = entry.examples.first() {
                    ui.prompt.set(example.clone());
                }
            }
            ui.model_id.set(Some(entry.id));
        }
        None => ui.model_id.set(None),
    }
    // Variants that do not fit the new model are dropped with a message rather than failing.
    let fits = ui.variant.with_untracked(|v| v.validate(config));
    if let Err(e) = fits {
        ui.notices
            .update(|n| n.push(format!("The link's variant was reset: {e}")));
        ui.variant.set(Variant::default());
    }
    if ui
        .focus
        .get_untracked()
        .is_some_and(|(l, h)| l >= info.n_layer || h >= info.n_head)
    {
        ui.focus.set(None);
    }
    ui.roles.set(Vec::new());
    ui.info.set(Some(info));
    ui.baseline.set(None);
    ui.current.set(None);
    ui.importance.set(Vec::new());
    ui.rank_status.set(None);
    ui.generated.set(None);
    ui.model_version.update(|v| *v += 1);
}
