//! The playground page: model, input, controls, outputs, heatmaps and costs, wired to one
//! reactive state that mirrors the URL.

use std::cell::RefCell;
use std::rc::Rc;

use attn_model::{
    compare, head_importance, prune_to_budget, AblationMode, Comparison, HeadAblation,
    HeadImportance, HeadRoles, Kernel, KernelName, Variant,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use attn_gpu::{GpuContext, GpuError};

use crate::browser::{self, WebGpuStatus};
use crate::heatmap;
use crate::manifest::{parse_manifest, ModelEntry};
use crate::page_state::{EngineChoice, PageState};
use crate::runner::Coalescer;
use crate::session::{model_from_files, EngineUsed, GpuPair, ModelInfo, RunResult, Session};
use crate::task_check::{self, Expected};

/// Where the built-in models live, relative to the page.
const MODELS_BASE: &str = "models/";

/// The shared, non-reactive session (the engine is not `Send`).
type SessionCell = Rc<RefCell<Option<Session>>>;

/// The WebGPU device, once one is open and chosen (DESIGN.md §4: not on software adapters unless
/// the URL says `engine=gpu`).
type GpuCell = Rc<RefCell<Option<GpuContext>>>;

/// A forward the page wants: the input and the variant, at one model version.
struct Job {
    tokens: Vec<u32>,
    variant: Variant,
}

#[derive(Clone, Copy)]
struct Ui {
    manifest: RwSignal<Vec<ModelEntry>>,
    model_id: RwSignal<Option<String>>,
    info: RwSignal<Option<ModelInfo>>,
    loading: RwSignal<Option<String>>,
    notices: RwSignal<Vec<String>>,
    error: RwSignal<Option<String>>,
    prompt: RwSignal<String>,
    tokens: RwSignal<Vec<u32>>,
    labels: RwSignal<Vec<String>>,
    variant: RwSignal<Variant>,
    ablate_mode: RwSignal<AblationMode>,
    baseline: RwSignal<Option<RunResult>>,
    current: RwSignal<Option<RunResult>>,
    roles: RwSignal<Vec<HeadRoles>>,
    focus: RwSignal<Option<(usize, usize)>>,
    diff: RwSignal<bool>,
    engine_choice: RwSignal<EngineChoice>,
    engine_badge: RwSignal<String>,
    importance: RwSignal<Vec<HeadImportance>>,
    generated: RwSignal<Option<String>>,
    model_version: RwSignal<u32>,
    /// The engine behind the latest result, for the cost panel.
    engine_used: RwSignal<Option<EngineUsed>>,
    gpu: StoredValue<GpuCell, LocalStorage>,
}

#[component]
pub fn App() -> impl IntoView {
    let (state, problems) = PageState::from_pairs(&browser::query_pairs());
    let ui = Ui {
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
        generated: RwSignal::new(None),
        model_version: RwSignal::new(0),
        engine_used: RwSignal::new(None),
        gpu: StoredValue::new_local(Rc::new(RefCell::new(None))),
    };
    let session: SessionCell = Rc::new(RefCell::new(None));
    let session = StoredValue::new_local(session);
    let runner = StoredValue::new_local(Rc::new(Coalescer::<Job>::default()));

    // The engine: WebGPU on a hardware adapter (or when the URL asks for it), the CPU engine
    // otherwise; the badge names the adapter and the engine in use, and why.
    spawn_local(async move {
        let choice = ui.engine_choice.get_untracked();
        let status = browser::probe_webgpu().await;
        let wants_gpu = match (&status, choice) {
            (_, EngineChoice::Cpu) | (WebGpuStatus::Unavailable(_), _) => false,
            (WebGpuStatus::Adapter { fallback, .. }, EngineChoice::Auto) => !fallback,
            (WebGpuStatus::Adapter { .. }, EngineChoice::Gpu) => true,
        };
        if !wants_gpu {
            ui.engine_badge.set(engine_badge(&status, choice));
            return;
        }
        ui.engine_badge
            .set("Opening the WebGPU device and compiling kernels…".into());
        match GpuContext::new().await {
            Ok(ctx) => {
                ui.engine_badge.set(format!(
                    "WebGPU adapter: {} · GPU engine{}",
                    ctx.adapter().name,
                    if choice == EngineChoice::Gpu {
                        " (chosen in the URL)"
                    } else {
                        ""
                    }
                ));
                *ui.gpu.get_value().borrow_mut() = Some(ctx);
                // A model that loaded first moves onto the GPU now.
                attach_gpu(ui, &session.get_value());
            }
            Err(e) => ui
                .engine_badge
                .set(format!("CPU fallback — WebGPU could not start: {e}")),
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
                    Some(entry) => load_builtin(ui, session.get_value(), entry).await,
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

    // Input → tokens.
    Effect::new(move |_| {
        let text = ui.prompt.get();
        ui.model_version.track();
        let cell = session.get_value();
        let guard = cell.borrow();
        let Some(s) = guard.as_ref() else { return };
        match s.tokenize(&text) {
            Ok(tokens) => {
                ui.labels.set(tokens.iter().map(|&t| s.label(t)).collect());
                ui.tokens.set(tokens);
                ui.error.set(None);
            }
            Err(e) => {
                ui.tokens.set(Vec::new());
                ui.labels.set(Vec::new());
                ui.error.set(Some(e));
            }
        }
    });

    // Tokens or variant → forward passes (baseline and current). One runs at a time and newer
    // requests replace waiting ones, so a slider drag never queues up work.
    Effect::new(move |_| {
        let tokens = ui.tokens.get();
        let variant = ui.variant.get();
        ui.model_version.track();
        if tokens.is_empty() {
            return;
        }
        let runner = runner.get_value();
        if runner.offer(Job { tokens, variant }) {
            let cell = session.get_value();
            spawn_local(async move {
                while let Some(job) = runner.next() {
                    run_job(ui, &cell, job).await;
                    // Let input events in before the next forward.
                    browser::next_tick().await;
                }
            });
        }
    });

    // State → URL (replace while dragging; the model and prompt push history entries).
    Effect::new(move |prev: Option<(Option<String>, String)>| {
        let state = PageState {
            model: ui.model_id.get(),
            prompt: Some(ui.prompt.get()).filter(|p| !p.is_empty()),
            engine: ui.engine_choice.get(),
            variant: ui.variant.get(),
            focus: ui.focus.get(),
            diff: ui.diff.get(),
        };
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
                spawn_local(async move { load_builtin(ui, session.get_value(), entry).await });
            }
        }
    });

    view! {
        <header class="top">
            <h1 data-testid="app-title">"Attention Playground"</h1>
            <span class="badge" data-testid="engine-badge">{move || ui.engine_badge.get()}</span>
        </header>
        <Notices ui=ui />
        <main class="layout">
            <section class="panel model-panel">
                <ModelPanel ui=ui session=session />
            </section>
            <section class="panel input-panel">
                <InputPanel ui=ui />
            </section>
            <section class="panel controls-panel">
                <Controls ui=ui />
            </section>
            <section class="panel output-panel">
                <OutputPanel ui=ui session=session />
            </section>
            <section class="panel cost-panel-wrap">
                <CostPanel ui=ui />
            </section>
            <section class="panel heatmap-panel">
                <HeatmapGrid ui=ui />
                <FocusView ui=ui />
            </section>
            <section class="panel importance-panel">
                <ImportancePanel ui=ui session=session />
            </section>
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

async fn load_builtin(ui: Ui, cell: SessionCell, entry: ModelEntry) {
    ui.loading.set(Some(format!("Loading {}…", entry.title)));
    match browser::fetch_bytes(&format!("{MODELS_BASE}{}", entry.file)).await {
        Ok(bytes) => match attn_model::Model::from_safetensors_bytes(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                Session::new(
                    m,
                    entry.title.clone(),
                    entry.description.clone(),
                    entry.examples.clone(),
                )
            }) {
            Ok(s) => {
                if ui.prompt.get_untracked().is_empty()
                    || ui.model_id.get_untracked() != Some(entry.id.clone())
                {
                    if let Some(example) = entry.examples.first() {
                        ui.prompt.set(example.clone());
                    }
                }
                ui.model_id.set(Some(entry.id.clone()));
                install(ui, &cell, s);
            }
            Err(e) => ui.error.set(Some(format!("{}: {e}", entry.title))),
        },
        Err(e) => ui.error.set(Some(e)),
    }
    ui.loading.set(None);
}

/// Runs one job: the baseline when the input changed, then the variant; on the GPU engine when
/// the session has one, else on the CPU engine. A GPU failure other than a bad input moves the
/// page to the CPU engine for good, with a message, and runs the job there.
async fn run_job(ui: Ui, cell: &SessionCell, job: Job) {
    let Job { tokens, variant } = job;
    let need_baseline = ui
        .baseline
        .with_untracked(|b| b.as_ref().map(|r| &r.tokens) != Some(&tokens));
    let version = ui.model_version.get_untracked();
    // Taken out of the session so no borrow is held across the await.
    let pair = cell.borrow_mut().as_mut().and_then(|s| s.gpu.take());
    if let Some(mut pair) = pair {
        let result = async {
            let baseline = match need_baseline {
                true => Some(pair.run(true, &Variant::default(), &tokens).await?),
                false => None,
            };
            let current = pair.run(false, &variant, &tokens).await?;
            Ok::<_, GpuError>((baseline, current))
        }
        .await;
        if ui.model_version.get_untracked() != version {
            return; // Another model was installed meanwhile: these results are stale.
        }
        match result {
            Ok((baseline, current)) => {
                if let Some(s) = cell.borrow_mut().as_mut() {
                    s.gpu = Some(pair);
                }
                if let Some(b) = baseline {
                    ui.baseline.set(Some(b));
                }
                ui.engine_used.set(Some(current.engine));
                ui.current.set(Some(current));
                ui.error.set(None);
                return;
            }
            Err(GpuError::Model(e)) => {
                if let Some(s) = cell.borrow_mut().as_mut() {
                    s.gpu = Some(pair);
                }
                ui.error.set(Some(e.to_string()));
                return;
            }
            Err(e) => leave_gpu(ui, &format!("the GPU engine failed ({e})")),
        }
    }
    let mut guard = cell.borrow_mut();
    let Some(s) = guard.as_mut() else { return };
    if need_baseline {
        match s.run(&Variant::default(), &tokens) {
            Ok(r) => ui.baseline.set(Some(r)),
            Err(e) => return ui.error.set(Some(e)),
        }
    }
    match s.run(&variant, &tokens) {
        Ok(r) => {
            ui.engine_used.set(Some(r.engine));
            ui.current.set(Some(r));
            ui.error.set(None);
        }
        Err(e) => ui.error.set(Some(e)),
    }
}

/// Moves the page to the CPU engine for the rest of the visit, saying why.
fn leave_gpu(ui: Ui, why: &str) {
    *ui.gpu.get_value().borrow_mut() = None;
    ui.engine_badge.set(format!("CPU fallback — {why}"));
    ui.notices.update(|n| {
        n.push(format!(
            "Switched to the CPU engine: {why}. Results are the same, only slower."
        ))
    });
}

/// The GPU engines for the session's model, when the page has a GPU; a model the GPU cannot
/// hold stays on the CPU engine with a message.
fn gpu_pair_for(ui: Ui, s: &Session) -> Option<GpuPair> {
    let gpu = ui.gpu.get_value();
    let guard = gpu.borrow();
    let ctx = guard.as_ref()?;
    match GpuPair::new(ctx, s.engine.model().clone()) {
        Ok(pair) => Some(pair),
        Err(e) => {
            ui.notices
                .update(|n| n.push(format!("{} runs on the CPU engine: {e}", s.info.title)));
            None
        }
    }
}

/// Moves a model that loaded before the GPU was ready onto the GPU, and runs it again there.
fn attach_gpu(ui: Ui, cell: &SessionCell) {
    let attached = {
        let mut guard = cell.borrow_mut();
        match guard.as_mut() {
            Some(s) if s.gpu.is_none() => {
                s.gpu = gpu_pair_for(ui, s);
                s.gpu.is_some()
            }
            _ => false,
        }
    };
    if attached {
        ui.baseline.set(None);
        ui.current.set(None);
        ui.model_version.update(|v| *v += 1);
    }
}

/// Makes `s` the running session and resets what depended on the old one.
fn install(ui: Ui, cell: &SessionCell, mut s: Session) {
    s.gpu = gpu_pair_for(ui, &s);
    let roles = s.roles();
    let info = s.info.clone();
    // Variants that do not fit the new model are dropped with a message rather than failing.
    let variant = ui.variant.get_untracked();
    let fits = variant.validate(&s.engine.model().config);
    *cell.borrow_mut() = Some(s);
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
    ui.roles.set(roles);
    ui.info.set(Some(info));
    ui.baseline.set(None);
    ui.current.set(None);
    ui.importance.set(Vec::new());
    ui.generated.set(None);
    ui.model_version.update(|v| *v += 1);
}

#[component]
fn Notices(ui: Ui) -> impl IntoView {
    view! {
        <div class="notices" role="status" aria-live="polite">
            {move || ui.loading.get().map(|m| view! { <p class="loading">{m}</p> })}
            {move || ui.error.get().map(|m| view! { <p class="error" data-testid="error">{m}</p> })}
            {move || {
                ui.notices
                    .get()
                    .into_iter()
                    .map(|m| view! { <p class="notice">{m}</p> })
                    .collect_view()
            }}
        </div>
    }
}

#[component]
fn ModelPanel(ui: Ui, session: StoredValue<SessionCell, LocalStorage>) -> impl IntoView {
    let on_pick = move |ev: leptos::ev::Event| {
        let id = event_target_value(&ev);
        let entry = ui
            .manifest
            .with_untracked(|m| m.iter().find(|e| e.id == id).cloned());
        if let Some(entry) = entry {
            ui.prompt
                .set(entry.examples.first().cloned().unwrap_or_default());
            ui.variant.set(Variant::default());
            ui.focus.set(None);
            spawn_local(async move { load_builtin(ui, session.get_value(), entry).await });
        }
    };
    let on_files = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = ev.target().unwrap().unchecked_into();
        let Some(list) = input.files() else { return };
        let files: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
        spawn_local(async move {
            ui.loading.set(Some("Reading files…".into()));
            let mut read = Vec::new();
            for f in &files {
                match browser::read_file(f).await {
                    Ok(bytes) => read.push((f.name(), bytes)),
                    Err(e) => {
                        ui.error.set(Some(e));
                        ui.loading.set(None);
                        return;
                    }
                }
            }
            let title = read
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>()
                .join(", ");
            match model_from_files(&read).and_then(|m| {
                Session::new(m, format!("From disk: {title}"), String::new(), Vec::new())
            }) {
                Ok(s) => {
                    ui.model_id.set(None);
                    install(ui, &session.get_value(), s);
                }
                Err(e) => ui.error.set(Some(format!("Could not load {title}: {e}"))),
            }
            ui.loading.set(None);
        });
    };
    view! {
        <h2>"Model"</h2>
        <label for="model-select">"Built-in model"</label>
        <select id="model-select" data-testid="model-select" on:change=on_pick>
            {move || {
                let current = ui.model_id.get();
                ui.manifest
                    .get()
                    .into_iter()
                    .map(|m| {
                        let selected = current.as_deref() == Some(m.id.as_str());
                        view! { <option value=m.id.clone() selected=selected>{m.title.clone()}</option> }
                    })
                    .collect_view()
            }}
        </select>
        {move || ui.info.get().map(|info| view! {
            <p class="description">{info.description.clone()}</p>
            <p class="facts">
                {format!(
                    "{} layers × {} heads ({} key/value), d_model {}, context {}, {} parameters{}",
                    info.n_layer, info.n_head, info.n_kv_head, info.d_model, info.n_ctx,
                    info.parameters,
                    if info.causal { "" } else { ", bidirectional" },
                )}
            </p>
        })}
        <label for="model-files">"Or load from disk (a .safetensors, or a GPT-2 directory's files)"</label>
        <input id="model-files" type="file" multiple on:change=on_files />
    }
}

#[component]
fn InputPanel(ui: Ui) -> impl IntoView {
    view! {
        <h2>"Input"</h2>
        <label for="prompt-input">"Text"</label>
        <textarea
            id="prompt-input"
            data-testid="prompt-input"
            rows="2"
            prop:value=move || ui.prompt.get()
            on:input=move |ev| ui.prompt.set(event_target_value(&ev))
        ></textarea>
        <div class="examples">
            {move || ui.info.get().map(|info| {
                info.examples
                    .into_iter()
                    .map(|ex| {
                        let label = ex.clone();
                        view! { <button class="chip-button" on:click=move |_| ui.prompt.set(ex.clone())>{label}</button> }
                    })
                    .collect_view()
            })}
        </div>
        <div class="tokens" data-testid="token-chips" aria-label="Tokens">
            {move || ui.labels.get().into_iter().enumerate().map(|(i, l)| view! {
                <span class="chip" title=format!("position {i}")>{l}</span>
            }).collect_view()}
        </div>
    }
}

/// Replaces `variant.heads` after toggling `(layer, head)`.
fn toggle_head(v: &mut Variant, layer: usize, head: usize, mode: AblationMode) {
    let mut ablate = v.heads.take().map(|h| h.ablate).unwrap_or_default();
    if let Some(pos) = ablate.iter().position(|p| *p == [layer, head]) {
        ablate.remove(pos);
    } else {
        ablate.push([layer, head]);
    }
    v.heads = (!ablate.is_empty()).then_some(HeadAblation { ablate, mode });
    *v = v.normalised();
}

fn parse_opt(s: &str) -> Option<usize> {
    s.parse::<usize>().ok().filter(|&n| n >= 1)
}

#[component]
fn Controls(ui: Ui) -> impl IntoView {
    let info = move || ui.info.get();
    let set = move |f: Box<dyn FnOnce(&mut Variant)>| {
        ui.variant.update(|v| {
            f(v);
            *v = v.normalised();
        })
    };
    let kv_options = move || {
        info()
            .map(|i| {
                (1..=i.n_kv_head)
                    .filter(|g| i.n_kv_head % g == 0 && i.n_head % g == 0)
                    .rev()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let max_rank = move || {
        let v = ui.variant.get();
        info()
            .map(|i| {
                let kv = v.kv_groups.unwrap_or(i.n_kv_head);
                i.d_model.min(2 * kv * i.d_head)
            })
            .unwrap_or(1)
    };
    let kernel_value = move || match ui.variant.get().kernel() {
        Kernel::Named(KernelName::Softmax) => "softmax".to_string(),
        Kernel::Named(KernelName::Linear) => "linear".to_string(),
        Kernel::RandomFeatures { .. } => "random_features".to_string(),
    };
    view! {
        <h2>"Attention controls"</h2>
        <div class="control">
            <label for="kv-groups">"Key/value heads (MHA → GQA → MQA)"</label>
            <select id="kv-groups" data-testid="kv-groups" on:change=move |ev| {
                let g = event_target_value(&ev).parse::<usize>().ok();
                set(Box::new(move |v| v.kv_groups = g));
            }>
                {move || {
                    let current = ui.variant.get().kv_groups;
                    let n_kv = info().map(|i| i.n_kv_head).unwrap_or(1);
                    kv_options().into_iter().map(|g| {
                        let label = if g == n_kv { format!("{g} (as trained)") } else if g == 1 { "1 (MQA)".to_string() } else { format!("{g} (GQA)") };
                        let selected = current.unwrap_or(n_kv) == g;
                        view! { <option value=g.to_string() selected=selected>{label}</option> }
                    }).collect_view()
                }}
            </select>
        </div>
        <div class="control">
            <label for="kv-rank">
                "Latent K/V rank: "
                {move || ui.variant.get().kv_rank.map(|r| r.to_string()).unwrap_or_else(|| "full".into())}
            </label>
            <input id="kv-rank" data-testid="kv-rank" type="range" min="1"
                max=move || max_rank().to_string()
                prop:value=move || ui.variant.get().kv_rank.unwrap_or_else(max_rank).to_string()
                on:input=move |ev| {
                    let r = event_target_value(&ev).parse::<usize>().ok();
                    let max = max_rank();
                    set(Box::new(move |v| v.kv_rank = r.filter(|&r| r < max)));
                } />
            <p class="meter">"KV cache: "
                <span data-testid="kv-bytes">{move || ui.current.get().map(|r| r.output.kv_bytes_per_token.to_string()).unwrap_or_default()}</span>
                " bytes per token"
            </p>
        </div>
        <div class="control">
            <label for="window">
                "Sliding window: "
                {move || ui.variant.get().window.map(|w| w.to_string()).unwrap_or_else(|| "off".into())}
            </label>
            <input id="window" data-testid="window" type="range" min="0"
                max=move || info().map(|i| i.n_ctx).unwrap_or(1).to_string()
                prop:value=move || ui.variant.get().window.unwrap_or(0).to_string()
                on:input=move |ev| {
                    let w = parse_opt(&event_target_value(&ev));
                    set(Box::new(move |v| v.window = w));
                } />
        </div>
        <div class="control">
            <label for="top-k">"Top-k keys per query (0 = all)"</label>
            <input id="top-k" data-testid="top-k" type="number" min="0"
                prop:value=move || ui.variant.get().top_k.unwrap_or(0).to_string()
                on:input=move |ev| {
                    let k = parse_opt(&event_target_value(&ev));
                    set(Box::new(move |v| v.top_k = k));
                } />
        </div>
        <div class="control">
            <label for="beta">"Temperature β: " {move || format!("{:.2}", ui.variant.get().beta())}</label>
            <input id="beta" data-testid="beta" type="range" min="0.05" max="4" step="0.05"
                prop:value=move || ui.variant.get().beta().to_string()
                on:input=move |ev| {
                    let b = event_target_value(&ev).parse::<f32>().ok().filter(|b| *b > 0.0);
                    set(Box::new(move |v| v.beta = b));
                } />
        </div>
        <div class="control">
            <label for="kernel">"Attention kernel"</label>
            <select id="kernel" data-testid="kernel" on:change=move |ev| {
                let k = match event_target_value(&ev).as_str() {
                    "linear" => Some(Kernel::Named(KernelName::Linear)),
                    "random_features" => Some(Kernel::RandomFeatures { random_features: 64, seed: 0 }),
                    _ => None,
                };
                set(Box::new(move |v| v.kernel = k));
            }>
                {move || {
                    let current = kernel_value();
                    [("softmax", "softmax"), ("linear", "linear (elu + 1)"), ("random_features", "random features (Performer)")]
                        .into_iter()
                        .map(|(value, label)| view! { <option value=value selected=current == value>{label}</option> })
                        .collect_view()
                }}
            </select>
            {move || match ui.variant.get().kernel() {
                Kernel::RandomFeatures { random_features, seed } => Some(view! {
                    <label for="rf-m">"Random features m: " {random_features}</label>
                    <input id="rf-m" type="range" min="1" max="512" prop:value=random_features.to_string()
                        on:input=move |ev| {
                            let m = parse_opt(&event_target_value(&ev)).unwrap_or(1);
                            set(Box::new(move |v| v.kernel = Some(Kernel::RandomFeatures { random_features: m, seed })));
                        } />
                }),
                _ => None,
            }}
        </div>
        <div class="control">
            <label for="ablate-mode">"Ablated heads output"</label>
            <select id="ablate-mode" data-testid="ablate-mode" on:change=move |ev| {
                let mode = if event_target_value(&ev) == "mean" { AblationMode::Mean } else { AblationMode::Zero };
                ui.ablate_mode.set(mode);
                set(Box::new(move |v| if let Some(h) = &mut v.heads { h.mode = mode }));
            }>
                <option value="zero" selected=move || ui.ablate_mode.get() == AblationMode::Zero>"zeros"</option>
                <option value="mean" selected=move || ui.ablate_mode.get() == AblationMode::Mean>"mean over positions"</option>
            </select>
        </div>
        <fieldset class="control">
            <legend>"Drop a layer's attention"</legend>
            {move || info().map(|i| (0..i.n_layer).map(|layer| {
                let checked = move || ui.variant.get().drop_attention_layers.unwrap_or_default().contains(&layer);
                view! {
                    <label class="inline">
                        <input type="checkbox" data-testid="drop-layer" data-layer=layer.to_string()
                            prop:checked=checked
                            on:change=move |_| set(Box::new(move |v| {
                                let mut layers = v.drop_attention_layers.take().unwrap_or_default();
                                if let Some(p) = layers.iter().position(|&l| l == layer) { layers.remove(p); } else { layers.push(layer); }
                                v.drop_attention_layers = Some(layers);
                            })) />
                        {format!("layer {layer}")}
                    </label>
                }
            }).collect_view())}
        </fieldset>
        <button data-testid="reset" on:click=move |_| ui.variant.set(Variant::default())>"Reset to baseline"</button>
    }
}

#[component]
fn OutputPanel(ui: Ui, session: StoredValue<SessionCell, LocalStorage>) -> impl IntoView {
    let label = move |id: u32| {
        session
            .get_value()
            .borrow()
            .as_ref()
            .map(|s| s.output_label(id))
            .unwrap_or_else(|| id.to_string())
    };
    // For the built-in tasks: the right answer, and whether each run gives it.
    let check = move || {
        let task = ui.info.get()?.task?;
        let expected = task_check::expected(&task, &ui.labels.get())?;
        let verdict = |r: Option<RunResult>| -> Option<String> {
            let Expected::Answer(answer) = &expected else {
                return None;
            };
            let r = r?;
            let (top, _) = *r.output.top_at(r.output.seq_len - 1, 1).first()?;
            let said = label(top);
            Some(if &said == answer {
                format!("{said} ✓")
            } else {
                format!("{said} ✗")
            })
        };
        let (base, current) = (verdict(ui.baseline.get()), verdict(ui.current.get()));
        Some(match &expected {
            Expected::Answer(answer) => format!(
                "Right answer: {answer} · baseline says {} · with your changes: {}",
                base.unwrap_or_default(),
                current.unwrap_or_default()
            ),
            Expected::Open(why) => format!("No single right answer here: {why}."),
        })
    };
    let bars = move |result: Option<RunResult>| {
        result.map(|r| {
            let last = r.output.seq_len - 1;
            r.output
                .top_at(last, 10)
                .into_iter()
                .map(|(id, p)| {
                    let width = format!("width: {:.1}%", p * 100.0);
                    view! {
                        <li>
                            <span class="tok">{label(id)}</span>
                            <span class="bar"><span class="fill" style=width></span></span>
                            <span class="pct">{format!("{:.1}%", p * 100.0)}</span>
                        </li>
                    }
                })
                .collect_view()
        })
    };
    let generate = move |_| {
        let cell = session.get_value();
        let guard = cell.borrow();
        let Some(s) = guard.as_ref() else { return };
        let tokens = ui.tokens.get_untracked();
        let sampling = attn_model::Sampling::default();
        match attn_model::generate(&s.engine, &tokens, 40, &sampling) {
            Ok(ids) => ui.generated.set(Some(
                s.tokenizer
                    .as_ref()
                    .and_then(|t| t.decode(&ids).ok())
                    .unwrap_or_else(|| format!("{ids:?}")),
            )),
            Err(e) => ui.error.set(Some(e.to_string())),
        }
    };
    view! {
        <h2>"Next token"</h2>
        <div class="topk" data-testid="output-topk">
            <div>
                <h3>"Baseline"</h3>
                <ol class="bars">{move || bars(ui.baseline.get())}</ol>
            </div>
            <div>
                <h3>"With your changes"</h3>
                <ol class="bars" data-testid="output-topk-current">{move || bars(ui.current.get())}</ol>
            </div>
        </div>
        {move || check().map(|text| view! { <p class="task-check" data-testid="task-check">{text}</p> })}
        {move || ui.info.get().filter(|i| !i.classifier && i.tokenizer.is_some()).map(|_| view! {
            <button data-testid="generate" on:click=generate>"Generate 40 tokens"</button>
            <p class="generated" data-testid="generated">{move || ui.generated.get()}</p>
        })}
    }
}

#[component]
fn CostPanel(ui: Ui) -> impl IntoView {
    let comparison = move || -> Option<Comparison> {
        let (b, c) = (ui.baseline.get()?, ui.current.get()?);
        (b.output.seq_len == c.output.seq_len)
            .then(|| compare(&b.output, &c.output, &ui.tokens.get_untracked()))
    };
    view! {
        <h2>"Cost of the change"</h2>
        <dl class="costs" data-testid="cost-panel">
            <dt>"KL(baseline ‖ variant)"</dt>
            <dd data-testid="kl">{move || comparison().map(|c| format!("{:.4} nats", c.mean_kl))}</dd>
            <dt>"Top-1 agreement"</dt>
            <dd>{move || comparison().map(|c| format!("{:.0}%", c.top1_agreement * 100.0))}</dd>
            <dt>"Next-token loss"</dt>
            <dd>{move || comparison().and_then(|c| Some(format!("{:.3} → {:.3} nats", c.baseline_nll?, c.variant_nll?)))}</dd>
            <dt>"KV cache per token"</dt>
            <dd>{move || {
                let (b, c) = (ui.baseline.get()?, ui.current.get()?);
                Some(format!("{} → {} bytes", b.output.kv_bytes_per_token, c.output.kv_bytes_per_token))
            }}</dd>
            <dt>"Forward time"</dt>
            <dd><span data-testid="forward-ms">{move || ui.current.get().map(|r| format!("{:.1}", r.millis))}</span>" ms"
                <span class="muted" data-testid="engine-used">{move || ui.engine_used.get().map(|e| match e {
                    EngineUsed::Gpu => " on the GPU engine",
                    EngineUsed::Cpu => " on the CPU engine",
                })}</span>
            </dd>
        </dl>
    }
}

fn role_badge(roles: &[HeadRoles], layer: usize, head: usize) -> Option<&'static str> {
    roles
        .iter()
        .find(|r| r.layer == layer && r.head == head)
        .and_then(|r| r.dominant(0.4))
}

#[component]
fn HeatmapGrid(ui: Ui) -> impl IntoView {
    let cells = move || {
        let info = ui.info.get()?;
        Some(
            (0..info.n_layer)
                .map(|layer| {
                    let row = (0..info.n_head)
                        .map(|head| view! { <HeatmapCell ui=ui layer=layer head=head causal=info.causal /> })
                        .collect_view();
                    view! {
                        <div class="layer-row">
                            <span class="layer-label">{format!("L{layer}")}</span>
                            {row}
                        </div>
                    }
                })
                .collect_view(),
        )
    };
    view! {
        <h2>"Attention, every layer × head"</h2>
        <label class="inline">
            <input type="checkbox" data-testid="diff-toggle" prop:checked=move || ui.diff.get()
                on:change=move |_| ui.diff.update(|d| *d = !*d) />
            "Show the difference to the baseline"
        </label>
        <div class="legend" aria-hidden="true">
            {move || if ui.diff.get() {
                view! { <span>"less"</span><span class="scale diverging"></span><span>"more"</span> }.into_any()
            } else {
                view! { <span>"0"</span><span class="scale sequential"></span><span>"1"</span> }.into_any()
            }}
        </div>
        <div class="grid" data-testid="heatmap-grid">{cells}</div>
    }
}

#[component]
fn HeatmapCell(ui: Ui, layer: usize, head: usize, causal: bool) -> impl IntoView {
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let ablated = move || {
        ui.variant
            .get()
            .heads
            .is_some_and(|h| h.ablate.contains(&[layer, head]))
    };
    Effect::new(move |_| {
        let current = ui.current.get();
        let baseline = ui.baseline.get();
        let diff = ui.diff.get();
        let Some(el) = canvas.get() else { return };
        let Some(r) = current else { return };
        let t = r.output.seq_len;
        let base = baseline.filter(|b| diff && b.output.seq_len == t);
        let _ = heatmap::paint(
            &el,
            r.output.attention_map(layer, head),
            base.as_ref().map(|b| b.output.attention_map(layer, head)),
            t,
            causal,
        );
    });
    let badge = move || ui.roles.with(|r| role_badge(r, layer, head));
    view! {
        <div class="cell" data-testid="heatmap-cell" data-layer=layer.to_string() data-head=head.to_string()
            data-ablated=move || ablated().to_string() class:ablated=ablated>
            <canvas node_ref=canvas width="1" height="1"
                aria-label=format!("attention map of layer {layer} head {head}")
                on:click=move |_| ui.focus.set(Some((layer, head)))></canvas>
            <div class="cell-foot">
                <span>{format!("H{head}")}</span>
                {move || badge().map(|b| view! { <span class="role">{b}</span> })}
                <button class="ablate" data-testid="ablate-toggle" aria-pressed=move || ablated().to_string()
                    title="Ablate this head"
                    on:click=move |_| {
                        let mode = ui.ablate_mode.get_untracked();
                        ui.variant.update(|v| toggle_head(v, layer, head, mode));
                    }>
                    {move || if ablated() { "restore" } else { "ablate" }}
                </button>
            </div>
        </div>
    }
}

#[component]
fn FocusView(ui: Ui) -> impl IntoView {
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let hover = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let (Some((l, h)), Some(r), Some(info)) = (ui.focus.get(), ui.current.get(), ui.info.get())
        else {
            return;
        };
        let Some(el) = canvas.get() else { return };
        let t = r.output.seq_len;
        let base = ui
            .baseline
            .get()
            .filter(|b| ui.diff.get() && b.output.seq_len == t);
        let _ = heatmap::paint(
            &el,
            r.output.attention_map(l, h),
            base.as_ref().map(|b| b.output.attention_map(l, h)),
            t,
            info.causal,
        );
    });
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let (Some(el), Some((l, h)), Some(r)) = (
            canvas.get(),
            ui.focus.get_untracked(),
            ui.current.get_untracked(),
        ) else {
            return;
        };
        let rect = el.get_bounding_client_rect();
        let t = r.output.seq_len;
        let x = ((ev.client_x() as f64 - rect.left()) / rect.width() * t as f64).floor();
        let y = ((ev.client_y() as f64 - rect.top()) / rect.height() * t as f64).floor();
        if x < 0.0 || y < 0.0 || x >= t as f64 || y >= t as f64 {
            return hover.set(None);
        }
        let (i, j) = (y as usize, x as usize);
        let labels = ui.labels.get_untracked();
        let name = |k: usize| labels.get(k).cloned().unwrap_or_else(|| k.to_string());
        hover.set(Some(format!(
            "query {} ({i}) → key {} ({j}): {:.3}",
            name(i),
            name(j),
            r.output.attention_map(l, h)[i * t + j]
        )));
    };
    let export_png = move |_| {
        if let (Some(el), Some((l, h))) = (canvas.get_untracked(), ui.focus.get_untracked()) {
            if let Ok(url) = el.to_data_url() {
                let _ = browser::download_url(&format!("attention-L{l}-H{h}.png"), &url);
            }
        }
    };
    let export_json = move |_| {
        let Some(r) = ui.current.get_untracked() else {
            return;
        };
        let o = &r.output;
        let maps: Vec<Vec<Vec<&[f32]>>> = (0..o.n_layer)
            .map(|l| {
                (0..o.n_head)
                    .map(|h| o.attention_map(l, h).chunks(o.seq_len).collect())
                    .collect()
            })
            .collect();
        let json = serde_json::json!({
            "tokens": ui.tokens.get_untracked(),
            "token_labels": ui.labels.get_untracked(),
            "variant": ui.variant.get_untracked(),
            "top": o.top_at(o.seq_len - 1, 10),
            "kv_bytes_per_token": o.kv_bytes_per_token,
            "attention": maps,
        });
        let _ = browser::download(
            "attention.json",
            json.to_string().as_bytes(),
            "application/json",
        );
    };
    view! {
        {move || ui.focus.get().map(|(l, h)| view! {
            <div class="focus" data-testid="focus-view">
                <div class="focus-head">
                    <h3>{format!("Layer {l}, head {h}")}</h3>
                    <button data-testid="export-png" on:click=export_png>"Export PNG"</button>
                    <button data-testid="export-json" on:click=export_json>"Export JSON"</button>
                    <button on:click=move |_| ui.focus.set(None) aria-label="Close">"×"</button>
                </div>
                <div class="focus-body">
                    <div class="y-labels">
                        {move || ui.labels.get().into_iter().map(|l| view! { <span>{l}</span> }).collect_view()}
                    </div>
                    <canvas class="big" node_ref=canvas width="1" height="1" on:mousemove=on_move
                        on:mouseleave=move |_| hover.set(None)></canvas>
                </div>
                <div class="x-labels">
                    {move || ui.labels.get().into_iter().map(|l| view! { <span>{l}</span> }).collect_view()}
                </div>
                <p class="hover" data-testid="hover-readout">{move || hover.get().unwrap_or_else(|| "Hover over a cell".into())}</p>
            </div>
        })}
    }
}

#[component]
fn ImportancePanel(ui: Ui, session: StoredValue<SessionCell, LocalStorage>) -> impl IntoView {
    let budget = RwSignal::new(4usize);
    let rank = move |_| {
        let cell = session.get_value();
        let guard = cell.borrow();
        let Some(s) = guard.as_ref() else { return };
        let mut base = ui.variant.get_untracked();
        base.heads = None;
        match head_importance(
            &s.engine,
            &base,
            &ui.tokens.get_untracked(),
            ui.ablate_mode.get_untracked(),
        ) {
            Ok(r) => ui.importance.set(r),
            Err(e) => ui.error.set(Some(e.to_string())),
        }
    };
    let prune = move |_| {
        let ranking = ui.importance.get_untracked();
        if ranking.is_empty() {
            return;
        }
        let mut base = ui.variant.get_untracked();
        base.heads = None;
        ui.variant.set(prune_to_budget(
            &base,
            &ranking,
            budget.get_untracked(),
            ui.ablate_mode.get_untracked(),
        ));
    };
    view! {
        <h2>"Head importance"</h2>
        <button data-testid="rank-heads" on:click=rank>"Ablate each head in turn"</button>
        <label class="inline">"Keep the "
            <input type="number" min="0" class="small" data-testid="prune-budget" prop:value=move || budget.get().to_string()
                on:input=move |ev| budget.set(event_target_value(&ev).parse().unwrap_or(0)) />
            " most important heads "
        </label>
        <button data-testid="prune" on:click=prune disabled=move || ui.importance.with(Vec::is_empty)>"Prune to budget"</button>
        <ol class="importance" data-testid="importance">
            {move || {
                let ranking = ui.importance.get();
                let max = ranking.iter().map(|h| h.loss_increase.abs()).fold(1e-9, f64::max);
                ranking.into_iter().map(|h| {
                    let width = format!("width: {:.1}%", (h.loss_increase.max(0.0) / max) * 100.0);
                    view! {
                        <li>
                            <span class="tok">{format!("L{} H{}", h.layer, h.head)}</span>
                            <span class="bar"><span class="fill" style=width></span></span>
                            <span class="pct">{format!("{:+.3}", h.loss_increase)}</span>
                        </li>
                    }
                }).collect_view()
            }}
        </ol>
    }
}
