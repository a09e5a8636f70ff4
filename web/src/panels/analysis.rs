//! Look inside: the logit lens, direct logit attribution and activation patching on the current
//! input and variant, each one click away and run in the worker (docs/ANALYSIS.md has the
//! formulas).

use leptos::prelude::*;

use crate::controller::Controller;
use crate::protocol::{Analysis, AnalysisTool};
use crate::state::Ui;

/// A cell's background for `value` on a diverging scale whose ends are `±max`: blue for what
/// raises the logit, red for what lowers it.
fn shade(value: f64, max: f64) -> String {
    let alpha = if max > 0.0 && value.is_finite() {
        (value.abs() / max).min(1.0) * 0.85
    } else {
        0.0
    };
    let rgb = if value >= 0.0 {
        "33, 102, 172"
    } else {
        "178, 24, 43"
    };
    format!("background: rgba({rgb}, {alpha:.3})")
}

/// One table row per layer of fractions recovered (1 = all of it).
fn fraction_rows(rows: &[Vec<f64>]) -> impl IntoView {
    rows.iter()
        .enumerate()
        .map(|(layer, row)| {
            let cells = row
                .iter()
                .map(|&v| view! { <td style=shade(v, 1.0)>{format!("{v:.2}")}</td> })
                .collect_view();
            view! { <tr><th>{format!("L{layer}")}</th>{cells}</tr> }
        })
        .collect_view()
}

/// `tokens` with the middle one replaced by another token of the input (or a neighbouring id),
/// as a space-separated list of ids: a corrupted input of the same length.
fn corrupt_one(tokens: &[u32]) -> String {
    let mut ids = tokens.to_vec();
    if let Some(middle) = (!ids.is_empty()).then_some(ids.len() / 2) {
        let id = ids[middle];
        let neighbour = if id > 0 { id - 1 } else { id + 1 };
        ids[middle] = ids.iter().copied().find(|&o| o != id).unwrap_or(neighbour);
    }
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

#[component]
pub fn AnalysisPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let ctl = expect_context::<Controller>();
    let corrupt = RwSignal::new(String::new());
    let busy = move || ui.analysing.get().is_some();
    let label = move |id: u32| {
        ctl.with_text(|t| t.output_label(id))
            .unwrap_or_else(|| id.to_string())
    };
    let patch = move |_| {
        let text = corrupt.get_untracked();
        // Token ids as typed, or text through the model's tokenizer.
        let ids: Option<Vec<u32>> = text
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().ok())
            .collect();
        let ids = match ids {
            Some(ids) if !ids.is_empty() => Ok(ids),
            _ => ctl
                .with_text(|t| t.tokenize(&text))
                .unwrap_or_else(|| Err("no model".into())),
        };
        match ids {
            Ok(corrupt) => ctl.analyse(ui, AnalysisTool::Patch { corrupt }),
            Err(e) => ui.error.set(Some(e)),
        }
    };
    let result = move || {
        let analysis = ui.analysis.get()?;
        Some(match analysis {
            Analysis::Lens { top, settles_at } => {
                let depths = top.len();
                let rows = top
                    .into_iter()
                    .enumerate()
                    .map(|(depth, best)| {
                        let name = match depth {
                            0 => "embeddings".to_string(),
                            d if d + 1 == depths => "output".to_string(),
                            d => format!("after layer {}", d - 1),
                        };
                        let cells = best
                            .into_iter()
                            .map(|(id, p)| view! { <td>{format!("{} {:.0}%", label(id), p * 100.0)}</td> })
                            .collect_view();
                        view! { <tr class:settled=depth == settles_at><th>{name}</th>{cells}</tr> }
                    })
                    .collect_view();
                view! {
                    <p class="muted">{format!(
                        "The three most probable next tokens at every depth; the final prediction is on top from {}.",
                        if settles_at + 1 == depths { "the output only".to_string() } else if settles_at == 0 { "the embeddings on".to_string() } else { format!("after layer {} on", settles_at - 1) }
                    )}</p>
                    <table class="analysis" data-testid="lens-table">{rows}</table>
                }
                .into_any()
            }
            Analysis::Attribution(a) => {
                let max = a
                    .heads
                    .iter()
                    .flatten()
                    .chain(&a.mlps)
                    .fold(1e-9f64, |m, v| m.max(v.abs()));
                let n_head = a.heads.first().map_or(0, Vec::len);
                let header = (0..n_head)
                    .map(|h| view! { <th>{format!("H{h}")}</th> })
                    .collect_view();
                let rows = a
                    .heads
                    .iter()
                    .zip(&a.mlps)
                    .enumerate()
                    .map(|(layer, (heads, mlp))| {
                        let cells = heads
                            .iter()
                            .map(|&v| view! { <td style=shade(v, max)>{format!("{v:+.2}")}</td> })
                            .collect_view();
                        view! {
                            <tr><th>{format!("L{layer}")}</th>{cells}
                                <td class="mlp" style=shade(*mlp, max)>{format!("{mlp:+.2}")}</td></tr>
                        }
                    })
                    .collect_view();
                view! {
                    <p class="muted">{format!(
                        "Logit of {} = {:.2}: embeddings {:+.2}, biases {:+.2}, and what each head and MLP writes:",
                        label(a.target), a.logit, a.embeddings, a.biases
                    )}</p>
                    <table class="analysis" data-testid="attribution-table">
                        <tr><th></th>{header}<th>"MLP"</th></tr>
                        {rows}
                    </table>
                }
                .into_any()
            }
            Analysis::Patching {
                patching,
                target,
                contrast,
            } => {
                let n_head = patching.heads.first().map_or(0, Vec::len);
                let header = (0..n_head)
                    .map(|h| view! { <th>{format!("H{h}")}</th> })
                    .collect_view();
                let heads = fraction_rows(&patching.heads);
                let labels = ui.labels.get();
                let positions = labels
                    .iter()
                    .map(|l| view! { <th>{l.clone()}</th> })
                    .collect_view();
                let resid = fraction_rows(&patching.resid);
                view! {
                    <p class="muted">{format!(
                        "Logit difference {} − {}: clean {:.2}, corrupted {:.2}. Each cell is the fraction restored by the clean activation (1 = all of it).",
                        label(target), label(contrast), patching.clean, patching.corrupted
                    )}</p>
                    <table class="analysis" data-testid="patching-heads"><tr><th></th>{header}</tr>{heads}</table>
                    <p class="muted">"The residual stream before each layer, one position at a time:"</p>
                    <table class="analysis" data-testid="patching-resid"><tr><th></th>{positions}</tr>{resid}</table>
                }
                .into_any()
            }
        })
    };
    view! {
        <h2>"Look inside"</h2>
        <div class="tools">
            <p>
                <button data-testid="run-lens" disabled=busy on:click=move |_| ctl.analyse(ui, AnalysisTool::Lens)>"Logit lens"</button>
                " What the model would predict if it stopped after each layer: its final norm and unembedding applied to the residual stream."
            </p>
            <p>
                <button data-testid="run-attribution" disabled=busy
                    on:click=move |_| ctl.analyse(ui, AnalysisTool::Attribute { target: None })>"Attribution"</button>
                " How much each head and each MLP writes directly into the predicted token's logit."
            </p>
            <p>
                <button data-testid="run-patching" disabled=busy on:click=patch>"Patching"</button>
                " Run a corrupted input, restore one head's clean output at a time, and see how much of the clean prediction comes back. Corrupted input (ids or text): "
                <input data-testid="corrupt-input" class="corrupt" prop:value=move || corrupt.get()
                    on:input=move |ev| corrupt.set(event_target_value(&ev)) />
                <button data-testid="corrupt-one"
                    on:click=move |_| corrupt.set(corrupt_one(&ui.tokens.get_untracked()))>
                    "Corrupt one token"
                </button>
            </p>
        </div>
        {move || ui.analysing.get().map(|step| view! {
            <span class="progress" data-testid="analysis-progress">
                {if step.total > 0 { format!("Working… {} of {} forwards ", step.done, step.total) } else { "Working… ".to_string() }}
                <button data-testid="cancel-analysis" on:click=move |_| ctl.cancel_analysis()>"Cancel"</button>
            </span>
        })}
        {result}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupting_one_token_keeps_the_length_and_changes_one_id() {
        assert_eq!(corrupt_one(&[4, 7, 9, 2]), "4 7 4 2");
        assert_eq!(corrupt_one(&[3, 3, 3]), "3 2 3");
        assert_eq!(corrupt_one(&[0, 0]), "0 1");
        assert_eq!(corrupt_one(&[]), "");
    }
}
