//! The attention controls: every variant the page offers, written into the URL state.

use attn_model::{AblationMode, Kernel, KernelName, Variant};
use leptos::prelude::*;

use crate::state::Ui;

fn parse_opt(s: &str) -> Option<usize> {
    s.parse::<usize>().ok().filter(|&n| n >= 1)
}

/// A slider from 1 to a model-dependent maximum, where the maximum means "unchanged" (`None`).
struct CappedSlider {
    id: &'static str,
    label: &'static str,
    /// What the label says at the maximum.
    full: &'static str,
    title: &'static str,
    get: fn(&Variant) -> Option<usize>,
    put: fn(&mut Variant, Option<usize>),
}

fn capped_slider(
    ui: Ui,
    s: CappedSlider,
    max: impl Fn() -> usize + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let CappedSlider {
        id,
        label,
        full,
        title,
        get,
        put,
    } = s;
    view! {
        <label for=id>
            {label}
            {move || get(&ui.variant.get()).map(|r| r.to_string()).unwrap_or_else(|| full.into())}
        </label>
        <input id=id data-testid=id type="range" min="1" title=title
            max=move || max().to_string()
            prop:value=move || get(&ui.variant.get()).unwrap_or_else(max).to_string()
            on:input=move |ev| {
                let n = event_target_value(&ev).parse::<usize>().ok();
                let cap = max();
                ui.variant.update(|v| {
                    put(v, n.filter(|&n| n < cap));
                    *v = v.normalised();
                });
            } />
    }
}

#[component]
pub fn Controls() -> impl IntoView {
    let ui = expect_context::<Ui>();
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
    let d_head = move || info().map(|i| i.d_head).unwrap_or(1);
    let n_head = move || info().map(|i| i.n_head).unwrap_or(1);
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
            {capped_slider(ui, CappedSlider {
                id: "kv-rank",
                label: "Latent K/V rank: ",
                full: "full",
                title: "The best rank-r approximation of each layer's [W_k | W_v] (an MLA-style latent)",
                get: |v| v.kv_rank,
                // A latent and per-head PCA compress the same cache: one at a time.
                put: |v, r| {
                    v.kv_rank = r;
                    if r.is_some() {
                        v.kv_pca = None;
                    }
                },
            }, max_rank)}
            {capped_slider(ui, CappedSlider {
                id: "kv-pca",
                label: "PCA components per K/V head: ",
                full: "all",
                title: "Each key/value head keeps its first principal components, fitted on the model's example inputs (MatryoshkaKV-style)",
                get: |v| v.kv_pca,
                put: |v, r| {
                    v.kv_pca = r;
                    if r.is_some() {
                        v.kv_rank = None;
                    }
                },
            }, d_head)}
            <p class="meter">"KV cache: "
                <span data-testid="kv-bytes">{move || ui.current.get().map(|r| r.kv_bytes_per_token.to_string()).unwrap_or_default()}</span>
                " bytes per token"
                // What a generation's cache measured, beside the formula.
                <span data-testid="kv-held">{move || ui.generation.with(|g| g.kv_cache_bytes.map(|bytes| format!(
                    "; the generation's cache holds {bytes} bytes after {} tokens",
                    g.pieces.len().saturating_sub(1)
                )))}</span>
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
            <label for="beta" title="Multiplies every attention score: larger is sharper, smaller is flatter. The Hopfield β of a head is this value over √d_head.">"Inverse temperature β: " {move || format!("{:.2}", ui.variant.get().beta())}</label>
            // A log₂ scale from 1/32 to 32: every β a lesson sets, with as much room below 1
            // as above.
            <input id="beta" data-testid="beta" type="range" min="-5" max="5" step="0.25"
                title="log₂ β"
                prop:value=move || ui.variant.get().beta().log2().to_string()
                on:input=move |ev| {
                    let b = event_target_value(&ev)
                        .parse::<f32>()
                        .ok()
                        .map(|e| (2f32.powf(e) * 1e4).round() / 1e4);
                    set(Box::new(move |v| v.beta = b));
                } />
        </div>
        <div class="control">
            <label for="kernel">"Attention kernel"</label>
            <select id="kernel" data-testid="kernel" on:change=move |ev| {
                let k = match event_target_value(&ev).as_str() {
                    "linear" => Some(Kernel::Named(KernelName::Linear)),
                    "random_features" => Some(Kernel::RandomFeatures { random_features: 64, seed: 0, iid: false }),
                    _ => None,
                };
                set(Box::new(move |v| v.kernel = k));
            }>
                {move || {
                    let current = kernel_value();
                    [("softmax", "softmax"), ("linear", "linear (elu + 1)"), ("random_features", "random features (FAVOR+, orthogonal)")]
                        .into_iter()
                        .map(|(value, label)| view! { <option value=value selected=current == value>{label}</option> })
                        .collect_view()
                }}
            </select>
            {move || match ui.variant.get().kernel() {
                Kernel::RandomFeatures { random_features, seed, iid } => Some(view! {
                    <label for="rf-m">"Random features m: " {random_features}</label>
                    <input id="rf-m" type="range" min="1" max="512" prop:value=random_features.to_string()
                        on:input=move |ev| {
                            let m = parse_opt(&event_target_value(&ev)).unwrap_or(1);
                            set(Box::new(move |v| v.kernel = Some(Kernel::RandomFeatures { random_features: m, seed, iid })));
                        } />
                    <label title="FAVOR+ draws the features block-orthogonal; the Performer paper compares that with independent draws">
                        <input type="checkbox" data-testid="rf-iid" prop:checked=iid
                            on:change=move |ev| {
                                let iid = event_target_checked(&ev);
                                set(Box::new(move |v| v.kernel = Some(Kernel::RandomFeatures { random_features, seed, iid })));
                            } />
                        " independent (i.i.d.) features instead of orthogonal"
                    </label>
                }),
                _ => None,
            }}
        </div>
        <div class="control">
            {capped_slider(ui, CappedSlider {
                id: "route-heads",
                label: "Heads per token (routing proxy, untrained): ",
                full: "all",
                title: "Mixture-of-Head-style: in every layer each token keeps only the k heads whose output is largest; no router was trained",
                get: |v| v.route_heads,
                put: |v, k| v.route_heads = k,
            }, n_head)}
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
