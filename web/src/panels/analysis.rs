//! Look inside: the logit lens, direct logit attribution and activation patching on the current
//! input and variant, each one click away and run in the worker (docs/ANALYSIS.md has the
//! formulas).

use attn_model::corpus::{CorpusHeads, HeadStats};
use leptos::prelude::*;

use crate::browser;
use crate::controller::Controller;
use crate::page_state::SteerSpec;
use crate::plot::{shade, Plot, PlotData, PlotPoint, PlotSeries};
use crate::protocol::{Analysis, AnalysisTool};
use crate::state::Ui;

/// One table row per layer of fractions recovered (1 = all of it).
fn fraction_rows(rows: &[Vec<f64>]) -> impl IntoView {
    rows.iter()
        .enumerate()
        .map(|(layer, row)| {
            let cells = row
                .iter()
                .map(|&v| view! { <td style:background-color=shade(v, 1.0)>{format!("{v:.2}")}</td> })
                .collect_view();
            view! { <tr><th>{format!("L{layer}")}</th>{cells}</tr> }
        })
        .collect_view()
}

/// How many composition links the circuit view lists and draws.
const LINKS: usize = 8;

/// The strongest composition links between heads of different layers: (kind, earlier head,
/// later head, score), strongest first, at most [`LINKS`].
fn strongest_links(c: &attn_model::Circuits) -> Vec<(&'static str, usize, usize, f32)> {
    let mut links: Vec<(&'static str, usize, usize, f32)> = [("Q", &c.q), ("K", &c.k), ("V", &c.v)]
        .into_iter()
        .flat_map(|(kind, scores)| {
            scores.iter().enumerate().flat_map(move |(a, row)| {
                row.iter()
                    .enumerate()
                    .filter(|(_, s)| **s > 0.0)
                    .map(move |(b, &s)| (kind, a, b, s))
            })
        })
        .collect();
    links.sort_by(|x, y| y.3.total_cmp(&x.3));
    links.truncate(LINKS);
    links
}

/// The circuit view: every head's largest QK and OV singular values, and the strongest
/// composition links as a table and as a layer-to-layer graph.
fn circuits_view(c: attn_model::Circuits) -> impl IntoView {
    let n_head = c.heads.iter().map(|h| h.head + 1).max().unwrap_or(1);
    let n_layer = c.heads.iter().map(|h| h.layer + 1).max().unwrap_or(1);
    let values = |v: &[f32]| {
        v.iter()
            .take(3)
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let heads = c
        .heads
        .iter()
        .map(|h| {
            view! {
                <tr><th>{format!("L{} H{}", h.layer, h.head)}</th>
                    <td>{values(&h.qk_singular_values)}</td><td>{values(&h.ov_singular_values)}</td></tr>
            }
        })
        .collect_view();
    let links = strongest_links(&c);
    let name = |i: usize| format!("L{} H{}", i / n_head, i % n_head);
    let rows = links
        .iter()
        .map(|&(kind, a, b, s)| {
            view! { <tr><td>{format!("{kind}-composition")}</td><td>{format!("{} → {}", name(a), name(b))}</td><td>{format!("{s:.3}")}</td></tr> }
        })
        .collect_view();
    // The graph: one column of nodes per layer, one row per head.
    let (dx, dy, pad) = (120.0, 26.0, 24.0);
    let at = |i: usize| {
        (
            pad + (i / n_head) as f64 * dx,
            pad + (i % n_head) as f64 * dy,
        )
    };
    let strongest = links.first().map_or(1.0, |l| l.3.max(1e-6));
    let lines = links
        .iter()
        .map(|&(kind, a, b, s)| {
            let ((x1, y1), (x2, y2)) = (at(a), at(b));
            view! {
                <line class=format!("link {}", kind.to_lowercase()) x1=x1 y1=y1 x2=x2 y2=y2
                    stroke-width=format!("{:.2}", 1.0 + 5.0 * s / strongest)>
                    <title>{format!("{kind}-composition {} → {}: {s:.3}", name(a), name(b))}</title>
                </line>
            }
        })
        .collect_view();
    let nodes = (0..n_layer * n_head)
        .map(|i| {
            let (x, y) = at(i);
            view! {
                <g class="node">
                    <circle cx=x cy=y r="6"><title>{name(i)}</title></circle>
                    <text x=x + 9.0 y=y + 4.0>{name(i)}</text>
                </g>
            }
        })
        .collect_view();
    let width = 2.0 * pad + (n_layer.max(1) - 1) as f64 * dx + 60.0;
    let height = 2.0 * pad + (n_head.max(1) - 1) as f64 * dy;
    view! {
        <p class="muted">"Each head's three largest singular values of its QK circuit (what it looks for) and its OV circuit (what it writes), and the strongest compositions between heads: how much a later head's queries (Q), keys (K) or values (V) read what an earlier head writes."</p>
        <table class="analysis" data-testid="circuits-table"><tr><th></th><th>"QK σ"</th><th>"OV σ"</th></tr>{heads}</table>
        <table class="analysis" data-testid="composition-table">{rows}</table>
        <svg class="composition" data-testid="composition-graph" data-links=links.len().to_string()
            viewBox=format!("0 0 {width} {height}") width=width height=height>
            {lines}{nodes}
        </svg>
    }
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
    let corpus_text = RwSignal::new(String::new());
    let input_roles = RwSignal::new(false);
    let busy = move || ui.analysing.get().is_some();
    let label = move |id: u32| {
        ctl.with_text(|t| t.output_label(id))
            .unwrap_or_else(|| id.to_string())
    };
    let patch = move |exact: bool| {
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
            Ok(corrupt) => ctl.analyse(AnalysisTool::Patch { corrupt, exact }),
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
                            .map(|&v| view! { <td style:background-color=shade(v, max)>{format!("{v:+.2}")}</td> })
                            .collect_view();
                        view! {
                            <tr><th>{format!("L{layer}")}</th>{cells}
                                <td class="mlp" style:background-color=shade(*mlp, max)>{format!("{mlp:+.2}")}</td></tr>
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
            Analysis::Circuits(c) => circuits_view(c).into_any(),
            Analysis::KvTradeoff(points) => tradeoff_view(ui, points.0).into_any(),
            Analysis::LayerDrop(similarity) => layer_drop_view(similarity).into_any(),
            Analysis::Heads(heads) => heads_view(ui, ctl, heads).into_any(),
            Analysis::Qk(a) => view! {
                <p class="muted">{format!(
                    "L{}H{}'s score of position {} on position {}, split: under the enlarged map.",
                    a.layer, a.head, a.query, a.key
                )}</p>
            }
            .into_any(),
            Analysis::Patching {
                exact,
                attribution,
                target,
                contrast,
            } => {
                let labels = ui.labels.get();
                let tables = move |patching: &attn_model::Patching, prefix: &'static str| {
                    let n_head = patching.heads.first().map_or(0, Vec::len);
                    let header = (0..n_head)
                        .map(|h| view! { <th>{format!("H{h}")}</th> })
                        .collect_view();
                    let positions = labels
                        .iter()
                        .map(|l| view! { <th>{l.clone()}</th> })
                        .collect_view();
                    view! {
                        <table class="analysis" data-testid=format!("{prefix}-heads")><tr><th></th>{header}</tr>{fraction_rows(&patching.heads)}</table>
                        <p class="muted">"The residual stream before each layer, one position at a time:"</p>
                        <table class="analysis" data-testid=format!("{prefix}-resid")><tr><th></th>{positions}</tr>{fraction_rows(&patching.resid)}</table>
                    }
                };
                let metric = exact.as_ref().or(attribution.as_ref().ok());
                let summary = metric.map(|p| format!(
                    "Logit difference {} − {}: clean {:.2}, corrupted {:.2}. Each cell is the fraction restored by the clean activation (1 = all of it).",
                    label(target), label(contrast), p.clean, p.corrupted
                ));
                let comparison = match (&exact, &attribution) {
                    (Some(exact), Ok(estimate)) => {
                        let r = attn_model::patching::correlation(estimate, exact);
                        Some(view! {
                            <p data-testid="patching-correlation" data-correlation=format!("{r:.4}")>{format!(
                                "The estimate against the exact fractions (heads and positions together): correlation {r:.2}. It ranks what matters; where the attention saturates it undercounts a large change, which only the exact fraction shows."
                            )}</p>
                        })
                    }
                    _ => None,
                };
                let exact_view = exact.as_ref().map(|p| {
                    view! {
                        <h3>"Exact: one forward per patch"</h3>
                        {tables(p, "patching")}
                    }
                });
                let estimate_view = match &attribution {
                    Ok(p) => view! {
                        <h3>"Attribution patching: the gradient at the corrupted run times the change (one backward)"</h3>
                        {tables(p, "attribution-patching")}
                    }
                    .into_any(),
                    Err(why) => view! { <p class="muted" data-testid="attribution-refused">{format!("No attribution patching: {why}")}</p> }.into_any(),
                };
                view! {
                    <p class="muted">{summary}</p>
                    {comparison}
                    {exact_view}
                    {estimate_view}
                }
                .into_any()
            }
        })
    };
    view! {
        <h2>"Look inside"</h2>
        <div class="tools">
            <p>
                <button data-testid="run-lens" disabled=busy on:click=move |_| ctl.analyse(AnalysisTool::Lens)>"Logit lens"</button>
                " What the model would predict if it stopped after each layer: its final norm and unembedding applied to the residual stream."
            </p>
            <p>
                <button data-testid="run-attribution" disabled=busy
                    on:click=move |_| ctl.analyse(AnalysisTool::Attribute { target: None })>"Attribution"</button>
                " How much each head and each MLP writes directly into the predicted token's logit."
            </p>
            <p>
                <button data-testid="run-patching" disabled=busy on:click=move |_| patch(true)>"Patching"</button>
                <button data-testid="run-attribution-patching" disabled=busy on:click=move |_| patch(false)>"Estimate (attribution patching)"</button>
                " Run a corrupted input, restore one head's clean output at a time, and see how much of the clean prediction comes back — exactly (a forward per patch, the estimate beside it) or estimated from one backward pass, for large models. Corrupted input (ids or text): "
                <input data-testid="corrupt-input" class="corrupt" prop:value=move || corrupt.get()
                    on:input=move |ev| corrupt.set(event_target_value(&ev)) />
                <button data-testid="corrupt-one"
                    on:click=move |_| corrupt.set(corrupt_one(&ui.tokens.get_untracked()))>
                    "Corrupt one token"
                </button>
            </p>
            <p>
                <button data-testid="run-circuits" disabled=busy on:click=move |_| ctl.analyse(AnalysisTool::Circuits)>"Circuits"</button>
                " What each head looks for and writes (its QK and OV circuits), and which heads read what earlier heads write, from the weights alone."
            </p>
            <p>
                <button data-testid="run-kv-tradeoff" disabled=busy on:click=move |_| ctl.analyse(AnalysisTool::KvTradeoff)>"KV cache vs quality"</button>
                " Every way to shrink the key/value cache — fewer key/value heads (MHA → GQA → MQA), a lower joint K/V rank (a latent) or fewer PCA components per head — run on this input: bytes per token against KL to the unmodified model. Lower left is better; the ring is your current setting."
            </p>
            <p>
                <button data-testid="run-layer-drop" disabled=busy on:click=move |_| ctl.analyse(AnalysisTool::LayerDrop)>"Layer-drop ranking"</button>
                " Which attention layers change the residual stream least on this input (the cosine similarity of the stream before and after each layer's attention): the first candidates to drop."
            </p>
            <p>
                <button data-testid="run-heads" disabled=busy on:click=move |_| {
                    let text = corpus_text.get_untracked();
                    let text = (!text.trim().is_empty()).then_some(text);
                    ctl.analyse(AnalysisTool::Heads { text })
                }>"Heads over a corpus"</button>
                " Every head's scores averaged over 200 windows of the bundled plays through this model's tokenizer (a task model: its held-out sequences), or over text you paste here: "
                <textarea data-testid="corpus-text" class="corpus" rows="2" placeholder="(optional) your own text"
                    prop:value=move || corpus_text.get()
                    on:input=move |ev| corpus_text.set(event_target_value(&ev))></textarea>
                " — a sortable table and a Head Finder scatter of any two scores; click a head to open it where its score peaks."
            </p>
            <SteeringTool/>
            <p>
                <button data-testid="show-input-roles" aria-pressed=move || input_roles.get().to_string()
                    on:click=move |_| input_roles.update(|on| *on = !*on)>"Roles on this input"</button>
                " The role scores of every head measured on the text on screen, wherever a token repeats (the badges on the maps come from a fixed random probe)."
            </p>
        </div>
        {move || input_roles.get().then(|| input_roles_view(ui))}
        {move || ui.analysing.get().map(|step| view! {
            <span class="progress" data-testid="analysis-progress">
                {if step.total > 0 { format!("Working… {} of {} forwards ", step.done, step.total) } else { "Working… ".to_string() }}
                <button data-testid="cancel-analysis" on:click=move |_| ctl.cancel_analysis()>"Cancel"</button>
            </span>
        })}
        {result}
    }
}

/// Activation steering: ActAdd's "prompt A minus prompt B", or the lens's direction toward a
/// token, added to the residual stream before a layer, times a coefficient, from a position on. While it is on, the predictions, the maps,
/// the cost panel (against the unsteered model) and *Generate* run steered; it lives in the URL.
#[component]
fn SteeringTool() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let ctl = expect_context::<Controller>();
    let on = ui.steer.get_untracked();
    let n_layer = move || ui.info.with(|i| i.as_ref().map_or(1, |i| i.n_layer));
    let layer = RwSignal::new(on.as_ref().map_or(n_layer() / 2, |s| s.layer));
    let coefficient = RwSignal::new(on.as_ref().map_or(4.0, |s| s.coefficient));
    let from = RwSignal::new(on.as_ref().map_or(0, |s| s.from));
    let plus = RwSignal::new(on.as_ref().map_or_else(String::new, |s| s.plus.clone()));
    let minus = RwSignal::new(on.as_ref().map_or_else(String::new, |s| s.minus.clone()));
    let lens = RwSignal::new(on.as_ref().is_some_and(|s| s.lens));
    let steer = move |_| {
        let spec = SteerSpec {
            layer: layer.get_untracked().min(n_layer().saturating_sub(1)),
            coefficient: coefficient.get_untracked(),
            from: from.get_untracked(),
            plus: plus.get_untracked(),
            minus: minus.get_untracked(),
            lens: lens.get_untracked(),
        };
        let missing = match spec.lens {
            true => spec
                .plus
                .is_empty()
                .then_some("Steering along the lens needs a token A."),
            false => (spec.plus.is_empty() || spec.minus.is_empty())
                .then_some("Steering needs both prompts: type a text in each."),
        };
        if let Some(missing) = missing {
            ui.error.set(Some(missing.into()));
            return;
        }
        // A prompt the tokenizer cannot read, or a lens token that is several, is said here and
        // steers nothing (the run would otherwise go on unsteered and clear the message).
        if let Err(e) = ctl.steer_ids(Some(&spec)) {
            ui.error.set(Some(e));
            return;
        }
        ui.steer.set(Some(spec));
    };
    let number = |ev: &leptos::ev::Event| event_target_value(ev).parse::<f64>().ok();
    view! {
        <p class="steering">
            <button data-testid="steer" on:click=steer>"Steer"</button>
            " Add "
            <select data-testid="steer-kind"
                on:change=move |ev| lens.set(event_target_value(&ev) == "lens")>
                <option value="prompts" selected=move || !lens.get()>"prompt A minus prompt B"</option>
                <option value="lens" selected=move || lens.get()>"the lens's direction toward token A (away from B)"</option>
            </select>
            {move || if lens.get() {
                " (what the final norm and unembedding read as A rather than B, its length the stream's mean row length; B may be empty)"
            } else {
                " (ActAdd: the difference of their residual streams, at each prompt's last position)"
            }}
            " to the stream before layer "
            <input type="number" data-testid="steer-layer" min="0" step="1" class="small"
                prop:value=move || layer.get().to_string()
                on:change=move |ev| if let Some(v) = number(&ev) { layer.set(v.max(0.0) as usize) } />
            ", times "
            <input type="number" data-testid="steer-coefficient" step="0.5" class="small"
                prop:value=move || coefficient.get().to_string()
                on:change=move |ev| if let Some(v) = number(&ev).filter(|v| v.is_finite()) { coefficient.set(v as f32) } />
            ", from position "
            <input type="number" data-testid="steer-from" min="0" step="1" class="small"
                prop:value=move || from.get().to_string()
                on:change=move |ev| if let Some(v) = number(&ev) { from.set(v.max(0.0) as usize) } />
            ". A: "
            <input data-testid="steer-plus" class="corrupt" prop:value=move || plus.get()
                on:input=move |ev| plus.set(event_target_value(&ev)) />
            " B: "
            <input data-testid="steer-minus" class="corrupt" prop:value=move || minus.get()
                on:input=move |ev| minus.set(event_target_value(&ev)) />
            " The predictions, the maps and Generate then run steered (generation recomputes the text for each token)."
            {move || ui.steer.get().map(|s| view! {
                <span class="steering-on" data-testid="steering-on">
                    {format!(" Steering: {}. ", s.describe())}
                    <button data-testid="stop-steering" on:click=move |_| ui.steer.set(None)>"Stop steering"</button>
                </span>
            })}
        </p>
    }
}

/// A column of the corpus head table: its title and its value for a head.
const HEAD_COLUMNS: [(&str, &str); 8] = [
    ("self", "self"),
    ("previous_token", "previous token"),
    ("first_token", "first token (sink)"),
    ("induction", "induction (corpus)"),
    ("induction_probe", "induction (probe)"),
    ("entropy", "entropy"),
    ("distance_mean", "distance"),
    ("distance_std", "distance sd"),
];

fn column_title(key: &str) -> &'static str {
    HEAD_COLUMNS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("", |(_, title)| title)
}

fn head_value(h: &HeadStats, key: &str) -> f64 {
    match key {
        "self" => h.self_attention,
        "previous_token" => h.previous_token,
        "first_token" => h.first_token,
        "induction" => h.induction.unwrap_or(f64::NAN),
        "induction_probe" => h.induction_probe,
        "entropy" => h.entropy,
        "distance_mean" => h.distance_mean,
        _ => h.distance_std,
    }
}

/// Where a head's score `key` peaks: the key of `top` it is kept under.
fn top_key(key: &str) -> &str {
    match key {
        "induction_probe" => "induction",
        "distance_mean" | "distance_std" => "distance",
        k => k,
    }
}

/// Opens head `(layer, head)` where its score `key` peaks over the corpus: that window as the
/// input, the head focused.
fn open_head(
    ui: Ui,
    ctl: Controller,
    heads: &CorpusHeads,
    (layer, head): (usize, usize),
    key: &str,
) {
    let stats = heads
        .heads
        .iter()
        .find(|h| h.layer == layer && h.head == head);
    let best = stats.and_then(|h| h.top_of(top_key(key)).next());
    if let Some(best) = best {
        let text = heads
            .window_tokens
            .get(best.window)
            .and_then(|ids| ctl.with_text(|t| t.decode(ids)).flatten());
        if let Some(text) = text {
            ui.prompt.set(text);
        }
    }
    ui.focus.set(Some((layer, head)));
}

/// The corpus head metrics: a Head Finder scatter of two chosen scores (one point per head) and
/// a table sorted by any column; clicking a head opens it where the chosen score peaks.
fn heads_view(ui: Ui, ctl: Controller, heads: CorpusHeads) -> impl IntoView {
    let heads = std::sync::Arc::new(heads);
    let x_key = RwSignal::new("previous_token".to_string());
    let y_key = RwSignal::new("induction_probe".to_string());
    let sort_key = RwSignal::new("induction_probe".to_string());
    let options = move |selected: RwSignal<String>| {
        HEAD_COLUMNS
            .iter()
            .map(|(key, title)| {
                view! { <option value=*key selected=move || selected.get() == *key>{*title}</option> }
            })
            .collect_view()
    };
    let (w, h, pad) = (360.0, 260.0, 36.0);
    let scatter_heads = heads.clone();
    let scatter = move || {
        let (xk, yk) = (x_key.get(), y_key.get());
        let values: Vec<(usize, usize, f64, f64)> = scatter_heads
            .heads
            .iter()
            .map(|s| (s.layer, s.head, head_value(s, &xk), head_value(s, &yk)))
            .filter(|(_, _, x, y)| x.is_finite() && y.is_finite())
            .collect();
        let max =
            |f: fn(&(usize, usize, f64, f64)) -> f64| values.iter().map(f).fold(1e-9f64, f64::max);
        let (mx, my) = (max(|p| p.2), max(|p| p.3));
        let n_layer = scatter_heads
            .heads
            .iter()
            .map(|s| s.layer + 1)
            .max()
            .unwrap_or(1);
        let points = values
            .iter()
            .map(|&(layer, head, x, y)| {
                let cx = pad + x / mx * (w - 2.0 * pad);
                let cy = h - pad - y / my * (h - 2.0 * pad);
                let hue = 240.0 - 200.0 * layer as f64 / n_layer.max(2).saturating_sub(1).max(1) as f64;
                let all = scatter_heads.clone();
                let key = yk.clone();
                view! {
                    <circle class="head-point" data-layer=layer.to_string() data-head=head.to_string()
                        cx=format!("{cx:.1}") cy=format!("{cy:.1}") r="5"
                        fill=format!("hsl({hue:.0}, 70%, 45%)")
                        on:click=move |_| open_head(ui, ctl, &all, (layer, head), &key)>
                        <title>{format!("L{layer} H{head}: {x:.3}, {y:.3}")}</title>
                    </circle>
                }
            })
            .collect_view();
        view! {
            <svg class="head-finder" data-testid="head-finder" data-points=values.len().to_string()
                width=w.to_string() height=h.to_string() viewBox=format!("0 0 {w} {h}")>
                <line x1=pad y1=h - pad x2=w - pad y2=h - pad stroke="#888" />
                <line x1=pad y1=pad x2=pad y2=h - pad stroke="#888" />
                <text x=w - pad y=h - 8.0 text-anchor="end" font-size="11">{format!("{} (max {mx:.3})", column_title(&xk))}</text>
                <text x=4 y=14 font-size="11">{format!("{} (max {my:.3})", column_title(&yk))}</text>
                {points}
            </svg>
        }
    };
    let table_heads = heads.clone();
    let table = move || {
        let key = sort_key.get();
        let mut rows: Vec<&HeadStats> = table_heads.heads.iter().collect();
        rows.sort_by(|a, b| {
            let (a, b) = (head_value(a, &key), head_value(b, &key));
            b.partial_cmp(&a)
                .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
        });
        let header = HEAD_COLUMNS
            .iter()
            .map(|(k, title)| {
                let k = k.to_string();
                let sorted = key == k;
                view! {
                    <th class="sortable" class:sorted=sorted data-key=k.clone()
                        on:click=move |_| sort_key.set(k.clone())>{*title}</th>
                }
            })
            .collect_view();
        let body = rows
            .into_iter()
            .map(|s| {
                let (layer, head) = (s.layer, s.head);
                let cells = HEAD_COLUMNS
                    .iter()
                    .map(|(k, _)| {
                        let v = head_value(s, k);
                        view! { <td>{if v.is_finite() { format!("{v:.3}") } else { "–".to_string() }}</td> }
                    })
                    .collect_view();
                let all = table_heads.clone();
                let key = key.clone();
                view! {
                    <tr data-layer=layer.to_string() data-head=head.to_string()
                        on:click=move |_| open_head(ui, ctl, &all, (layer, head), &key)>
                        <th>{format!("L{layer} H{head}")}</th>{cells}
                    </tr>
                }
            })
            .collect_view();
        view! {
            <table class="analysis" data-testid="heads-table">
                <tr><th>"head"</th>{header}</tr>
                {body}
            </table>
        }
    };
    let export_heads = heads.clone();
    let export = move |_| {
        let bytes = serde_json::to_vec_pretty(export_heads.as_ref()).unwrap_or_default();
        if let Err(e) = browser::download("heads.json", &bytes, "application/json") {
            ui.error.set(Some(e));
        }
    };
    view! {
        <p class="muted" data-testid="heads-summary">{format!(
            "{}: {} query positions ({} whose token repeats). Induction (probe): {}. Click a head to open it where its score peaks.",
            heads.corpus, heads.queries, heads.repeats, heads.probe
        )}</p>
        <p>
            "Head Finder: x "
            <select data-testid="head-finder-x" on:change=move |ev| x_key.set(event_target_value(&ev))>{options(x_key)}</select>
            " y "
            <select data-testid="head-finder-y" on:change=move |ev| y_key.set(event_target_value(&ev))>{options(y_key)}</select>
            " "
            <button data-testid="export-heads" on:click=export>"Export JSON"</button>
        </p>
        {scatter}
        {table}
    }
}

/// The KV-cache / quality plot and its table; the current setting is marked.
fn tradeoff_view(ui: Ui, points: Vec<attn_model::TradeoffPoint>) -> impl IntoView {
    let marked = ui.current.with(|r| {
        let r = r.as_ref()?;
        Some((
            r.kv_bytes_per_token as f64,
            r.comparison.as_ref().map_or(0.0, |c| c.mean_kl),
        ))
    });
    // One series per way of shrinking the cache, so each line joins settings of one kind.
    let kind = |p: &attn_model::TradeoffPoint| attn_model::tradeoff::cache_reduction(&p.variant);
    let mut series: Vec<PlotSeries> = Vec::new();
    for p in &points {
        let point = PlotPoint {
            x: p.kv_bytes_per_token as f64,
            y: p.mean_kl,
            label: p.label.clone(),
        };
        match series.iter_mut().find(|s| s.name == kind(p)) {
            Some(s) => s.points.push(point),
            None => series.push(PlotSeries {
                name: kind(p).into(),
                points: vec![point],
            }),
        }
    }
    let data = PlotData {
        name: "kv-cache-tradeoff".into(),
        x_label: "KV cache bytes per token".into(),
        y_label: "KL to the unmodified model (nats)".into(),
        series,
        lines: true,
        marked,
        ..PlotData::default()
    };
    let rows = points
        .into_iter()
        .map(|p| {
            view! {
                <tr><th>{p.label}</th><td>{p.kv_bytes_per_token}</td>
                    <td>{format!("{:.4}", p.mean_kl)}</td><td>{format!("{:.0}%", p.top1_agreement * 100.0)}</td></tr>
            }
        })
        .collect_view();
    view! {
        <Plot data=data />
        <table class="analysis" data-testid="tradeoff-table">
            <tr><th></th><th>"bytes / token"</th><th>"KL"</th><th>"top-1 kept"</th></tr>
            {rows}
        </table>
    }
}

/// The layer-drop criterion, most droppable first: each layer's similarity, and a button that
/// drops that layer's attention.
fn layer_drop_view(similarity: Vec<f64>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let mut order: Vec<usize> = (0..similarity.len()).collect();
    order.sort_by(|&a, &b| similarity[b].total_cmp(&similarity[a]));
    let rows = order
        .into_iter()
        .enumerate()
        .map(|(rank, layer)| {
            let drop = move |_| {
                ui.variant.update(|v| {
                    let layers = v.drop_attention_layers.get_or_insert_with(Vec::new);
                    if !layers.contains(&layer) {
                        layers.push(layer);
                    }
                    *v = v.normalised();
                })
            };
            view! {
                <tr><th>{format!("{}.", rank + 1)}</th><td>{format!("layer {layer}")}</td>
                    <td>{format!("{:.4}", similarity[layer])}</td>
                    <td><button on:click=drop>"drop its attention"</button></td></tr>
            }
        })
        .collect_view();
    view! {
        <p class="muted">"Mean over positions of cos(x, x + attn(x)), x the stream entering the layer's attention: close to 1, the layer changes little (He et al., 2024, drop layers in this order)."</p>
        <table class="analysis" data-testid="layer-drop-table">
            <tr><th></th><th>"layer"</th><th>"similarity"</th><th></th></tr>
            {rows}
        </table>
    }
}

/// The "roles on this input" table: attn-model's `roles_on_input` on the current result (the
/// worker computes it from the full maps).
fn input_roles_view(ui: Ui) -> impl IntoView {
    move || {
        let roles = ui
            .current
            .with(|r| r.as_ref().map(|r| r.input_roles.clone()));
        match roles {
            None => view! { <p class="muted">"No result yet."</p> }.into_any(),
            Some(None) => view! {
                <p class="muted" data-testid="input-roles-none">"No token repeats in this input, so there is nothing to score induction on: type text in which something occurs twice."</p>
            }
            .into_any(),
            Some(Some(roles)) => {
                let rows = roles
                    .into_iter()
                    .map(|r| {
                        let cell = |v: f32| view! { <td style:background-color=shade(v as f64, 1.0)>{format!("{v:.2}")}</td> };
                        view! {
                            <tr><th>{format!("L{} H{}", r.layer, r.head)}</th>
                                {cell(r.previous_token)}{cell(r.induction)}{cell(r.duplicate_token)}
                                {cell(r.first_token)}{cell(r.self_attention)}
                                <td class="role">{r.role.unwrap_or_default()}</td></tr>
                        }
                    })
                    .collect_view();
                view! {
                    <table class="analysis" data-testid="input-roles-table">
                        <tr><th></th><th>"previous"</th><th>"induction"</th><th>"duplicate"</th><th>"first"</th><th>"self"</th><th>"role"</th></tr>
                        {rows}
                    </table>
                }
                .into_any()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strongest_links_come_first_and_skip_empty_pairs() {
        let zeros = vec![vec![0.0; 4]; 4];
        let mut k = zeros.clone();
        k[0][2] = 0.5;
        k[1][3] = 0.9;
        let mut v = zeros.clone();
        v[0][3] = 0.7;
        let c = attn_model::Circuits {
            heads: Vec::new(),
            q: zeros,
            k,
            v,
        };
        assert_eq!(
            strongest_links(&c),
            vec![("K", 1, 3, 0.9), ("V", 0, 3, 0.7), ("K", 0, 2, 0.5)]
        );
    }

    #[test]
    fn corrupting_one_token_keeps_the_length_and_changes_one_id() {
        assert_eq!(corrupt_one(&[4, 7, 9, 2]), "4 7 4 2");
        assert_eq!(corrupt_one(&[3, 3, 3]), "3 2 3");
        assert_eq!(corrupt_one(&[0, 0]), "0 1");
        assert_eq!(corrupt_one(&[]), "");
    }
}
