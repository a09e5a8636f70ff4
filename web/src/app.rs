//! The playground page: a short composition of panels (`panels/`) over one page state
//! (`state.rs`), with the compute worker behind a controller (`controller.rs`). This file wires
//! them: the engine choice, the model list, input → tokens → forwards, state ↔ URL, and what
//! happens when a model is installed.

use attn_model::Variant;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::browser::{self, WebGpuStatus};
use crate::controller::{Controller, Job};
use crate::manifest::{parse_manifest, MODELS_BASE};
use crate::page_state::{PageState, SteerSpec};
use crate::panels::analysis::AnalysisPanel;
use crate::panels::controls::Controls;
use crate::panels::cost::CostPanel;
use crate::panels::heatmaps::{FocusView, HeatmapGrid};
use crate::panels::importance::ImportancePanel;
use crate::panels::input::InputPanel;
use crate::panels::lesson::{self, apply_step, load_lessons, LessonPanel};
use crate::panels::model::ModelPanel;
use crate::panels::notices::Notices;
use crate::panels::output::OutputPanel;
use crate::panels::train::TrainPanel;
use crate::protocol::{Analysis, EngineChoice};
use crate::state::Ui;

#[component]
pub fn App() -> impl IntoView {
    let (state, problems) = PageState::from_pairs(&browser::query_pairs());
    let ui = Ui::from_url(&state, problems);
    let ctl = Controller::new(ui);
    provide_context(ui);
    provide_context(ctl);
    expose_fault_injection(ctl);

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
            ui.engine_badge.set("Opening the WebGPU device…".into());
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
                // A lesson opened without a model loads its step's model itself.
                let lesson_chooses = wanted.is_none() && ui.lesson_id.get_untracked().is_some();
                match entry {
                    Some(_) if lesson_chooses => {}
                    Some(entry) => ctl.load_builtin(entry),
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

    // Lessons: the list, the arrow keys, and each step's state applied when the step opens. A
    // link that names a model keeps the page it describes (a reload keeps what the learner
    // changed); a step opened from the page, or a lesson link without a model, sets the page.
    load_lessons(ui);
    lesson::keyboard(ui);
    let url_has_model = ui.model_id.get_untracked().is_some();
    let applied = StoredValue::new(None::<(String, usize)>);
    let first = StoredValue::new(true);
    Effect::new(move |_| {
        let lesson = ui.lesson();
        let step = ui.lesson_step.get();
        if ui.manifest.with(Vec::is_empty) || !ui.lessons_loaded.get() {
            return;
        }
        let Some(lesson) = lesson else {
            applied.set_value(None);
            // An unknown lesson: show the first model, so the page is not empty.
            if ui.lesson_id.get_untracked().is_some()
                && ui.model_id.get_untracked().is_none()
                && ui.opening.with_value(Option::is_none)
                && ui.info.get_untracked().is_none()
            {
                if let Some(entry) = ui.manifest.with_untracked(|m| m.first().cloned()) {
                    ctl.load_builtin(entry);
                }
            }
            return;
        };
        let n = step.min(lesson.steps.len() - 1);
        let key = Some((lesson.id.clone(), n));
        if applied.get_value() == key {
            return;
        }
        applied.set_value(key);
        let keep_url = first.get_value() && url_has_model;
        first.set_value(false);
        let s = &lesson.steps[n];
        if !(keep_url && ui.model_id.get_untracked().as_deref() == Some(s.model.as_str())) {
            apply_step(ui, ctl, s);
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

    // Tokens, variant or the maps on screen → forward passes in the worker (baseline and
    // current). One runs at a time and newer requests replace waiting ones, so a slider drag
    // never queues up work.
    let maps = Memo::new(move |_| ui.maps_wanted());
    Effect::new(move |_| {
        let tokens = ui.tokens.get();
        let variant = ui.variant.get();
        let maps = maps.get();
        let steer = ui.steer.get();
        ui.model_version.track();
        let steer = match ctl.steer_ids(steer.as_ref()) {
            Ok(steer) => steer,
            Err(e) => {
                ui.error.set(Some(e));
                None
            }
        };
        if !tokens.is_empty() {
            ctl.run(Job {
                tokens,
                variant,
                maps,
                steer,
            });
        }
    });

    // A QK split belongs to the input, variant and steering it was computed on: a change of any
    // clears it (it is shown under the map, whose cells it explains).
    Effect::new(
        move |previous: Option<(Vec<u32>, Variant, Option<SteerSpec>)>| {
            let now = (ui.tokens.get(), ui.variant.get(), ui.steer.get());
            let split_shown = ui
                .analysis
                .with_untracked(|a| matches!(a, Some(Analysis::Qk(_))));
            if previous.is_some_and(|p| p != now) && split_shown {
                ui.analysis.set(None);
            }
            now
        },
    );

    // A variant change mid-generation starts the generation again with it.
    Effect::new(move |previous: Option<Variant>| {
        let variant = ui.variant.get();
        if previous.is_some_and(|p| p != variant) {
            ctl.restart_generation(variant.clone());
        }
        variant
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
        ui.lesson_id.set(state.lesson);
        ui.lesson_step.set(state.step);
        ui.train.set(state.train);
        ui.sampling.set(state.sampling);
        if let Some(p) = state.prompt {
            ui.prompt.set(p);
        }
        if state.model != ui.model_id.get_untracked() {
            if let Some(entry) = state.model.and_then(|id| {
                ui.manifest
                    .with_untracked(|m| m.iter().find(|e| e.id == id).cloned())
            }) {
                ctl.load_builtin(entry);
            }
        }
    });

    // In embed mode (`embed=1`) with a lesson open, only the lesson and what it uses are shown.
    let shows = move |part: &'static str| move || ui.shows(part);
    view! {
        <Show when=move || !ui.embed>
            <header class="top">
                <h1 data-testid="app-title">"Attention Playground"</h1>
                <span class="badge" data-testid="engine-badge">{move || ui.engine_badge.get()}</span>
            </header>
        </Show>
        <Notices />
        <main class="layout" class:embed=ui.embed>
            <section class="panel lesson-panel"><LessonPanel /></section>
            <Show when=shows("model")><section class="panel model-panel"><ModelPanel /></section></Show>
            <Show when=shows("input")><section class="panel input-panel"><InputPanel /></section></Show>
            <Show when=shows("controls")><section class="panel controls-panel"><Controls /></section></Show>
            <Show when=shows("output")><section class="panel output-panel"><OutputPanel /></section></Show>
            <Show when=shows("cost")><section class="panel cost-panel-wrap"><CostPanel /></section></Show>
            <Show when=shows("heatmaps")>
                <section class="panel heatmap-panel">
                    <HeatmapGrid />
                    <FocusView />
                </section>
            </Show>
            <Show when=shows("importance")><section class="panel importance-panel"><ImportancePanel /></section></Show>
            <Show when=shows("analysis")><section class="panel analysis-panel"><AnalysisPanel /></section></Show>
            <Show when=move || !ui.embed><section class="panel train-panel"><TrainPanel /></section></Show>
        </main>
        <Show when=move || !ui.embed>
            <footer class="foot">
                "Runs entirely in your browser. State lives in the URL: copy it to share this view."
            </footer>
        </Show>
    }
}

/// `window.attnFaults.loseDevice()` and `.crashWorker()`: fault injection for the recovery tests
/// (docs/RELIABILITY.md). They do to the page what a driver reset or a bug in the worker would;
/// nothing else calls them.
fn expose_fault_injection(ctl: Controller) {
    use wasm_bindgen::prelude::Closure;
    use wasm_bindgen::JsCast;
    let Some(window) = web_sys::window() else {
        return;
    };
    let faults = js_sys::Object::new();
    let entries = [
        (
            "loseDevice",
            Closure::<dyn Fn()>::new(move || ctl.simulate_device_loss()),
        ),
        (
            "crashWorker",
            Closure::<dyn Fn()>::new(move || ctl.crash_worker()),
        ),
    ];
    for (name, closure) in entries {
        let _ = js_sys::Reflect::set(&faults, &name.into(), closure.as_ref().unchecked_ref());
        closure.forget();
    }
    let _ = js_sys::Reflect::set(&window, &"attnFaults".into(), &faults);
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
