//! The attention grid (one map per layer × head) and the enlarged map with its exports.

use std::time::Duration;

use attn_model::HeadRoles;
use leptos::prelude::*;

use crate::browser;
use crate::controller::Controller;
use crate::heatmap;
use crate::protocol::{Analysis, AnalysisTool, MapsWanted, RunResult};
use crate::qk_view::qk_view;
use crate::state::{MapSize, Ui};

fn role_badge(roles: &[HeadRoles], layer: usize, head: usize) -> Option<&'static str> {
    roles
        .iter()
        .find(|r| r.layer == layer && r.head == head)
        .and_then(|r| r.dominant(attn_model::roles::ROLE_THRESHOLD))
}

#[component]
pub fn HeatmapGrid() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let cells = move || {
        let info = ui.info.get()?;
        let view = ui.grid.get();
        Some(
            (0..info.n_layer)
                .filter(|layer| view.shows(*layer))
                .map(|layer| {
                    let row = (0..info.n_head)
                        .map(|head| view! { <HeatmapCell layer=layer head=head causal=info.causal /> })
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
        <GridControls />
        {move || maps_read(ui).map(|text| view! { <p class="muted" data-testid="maps-read">{text}</p> })}
        <div class=move || format!("grid size-{}", ui.grid.get().size.name()) data-testid="heatmap-grid">
            {cells}
        </div>
    }
}

/// Whether `result` holds every attention map.
fn has_every_map(result: &Option<RunResult>) -> bool {
    result.as_ref().is_some_and(|r| r.maps == MapsWanted::ALL)
}

/// Downloads the current result's maps, input, variant and top outputs as `attention.json`.
fn download_maps(ui: Ui) {
    let Some(r) = ui.current.get_untracked() else {
        return;
    };
    let maps: Vec<Vec<Vec<&[f32]>>> = (0..r.n_layer)
        .map(|l| {
            (0..r.n_head)
                .map(|h| {
                    let map = r.attention_map(l, h).unwrap_or_default();
                    map.chunks(r.seq_len.max(1)).collect()
                })
                .collect()
        })
        .collect();
    let json = serde_json::json!({
        "tokens": ui.tokens.get_untracked(),
        "token_labels": ui.labels.get_untracked(),
        "variant": ui.variant.get_untracked(),
        "top": r.top,
        "kv_bytes_per_token": r.kv_bytes_per_token,
        "attention": maps,
    });
    let _ = browser::download(
        "attention.json",
        json.to_string().as_bytes(),
        "application/json",
    );
}

/// What the latest result holds when it is not every map in full: "Maps read back: 128 of 1024
/// (layers 0–3, on screen)", and "… sent at 64 × 64 cells, the enlarged one in full" when the
/// grid's maps came as thumbnails.
fn maps_read(ui: Ui) -> Option<String> {
    let (n_layer, n_head) = ui
        .info
        .with(|i| i.as_ref().map(|i| (i.n_layer, i.n_head)))?;
    let (maps, t) = ui
        .current
        .with(|r| r.as_ref().map(|r| (r.maps, r.seq_len)))?;
    let side = attn_model::thumbnail::thumbnail_side(t, maps.pooled.unwrap_or(1));
    let layers = match maps.layers {
        Some((first, last)) => {
            let read = maps.maps(n_layer, n_head)?.len();
            let enlarged = if maps.focus.is_some() && maps.pooled.is_none() {
                ", and the enlarged one"
            } else {
                ""
            };
            format!(
                "{read} of {} (layers {first}–{last}, on screen{enlarged})",
                n_layer * n_head
            )
        }
        None if maps.pooled.is_some() => format!("{0} of {0}", n_layer * n_head),
        None => return None,
    };
    let pooled = match (maps.pooled, maps.focus) {
        (Some(_), Some(_)) => format!(", sent at {side} × {side} cells, the enlarged one in full"),
        (Some(_), None) => format!(", sent at {side} × {side} cells"),
        (None, _) => String::new(),
    };
    Some(format!("Maps read back: {layers}{pooled}"))
}

/// The layer range and the map size of the grid, for models with many layers and heads.
#[component]
fn GridControls() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let layers = move || ui.info.with(|i| i.as_ref().map_or(1, |i| i.n_layer));
    // A typed layer number, kept inside the model and the other end of the range.
    let set_end = move |ev: leptos::ev::Event, first: bool| {
        let Ok(value) = event_target_value(&ev).trim().parse::<usize>() else {
            return;
        };
        let top = layers().saturating_sub(1);
        ui.grid.update(|g| {
            if first {
                g.first = value.min(top);
                g.last = g.last.max(g.first);
            } else {
                g.last = value.min(top);
                g.first = g.first.min(g.last);
            }
        });
    };
    let set_size = move |ev: leptos::ev::Event| {
        let name = event_target_value(&ev);
        if let Some(size) = MapSize::ALL.into_iter().find(|s| s.name() == name) {
            ui.grid.update(|g| g.size = size);
        }
    };
    view! {
        <div class="grid-controls">
            <label>
                "Layers "
                <input type="number" min="0" data-testid="layers-from" max=move || layers() - 1
                    prop:value=move || ui.grid.get().first.to_string()
                    on:change=move |ev| set_end(ev, true) />
                " to "
                <input type="number" min="0" data-testid="layers-to" max=move || layers() - 1
                    prop:value=move || ui.grid.get().last.min(layers() - 1).to_string()
                    on:change=move |ev| set_end(ev, false) />
                {move || format!(" of {}", layers())}
            </label>
            <label>
                "Map size "
                <select data-testid="map-size" on:change=set_size>
                    {MapSize::ALL.into_iter().map(|size| view! {
                        <option value=size.name() selected=move || ui.grid.get().size == size>
                            {size.name()}
                        </option>
                    }).collect_view()}
                </select>
            </label>
        </div>
    }
}

#[component]
pub fn HeatmapCell(layer: usize, head: usize, causal: bool) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let ablated = move || {
        ui.variant.with(|v| {
            v.heads
                .as_ref()
                .is_some_and(|h| h.ablate.contains(&[layer, head]))
        })
    };
    // Repaints when the result, the baseline or the diff view changes. The painting itself runs
    // in a task of its own, so a grid of many maps never holds the main thread in one long task;
    // it borrows the results (`with`) rather than copying them.
    Effect::new(move |_| {
        ui.diff.track();
        ui.current.track();
        ui.baseline.track();
        if canvas.get().is_some() {
            set_timeout(
                move || paint_cell(ui, canvas, layer, head, causal),
                Duration::ZERO,
            );
        }
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
                {move || badge().map(|b| view! {
                    <span class="role" data-testid="role-badge" title="Measured on 8 random sequences of distinct tokens, each repeated (seed 0); docs/ANALYSIS.md has the definitions">{b}</span>
                })}
                <button class="ablate" data-testid="ablate-toggle" aria-pressed=move || ablated().to_string()
                    title="Ablate this head"
                    on:click=move |_| ui.toggle_head(layer, head)>
                    {move || if ablated() { "restore" } else { "ablate" }}
                </button>
            </div>
        </div>
    }
}

/// Paints map `(layer, head)` of the current result (or its difference to the baseline).
fn paint_cell(
    ui: Ui,
    canvas: NodeRef<leptos::html::Canvas>,
    layer: usize,
    head: usize,
    causal: bool,
) {
    // The cell may be gone by the time its paint runs (a newly opened model replaces the grid
    // right after its first result): then there is nothing to paint.
    let Some(el) = canvas.try_get_untracked().flatten() else {
        return;
    };
    let diff = ui.diff.get_untracked();
    ui.current.with_untracked(|current| {
        let Some(r) = current else {
            // No result yet (a model is being installed): show nothing rather than old maps.
            el.set_width(1);
            el.set_height(1);
            return;
        };
        let factor = r.maps.pooled.unwrap_or(1);
        ui.baseline.with_untracked(|baseline| {
            let base = baseline.as_ref().filter(|_| diff);
            draw(&el, r, base, (layer, head, factor), causal);
        });
    });
}

/// Draws map `(layer, head)` of `r` pooled by `factor` (or its difference to `baseline`'s), or
/// a blank canvas while the map is not read back.
fn draw(
    el: &web_sys::HtmlCanvasElement,
    r: &RunResult,
    baseline: Option<&RunResult>,
    (layer, head, factor): (usize, usize, usize),
    causal: bool,
) {
    let Some((map, side)) = grid_map(r, layer, head, factor) else {
        el.set_width(1);
        el.set_height(1);
        return;
    };
    let base = baseline
        .filter(|b| b.seq_len == r.seq_len)
        .and_then(|b| grid_map(b, layer, head, factor))
        .map(|(base, _)| base);
    let _ = heatmap::paint(el, &map, base.as_deref(), side, causal);
}

/// Map `(layer, head)` of `r` as the grid draws it, pooled by `factor`, with its side: the
/// thumbnail the worker sent, or the full map pooled here (the enlarged map comes in full, and
/// a result with every map in full may serve a grid that pools).
fn grid_map(
    r: &RunResult,
    layer: usize,
    head: usize,
    factor: usize,
) -> Option<(std::borrow::Cow<'_, [f32]>, usize)> {
    use attn_model::thumbnail::{pool_map, thumbnail_side};
    let t = r.seq_len;
    let thumbnail = r.thumbnails.get(layer * r.n_head + head);
    if let Some(thumbnail) = thumbnail.filter(|_| r.thumbnails.factor == factor) {
        return Some((thumbnail.into(), r.thumbnails.side));
    }
    let full = r.attention_map(layer, head)?;
    Some(match factor {
        1 => (full.into(), t),
        f => (pool_map(full, t, f).into(), thumbnail_side(t, f)),
    })
}

#[component]
pub fn FocusView() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let ctl = expect_context::<Controller>();
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let hover = RwSignal::new(None::<String>);
    // The (query, key) cell under the pointer, in map coordinates.
    let cell_at = move |ev: &leptos::ev::MouseEvent| -> Option<(usize, usize)> {
        let el = canvas.get_untracked()?;
        let t = ui
            .current
            .with_untracked(|c| c.as_ref().map(|r| r.seq_len))?;
        let rect = el.get_bounding_client_rect();
        let x = ((ev.client_x() as f64 - rect.left()) / rect.width() * t as f64).floor();
        let y = ((ev.client_y() as f64 - rect.top()) / rect.height() * t as f64).floor();
        (x >= 0.0 && y >= 0.0 && x < t as f64 && y < t as f64).then_some((y as usize, x as usize))
    };
    Effect::new(move |_| {
        let (Some((l, h)), Some(causal)) = (
            ui.focus.get(),
            ui.info.with(|i| i.as_ref().map(|i| i.causal)),
        ) else {
            return;
        };
        let diff = ui.diff.get();
        let Some(el) = canvas.get() else { return };
        ui.current.with(|current| {
            let Some(r) = current else { return };
            // In full; just after a click, while the full map is on its way, its thumbnail.
            let factor = match r.attention_map(l, h) {
                Some(_) => 1,
                None => r.maps.pooled.unwrap_or(1),
            };
            ui.baseline.with(|baseline| {
                draw(
                    &el,
                    r,
                    baseline.as_ref().filter(|_| diff),
                    (l, h, factor),
                    causal,
                );
            });
        });
    });
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let Some((l, h)) = ui.focus.get_untracked() else {
            return;
        };
        let cell = cell_at(&ev);
        let readout = ui.current.with_untracked(|current| {
            let r = current.as_ref()?;
            let (i, j) = cell?;
            let t = r.seq_len;
            // Just after a click the map may still be a thumbnail; its full values are coming.
            let Some(map) = r.attention_map(l, h) else {
                return Some("Reading this map in full…".to_string());
            };
            let weight = map[i * t + j];
            let name = |k: usize| {
                ui.labels
                    .with_untracked(|labels| labels.get(k).cloned())
                    .unwrap_or_else(|| k.to_string())
            };
            Some(format!(
                "query {} ({i}) → key {} ({j}): {weight:.3}",
                name(i),
                name(j),
            ))
        });
        hover.set(readout);
    };
    // A click splits the cell's score into what each part of the residual stream adds (QK
    // attribution, run in the worker); a masked cell has no score to split.
    let on_click = move |ev: leptos::ev::MouseEvent| {
        let (Some((layer, head)), Some((query, key))) = (ui.focus.get_untracked(), cell_at(&ev))
        else {
            return;
        };
        let causal = ui
            .info
            .with_untracked(|i| i.as_ref().is_some_and(|i| i.causal));
        if causal && key > query {
            hover.set(Some(format!(
                "Position {query} does not attend to the later position {key}: no score to split."
            )));
            return;
        }
        ctl.analyse(AnalysisTool::Qk {
            layer,
            head,
            query,
            key,
        });
    };
    // The split of a clicked cell of this head, once it arrives.
    let qk = move || {
        let focus = ui.focus.get()?;
        match ui.analysis.get()? {
            Analysis::Qk(a) if (a.layer, a.head) == focus => Some(qk_view(ui, a)),
            _ => None,
        }
    };
    let export_png = move |_| {
        if let (Some(el), Some((l, h))) = (canvas.get_untracked(), ui.focus.get_untracked()) {
            if let Ok(url) = el.to_data_url() {
                let _ = browser::download_url(&format!("attention-L{l}-H{h}.png"), &url);
            }
        }
    };
    // Every map of the current result; when the page reads back only the layers on screen, the
    // export first asks for a forward with every map and downloads when it arrives.
    let export_json = move |_| {
        if ui.current.with_untracked(has_every_map) {
            download_maps(ui);
        } else {
            ui.exporting.set(true);
        }
    };
    Effect::new(move |_| {
        if ui.exporting.get() && ui.current.with(has_every_map) {
            ui.exporting.set(false);
            download_maps(ui);
        }
    });
    on_cleanup(move || {
        ui.exporting.try_set(false);
    });
    view! {
        {move || ui.focus.get().map(|(l, h)| view! {
            <div class="focus" data-testid="focus-view">
                <div class="focus-head">
                    <h3>{format!("Layer {l}, head {h}")}</h3>
                    <button data-testid="export-png" on:click=export_png>"Export PNG"</button>
                    <button data-testid="export-json" on:click=export_json disabled=move || ui.exporting.get()>
                        {move || if ui.exporting.get() { "Reading every map…" } else { "Export JSON" }}
                    </button>
                    <button on:click=move |_| ui.focus.set(None) aria-label="Close">"×"</button>
                </div>
                <div class="focus-body">
                    <div class="y-labels">
                        {move || ui.labels.get().into_iter().map(|l| view! { <span>{l}</span> }).collect_view()}
                    </div>
                    <canvas class="big" data-testid="focus-map" node_ref=canvas width="1" height="1"
                        on:mousemove=on_move on:click=on_click
                        on:mouseleave=move |_| hover.set(None)></canvas>
                </div>
                <div class="x-labels">
                    {move || ui.labels.get().into_iter().map(|l| view! { <span>{l}</span> }).collect_view()}
                </div>
                <p class="hover" data-testid="hover-readout">{move || hover.get().unwrap_or_else(|| "Hover over a cell; click it to see why the head attends there".into())}</p>
                {qk}
            </div>
        })}
    }
}
