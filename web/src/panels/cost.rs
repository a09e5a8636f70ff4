//! The cost of the change: KL, top-1 agreement, loss, KV-cache bytes and time.

use attn_gpu::EngineKind;
use attn_model::Comparison;
use leptos::prelude::*;

use crate::state::Ui;

#[component]
pub fn CostPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    // Computed by the worker, which holds both outputs' logits, against the baseline on the
    // same input.
    let comparison = Memo::new(move |_| -> Option<Comparison> {
        ui.current.with(|c| c.as_ref()?.comparison.clone())
    });
    let comparison = move || comparison.get();
    view! {
        <h2>"Cost of the change"</h2>
        <dl class="costs" data-testid="cost-panel" data-results=move || ui.results_shown.get().to_string()>
            <dt>"KL(baseline ‖ variant)"</dt>
            <dd data-testid="kl">{move || comparison().map(|c| format!("{:.4} nats", c.mean_kl))}</dd>
            <dt>"Top-1 agreement"</dt>
            <dd>{move || comparison().map(|c| format!("{:.0}%", c.top1_agreement * 100.0))}</dd>
            <dt>"Next-token loss"</dt>
            <dd>{move || comparison().and_then(|c| Some(format!("{:.3} → {:.3} nats", c.baseline_nll?, c.variant_nll?)))}</dd>
            <dt>"KV cache per token"</dt>
            <dd>{move || {
                let kv = |r: &Option<crate::protocol::RunResult>| r.as_ref().map(|r| r.kv_bytes_per_token);
                let (b, c) = (ui.baseline.with(kv)?, ui.current.with(kv)?);
                Some(format!("{b} → {c} bytes"))
            }}
                <span class="muted kv-contents" data-testid="kv-contents">{move || {
                    let info = ui.info.get()?;
                    Some(attn_model::prepare::kv_cache_contents(info.n_layer, info.n_kv_head, info.d_head, &ui.variant.get()))
                }}</span>
            </dd>
            <dt>"Forward time"</dt>
            <dd><span data-testid="forward-ms">{move || ui.current.with(|r| r.as_ref().map(|r| format!("{:.1}", r.millis)))}</span>" ms"
                <span class="muted" data-testid="engine-used">{move || ui.engine_used.get().map(|e| match e {
                    EngineKind::Gpu => " on the GPU engine".to_string(),
                    EngineKind::Cpu => format!(" on the CPU engine ({})", ui.worker_build.get().describe()),
                })}</span>
            </dd>
        </dl>
    }
}
