//! Lessons: the list of built-in lessons (`lessons/index.json`, one JSON file each, format in
//! `docs/LESSONS.md`), and the open lesson's step — its text, the question to predict, the
//! measurement run in the worker, the measured numbers beside the claimed ranges, and a plot.
//! A step sets the page (model, input, variant); `?lesson=ID&step=N` opens one, the arrow keys
//! move between steps, and `embed=1` keeps only what the lesson uses.

use attn_model::lesson::{range_text, Experiment, LessonStep, SampledResult, Verdict};
use attn_model::{Lesson, Variant};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::browser;
use crate::controller::Controller;
use crate::manifest::ModelEntry;
use crate::plot::{Plot, PlotData, PlotPoint, PlotSeries};
use crate::protocol::LessonMeasured;
use crate::state::Ui;

/// Where the lessons live, relative to the page.
const LESSONS_BASE: &str = "lessons/";

/// Reads the lesson list and every lesson; a lesson that cannot be read is left out with a
/// notice.
pub fn load_lessons(ui: Ui) {
    spawn_local(async move {
        let index = browser::fetch_text(&format!("{LESSONS_BASE}index.json"))
            .await
            .and_then(|t| attn_model::lesson::lesson_index(&t).map_err(|e| e.to_string()));
        let ids = match index {
            Ok(ids) => ids,
            Err(e) => {
                ui.notices
                    .update(|n| n.push(format!("The lessons could not be read: {e}")));
                Vec::new()
            }
        };
        let mut lessons = Vec::new();
        for id in ids {
            let lesson = browser::fetch_text(&format!("{LESSONS_BASE}{id}.json"))
                .await
                .and_then(|t| Lesson::from_json(&t).map_err(|e| e.to_string()));
            match lesson {
                Ok(l) => lessons.push(l),
                Err(e) => ui
                    .notices
                    .update(|n| n.push(format!("Lesson {id:?} could not be read: {e}"))),
            }
        }
        ui.lessons.set(lessons);
        ui.lessons_loaded.set(true);
    });
}

/// The manifest entry a step runs on, with the step's input as its first example (what
/// `install` puts in the input box).
fn entry_for(ui: Ui, step: &LessonStep) -> Option<ModelEntry> {
    let mut entry = ui
        .manifest
        .with_untracked(|m| m.iter().find(|e| e.id == step.model).cloned())?;
    if let Some(prompt) = &step.prompt {
        entry.examples.retain(|e| e != prompt);
        entry.examples.insert(0, prompt.clone());
    }
    Some(entry)
}

/// The task of the built-in model a step is written for.
fn built_in_task(ui: Ui, step: &LessonStep) -> Option<String> {
    ui.manifest.with_untracked(|m| {
        m.iter()
            .find(|e| e.id == step.model)
            .map(|e| e.task.clone())
            .filter(|t| !t.is_empty())
    })
}

/// Whether `step` runs on the model the user opened from disk (the last one) instead of its
/// built-in model: a step for any language model on a language model, any step on a model of
/// its built-in model's task.
fn runs_on_yours(ui: Ui, step: &LessonStep) -> bool {
    let task = built_in_task(ui, step);
    ui.yours
        .with(|y| y.as_ref().is_some_and(|y| y.fits(step, task.as_deref())))
}

/// The title of the model from disk a step runs on, when it runs on one.
fn yours_title(ui: Ui, step: &LessonStep) -> Option<String> {
    runs_on_yours(ui, step)
        .then(|| ui.yours.with(|y| y.as_ref().map(|y| y.title.clone())))
        .flatten()
}

/// Puts the page in the state a step describes: its model (loaded when another one is shown;
/// the model from disk, opened again if need be, when the step runs on it), its input and its
/// variant.
pub fn apply_step(ui: Ui, ctl: Controller, step: &LessonStep) {
    ctl.cancel_measurement();
    ui.measured.set(None);
    if untrack(|| runs_on_yours(ui, step)) {
        if ui.yours_shown.get_untracked() && ui.opening.with_value(Option::is_none) {
            if let Some(prompt) = &step.prompt {
                ui.prompt.set(prompt.clone());
            }
            ui.variant.set(step.variant.clone());
            return;
        }
        ui.variant.set(Variant::default());
        ui.pending_variant.set_value(Some(step.variant.clone()));
        ui.pending_prompt.set_value(step.prompt.clone());
        if ctl.reopen_yours() {
            return;
        }
    }
    let Some(entry) = entry_for(ui, step) else {
        ui.error.set(Some(format!(
            "This step runs on the built-in model {:?}, which is not in the model list.",
            step.model
        )));
        return;
    };
    if ui.model_id.get_untracked().as_deref() == Some(step.model.as_str())
        && ui.opening.with_value(Option::is_none)
    {
        if let Some(prompt) = entry.examples.first() {
            ui.prompt.set(prompt.clone());
        }
        ui.variant.set(step.variant.clone());
    } else {
        // The variant waits for the model: it may not fit the one shown now.
        ui.variant.set(Variant::default());
        ui.pending_variant.set_value(Some(step.variant.clone()));
        ctl.load_builtin(entry);
    }
}

/// Opens step `n` of the open lesson.
fn go_to(ui: Ui, n: usize) {
    ui.lesson_step.set(n);
}

/// Arrow keys move between steps, unless the focus is in a text field.
pub fn keyboard(ui: Ui) {
    let _ = window_event_listener(leptos::ev::keydown, move |ev| {
        let typing = ev
            .target()
            .and_then(|t| {
                use wasm_bindgen::JsCast;
                t.dyn_into::<web_sys::Element>().ok()
            })
            .is_some_and(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"));
        if typing || ev.alt_key() || ev.ctrl_key() || ev.meta_key() {
            return;
        }
        let Some(lesson) = ui.lesson() else { return };
        let step = ui.lesson_step.get_untracked();
        match ev.key().as_str() {
            "ArrowRight" if step + 1 < lesson.steps.len() => go_to(ui, step + 1),
            "ArrowLeft" if step > 0 => go_to(ui, step - 1),
            _ => {}
        }
    });
}

#[component]
pub fn LessonPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    move || {
        let loaded = ui.lessons_loaded.get();
        match (ui.lesson_id.get(), ui.lesson()) {
            (None, _) => lesson_list(ui, false).into_any(),
            (Some(_), Some(lesson)) => lesson_view(ui, lesson).into_any(),
            (Some(_), None) if !loaded => {
                view! { <p class="muted">"Loading the lesson…"</p> }.into_any()
            }
            (Some(id), None) => view! {
                <p class="error" data-testid="lesson-error">
                    {format!("There is no lesson called {id:?}. These are the lessons:")}
                </p>
                {lesson_list(ui, true)}
            }
            .into_any(),
        }
    }
}

/// The built-in lessons, each opening at its first step; folded unless `open`, so the playground
/// stays at the top of the page.
fn lesson_list(ui: Ui, open: bool) -> impl IntoView {
    let items = move || {
        ui.lessons
            .get()
            .into_iter()
            .map(|l| {
                let id = l.id.clone();
                // The steps that run on the model opened from disk, if one is.
                let yours: Vec<usize> = l
                    .steps
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.measure.is_some() && runs_on_yours(ui, s))
                    .map(|(i, _)| i)
                    .collect();
                let on_yours = yours.first().map(|&first| {
                    let id = id.clone();
                    let steps: Vec<String> = yours.iter().map(|i| (i + 1).to_string()).collect();
                    view! {
                        " "
                        <button class="link on-yours" data-testid="lesson-on-yours" on:click=move |_| {
                            ui.lesson_step.set(first);
                            ui.lesson_id.set(Some(id.clone()));
                        }>{format!("run on your model (step {})", steps.join(", "))}</button>
                    }
                });
                view! {
                    <li data-lesson-id=l.id.clone()>
                        <button class="link" on:click=move |_| {
                            ui.lesson_step.set(0);
                            ui.lesson_id.set(Some(id.clone()));
                        }>{l.title.clone()}</button>
                        {on_yours}
                        " — " {l.summary.clone()}
                    </li>
                }
            })
            .collect_view()
    };
    let count = move || ui.lessons.with(Vec::len);
    view! {
        <details class="lessons" open=open>
            <summary><h2>"Lessons"</h2>
                <span class="muted">{move || format!(" {} guided experiments, each reproducing a research claim about multi-head attention live on a built-in model", count())}</span>
            </summary>
            <ul class="lessons" data-testid="lesson-list">{items}</ul>
        </details>
    }
}

fn lesson_view(ui: Ui, lesson: Lesson) -> impl IntoView {
    let ctl = expect_context::<Controller>();
    let count = lesson.steps.len();
    let n = ui.lesson_step.get().min(count - 1);
    let step = lesson.steps[n].clone();
    let paragraphs = step
        .text
        .split("\n\n")
        .map(|p| view! { <p>{p.to_string()}</p> })
        .collect_view();
    let on_yours = yours_title(ui, &step);
    // On a model from disk the built-in model's expected exceptions say nothing.
    let measured_step = step.measure.is_some().then(|| {
        if on_yours.is_some() {
            step.on_another_model()
        } else {
            step.clone()
        }
    });
    let model = step.model.clone();
    let yours_step = on_yours.is_some();
    let ready = move || {
        (ui.model_id.get().as_deref() == Some(model.as_str())
            || (yours_step && ui.yours_shown.get()))
            && ui.loading.get().is_none()
            && !ui.tokens.with(Vec::is_empty)
            && ui.measuring.get().is_none()
    };
    let measure_button = measured_step.map(|m| {
        view! {
            <p>
                <button data-testid="lesson-measure" disabled=move || !ready()
                    on:click=move |_| ctl.measure(m.clone())>"Run the experiment"</button>
                <span class="muted">" — over a sample of inputs of this kind, and on the input on screen"</span>
                {move || ui.measuring.get().map(|s| view! {
                    <span class="progress" data-testid="lesson-progress">
                        {if s.total > 0 { format!(" Measuring… {} of {} forwards ", s.done, s.total) } else { " Measuring… ".to_string() }}
                        <button on:click=move |_| ctl.cancel_measurement()>"Cancel"</button>
                    </span>
                })}
            </p>
        }
    });
    let results_step = step.clone();
    let results = move || {
        let measured = ui.measured.get()?;
        Some(match measured {
            Err(e) => {
                view! { <p class="error" data-testid="lesson-measure-error">{e}</p> }.into_any()
            }
            Ok(m) => measured_view(&results_step, m).into_any(),
        })
    };
    // The same page without `embed=1`, for the link out of an iframe.
    let open_full = move || {
        let mut state = ui.page_state();
        state.embed = false;
        format!("?{}", browser::encode_query(&state.to_pairs()))
    };
    view! {
        <div class="lesson-head">
            <h2 data-testid="lesson-title">{lesson.title.clone()}</h2>
            <button class="link" data-testid="lesson-close" on:click=move |_| ui.lesson_id.set(None)>"All lessons"</button>
            {ui.embed.then(|| view! { <a href=open_full target="_blank" rel="noopener">"Open in the playground"</a> })}
        </div>
        <p class="muted source">{lesson.source.clone()}</p>
        <section class="lesson-step" data-testid="lesson-step" data-step=(n + 1).to_string()>
            <h3>{format!("Step {} of {count}: {}", n + 1, step.title)}</h3>
            {match &on_yours {
                Some(title) => view! {
                    <p class="on-yours" data-testid="lesson-runs-on-yours">
                        {format!("This step runs on your model — {title} — instead of the built-in {:?}: the claim is checked on it as the paper states it.", step.model)}
                    </p>
                }.into_any(),
                None if step.any_language_model => view! {
                    <p class="muted">"This step also runs on a language model you open from disk (Model → your own files)."</p>
                }.into_any(),
                None => ().into_any(),
            }}
            {paragraphs}
            {step.ask.clone().map(|q| view! { <p class="ask"><strong>"Predict: "</strong>{q}</p> })}
            {measure_button}
            {results}
        </section>
        <nav class="lesson-nav">
            <button data-testid="lesson-prev" disabled={n == 0} on:click=move |_| go_to(ui, n.saturating_sub(1))>"← Previous"</button>
            <span class="muted">{format!("{} / {count}", n + 1)}</span>
            <button data-testid="lesson-next" disabled={n + 1 >= count} on:click=move |_| go_to(ui, n + 1)>"Next →"</button>
        </nav>
    }
}

/// What a verdict looks like on the page.
fn verdict_mark(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Reproduced => "✓ reproduced",
        Verdict::NotReproduced => "✗ not reproduced",
        Verdict::Inconclusive => "? inconclusive",
    }
}

/// One number over the sample as a strip: every input's value (dots), the 95 % interval (the
/// bar) around the mean (its tick), the claimed range (shaded) and the input on screen (the
/// ring).
fn strip(r: &SampledResult) -> impl IntoView {
    const W: f64 = 360.0;
    const H: f64 = 46.0;
    const PAD: f64 = 12.0;
    let mut all: Vec<f64> = r.values.clone();
    all.extend([r.low, r.high, r.mean]);
    all.extend(r.on_screen);
    all.extend(r.min);
    all.extend(r.max);
    let all: Vec<f64> = all.into_iter().filter(|v| v.is_finite()).collect();
    let (mut lo, mut hi) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        let pad = (lo.abs() * 0.1).max(0.05);
        (lo, hi) = (lo - pad, hi + pad);
    }
    let x = move |v: f64| PAD + (v.clamp(lo, hi) - lo) / (hi - lo) * (W - 2.0 * PAD);
    let range = {
        let (a, b) = (x(r.min.unwrap_or(lo)), x(r.max.unwrap_or(hi)));
        view! { <rect class="claimed" x=a y="2" width=(b - a).max(1.0) height=H - 16.0 /> }
    };
    let dots = r
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            view! { <circle class="input" cx=x(v) cy=8.0 + (i % 6) as f64 * 3.5 r="2.2" /> }
        })
        .collect_view();
    let screen = r
        .on_screen
        .map(|v| view! { <circle class="on-screen" cx=x(v) cy="17" r="5" /> });
    view! {
        <svg class="strip" data-testid="lesson-strip" data-values=r.values.len().to_string()
            width=W height=H viewBox=format!("0 0 {W} {H}") role="img"
            aria-label=format!("{}: {} inputs, mean {:.3}, 95 % interval {:.3} to {:.3}", r.label, r.n, r.mean, r.low, r.high)>
            {range}
            {dots}
            <line class="interval" x1=x(r.low) x2=x(r.high) y1="34" y2="34" />
            <line class="mean" x1=x(r.mean) x2=x(r.mean) y1="29" y2="39" />
            {screen}
            <text x=PAD y=H - 1.0 class="axis">{format!("{lo:.3}")}</text>
            <text x=W - PAD y=H - 1.0 class="axis" text-anchor="end">{format!("{hi:.3}")}</text>
        </svg>
    }
}

/// The step's numbers over the sample (each with its interval, verdict and strip), the paper's
/// statements, and the plot of the sample's mean.
fn measured_view(step: &LessonStep, lm: LessonMeasured) -> impl IntoView {
    let m = lm.measured.mean.clone();
    let inputs = lm.measured.per_input.len();
    let results = lm
        .results
        .iter()
        .map(|r| {
            let expected = r.expected != Verdict::Reproduced && r.verdict == r.expected;
            let screen = r
                .on_screen
                .map(|v| format!("; on the input on screen {v:.3}"))
                .unwrap_or_default();
            view! {
                <li data-testid="lesson-result" data-value=r.mean.to_string()
                    data-low=r.low.to_string() data-high=r.high.to_string()
                    data-verdict=r.verdict.text() data-expected=r.expected.text()
                    class:holds=r.verdict == Verdict::Reproduced
                    class:differs=r.verdict == Verdict::NotReproduced>
                    {format!("{}: ", r.label)}<strong>{format!("{:.3}", r.mean)}</strong>
                    {format!(" (95 % interval {:.3} to {:.3} over {} inputs, in the claimed range on {} of them{screen}) — the claim: {}: ",
                        r.low, r.high, r.n, r.held, range_text(r.min, r.max))}
                    <strong data-testid="lesson-verdict">{verdict_mark(r.verdict)}</strong>
                    {expected.then_some(" (as the lesson expects)")}
                    {r.paper.clone().map(|p| view! { <span class="paper">{p}</span> })}
                    {strip(r)}
                </li>
            }
        })
        .collect_view();
    let lines = step.measure.as_ref().is_some_and(|s| {
        !matches!(
            s.experiment,
            Experiment::Ablate { .. } | Experiment::EachHead | Experiment::Variants { .. }
        )
    });
    let bands = step
        .measure
        .as_ref()
        .map(|s| {
            s.bands
                .iter()
                .map(|b| (b.from, b.to, b.label.clone()))
                .collect()
        })
        .unwrap_or_default();
    let data = PlotData {
        name: step.title.to_lowercase().replace(' ', "-"),
        x_label: m.x_label.clone(),
        y_label: format!("{} (mean of {inputs} inputs)", m.y_label),
        series: m
            .series
            .iter()
            .map(|s| PlotSeries {
                name: s.name.clone(),
                points: s
                    .points
                    .iter()
                    .map(|p| PlotPoint {
                        x: p.x,
                        y: p.y,
                        label: p.label.clone(),
                    })
                    .collect(),
            })
            .collect(),
        lines,
        x_log: m.x_log,
        marked: None,
        reference: Some((m.unmodified, "unmodified".into())),
        bands,
    };
    let points = m
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|p| view! { <tr><th>{p.label.clone()}</th><td>{format!("{:.4}", p.y)}</td></tr> })
        .collect_view();
    view! {
        <p class="muted" data-testid="lesson-sample">{format!("Scored on {}; ranked on {}; run on {}.",
            lm.measured.scoring_name, lm.measured.ranking_name, lm.engine)}</p>
        <ul class="lesson-results">{results}</ul>
        {step.reported.clone().map(|r| view! { <p class="reported"><strong>"The paper: "</strong>{r}</p> })}
        <Plot data=data />
        <details>
            <summary>"Every point (the sample's mean)"</summary>
            <table class="analysis" data-testid="lesson-points">
                <tr><th>"unmodified"</th><td>{format!("{:.4}", m.unmodified)}</td></tr>
                {points}
            </table>
        </details>
    }
}
