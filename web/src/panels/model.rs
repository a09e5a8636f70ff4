//! The model panel: pick a built-in model or load one from disk.

use attn_model::Variant;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::app::load_builtin;
use crate::browser;
use crate::controller::Controller;
use crate::protocol::ModelSource;
use crate::state::Ui;

#[component]
pub fn ModelPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let ctl = expect_context::<Controller>();
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
            load_builtin(ui, ctl, entry);
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
            // The worker parses and checks the files; the current model stays if they are bad.
            ui.opening.set_value(None);
            let files = read
                .into_iter()
                .map(|(name, bytes)| (name, serde_bytes::ByteBuf::from(bytes)))
                .collect();
            ctl.open(
                ModelSource::Files(files),
                format!("From disk: {title}"),
                String::new(),
                Vec::new(),
            );
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
