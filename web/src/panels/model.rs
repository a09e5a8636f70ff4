//! The model panel: pick a built-in model or load one from disk.

use attn_model::Variant;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::controller::Controller;
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
            ctl.load_builtin(entry);
        }
    };
    let on_files = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = ev.target().unwrap().unchecked_into();
        let Some(list) = input.files() else { return };
        let files: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
        if files.is_empty() {
            return;
        }
        let title = files
            .iter()
            .map(web_sys::File::name)
            .collect::<Vec<_>>()
            .join(", ");
        // The worker reads and checks the files itself (through object URLs); the current model
        // stays if they are bad.
        ui.loading.set(Some(format!("Reading {title}…")));
        ui.opening.set_value(None);
        ctl.open_files(files, format!("From disk: {title}"));
    };
    view! {
        <h2>"Model"</h2>
        <label for="model-select">"Built-in model"</label>
        <select id="model-select" data-testid="model-select" on:change=on_pick>
            // A model from disk is not in the list: say so rather than show a built-in's name.
            {move || (ui.model_id.get().is_none() && ui.info.with(Option::is_some)).then(|| view! {
                <option value="" selected=true disabled=true>"(loaded from disk)"</option>
            })}
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
            // A model from disk or from the training panel is not in the list: name it.
            {ui.model_id.get().is_none().then(|| view! {
                <p class="model-title" data-testid="model-title">{info.title.clone()}</p>
            })}
            <p class="description">{info.description.clone()}</p>
            <p class="facts">
                {format!(
                    "{} layers × {} heads ({} key/value), d_model {}, context {}, {} parameters{}",
                    info.n_layer, info.n_head, info.n_kv_head, info.d_model, info.n_ctx,
                    info.parameters,
                    if info.causal { "" } else { ", bidirectional" },
                )}
            </p>
            <p class="facts architecture">{info.architecture.clone()}</p>
            {info.tokenizer_note.clone().map(|note| view! {
                <p class="facts tokenizer-note">{format!("No tokenizer: type token ids ({note})")}</p>
            })}
        })}
        <label for="model-files">
            "Or load from disk (a .safetensors, or a Hugging Face GPT-2, Llama, Qwen2 or GPT-NeoX \
             directory's files)"
        </label>
        <input id="model-files" type="file" multiple on:change=on_files />
    }
}
