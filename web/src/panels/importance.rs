//! Head importance: ablate each head in turn, rank, and prune to a budget. The ranking runs in
//! the worker, one forward per head, with its progress shown and a *Cancel* button.

use attn_model::prune_to_budget;
use leptos::prelude::*;

use crate::controller::Controller;
use crate::state::Ui;

#[component]
pub fn ImportancePanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let ctl = expect_context::<Controller>();
    let budget = RwSignal::new(4usize);
    let (progress, status) = (ui.ranking, ui.rank_status);
    let rank = move |_| {
        if progress.get_untracked().is_none() {
            let mut base = ui.variant.get_untracked();
            base.heads = None;
            let tokens = ui.tokens.get_untracked();
            ctl.rank_heads(base, tokens, ui.ablate_mode.get_untracked());
        }
    };
    let prune = move |_| {
        let ranking = ui.importance.get_untracked();
        if ranking.is_empty() {
            return;
        }
        let mut base = ui.variant.get_untracked();
        base.heads = None;
        ui.variant.set(prune_to_budget(
            &base,
            &ranking,
            budget.get_untracked(),
            ui.ablate_mode.get_untracked(),
        ));
    };
    view! {
        <h2>"Head importance"</h2>
        <button data-testid="rank-heads" on:click=rank disabled=move || progress.get().is_some()>"Ablate each head in turn"</button>
        {move || progress.get().map(|step| view! {
            <span class="progress" data-testid="rank-progress">
                <progress max=step.total.to_string() value=step.done.to_string()></progress>
                {format!(" {} of {} heads ", step.done, step.total)}
                <button data-testid="cancel-ranking" on:click=move |_| ctl.cancel_ranking()>"Cancel"</button>
            </span>
        })}
        {move || status.get().map(|text| view! { <span class="muted" data-testid="rank-status">{text}</span> })}
        <label class="inline">"Keep the "
            <input type="number" min="0" class="small" data-testid="prune-budget" prop:value=move || budget.get().to_string()
                on:input=move |ev| budget.set(event_target_value(&ev).parse().unwrap_or(0)) />
            " most important heads "
        </label>
        <button data-testid="prune" on:click=prune disabled=move || ui.importance.with(Vec::is_empty)>"Prune to budget"</button>
        <ol class="importance" data-testid="importance">
            {move || {
                ui.importance.with(|ranking| {
                    let max = ranking.iter().map(|h| h.loss_increase.abs()).fold(1e-9, f64::max);
                    ranking.iter().map(|h| {
                        let width = format!("{:.1}%", (h.loss_increase.max(0.0) / max) * 100.0);
                        view! {
                            <li>
                                <span class="tok">{format!("L{} H{}", h.layer, h.head)}</span>
                                <span class="bar"><span class="fill" style:width=width></span></span>
                                <span class="pct">{format!("{:+.3}", h.loss_increase)}</span>
                            </li>
                        }
                    }).collect_view()
                })
            }}
        </ol>
    }
}
