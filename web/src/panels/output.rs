//! The next-token panel: baseline and variant top 10, the task's right answer, generation.

use leptos::prelude::*;

use crate::controller::Controller;
use crate::protocol::RunResult;
use crate::state::Ui;
use crate::task_check::{self, Expected};

#[component]
pub fn OutputPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let ctl = expect_context::<Controller>();
    let label = move |id: u32| {
        ctl.with_text(|t| t.output_label(id))
            .unwrap_or_else(|| id.to_string())
    };
    // For the built-in tasks: the right answer, and whether each run gives it.
    let check = move || {
        let task = ui.info.get()?.task?;
        let expected = task_check::expected(&task, &ui.labels.get())?;
        let verdict = |r: Option<&RunResult>| -> Option<String> {
            let Expected::Answer(answer) = &expected else {
                return None;
            };
            let r = r?;
            let (top, _) = *r.top.first()?;
            let said = label(top);
            Some(if &said == answer {
                format!("{said} ✓")
            } else {
                format!("{said} ✗")
            })
        };
        let base = ui.baseline.with(|r| verdict(r.as_ref()));
        let current = ui.current.with(|r| verdict(r.as_ref()));
        Some(match &expected {
            Expected::Answer(answer) => format!(
                "Right answer: {answer} · baseline says {} · with your changes: {}",
                base.unwrap_or_default(),
                current.unwrap_or_default()
            ),
            Expected::Open(why) => format!("No single right answer here: {why}."),
        })
    };
    let bars = move |result: Option<&RunResult>| {
        result.map(|r| {
            r.top
                .iter()
                .map(|&(id, p)| {
                    let width = format!("{:.1}%", p * 100.0);
                    view! {
                        <li>
                            <span class="tok">{label(id)}</span>
                            <span class="bar"><span class="fill" style:width=width></span></span>
                            <span class="pct">{format!("{:.1}%", p * 100.0)}</span>
                        </li>
                    }
                })
                .collect_view()
        })
    };
    let progress = ui.generating;
    let generate = move |_| {
        if progress.get_untracked().is_none() {
            let (tokens, variant) = (ui.tokens.get_untracked(), ui.variant.get_untracked());
            ctl.generate(tokens, variant, 40);
        }
    };
    view! {
        <h2>"Next token"</h2>
        <div class="topk" data-testid="output-topk">
            <div>
                <h3>"Baseline"</h3>
                <ol class="bars">{move || ui.baseline.with(|r| bars(r.as_ref()))}</ol>
            </div>
            <div>
                <h3>"With your changes"</h3>
                <ol class="bars" data-testid="output-topk-current">{move || ui.current.with(|r| bars(r.as_ref()))}</ol>
            </div>
        </div>
        {move || check().map(|text| view! { <p class="task-check" data-testid="task-check">{text}</p> })}
        {move || ui.info.get().filter(|i| !i.classifier && i.tokenizer.is_some()).map(|_| view! {
            <button data-testid="generate" on:click=generate disabled=move || progress.get().is_some()>"Generate 40 tokens"</button>
            {move || progress.get().map(|step| view! {
                <span class="progress" data-testid="generate-progress">
                    {format!("Generating… {} of {} tokens ", step.done, step.total)}
                    <button data-testid="stop-generating" on:click=move |_| ctl.stop_generating()>"Stop"</button>
                </span>
            })}
            <p class="generated" data-testid="generated">{move || ui.generated.get()}</p>
            {move || ui.generation_summary.get().map(|summary| view! {
                <p class="generation-summary" data-testid="generation-summary">{summary}</p>
            })}
        })}
    }
}
