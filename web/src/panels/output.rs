//! The next-token panel: baseline and variant top 10, the task's right answer, generation.

use leptos::prelude::*;

use crate::controller::Controller;
use crate::protocol::{RunResult, Steer};
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
    let step_through = move |_| {
        if progress.get_untracked().is_none() {
            let (tokens, variant) = (ui.tokens.get_untracked(), ui.variant.get_untracked());
            ctl.step_through(tokens, variant, 40);
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
        {move || ui.steer.get().map(|s| view! {
            <p class="muted" data-testid="steered-note">{format!(
                "“With your changes” and Generate are steered: {} (Look inside → Steer).",
                s.describe()
            )}</p>
        })}
        {move || ui.info.get().filter(|i| !i.classifier && i.tokenizer.is_some()).map(|_| view! {
            <button data-testid="generate" on:click=generate disabled=move || progress.get().is_some()>"Generate 40 tokens"</button>
            <button data-testid="step-through" on:click=step_through disabled=move || progress.get().is_some()
                title="Generate one token at a time: Step for the next, Continue for the rest">"Step through"</button>
            <SamplingControls/>
            {move || progress.get().map(|step| view! {
                <span class="progress" data-testid="generate-progress">
                    {format!("Generating… {} of {} tokens ", step.done, step.total)}
                    <button data-testid="stop-generating" on:click=move |_| ctl.stop_generating()>"Stop"</button>
                </span>
            })}
            <GenerationSteps/>
            <p class="generated" data-testid="generated">{move || ui.generated.get()}</p>
            {move || ui.generation_summary.get().map(|summary| view! {
                <p class="generation-summary" data-testid="generation-summary">{summary}</p>
            })}
        })}
    }
}

/// The generation as it runs: *Pause* / *Continue*, *Step* (one token), the tokens as chips
/// (prompt, then generated), and for a clicked token its attention in every head — the query
/// row of that position, as the step that ran it computed it from the KV cache.
#[component]
fn GenerationSteps() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let ctl = expect_context::<Controller>();
    let running = move || ui.generating.get().is_some();
    let paused = move || ui.generation.with(|g| g.paused);
    let chips = move || {
        ui.generation.with(|g| {
            g.pieces
                .iter()
                .enumerate()
                .map(|(position, piece)| {
                    let generated = position >= g.prompt_len;
                    let has_row = g.rows.contains_key(&position);
                    let selected = g.selected == Some(position);
                    let label = piece.clone();
                    view! {
                        <button class="chip gen-chip" class:generated=generated class:selected=selected
                            data-testid="gen-token" data-position=position.to_string()
                            data-generated=generated.to_string()
                            title=if has_row { format!("position {position}: show its attention") } else { format!("position {position}: not run yet") }
                            on:click=move |_| ui.generation.update(|g| g.selected = Some(position))>
                            {label}
                        </button>
                    }
                })
                .collect_view()
        })
    };
    let n_ctx = move || ui.info.with(|i| i.as_ref().map_or(usize::MAX, |i| i.n_ctx));
    let stats = move || {
        let n_ctx = n_ctx();
        ui.generation.with(|g| {
            let restarted = match g.restarted {
                true => " · started again from the prompt: the attention settings changed",
                false => "",
            };
            // Past the context the window slides: every position moves, so nothing cached
            // can be reused and each token runs the whole window again.
            let beyond = match g.pieces.len() > n_ctx {
                true => format!(
                    " · the text outgrew the model's context of {n_ctx} tokens: it sees the last \
                     {n_ctx}, run again for every token (no rows past the context)"
                ),
                false => String::new(),
            };
            (g.started() || g.restarted).then(|| {
                let cache = match g.kv_cache_bytes {
                    Some(bytes) if bytes == g.variant_cache_bytes => {
                        format!("KV cache holds {bytes} bytes")
                    }
                    // The GPU engine keeps whole keys and values, whatever the variant caches.
                    Some(bytes) => format!(
                        "KV cache holds {bytes} bytes (whole keys and values on the GPU; the \
                         variant's own cache, as the CPU engine keeps it: {} bytes)",
                        g.variant_cache_bytes
                    ),
                    None => "no KV cache (recomputing)".into(),
                };
                format!(
                    "{} tokens · {:.1} tokens/s · {cache}{restarted}{beyond}",
                    g.pieces.len().saturating_sub(g.prompt_len),
                    g.tokens_per_second
                )
            })
        })
    };
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let (n_layer, n_head) = (
        move || ui.info.with(|i| i.as_ref().map_or(0, |i| i.n_layer)),
        move || ui.info.with(|i| i.as_ref().map_or(0, |i| i.n_head)),
    );
    Effect::new(move |_| {
        let heads = n_layer() * n_head();
        ui.generation.with(|g| {
            if let (Some(canvas), Some((position, rows))) = (canvas.get(), g.selected_rows()) {
                let _ = crate::heatmap::paint_rows(&canvas, rows, heads, position + 1);
            }
        });
    });
    // The enlarged head's map over the whole text, growing a row with each token.
    let map_canvas = NodeRef::<leptos::html::Canvas>::new();
    let focus_map = move || {
        let (layer, head) = ui.focus.get()?;
        let n_head = n_head();
        (layer < n_layer() && head < n_head).then(|| {
            (
                layer,
                head,
                ui.generation.with(|g| g.head_map(layer, head, n_head)),
            )
        })
    };
    Effect::new(move |_| {
        if let (Some(canvas), Some((_, _, (n, map)))) = (map_canvas.get(), focus_map()) {
            let _ = crate::heatmap::paint_rows(&canvas, &map, n, n);
        }
    });
    // Each head's row sum (1 where the row is a distribution), for the tests and the title.
    let sums = move || {
        ui.generation.with(|g| {
            g.selected_rows().map(|(position, rows)| {
                rows.chunks(position + 1)
                    .map(|r| format!("{:.4}", r.iter().sum::<f32>()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
        })
    };
    let selected = move || {
        ui.generation.with(|g| {
            g.selected.map(|p| {
                let piece = g.pieces.get(p).cloned().unwrap_or_default();
                (p, piece, g.rows.contains_key(&p))
            })
        })
    };
    view! {
        {move || (running() || ui.generation.with(|g| g.started() || g.restarted)).then(|| view! {
            <div class="generation" data-testid="generation">
                {move || running().then(|| view! {
                    <button data-testid="pause-generating"
                        on:click=move |_| ctl.steer_generation(if paused() { Steer::Continue } else { Steer::Pause })>
                        {move || if paused() { "Continue" } else { "Pause" }}
                    </button>
                    <button data-testid="step-generating" on:click=move |_| ctl.steer_generation(Steer::Step)>"Step"</button>
                })}
                <span class="gen-stats" data-testid="generation-stats">{stats}</span>
                <div class="gen-tokens">{chips}</div>
                {move || selected().map(|(position, piece, has_row)| view! {
                    <div class="token-attention" data-testid="token-attention" data-position=position.to_string()
                        data-sums=sums>
                        <p>{format!("Attention of «{}» (position {position}) in every head, one row per layer × head, keys left to right", piece)}</p>
                        {if has_row {
                            view! { <canvas node_ref=canvas class="rows" width="1" height="1"></canvas> }.into_any()
                        } else {
                            view! { <p class="muted">"Not run yet: its row comes with the next token (Step)."</p> }.into_any()
                        }}
                    </div>
                })}
                {move || focus_map().filter(|(_, _, (n, _))| *n > 0).map(|(layer, head, (n, _))| view! {
                    <div class="generation-map" data-testid="generation-map" data-size=n.to_string()>
                        <p>{format!("The enlarged map, layer {layer} head {head}, over the whole text: a row per position, one more with each token (grey: a position run without its row)")}</p>
                        <canvas node_ref=map_canvas class="rows" width="1" height="1"></canvas>
                    </div>
                })}
            </div>
        })}
    }
}

/// How *Generate* picks tokens: temperature (0: always the most probable), sampling among the k
/// most probable, and the seed — in the URL, so a link reproduces the continuation.
#[component]
fn SamplingControls() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let number = move |ev: leptos::ev::Event| event_target_value(&ev);
    view! {
        <span class="sampling">
            <label class="inline">"temperature "
                <input type="number" data-testid="temperature" min="0" max="10" step="0.1"
                    prop:value=move || ui.sampling.get().temperature.to_string()
                    on:change=move |ev| {
                        match number(ev).parse::<f32>() {
                            Ok(t) if t.is_finite() && (0.0..=10.0).contains(&t) => {
                                ui.sampling.update(|s| s.temperature = t)
                            }
                            _ => {}
                        }
                    }/>
            </label>
            <label class="inline">"among top "
                <input type="number" data-testid="sample-k" min="0" step="1"
                    prop:value=move || ui.sampling.get().top_k.to_string()
                    on:change=move |ev| {
                        if let Ok(k) = number(ev).parse::<usize>() {
                            ui.sampling.update(|s| s.top_k = k);
                        }
                    }/>
            </label>
            <label class="inline">"seed "
                <input type="number" data-testid="seed" min="0" step="1"
                    prop:value=move || ui.sampling.get().seed.to_string()
                    on:change=move |ev| {
                        if let Ok(seed) = number(ev).parse::<u64>() {
                            ui.sampling.update(|s| s.seed = seed);
                        }
                    }/>
            </label>
            {move || (ui.sampling.get().temperature == 0.0).then(|| view! { <span class="muted">" (greedy)"</span> })}
        </span>
    }
}
