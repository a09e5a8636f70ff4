//! Direct logit attribution: how much each part of the residual stream — the embeddings, each
//! head's output, each MLP's output, the biases — writes directly into one logit at one position,
//! through the final norm with its scale frozen at the full run's value (as in TransformerLens).
//! The parts sum to the logit.
//!
//! With the final residual `r = Σ parts`, LayerNorm's `LN(r) = (r − mean r) / σ · γ + β` is, for
//! fixed `σ`, linear in the parts: part `c` contributes `Σ_i (c_i − mean c) γ_i u_i / σ` to the
//! logit whose unembedding column is `u`, and `β · u` (with an output bias) is a bias term. RMSNorm
//! has no mean and no `β`. A head's output is its `z_h` times its rows of `W_O`; an MLP's output is
//! what the block adds besides attention (read from the residual stream on either side).

use crate::config::Norm;
use crate::engine::api::{AttentionMaps, Engine, LogitRows, Readback};
use crate::engine::hooks::{HookPoint, Hooks};
use crate::error::ModelError;
use crate::model::Model;

/// The direct contributions to one logit; `heads[l][h] + mlps[l] + embeddings + biases` summed
/// over every layer and head equals `logit`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attribution {
    pub target: u32,
    pub position: usize,
    /// `[L][H]`: each head's output (its slice of the attention output times its rows of `W_O`).
    pub heads: Vec<Vec<f64>>,
    /// `[L]`: each MLP's output without its output bias (zero for a model without MLPs).
    pub mlps: Vec<f64>,
    /// The token (and learned position) embeddings.
    pub embeddings: f64,
    /// Every bias term: the attention and MLP output biases, the final norm's shift and the
    /// classifier's bias.
    pub biases: f64,
    /// The logit itself, as the forward computed it.
    pub logit: f64,
}

impl Attribution {
    /// The sum of every part (equal to `logit` up to rounding).
    pub fn total(&self) -> f64 {
        self.heads.iter().flatten().sum::<f64>()
            + self.mlps.iter().sum::<f64>()
            + self.embeddings
            + self.biases
    }
}

/// Attributes the logit of `target` at `position` (the last when `None`) on the engine's current
/// variant (ablated heads contribute what their ablated output writes; a dropped layer's heads
/// nothing).
pub async fn direct_logit_attribution<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
    target: u32,
    position: Option<usize>,
) -> Result<Attribution, E::Error> {
    let c = engine.model().config.clone();
    let position = position.unwrap_or(tokens.len().saturating_sub(1));
    if position >= tokens.len() || target as usize >= c.n_out() {
        return Err(ModelError::Input(format!(
            "position {position} of {} tokens, target {target} of {} outputs: out of range",
            tokens.len(),
            c.n_out()
        ))
        .into());
    }
    let heads = |layer| (0..c.n_head).map(move |head| HookPoint::HeadOutput { layer, head });
    let capture: Vec<HookPoint> = (0..=c.n_layer)
        .map(|layer| HookPoint::ResidPre { layer })
        .chain((0..c.n_layer).flat_map(heads))
        .collect();
    let hooks = Hooks {
        capture,
        replace: Vec::new(),
    };
    // Only the attributed row's logit is needed.
    let readback = Readback {
        logits: if position + 1 == tokens.len() {
            LogitRows::Last
        } else {
            LogitRows::All
        },
        attention: AttentionMaps::None,
        head_out_norms: false,
    };
    let dropped = engine
        .variant()
        .drop_attention_layers
        .clone()
        .unwrap_or_default();
    let (output, captured) = engine.forward_hooked(tokens, &readback, &hooks).await?;
    let model = engine.model();
    let d = c.d_model;
    let row = |values: &[f32], width: usize| -> Vec<f64> {
        values[position * width..(position + 1) * width]
            .iter()
            .map(|&v| v as f64)
            .collect()
    };
    let resid: Vec<Vec<f64>> = captured[..=c.n_layer]
        .iter()
        .map(|(_, v)| row(v, d))
        .collect();
    let z = |layer: usize, head: usize| -> Vec<f64> {
        row(
            &captured[c.n_layer + 1 + layer * c.n_head + head].1,
            c.d_head(),
        )
    };
    let lens = FrozenNorm::new(model, &resid[c.n_layer], target);

    let mut biases = lens.bias();
    let mut heads = vec![vec![0.0; c.n_head]; c.n_layer];
    let mut mlps = vec![0.0; c.n_layer];
    for (layer, block) in model.blocks.iter().enumerate() {
        // What the block wrote: attention (heads + output bias) and the MLP.
        let mut written: Vec<f64> = resid[layer + 1]
            .iter()
            .zip(&resid[layer])
            .map(|(after, before)| after - before)
            .collect();
        if !dropped.contains(&layer) {
            let o = &block.attn.o;
            let o_weight = o.weight.f32();
            for (head, score) in heads[layer].iter_mut().enumerate() {
                let zh = z(layer, head);
                let rows = head * c.d_head()..(head + 1) * c.d_head();
                let mut part = vec![0.0f64; d];
                for (zi, r) in zh.iter().zip(rows) {
                    for (p, w) in part.iter_mut().zip(&o_weight[r * d..(r + 1) * d]) {
                        *p += zi * *w as f64;
                    }
                }
                *score = lens.contribution(&part);
                subtract(&mut written, &part);
            }
            if let Some(bias) = &o.bias {
                let part = widen(bias);
                biases += lens.contribution(&part);
                subtract(&mut written, &part);
            }
        }
        if let Some(bias) = block.mlp.as_ref().and_then(|m| m.proj.bias.as_ref()) {
            let part = widen(bias);
            biases += lens.contribution(&part);
            subtract(&mut written, &part);
        }
        mlps[layer] = lens.contribution(&written);
    }
    Ok(Attribution {
        target,
        position,
        heads,
        mlps,
        embeddings: lens.contribution(&resid[0]),
        biases,
        logit: output.logits_at(position)[target as usize] as f64,
    })
}

fn widen(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| v as f64).collect()
}

fn subtract(x: &mut [f64], y: &[f64]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a -= b);
}

/// The final norm with its scale frozen at one residual vector, followed by one unembedding
/// column: linear in what it is given.
struct FrozenNorm {
    /// `γ_i u_i / σ`.
    direction: Vec<f64>,
    centre: bool,
    /// `β · u` plus the classifier's bias.
    bias: f64,
}

impl FrozenNorm {
    fn new(model: &Model, resid: &[f64], target: u32) -> Self {
        let c = &model.config;
        let d = c.d_model;
        let centre = c.norm == Norm::LayerNorm;
        let mean = if centre {
            resid.iter().sum::<f64>() / d as f64
        } else {
            0.0
        };
        let var = resid.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let sigma = (var + c.layer_norm_eps as f64).sqrt();
        // The unembedding column of `target`.
        let t = target as usize;
        let (column, head_bias): (Vec<f64>, f64) = match (&model.classifier, &model.lm_head) {
            (Some(cls), _) => (
                {
                    let weight = cls.weight.f32();
                    (0..d).map(|i| weight[i * cls.d_out + t] as f64).collect()
                },
                cls.bias.as_ref().map_or(0.0, |b| b[t] as f64),
            ),
            (None, head) => {
                let table = head.as_ref().unwrap_or(&model.token_embedding);
                (widen(&table.range_f32(t * d..(t + 1) * d)), 0.0)
            }
        };
        let gamma = &model.final_norm.weight;
        let direction = (0..d)
            .map(|i| gamma[i] as f64 * column[i] / sigma)
            .collect();
        let shift = model.final_norm.bias.as_ref().map_or(0.0, |beta| {
            beta.iter().zip(&column).map(|(b, u)| *b as f64 * u).sum()
        });
        FrozenNorm {
            direction,
            centre,
            bias: shift + head_bias,
        }
    }

    /// What the part `x` of the final residual adds to the logit.
    fn contribution(&self, x: &[f64]) -> f64 {
        let mean = if self.centre {
            x.iter().sum::<f64>() / x.len() as f64
        } else {
            0.0
        };
        x.iter()
            .zip(&self.direction)
            .map(|(v, w)| (v - mean) * w)
            .sum()
    }

    fn bias(&self) -> f64 {
        self.bias
    }
}
