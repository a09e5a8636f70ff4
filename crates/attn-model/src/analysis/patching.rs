//! Activation patching: which activations carry the difference between a clean and a corrupted
//! input. The metric is the logit difference `logit[target] − logit[contrast]` at the last
//! position; patching an activation of the corrupted run with its clean value recovers the
//! fraction `(patched − corrupted) / (clean − corrupted)` of it. Each head's output (at every
//! position) is patched in turn, then the residual stream before each layer at each position.

use crate::engine::api::{Engine, LogitRows, Outcome, Progress, Readback, Step};
use crate::engine::hooks::{HookPoint, Hooks};
use crate::engine::output::Output;
use crate::error::ModelError;

/// What patching found; `NaN` (JSON `null`) where clean and corrupted agree, so nothing can be
/// recovered.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Patching {
    /// `[L][H]`: the fraction recovered by patching each head's output.
    pub heads: Vec<Vec<f64>>,
    /// `[L][T]`: the fraction recovered by patching the residual stream before layer `l` at
    /// position `t`.
    pub resid: Vec<Vec<f64>>,
    /// The metric on the clean and on the corrupted input.
    pub clean: f64,
    pub corrupted: f64,
}

/// Patches every head and every (layer, position) of the residual stream, one forward each
/// (`L·H + L·T` of them), on the engine's current variant. `clean` and `corrupt` must have the
/// same length. `progress` is told after each forward and may cancel.
pub async fn activation_patching<E: Engine>(
    engine: &mut E,
    clean: &[u32],
    corrupt: &[u32],
    (target, contrast): (u32, u32),
    progress: &mut impl Progress,
) -> Result<Outcome<Patching>, E::Error> {
    let c = engine.model().config.clone();
    if clean.len() != corrupt.len() {
        return Err(ModelError::Input(format!(
            "the clean input has {} tokens and the corrupted one {}; patching needs the same length",
            clean.len(),
            corrupt.len()
        ))
        .into());
    }
    if target as usize >= c.n_out() || contrast as usize >= c.n_out() {
        return Err(ModelError::Input(format!(
            "target {target} and contrast {contrast} must be below {}",
            c.n_out()
        ))
        .into());
    }
    let t_len = clean.len();
    let last_row = Readback {
        logits: LogitRows::Last,
        attention: crate::engine::api::AttentionMaps::None,
        head_out_norms: false,
    };
    let metric = |o: &Output| {
        let row = o.logits_at(t_len - 1);
        row[target as usize] as f64 - row[contrast as usize] as f64
    };
    let heads: Vec<HookPoint> = (0..c.n_layer)
        .flat_map(|layer| (0..c.n_head).map(move |head| HookPoint::HeadOutput { layer, head }))
        .collect();
    let resid: Vec<HookPoint> = (0..c.n_layer)
        .map(|layer| HookPoint::ResidPre { layer })
        .collect();
    let capture = |points: &[HookPoint]| Hooks {
        capture: points.to_vec(),
        replace: Vec::new(),
    };
    let all: Vec<HookPoint> = heads.iter().chain(&resid).copied().collect();
    let (clean_out, clean_acts) = engine
        .forward_hooked(clean, &last_row, &capture(&all))
        .await?;
    let (corrupt_out, corrupt_acts) = engine
        .forward_hooked(corrupt, &last_row, &capture(&resid))
        .await?;
    let (m_clean, m_corrupt) = (metric(&clean_out), metric(&corrupt_out));
    let recovered = |m: f64| (m - m_corrupt) / (m_clean - m_corrupt);

    let total = heads.len() + c.n_layer * t_len;
    let mut done = 0;
    let mut head_scores = vec![vec![0.0; c.n_head]; c.n_layer];
    for (i, point) in heads.iter().enumerate() {
        let hooks = Hooks {
            capture: Vec::new(),
            replace: vec![(*point, clean_acts[i].1.clone())],
        };
        let (patched, _) = engine.forward_hooked(corrupt, &last_row, &hooks).await?;
        head_scores[i / c.n_head][i % c.n_head] = recovered(metric(&patched));
        done += 1;
        if !progress.go_on(Step { done, total }) {
            return Ok(Outcome::Cancelled);
        }
    }
    let d = c.d_model;
    let mut resid_scores = vec![vec![0.0; t_len]; c.n_layer];
    for layer in 0..c.n_layer {
        let clean_resid = &clean_acts[heads.len() + layer].1;
        for t in 0..t_len {
            let mut values = corrupt_acts[layer].1.clone();
            values[t * d..(t + 1) * d].copy_from_slice(&clean_resid[t * d..(t + 1) * d]);
            let hooks = Hooks {
                capture: Vec::new(),
                replace: vec![(HookPoint::ResidPre { layer }, values)],
            };
            let (patched, _) = engine.forward_hooked(corrupt, &last_row, &hooks).await?;
            resid_scores[layer][t] = recovered(metric(&patched));
            done += 1;
            if !progress.go_on(Step { done, total }) {
                return Ok(Outcome::Cancelled);
            }
        }
    }
    Ok(Outcome::Done(Patching {
        heads: head_scores,
        resid: resid_scores,
        clean: m_clean,
        corrupted: m_corrupt,
    }))
}
