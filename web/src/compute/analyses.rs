//! The long jobs on the variant engine, each with progress and `Cancel`: head importance, the
//! interpretability tools, lesson measurements and generation.

use super::state::{falls_back, gpu_failed, progress, take_current, State};
use crate::browser::now_ms;
use crate::protocol::{Analysis, AnalysisTool, AsJson, Generation, JobOutcome, Response};
use crate::session::{return_engines, Yielding};
use attn_gpu::{EnginePair, GpuError};
use attn_model::engine::{Outcome, Progress, Step};
use attn_model::{
    activation_patching, direct_logit_attribution, generate, head_importance, layer_similarity,
    logit_lens, run_measurement, AblationMode, Engine, HeadImportance, Measured, Measurement,
    Readback, Sampling, Variant,
};

/// Head importance on the variant engine, reporting progress; `None` when cancelled.
pub(super) async fn rank_heads(
    state: &State,
    model: u32,
    job: u32,
    base: &Variant,
    tokens: &[u32],
    mode: AblationMode,
    reply: &dyn Fn(Response),
) -> JobOutcome<Vec<HeadImportance>> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let mut watch = progress(state, job, reply);
    let mut engine = Yielding(&mut pair.variant);
    let mut result = head_importance(&mut engine, base, tokens, mode, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            let mut engine = Yielding(&mut pair.variant);
            result = head_importance(&mut engine, base, tokens, mode, &mut watch).await;
        }
    }
    return_engines(&state.session, pair);
    result.map(Outcome::done).map_err(|e| e.to_string())
}

/// One interpretability tool on the variant engine; `None` when stopped.
#[allow(clippy::too_many_arguments)]
pub(super) async fn analyse(
    state: &State,
    model: u32,
    job: u32,
    tokens: &[u32],
    variant: &Variant,
    tool: &AnalysisTool,
    reply: &dyn Fn(Response),
) -> JobOutcome<Analysis> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let mut watch = progress(state, job, reply);
    let mut result = analyse_on(&mut pair, tokens, variant, tool, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            result = analyse_on(&mut pair, tokens, variant, tool, &mut watch).await;
        }
    }
    return_engines(&state.session, pair);
    result.map(Outcome::done).map_err(|e| e.to_string())
}

async fn analyse_on(
    pair: &mut EnginePair,
    tokens: &[u32],
    variant: &Variant,
    tool: &AnalysisTool,
    watch: &mut impl Progress,
) -> Result<Outcome<Analysis>, GpuError> {
    let mut engine = Yielding(&mut pair.variant);
    engine.set_variant(variant)?;
    let last = tokens.len().saturating_sub(1);
    Ok(match tool {
        AnalysisTool::Lens => {
            let lens = logit_lens(&mut engine, tokens).await?;
            let top = (0..lens.logits.len())
                .map(|depth| attn_model::forward::top_k(lens.at(depth, last), 3))
                .collect();
            Outcome::Done(Analysis::Lens {
                top,
                settles_at: lens.settles_at(last),
            })
        }
        AnalysisTool::Attribute { target } => {
            let target = match target {
                Some(t) => *t,
                None => predicted(&mut engine, tokens).await?,
            };
            let attribution = direct_logit_attribution(&mut engine, tokens, target, None).await?;
            Outcome::Done(Analysis::Attribution(attribution))
        }
        AnalysisTool::Patch { corrupt } => {
            let target = predicted(&mut engine, tokens).await?;
            let output = engine.forward(corrupt, &Readback::next_token()).await?;
            let ranked = output.top_at(output.seq_len - 1, 2);
            let contrast = match ranked.as_slice() {
                [(first, _), (second, _), ..] if *first == target => *second,
                [(first, _), ..] => *first,
                [] => target,
            };
            match activation_patching(&mut engine, tokens, corrupt, (target, contrast), watch)
                .await?
            {
                Outcome::Done(patching) => Outcome::Done(Analysis::Patching {
                    patching,
                    target,
                    contrast,
                }),
                Outcome::Cancelled => Outcome::Cancelled,
            }
        }
        AnalysisTool::KvTradeoff => {
            match attn_model::kv_cache_tradeoff(&mut engine, tokens, watch).await? {
                Outcome::Done(points) => Outcome::Done(Analysis::KvTradeoff(AsJson(points))),
                Outcome::Cancelled => Outcome::Cancelled,
            }
        }
        AnalysisTool::LayerDrop => Outcome::Done(Analysis::LayerDrop(
            layer_similarity(&mut engine, tokens).await?,
        )),
        AnalysisTool::Circuits => {
            Outcome::Done(Analysis::Circuits(attn_model::circuits(engine.model())))
        }
    })
}

/// A lesson step's measurement on the variant engine; `None` when cancelled.
pub(super) async fn measure(
    state: &State,
    model: u32,
    job: u32,
    tokens: &[u32],
    measurement: &Measurement,
    reply: &dyn Fn(Response),
) -> JobOutcome<Measured> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let checked = measurement.check(&pair.variant.model().config, tokens);
    if let Err(e) = checked {
        return_engines(&state.session, pair);
        return Err(e.to_string());
    }
    let mut watch = progress(state, job, reply);
    let mut engine = Yielding(&mut pair.variant);
    let mut result = run_measurement(&mut engine, tokens, measurement, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            let mut engine = Yielding(&mut pair.variant);
            result = run_measurement(&mut engine, tokens, measurement, &mut watch).await;
        }
    }
    return_engines(&state.session, pair);
    result.map(Outcome::done).map_err(|e| e.to_string())
}

/// The most probable next output after `tokens`.
async fn predicted(
    engine: &mut impl Engine<Error = GpuError>,
    tokens: &[u32],
) -> Result<u32, GpuError> {
    let output = engine.forward(tokens, &Readback::next_token()).await?;
    Ok(output.argmax_at(output.seq_len - 1))
}

/// Generation under `variant` on the variant engine, as text; `None` when stopped.
#[allow(clippy::too_many_arguments)]
pub(super) async fn generate_text(
    state: &State,
    model: u32,
    job: u32,
    tokens: &[u32],
    variant: &Variant,
    n: usize,
    sampling: &Sampling,
    reply: &dyn Fn(Response),
) -> JobOutcome<Generation> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let start = now_ms();
    let mut watch = progress(state, job, reply);
    let mut result = generate_on(&mut pair, tokens, variant, n, sampling, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            result = generate_on(&mut pair, tokens, variant, n, sampling, &mut watch).await;
        }
    }
    let millis = now_ms() - start;
    // What the cache holds once the last token is picked: every position run so far (the last
    // token itself never ran), or the context's worth once the window slid.
    let kv_cache_bytes = pair.variant.kv_cache_bytes();
    let n_ctx = pair.model().config.n_ctx;
    return_engines(&state.session, pair);
    let ids = match result.map_err(|e| e.to_string())? {
        Outcome::Done(ids) => ids,
        Outcome::Cancelled => return Ok(None),
    };
    let session = state.session.borrow();
    let text = session.as_ref().and_then(|s| s.text.decode(&ids));
    Ok(Some(Generation {
        text: text.unwrap_or_else(|| format!("{ids:?}")),
        tokens: ids.len(),
        millis,
        kv_cache_bytes,
        cached_positions: (tokens.len() + ids.len()).saturating_sub(1).min(n_ctx),
    }))
}

/// Generation on the variant engine of `pair`, under `variant`.
async fn generate_on(
    pair: &mut EnginePair,
    tokens: &[u32],
    variant: &Variant,
    n: usize,
    sampling: &Sampling,
    watch: &mut impl FnMut(Step) -> bool,
) -> Result<Outcome<Vec<u32>>, GpuError> {
    pair.variant.set_variant(variant)?;
    generate(&mut Yielding(&mut pair.variant), tokens, n, sampling, watch).await
}
