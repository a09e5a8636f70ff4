//! The training panel: pick a task and an architecture (layers, query heads, key/value heads,
//! width, MLPs) and the run's seed, learning rate, batch and length; train in the compute
//! worker (attn-gpu's trainer on a WebGPU device, or attn-model's on the CPU) while the loss, the held-out
//! accuracy, every head's role scores and its attention on a fixed probe update; then open the
//! result in the playground or save it. The settings live in the URL, and the same seed gives
//! the same run, so a link reproduces a curve.

use attn_model::training::Task;
use leptos::prelude::*;

use crate::controller::Controller;
use crate::heatmap;
use crate::plot::{Plot, PlotData, PlotPoint, PlotSeries};
use crate::protocol::{EngineChoice, TrainState};
use crate::state::Ui;
use crate::train_state::{TrainSettings, TrainView};

/// At most this many points of the loss curve are drawn (every k-th step beyond).
const MAX_PLOTTED: usize = 200;

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
            ctl.train_start(settings);
        }
    };
    let pause = move |_| {
        if running() {
            ctl.train_pause();
        } else {
            ctl.train_resume();
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
                <button data-testid="train-reset" on:click=move |_| ctl.train_reset() disabled=move || !has_run()>"Reset"</button>
                <button data-testid="train-open" on:click=move |_| ctl.train_open() disabled=move || !has_run()
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
    let start = move |_| ctl.heal_start(steps.get_untracked());
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
    fn long_curves_are_thinned_to_what_a_plot_can_show() {
        let points: Vec<(usize, f64)> = (1..=1000).map(|s| (s, 1.0 / s as f64)).collect();
        let kept = thinned(&points);
        assert!(kept.len() <= MAX_PLOTTED + 1);
        assert_eq!(kept.last(), points.last());
        assert_eq!(thinned(&points[..10]).len(), 10);
    }
}
