//! `Request::Run`: the variant's forward and, when needed, the unmodified model's, with only the
//! maps the page shows read back.

use super::state::{gpu_failed, take_current, State};
use crate::protocol::{MapsWanted, Response, RunResult, SteerIds, TOP_OUTPUTS};
use crate::session::{logits_only, return_engines, run_steered, run_timed};
use attn_gpu::EnginePair;
use attn_model::Variant;

/// The forwards of a `Request::Run`: the variant's, and the unmodified model's when the page
/// asks for it or the worker has none for these tokens; `maps` are the maps the page shows.
pub(super) async fn run(
    state: &State,
    model: u32,
    tokens: Vec<u32>,
    (variant, maps, steer): (Variant, MapsWanted, Option<SteerIds>),
    with_baseline: bool,
    reply: &dyn Fn(Response),
) {
    let Some(mut pair) = take_current(state, model).await else {
        let stale = Err("the model changed".to_string());
        return reply(Response::Ran {
            model,
            baseline: None,
            current: stale,
        });
    };
    let mut failures = Vec::new();
    let engine = |pair: &EnginePair| pair.kind();
    // The baseline on these tokens: run now when the page asks for it or the worker has none.
    let cached = state
        .baseline
        .borrow()
        .as_ref()
        .is_some_and(|(m, t, _)| *m == model && *t == tokens);
    let mut baseline = None;
    if with_baseline || !cached {
        // Its maps only when the page asks for the baseline (it keeps them for the diff view).
        let wanted = with_baseline.then_some(&maps);
        let base = (&Variant::default(), wanted);
        let (result, failure) = run_timed(&mut pair, true, base, &tokens).await;
        failures.extend(failure);
        match result {
            Ok((mut output, millis)) => {
                // The logits stay here (moved, not copied); the page gets the rest.
                let top = output.top_at(output.seq_len - 1, TOP_OUTPUTS);
                let kept = logits_only(&mut output);
                if with_baseline {
                    let timing = (millis, engine(&pair));
                    let page = RunResult::of(&output, &tokens, (top, None), timing, maps);
                    baseline = Some(Ok(page));
                }
                *state.baseline.borrow_mut() = Some((model, tokens.clone(), kept));
            }
            Err(e) => baseline = with_baseline.then(|| Err(e.to_string())),
        }
    }
    let (current, failure) = match &steer {
        None => run_timed(&mut pair, false, (&variant, Some(&maps)), &tokens).await,
        // Steered: on the variant engine as it is (a device failure shows as an error).
        Some(steer) => (
            run_steered(&mut pair, (&variant, &maps), &tokens, steer).await,
            None,
        ),
    };
    failures.extend(failure);
    let current = current.map_err(|e| e.to_string()).map(|(output, millis)| {
        let cache = state.baseline.borrow();
        let base = cache.as_ref().map(|(_, _, o)| o);
        RunResult::for_page(output, base, &tokens, (millis, engine(&pair)), maps)
    });
    return_engines(&state.session, pair);
    if let Some(e) = failures.first() {
        gpu_failed(state, e, reply);
    }
    reply(Response::Ran {
        model,
        baseline,
        current,
    });
}
