//! Activation patching: which activations carry the difference between a clean and a corrupted
//! input. The metric is the logit difference `logit[target] − logit[contrast]` at the last
//! position; patching an activation of the corrupted run with its clean value recovers the
//! fraction `(patched − corrupted) / (clean − corrupted)` of it. Each head's output (at every
//! position) is patched in turn, then the residual stream before each layer at each position.
//!
//! Attribution patching (Nanda's linear approximation) estimates every one of those patches at
//! once: the metric's gradient at the corrupted run ([`crate::engine::backward`]) times the
//! difference between the clean and the corrupted activation, summed over the patched values —
//! one forward of each input and one backward instead of a forward per patch.

use crate::engine::api::{Engine, LogitRows, Outcome, Progress, Readback, Step};
use crate::engine::backward::{check_differentiable, logit_difference_gradient};
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
    check_pair(&c, clean, corrupt, (target, contrast))?;
    let t_len = clean.len();
    let last_row = last_row();
    let metric = |o: &Output| {
        let row = o.logits_at(t_len - 1);
        row[target as usize] as f64 - row[contrast as usize] as f64
    };
    let heads = head_points(&c);
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
        let layer = i / c.n_head;
        if engine.prepared().attention_dropped[layer] {
            // The head writes nothing in either run: patching it changes nothing.
            head_scores[layer][i % c.n_head] = 0.0;
            done += 1;
            continue;
        }
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

/// Checks that a clean/corrupted pair and its two tokens can be patched.
fn check_pair(
    c: &crate::ModelConfig,
    clean: &[u32],
    corrupt: &[u32],
    (target, contrast): (u32, u32),
) -> Result<(), ModelError> {
    if clean.len() != corrupt.len() {
        return Err(ModelError::Input(format!(
            "the clean input has {} tokens and the corrupted one {}; patching needs the same length",
            clean.len(),
            corrupt.len()
        ))
        );
    }
    if target as usize >= c.n_out() || contrast as usize >= c.n_out() {
        return Err(ModelError::Input(format!(
            "target {target} and contrast {contrast} must be below {}",
            c.n_out()
        )));
    }
    Ok(())
}

/// Every head's output, layer by layer.
fn head_points(c: &crate::ModelConfig) -> Vec<HookPoint> {
    (0..c.n_layer)
        .flat_map(|layer| (0..c.n_head).map(move |head| HookPoint::HeadOutput { layer, head }))
        .collect()
}

/// The last position's logits and nothing else: what the metric reads.
fn last_row() -> Readback {
    Readback {
        logits: LogitRows::Last,
        attention: crate::engine::api::AttentionMaps::None,
        head_out_norms: false,
    }
}

/// Attribution patching: [`activation_patching`]'s fractions estimated to first order. For each
/// head, `Σ (z_clean − z_corrupt) · ∂m/∂z` over its output at every position, and for each layer
/// and position `Σ (x_clean − x_corrupt) · ∂m/∂x` over the residual stream there, the gradient
/// taken at the corrupted run; each divided by `clean − corrupted` as the exact fractions are.
/// The forwards run on `engine`; the backward is the CPU reference's, on the engine's prepared
/// model from the streams the engine computed. Refused for linear and random-feature attention.
pub async fn attribution_patching<E: Engine>(
    engine: &mut E,
    clean: &[u32],
    corrupt: &[u32],
    (target, contrast): (u32, u32),
    progress: &mut impl Progress,
) -> Result<Outcome<Patching>, E::Error> {
    let c = engine.model().config.clone();
    check_pair(&c, clean, corrupt, (target, contrast))?;
    check_differentiable(engine.prepared())?;
    let t_len = clean.len();
    let total = 3;
    let heads = head_points(&c);
    let all: Vec<HookPoint> = heads
        .iter()
        .copied()
        .chain((0..=c.n_layer).map(|layer| HookPoint::ResidPre { layer }))
        .collect();
    let hooks = Hooks {
        capture: all,
        replace: Vec::new(),
    };
    let metric = |o: &Output| {
        let row = o.logits_at(t_len - 1);
        row[target as usize] as f64 - row[contrast as usize] as f64
    };
    let (clean_out, clean_acts) = engine.forward_hooked(clean, &last_row(), &hooks).await?;
    if !progress.go_on(Step { done: 1, total }) {
        return Ok(Outcome::Cancelled);
    }
    let (corrupt_out, corrupt_acts) = engine.forward_hooked(corrupt, &last_row(), &hooks).await?;
    if !progress.go_on(Step { done: 2, total }) {
        return Ok(Outcome::Cancelled);
    }
    let resid: Vec<Vec<f32>> = corrupt_acts[heads.len()..]
        .iter()
        .map(|(_, values)| values.clone())
        .collect();
    let gradient = logit_difference_gradient(engine.prepared(), &resid, (target, contrast))?;
    let (m_clean, m_corrupt) = (metric(&clean_out), metric(&corrupt_out));
    let difference = m_clean - m_corrupt;
    // Σ (clean − corrupt) · gradient over `range` of the activation at `index`.
    let estimate = |index: usize, grad: &[f32], range: std::ops::Range<usize>| -> f64 {
        let (clean, corrupt) = (&clean_acts[index].1, &corrupt_acts[index].1);
        range
            .map(|i| (clean[i] - corrupt[i]) as f64 * grad[i] as f64)
            .sum::<f64>()
            / difference
    };
    let d_head = c.d_head();
    let head_scores = (0..c.n_layer)
        .map(|layer| {
            (0..c.n_head)
                .map(|head| {
                    let index = layer * c.n_head + head;
                    estimate(index, &gradient.heads[layer][head], 0..t_len * d_head)
                })
                .collect()
        })
        .collect();
    let d = c.d_model;
    let resid_scores = (0..c.n_layer)
        .map(|layer| {
            (0..t_len)
                .map(|t| {
                    estimate(
                        heads.len() + layer,
                        &gradient.resid[layer],
                        t * d..(t + 1) * d,
                    )
                })
                .collect()
        })
        .collect();
    progress.go_on(Step { done: total, total });
    Ok(Outcome::Done(Patching {
        heads: head_scores,
        resid: resid_scores,
        clean: m_clean,
        corrupted: m_corrupt,
    }))
}

/// Pearson's correlation between two patchings' fractions, heads and residual positions
/// together, over the values finite in both (`NaN` when fewer than two are, or one side is
/// constant): how well attribution patching ranks what exact patching measures.
pub fn correlation(a: &Patching, b: &Patching) -> f64 {
    let flat =
        |p: &Patching| -> Vec<f64> { p.heads.iter().chain(&p.resid).flatten().copied().collect() };
    let pairs: Vec<(f64, f64)> = flat(a)
        .into_iter()
        .zip(flat(b))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let n = pairs.len() as f64;
    if pairs.len() < 2 {
        return f64::NAN;
    }
    let (mean_a, mean_b) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut cov, mut var_a, mut var_b) = (0.0, 0.0, 0.0);
    for (x, y) in &pairs {
        cov += (x - mean_a) * (y - mean_b);
        var_a += (x - mean_a) * (x - mean_a);
        var_b += (y - mean_b) * (y - mean_b);
    }
    cov / (var_a * var_b).sqrt()
}
