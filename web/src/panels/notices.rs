//! Loading messages, errors and notices, above the panels.

use leptos::prelude::*;

use crate::state::Ui;

#[component]
pub fn Notices() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <div class="notices" role="status" aria-live="polite">
            {move || ui.loading.get().map(|m| view! { <p class="loading">{m}</p> })}
            {move || ui.error.get().map(|m| view! { <p class="error" data-testid="error">{m}</p> })}
            {move || {
                ui.notices
                    .get()
                    .into_iter()
                    .map(|m| view! { <p class="notice">{m}</p> })
                    .collect_view()
            }}
        </div>
    }
}
