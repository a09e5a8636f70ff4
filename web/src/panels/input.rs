//! The input panel: the text box, example chips and the tokens the model sees.

use leptos::prelude::*;

use crate::state::Ui;

#[component]
pub fn InputPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <h2>"Input"</h2>
        <label for="prompt-input">"Text"</label>
        <textarea
            id="prompt-input"
            data-testid="prompt-input"
            rows="2"
            prop:value=move || ui.prompt.get()
            on:input=move |ev| ui.prompt.set(event_target_value(&ev))
        ></textarea>
        <div class="examples">
            {move || ui.info.get().map(|info| {
                info.examples
                    .into_iter()
                    .map(|ex| {
                        let label = ex.clone();
                        view! { <button class="chip-button" on:click=move |_| ui.prompt.set(ex.clone())>{label}</button> }
                    })
                    .collect_view()
            })}
        </div>
        {move || ui.input_notice.get().map(|m| view! { <p class="notice" data-testid="input-clamped">{m}</p> })}
        <div class="tokens" data-testid="token-chips" aria-label="Tokens">
            {move || ui.labels.get().into_iter().enumerate().map(|(i, l)| view! {
                <span class="chip" title=format!("position {i}")>{l}</span>
            }).collect_view()}
        </div>
    }
}
