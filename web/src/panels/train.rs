//! The training panel: pick a task and an architecture (layers, query heads, key/value heads,
//! width, MLPs) and the run's seed, learning rate, batch and length; train in the compute
//! worker (attn-gpu's trainer on a WebGPU device, or attn-model's on the CPU) while the loss, the held-out
//! accuracy, every head's role scores and its attention on a fixed probe update; then open the
//! result in the playground or save it. The settings live in the URL, and the same seed gives
//! the same run, so a link reproduces a curve.

use attn_model::training::{Probe, Task, TrainConfig};
use leptos::prelude::*;

use crate::controller::Controller;
use crate::heatmap;
use crate::page_state::EngineChoice;
use crate::panels::plot::{Plot, PlotData, PlotPoint, PlotSeries};
use crate::protocol::TrainState;
use crate::state::Ui;

/// The character model's context in the page (the offline recipe's 128 is slow to train here).
pub const TEXT_CONTEXT: usize = 64;

/// The page's default run length: long enough for the induction head to form (it does around
/// step 150 with the default settings), short enough to watch.
const DEFAULT_STEPS: usize = 400;
/// At most this many points of the loss curve are drawn (every k-th step beyond).
const MAX_PLOTTED: usize = 200;

/// A training run's settings, as the panel and the URL hold them.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    pub task: Task,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub d_model: usize,
    pub mlp: bool,
    /// Rotary positions instead of a learned position table.
    pub rotary: bool,
    /// Linear attention (elu + 1) instead of softmax.
    pub linear: bool,
    pub seed: u64,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub steps: usize,
    /// Where it trains: the GPU trainer on a hardware adapter (`Auto`), or as chosen.
    pub engine: EngineChoice,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings::for_task(Task::Induction)
    }
}

impl TrainSettings {
    /// The task's built-in recipe (architecture, learning rate, batch), for a run of the page's
    /// default length.
    pub fn for_task(task: Task) -> TrainSettings {
        let c = task.default_config();
        if task == Task::Shakespeare {
            // A quarter of the offline model's size: ≈ 70 ms a step in the page.
            return TrainSettings {
                n_layer: 2,
                d_model: 64,
                batch_size: 16,
                ..TrainSettings::for_task(Task::Sort)
            }
            .with_task(task, &c);
        }
        TrainSettings {
            task,
            n_layer: c.model.n_layer,
            n_head: c.model.n_head,
            n_kv_head: c.model.n_kv_head.unwrap_or(c.model.n_head),
            d_model: c.model.d_model,
            mlp: c.model.mlp,
            rotary: c.model.rotary,
            linear: c.model.linear_attention,
            seed: c.seed,
            learning_rate: c.learning_rate,
            batch_size: c.batch_size,
            steps: c.steps.min(DEFAULT_STEPS),
            engine: EngineChoice::Auto,
        }
    }

    fn with_task(self, task: Task, c: &TrainConfig) -> TrainSettings {
        TrainSettings {
            task,
            learning_rate: c.learning_rate,
            seed: c.seed,
            ..self
        }
    }

    /// The trainer's config: the task's recipe with these settings, the warm-up at most a
    /// quarter of the run.
    pub fn to_config(&self) -> TrainConfig {
        let mut c = self.task.default_config();
        c.model.n_layer = self.n_layer;
        c.model.n_head = self.n_head;
        c.model.n_kv_head = (self.n_kv_head != self.n_head).then_some(self.n_kv_head);
        c.model.d_model = self.d_model;
        c.model.mlp = self.mlp;
        c.model.rotary = self.rotary;
        c.model.linear_attention = self.linear;
        c.seed = self.seed;
        c.learning_rate = self.learning_rate;
        c.batch_size = self.batch_size;
        c.steps = self.steps;
        c.warmup_steps = c.warmup_steps.min(self.steps / 4);
        if self.task == Task::Shakespeare {
            c.model.n_ctx = Some(TEXT_CONTEXT);
        }
        c
    }

    /// The URL's keys.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        [
            ("train", self.task.name().to_string()),
            ("train_layers", self.n_layer.to_string()),
            ("train_heads", self.n_head.to_string()),
            ("train_kv", self.n_kv_head.to_string()),
            ("train_d", self.d_model.to_string()),
            ("train_mlp", u8::from(self.mlp).to_string()),
            ("train_rope", u8::from(self.rotary).to_string()),
            (
                "train_kernel",
                if self.linear { "linear" } else { "softmax" }.to_string(),
            ),
            ("train_seed", self.seed.to_string()),
            ("train_lr", self.learning_rate.to_string()),
            ("train_batch", self.batch_size.to_string()),
            ("train_steps", self.steps.to_string()),
            ("train_engine", self.engine.as_str().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The settings a URL names (`None` without `train=`): the task's recipe, then each key
    /// that parses and fits; what does not is reported in `problems` and left at the recipe.
    pub fn from_pairs(pairs: &[(String, String)], problems: &mut Vec<String>) -> Option<Self> {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let name = get("train")?;
        let Some(task) = Task::from_name(name) else {
            problems.push(format!(
                "ignored train={name:?}: the page trains {}",
                Task::ALL.map(Task::name).join(", ")
            ));
            return None;
        };
        let mut s = TrainSettings::for_task(task);
        match get("train_kernel") {
            None | Some("softmax") => {}
            Some("linear") => s.linear = true,
            Some(other) => problems.push(format!(
                "ignored train_kernel={other:?}: expected softmax or linear"
            )),
        }
        if let Some(engine) = get("train_engine") {
            match EngineChoice::parse(engine) {
                Some(choice) => s.engine = choice,
                None => problems.push(format!(
                    "ignored train_engine={engine:?}: expected auto, gpu or cpu"
                )),
            }
        }
        let mut number = |key: &str, ok: &dyn Fn(f64) -> bool| -> Option<f64> {
            let value = get(key)?;
            match value.parse::<f64>() {
                Ok(v) if ok(v) => Some(v),
                _ => {
                    problems.push(format!("ignored {key}={value:?}: out of range"));
                    None
                }
            }
        };
        let count = |lo: f64, hi: f64| move |v: f64| v.fract() == 0.0 && (lo..=hi).contains(&v);
        if let Some(v) = number("train_layers", &count(1.0, 4.0)) {
            s.n_layer = v as usize;
        }
        if let Some(v) = number("train_heads", &count(1.0, 8.0)) {
            s.n_head = v as usize;
        }
        if let Some(v) = number("train_kv", &count(1.0, 8.0)) {
            s.n_kv_head = v as usize;
        }
        if let Some(v) = number("train_d", &|v| [16.0, 32.0, 64.0, 128.0].contains(&v)) {
            s.d_model = v as usize;
        }
        if let Some(v) = number("train_mlp", &count(0.0, 1.0)) {
            s.mlp = v == 1.0;
        }
        if let Some(v) = number("train_rope", &count(0.0, 1.0)) {
            s.rotary = v == 1.0;
        }
        if let Some(v) = number("train_seed", &count(0.0, 1e9)) {
            s.seed = v as u64;
        }
        if let Some(v) = number("train_lr", &|v| v > 0.0 && v <= 0.1) {
            s.learning_rate = v;
        }
        if let Some(v) = number("train_batch", &count(1.0, 256.0)) {
            s.batch_size = v as usize;
        }
        if let Some(v) = number("train_steps", &count(1.0, 100_000.0)) {
            s.steps = v as usize;
        }
        if !s.n_head.is_power_of_two() || s.n_head % s.n_kv_head != 0 {
            problems.push(format!(
                "ignored train_heads={} / train_kv={}: the query heads (1, 2, 4 or 8) must be \
                 a multiple of the key/value heads",
                s.n_head, s.n_kv_head
            ));
            let recipe = TrainSettings::for_task(task);
            (s.n_head, s.n_kv_head) = (recipe.n_head, recipe.n_kv_head);
        }
        Some(s)
    }

    /// The title of the trained model in the playground.
    pub fn title(&self) -> String {
        let kv = if self.n_kv_head == self.n_head {
            String::new()
        } else {
            format!(", {} K/V heads", self.n_kv_head)
        };
        format!(
            "Trained here: {} — {} layers × {} heads{kv}{}{}",
            self.task.name(),
            self.n_layer,
            self.n_head,
            if self.rotary { ", rotary" } else { "" },
            if self.linear {
                ", linear attention"
            } else {
                ""
            }
        )
    }
}

/// A checkpoint of a run: the held-out score and the heads' role scores.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub step: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub roles: Vec<attn_model::HeadRoles>,
}

/// Held-out (loss, accuracy) of the unmodified model and of the cut one, before healing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealScores {
    pub before: (f64, f64),
    pub cut: (f64, f64),
}

/// The run as the page shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainView {
    /// The job the page listens to.
    pub job: Option<u32>,
    pub state: Option<TrainState>,
    /// The run's title (what its model is called in the playground), its task and seed.
    pub title: String,
    pub task: Option<Task>,
    pub seed: Option<u64>,
    /// For a healing run: the held-out scores before and right after the cut.
    pub heal: Option<HealScores>,
    pub step: usize,
    pub steps: usize,
    /// Every step's training loss.
    pub losses: Vec<(usize, f64)>,
    pub checkpoints: Vec<Checkpoint>,
    pub probe: Option<Probe>,
    pub steps_per_second: f64,
    /// Where the run trains (the worker says, with the reason for a fallback).
    pub engine: String,
    pub error: Option<String>,
}

/// Every `k`-th point so that at most [`MAX_PLOTTED`] remain (the last one always).
fn thinned(points: &[(usize, f64)]) -> Vec<(usize, f64)> {
    let k = points.len().div_ceil(MAX_PLOTTED).max(1);
    let mut out: Vec<(usize, f64)> = points.iter().step_by(k).copied().collect();
    if let (Some(last), Some(kept)) = (points.last(), out.last()) {
        if last != kept {
            out.push(*last);
        }
    }
    out
}

fn curve_plot(view: &TrainView) -> PlotData {
    let point = |step: usize, y: f64, label: &str| PlotPoint {
        x: step as f64,
        y,
        label: label.to_string(),
    };
    let mut series = vec![PlotSeries {
        name: "training loss".into(),
        points: thinned(&view.losses)
            .into_iter()
            .map(|(s, l)| point(s, l, "training loss"))
            .collect(),
    }];
    if !view.checkpoints.is_empty() {
        series.push(PlotSeries {
            name: "held-out loss".into(),
            points: view
                .checkpoints
                .iter()
                .map(|c| point(c.step, c.loss, "held-out loss"))
                .collect(),
        });
        series.push(PlotSeries {
            name: "held-out accuracy".into(),
            points: view
                .checkpoints
                .iter()
                .map(|c| point(c.step, c.accuracy, "held-out accuracy"))
                .collect(),
        });
    }
    PlotData {
        name: "training-curve".into(),
        x_label: "step".into(),
        y_label: "loss (nats) / accuracy".into(),
        series,
        lines: true,
        reference: view
            .heal
            .map(|h| (h.before.1, "accuracy before the cut".to_string())),
        ..PlotData::default()
    }
}

/// The induction score of every head over the checkpoints (the jump is the phase change).
fn roles_plot(view: &TrainView) -> PlotData {
    let heads = view.checkpoints.first().map_or(0, |c| c.roles.len());
    let series = (0..heads)
        .map(|i| {
            let (l, h) = view.checkpoints[0]
                .roles
                .get(i)
                .map_or((0, 0), |r| (r.layer, r.head));
            PlotSeries {
                name: format!("L{l}H{h}"),
                points: view
                    .checkpoints
                    .iter()
                    .filter_map(|c| c.roles.get(i).map(|r| (c.step, r.induction)))
                    .map(|(s, v)| PlotPoint {
                        x: s as f64,
                        y: v as f64,
                        label: format!("L{l}H{h} induction score"),
                    })
                    .collect(),
            }
        })
        .collect();
    PlotData {
        name: "induction-scores".into(),
        x_label: "step".into(),
        y_label: "induction score".into(),
        series,
        lines: true,
        ..PlotData::default()
    }
}

/// A number input bound to one field of the settings.
fn number_input(
    ui: Ui,
    id: &'static str,
    label: &'static str,
    get: fn(&TrainSettings) -> String,
    put: fn(&mut TrainSettings, &str),
) -> impl IntoView {
    view! {
        <div class="field">
        <label for=id>{label}</label>
        <input id=id data-testid=id type="text" inputmode="decimal" size="7"
            prop:value=move || ui.train.get().map(|s| get(&s)).unwrap_or_default()
            on:change=move |ev| {
                let value = event_target_value(&ev);
                ui.train.update(|s| {
                    if let Some(s) = s {
                        put(s, value.trim());
                    }
                });
            } />
        </div>
    }
}

/// A choice among `options` bound to one field of the settings.
fn choice(
    ui: Ui,
    id: &'static str,
    label: &'static str,
    options: impl Fn(&TrainSettings) -> Vec<usize> + Copy + Send + Sync + 'static,
    get: fn(&TrainSettings) -> usize,
    put: fn(&mut TrainSettings, usize),
) -> impl IntoView {
    view! {
        <div class="field">
        <label for=id>{label}</label>
        <select id=id data-testid=id on:change=move |ev| {
            if let Ok(n) = event_target_value(&ev).parse::<usize>() {
                ui.train.update(|s| {
                    if let Some(s) = s {
                        put(s, n);
                    }
                });
            }
        }>
            {move || ui.train.get().map(|s| {
                let current = get(&s);
                options(&s).into_iter().map(|n| {
                    view! { <option value=n.to_string() selected={n == current}>{n.to_string()}</option> }
                }).collect_view()
            })}
        </select>
        </div>
    }
}

/// A checkbox bound to one switch of the settings.
fn checkbox(
    ui: Ui,
    id: &'static str,
    label: &'static str,
    title: &'static str,
    field: fn(&mut TrainSettings) -> &mut bool,
) -> impl IntoView {
    view! {
        <div class="field">
        <label for=id title=title>{label}</label>
        <input id=id data-testid=id type="checkbox"
            prop:checked=move || ui.train.get().is_some_and(|mut s| *field(&mut s))
            on:change=move |ev| {
                let on = event_target_checked(&ev);
                ui.train.update(|s| if let Some(s) = s { *field(s) = on });
            } />
        </div>
    }
}

#[component]
pub fn TrainPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let ctl = expect_context::<Controller>();
    let open = move || ui.train.with(Option::is_some);
    let on_toggle = move |ev: leptos::ev::Event| {
        use wasm_bindgen::JsCast;
        let Some(details) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlDetailsElement>().ok())
        else {
            return;
        };
        match (details.open(), open()) {
            (true, false) => ui.train.set(Some(TrainSettings::default())),
            (false, true) => ui.train.set(None),
            _ => {}
        }
    };
    let running = move || ui.training.with(|t| t.state == Some(TrainState::Running));
    let has_run = move || ui.training.with(|t| t.state.is_some());
    let start = move |_| {
        if let Some(settings) = ui.train.get_untracked() {
            ctl.train_start(ui, settings);
        }
    };
    let pause = move |_| {
        if running() {
            ctl.train_pause();
        } else {
            ctl.train_resume(ui);
        }
    };
    let pause_label = move || {
        let t = ui.training.with(|t| t.state);
        match t {
            Some(TrainState::Running) => "Pause",
            Some(TrainState::Finished) => "Continue",
            _ => "Resume",
        }
    };
    let task_select = move |ev: leptos::ev::Event| {
        if let Some(task) = Task::from_name(&event_target_value(&ev)) {
            // A new task's recipe, trained where the previous one was.
            let engine = ui
                .train
                .get_untracked()
                .map(|s| s.engine)
                .unwrap_or_default();
            ui.train.set(Some(TrainSettings {
                engine,
                ..TrainSettings::for_task(task)
            }));
        }
    };
    let status = move || {
        ui.training.with(|t| {
            let last_loss = t.losses.last().map(|(_, l)| format!("{l:.4}"));
            let check = t.checkpoints.last();
            view! {
                <p class="train-status">
                    <span data-testid="train-step">{format!("Step {} of {}", t.step, t.steps)}</span>
                    " · training loss "
                    <span data-testid="train-loss">{last_loss.unwrap_or_else(|| "–".into())}</span>
                    " · held-out accuracy "
                    <span data-testid="train-accuracy">{check.map_or("–".into(), |c| format!("{:.3}", c.accuracy))}</span>
                    {(t.steps_per_second > 0.0).then(|| format!(" · {:.1} steps/s", t.steps_per_second))}
                    {match t.state {
                        Some(TrainState::Finished) => " · finished",
                        Some(TrainState::Paused) => " · paused",
                        Some(TrainState::Running) => " · training…",
                        None => "",
                    }}
                    {(!t.engine.is_empty()).then(|| view! {
                        <span class="train-engine" data-testid="train-engine">{format!(" · on {}", t.engine)}</span>
                    })}
                </p>
            }
        })
    };
    let curves = move || {
        ui.training.with(|t| {
            (!t.losses.is_empty()).then(|| {
                view! {
                    <Plot data=curve_plot(t) testid="train-plot" />
                    {(!t.checkpoints.is_empty()).then(|| view! { <Plot data=roles_plot(t) testid="train-roles-plot" /> })}
                }
            })
        })
    };
    view! {
        <details class="train" data-testid="train-panel" prop:open=open on:toggle=on_toggle>
            <summary><h2>"Train a model"</h2></summary>
            <p class="hint">
                "Pick a task and the number of heads, train here, and watch the heads form — on the "
                "induction task the loss plateaus, then drops as an induction head appears; "
                "shakespeare is a character model on Romeo and Juliet and A Midsummer Night's "
                "Dream. The same seed gives the same run: the link reproduces it."
            </p>
            <div class="train-settings">
                <div class="field">
                <label for="train-task">"Task"</label>
                <select id="train-task" data-testid="train-task" on:change=task_select>
                    {move || {
                        let current = ui.train.get().map(|s| s.task);
                        Task::ALL.iter().map(|t| {
                            view! { <option value=t.name() selected={Some(*t) == current}>{t.name()}</option> }
                        }).collect_view()
                    }}
                </select>
                </div>
                {choice(ui, "train-layers", "Layers", |_| vec![1, 2, 3, 4], |s| s.n_layer, |s, n| s.n_layer = n)}
                {choice(ui, "train-heads", "Query heads", |_| vec![1, 2, 4, 8], |s| s.n_head, |s, n| {
                    s.n_head = n;
                    if n % s.n_kv_head != 0 || s.n_kv_head > n {
                        s.n_kv_head = n;
                    }
                })}
                {choice(ui, "train-kv-heads", "Key/value heads", |s| {
                    (1..=s.n_head).filter(|k| s.n_head % k == 0).collect()
                }, |s| s.n_kv_head, |s, n| s.n_kv_head = n)}
                {choice(ui, "train-d", "d_model", |_| vec![16, 32, 64, 128], |s| s.d_model, |s, n| s.d_model = n)}
                {checkbox(ui, "train-mlp", "MLPs", "An MLP after each attention layer", |s| &mut s.mlp)}
                {checkbox(ui, "train-rotary", "Rotary positions",
                    "Rotary position embeddings on queries and keys instead of a learned position table",
                    |s| &mut s.rotary)}
                {checkbox(ui, "train-linear", "Linear attention",
                    "Train with linear attention (φ(q)·φ(k) with φ = elu + 1, normalised over the keys) instead of softmax; the model opens in the playground with that kernel",
                    |s| &mut s.linear)}
                <div class="field">
                <label for="train-on" title="Auto trains on the GPU when the page has a hardware WebGPU adapter and the GPU trainer trains the architecture (softmax attention, learned positions), on the CPU otherwise; the same seed gives the same run on either">"Train on"</label>
                <select id="train-on" data-testid="train-on" on:change=move |ev| {
                    if let Some(choice) = EngineChoice::parse(&event_target_value(&ev)) {
                        ui.train.update(|s| if let Some(s) = s { s.engine = choice });
                    }
                }>
                    {move || {
                        let current = ui.train.get().map(|s| s.engine);
                        [(EngineChoice::Auto, "auto"), (EngineChoice::Gpu, "GPU (WebGPU)"), (EngineChoice::Cpu, "CPU")]
                            .into_iter()
                            .map(|(choice, label)| view! {
                                <option value=choice.as_str() selected={Some(choice) == current}>{label}</option>
                            })
                            .collect_view()
                    }}
                </select>
                </div>
                {number_input(ui, "train-seed", "Seed", |s| s.seed.to_string(), |s, v| {
                    if let Ok(n) = v.parse() { s.seed = n }
                })}
                {number_input(ui, "train-lr", "Learning rate", |s| s.learning_rate.to_string(), |s, v| {
                    if let Ok(x) = v.parse::<f64>() { if x > 0.0 && x <= 0.1 { s.learning_rate = x } }
                })}
                {number_input(ui, "train-batch", "Batch", |s| s.batch_size.to_string(), |s, v| {
                    if let Ok(n) = v.parse::<usize>() { if (1..=256).contains(&n) { s.batch_size = n } }
                })}
                {number_input(ui, "train-steps", "Steps", |s| s.steps.to_string(), |s, v| {
                    if let Ok(n) = v.parse::<usize>() { if (1..=100_000).contains(&n) { s.steps = n } }
                })}
            </div>
            <div class="train-buttons">
                <button data-testid="train-start" on:click=start>
                    {move || if has_run() { "Restart" } else { "Start" }}
                </button>
                <button data-testid="train-pause" on:click=pause disabled=move || !has_run()>{pause_label}</button>
                <button data-testid="train-reset" on:click=move |_| ctl.train_reset(ui) disabled=move || !has_run()>"Reset"</button>
                <button data-testid="train-open" on:click=move |_| ctl.train_open(ui) disabled=move || !has_run()
                    title="Open the weights as they are now in the playground, with every tool of the page">
                    "Open in the playground"
                </button>
                <button data-testid="train-save" on:click=move |_| ctl.train_save() disabled=move || !has_run()>"Save .safetensors"</button>
            </div>
            {status}
            {move || ui.training.with(|t| t.error.clone()).map(|e| view! { <p class="error" data-testid="train-error">{e}</p> })}
            <Heal />
            <div class="train-views">
                {curves}
                <ProbeMaps />
            </div>
        </details>
    }
}

/// Healing the model on screen: fine-tune it on its task with the page's changes built in, and
/// compare the held-out score before the cut, right after it and after healing.
#[component]
fn Heal() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let ctl = expect_context::<Controller>();
    let steps = RwSignal::new(100usize);
    let heals = move || {
        ui.info.with(|i| {
            i.as_ref()
                .and_then(|i| i.task.as_deref())
                .and_then(Task::from_name)
                .and_then(Task::synthetic_data)
                .is_some()
        })
    };
    let start = move |_| ctl.heal_start(ui, steps.get_untracked());
    let table = move || {
        ui.training.with(|t| {
            let heal = t.heal?;
            let last = t.checkpoints.last().filter(|c| c.step > 0);
            let row = |what: String, (loss, accuracy): (f64, f64)| {
                view! { <tr><th>{what}</th><td>{format!("{loss:.4}")}</td><td>{format!("{accuracy:.3}")}</td></tr> }
            };
            Some(view! {
                <table class="heal-table" data-testid="heal-table">
                    <tr><th></th><th>"held-out loss"</th><th>"accuracy"</th></tr>
                    {row("unmodified".into(), heal.before)}
                    {row("after the cut".into(), heal.cut)}
                    {last.map(|c| row(format!("after healing ({} steps)", c.step), (c.loss, c.accuracy)))}
                </table>
            })
        })
    };
    view! {
        <Show when=heals>
            <div class="heal" data-testid="heal">
                <h3>"Heal the model on screen"</h3>
                <p class="hint">
                    "Fine-tune it on its task with your changes built into the weights — pooled "
                    "key/value heads stay pooled, a K/V rank cut stays cut, zero-ablated heads stay "
                    "silent — and see how much of the loss comes back (the uptraining of the GQA and "
                    "MLA papers)."
                </p>
                <div class="field">
                    <label for="heal-steps">"Steps"</label>
                    <input id="heal-steps" data-testid="heal-steps" type="text" inputmode="numeric" size="7"
                        prop:value=move || steps.get().to_string()
                        on:change=move |ev| {
                            if let Ok(n) = event_target_value(&ev).trim().parse::<usize>() {
                                if (1..=100_000).contains(&n) {
                                    steps.set(n);
                                }
                            }
                        } />
                </div>
                <button data-testid="heal-start" on:click=start>"Heal with the changes built in"</button>
                {table}
            </div>
        </Show>
    }
}

/// Every head's attention on the fixed probe (random tokens repeated once), redrawn at each
/// checkpoint.
#[component]
fn ProbeMaps() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let heads = move || {
        ui.training.with(|t| {
            let probe = t.probe.as_ref()?;
            let n_head = t
                .checkpoints
                .last()?
                .roles
                .iter()
                .filter(|r| r.layer == 0)
                .count();
            Some((probe.maps.len(), n_head.max(1), probe.tokens.len()))
        })
    };
    view! {
        {move || heads().map(|(count, n_head, t_len)| view! {
            <figure class="train-probe">
                <div class="train-probe-grid">
                    {(0..count).map(|i| view! { <ProbeMap index=i label=format!("L{}H{}", i / n_head, i % n_head) t_len=t_len /> }).collect_view()}
                </div>
                <figcaption>"Attention on a probe: random tokens, then the same tokens again."</figcaption>
            </figure>
        })}
    }
}

#[component]
fn ProbeMap(index: usize, label: String, t_len: usize) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    Effect::new(move |_| {
        let Some(el) = canvas.get() else { return };
        ui.training.with(|t| {
            if let Some(map) = t.probe.as_ref().and_then(|p| p.maps.get(index)) {
                let _ = heatmap::paint(&el, map, None, t_len, true);
            }
        });
    });
    view! {
        <div class="train-probe-map">
            <canvas node_ref=canvas data-testid="train-probe-map" class="heatmap"></canvas>
            <span>{label}</span>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_url() {
        let settings = TrainSettings {
            task: Task::Sort,
            n_layer: 3,
            n_head: 4,
            n_kv_head: 2,
            d_model: 32,
            mlp: true,
            rotary: true,
            linear: true,
            seed: 17,
            learning_rate: 0.002,
            batch_size: 16,
            steps: 250,
            engine: EngineChoice::Gpu,
        };
        let mut problems = Vec::new();
        let back = TrainSettings::from_pairs(&settings.to_pairs(), &mut problems);
        assert_eq!(back, Some(settings.clone()));
        assert!(problems.is_empty());
        let config = settings.to_config();
        assert_eq!(config.model.n_kv_head, Some(2));
        assert!(config.model.rotary && config.model.linear_attention);
        assert_eq!(
            (config.steps, config.seed, config.batch_size),
            (250, 17, 16)
        );
        config.validate().unwrap();
    }

    #[test]
    fn bad_keys_are_reported_and_left_at_the_recipe() {
        let pairs: Vec<(String, String)> = [
            ("train", "induction"),
            ("train_heads", "3"),
            ("train_lr", "-1"),
            ("train_d", "48"),
            ("train_kernel", "cubic"),
            ("train_engine", "tpu"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut problems = Vec::new();
        let s = TrainSettings::from_pairs(&pairs, &mut problems).unwrap();
        assert_eq!(s, TrainSettings::for_task(Task::Induction));
        assert_eq!(problems.len(), 5, "{problems:?}");
        let mut problems = Vec::new();
        let none = TrainSettings::from_pairs(
            &[("train".to_string(), "translation".to_string())],
            &mut problems,
        );
        assert!(none.is_none() && problems[0].contains("induction"));
        // Three heads sharing two key/value heads cannot be built: reset to a valid layout.
        let pairs: Vec<(String, String)> =
            [("train", "sort"), ("train_heads", "8"), ("train_kv", "3")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let mut problems = Vec::new();
        let s = TrainSettings::from_pairs(&pairs, &mut problems).unwrap();
        assert_eq!(s.n_head % s.n_kv_head, 0);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn long_curves_are_thinned_to_what_a_plot_can_show() {
        let points: Vec<(usize, f64)> = (1..=1000).map(|s| (s, 1.0 / s as f64)).collect();
        let kept = thinned(&points);
        assert!(kept.len() <= MAX_PLOTTED + 1);
        assert_eq!(kept.last(), points.last());
        assert_eq!(thinned(&points[..10]).len(), 10);
    }
}
