//! QK attribution — "why does this head attend here": one pre-softmax attention score split into
//! the contributions of the residual stream's parts on the query side and on the key side.
//!
//! The stream entering layer `L` at any position is a sum of parts: the embeddings, each earlier
//! head's output (`z_h · W_O[rows of h]`), each earlier MLP's output, and the biases (attention
//! and MLP output biases). The layer's input norm, with its scale frozen at the full stream's
//! value (the convention of direct logit attribution, as in TransformerLens), is linear in them:
//! for RMSNorm part `c` becomes `c · γ / σ`, for LayerNorm `(c − mean c) · γ / σ`, and the shift
//! `β` joins the biases. The query and key projections and the rotary embedding are linear too,
//! so with `q = Σ_a q_a` (the projection's bias joins the query side's biases) and `k = Σ_b k_b`,
//! the score `s = β_attn / √d_head · q · k` is `Σ_a Σ_b β_attn / √d_head · q_a · k_b`: one value
//! per (query-side part, key-side part), summing to the score.
//!
//! The key side uses the key projection the variant runs (pooled heads, a latent rank or PCA
//! folded into it), so the score is the one the engine's forward computes.

use crate::config::Norm;
use crate::engine::api::{AttentionMaps, Engine, LogitRows, Readback};
use crate::engine::hooks::{HookPoint, Hooks};
use crate::error::ModelError;
use crate::forward::is_allowed;
use crate::model::{Linear, NormWeights};
use crate::rope::RotaryTable;

/// One attention score split into (query-side part, key-side part) contributions.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QkAttribution {
    pub layer: usize,
    pub head: usize,
    /// The query position `i` and the key position `j` of the score.
    pub query: usize,
    pub key: usize,
    /// The pre-softmax score as the forward computes it, scale included: `β / √d_head · q_i · k_j`
    /// (recomputed in f64 from the engine's residual stream).
    pub score: f64,
    /// The parts of the residual stream, the same list on both sides: `embeddings`, `L{l}H{h}`
    /// for each head of each earlier layer, `L{l} MLP` for each earlier block's MLP (none in an
    /// attention-only block), then `biases`.
    pub components: Vec<String>,
    /// `[query-side part][key-side part]`: what each pair adds to the score. The values sum to
    /// `score`.
    pub parts: Vec<Vec<f64>>,
}

impl QkAttribution {
    /// The sum of every part (equal to `score` up to rounding).
    pub fn total(&self) -> f64 {
        self.parts.iter().flatten().sum()
    }

    /// Every (query-side part, key-side part, value), largest magnitude first.
    pub fn ranked(&self) -> Vec<(usize, usize, f64)> {
        let mut all: Vec<(usize, usize, f64)> = self
            .parts
            .iter()
            .enumerate()
            .flat_map(|(a, row)| row.iter().enumerate().map(move |(b, &v)| (a, b, v)))
            .collect();
        all.sort_by(|x, y| y.2.abs().total_cmp(&x.2.abs()));
        all
    }

    /// What each query-side part adds, over every key-side part.
    pub fn query_totals(&self) -> Vec<f64> {
        self.parts.iter().map(|row| row.iter().sum()).collect()
    }

    /// What each key-side part adds, over every query-side part.
    pub fn key_totals(&self) -> Vec<f64> {
        (0..self.components.len())
            .map(|b| self.parts.iter().map(|row| row[b]).sum())
            .collect()
    }
}

/// Splits the score of `query` attending to `key` in head `head` of layer `layer`, on the
/// engine's current variant (ablated heads contribute what their ablated output writes; the
/// heads of a dropped layer nothing). Refused when the layer's attention is dropped, the kernel
/// has no softmax score (linear and random-feature attention), or the key is masked for the
/// query (after it, or outside the window).
pub async fn qk_attribution<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
    layer: usize,
    head: usize,
    query: usize,
    key: usize,
) -> Result<QkAttribution, E::Error> {
    let prepared = engine.prepared();
    let c = prepared.config.clone();
    let variant = prepared.variant.clone();
    let input = |message: String| -> E::Error { ModelError::Input(message).into() };
    if layer >= c.n_layer || head >= c.n_head {
        return Err(input(format!(
            "head L{layer}H{head} does not exist in a model of {} layers × {} heads",
            c.n_layer, c.n_head
        )));
    }
    if query >= tokens.len() || key >= tokens.len() {
        return Err(input(format!(
            "query {query} and key {key} must both be positions of the {} tokens",
            tokens.len()
        )));
    }
    if !is_allowed(c.causal, variant.window, query, key) {
        return Err(input(format!(
            "position {query} does not attend to position {key} (the key is masked for it): \
             pick a key at or before the query{}",
            variant
                .window
                .map_or(String::new(), |w| format!(", within the window of {w}"))
        )));
    }
    if prepared.attention_dropped[layer] {
        return Err(input(format!(
            "layer {layer}'s attention is dropped in this variant: it computes no scores"
        )));
    }
    if !variant.kernel().is_softmax() {
        return Err(input(
            "QK attribution splits softmax attention's score; this variant's kernel computes \
             none (turn linear or random-feature attention off)"
                .into(),
        ));
    }

    let d = c.d_model;
    let (n_head, d_head) = (c.n_head, c.d_head());
    let group = head / (n_head / c.kv_heads());
    let capture: Vec<HookPoint> =
        (0..=layer)
            .map(|l| HookPoint::ResidPre { layer: l })
            .chain((0..layer).flat_map(|l| {
                (0..n_head).map(move |h| HookPoint::HeadOutput { layer: l, head: h })
            }))
            .collect();
    let hooks = Hooks {
        capture,
        replace: Vec::new(),
    };
    let readback = Readback {
        logits: LogitRows::Last,
        attention: AttentionMaps::None,
        head_out_norms: false,
    };
    let (_, captured) = engine.forward_hooked(tokens, &readback, &hooks).await?;
    let prepared = engine.prepared();
    let model = prepared.model();
    let block = &model.blocks[layer];

    // The parts' names, then each side's parts at its position.
    let mut components = vec!["embeddings".to_string()];
    for l in 0..layer {
        components.extend((0..n_head).map(|h| format!("L{l}H{h}")));
    }
    // A block without an MLP (attention-only models) has no MLP part.
    let has_mlp: Vec<bool> = model.blocks[..layer]
        .iter()
        .map(|b| b.mlp.is_some())
        .collect();
    components.extend(
        (0..layer)
            .filter(|&l| has_mlp[l])
            .map(|l| format!("L{l} MLP")),
    );
    components.push("biases".to_string());
    let stream_parts = |position: usize| -> (Vec<f64>, Vec<Vec<f64>>) {
        let row = |values: &[f32], width: usize| -> Vec<f64> {
            values[position * width..(position + 1) * width]
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
        let resid: Vec<Vec<f64>> = captured[..=layer].iter().map(|(_, v)| row(v, d)).collect();
        let mut heads = Vec::with_capacity(layer * n_head);
        let mut mlps = Vec::with_capacity(layer);
        let mut biases = vec![0.0f64; d];
        for (l, earlier) in model.blocks[..layer].iter().enumerate() {
            let mut written: Vec<f64> = resid[l + 1]
                .iter()
                .zip(&resid[l])
                .map(|(after, before)| after - before)
                .collect();
            let o = &earlier.attn.o;
            let o_weight = o.weight.f32();
            for h in 0..n_head {
                let mut part = vec![0.0f64; d];
                if !prepared.attention_dropped[l] {
                    let z = row(&captured[layer + 1 + l * n_head + h].1, d_head);
                    for (zi, r) in z.iter().zip(h * d_head..(h + 1) * d_head) {
                        for (p, w) in part.iter_mut().zip(&o_weight[r * d..(r + 1) * d]) {
                            *p += zi * *w as f64;
                        }
                    }
                }
                subtract(&mut written, &part);
                heads.push(part);
            }
            let mut add_bias = |bias: &[f32], written: &mut Vec<f64>| {
                for ((b, w), &v) in biases.iter_mut().zip(written.iter_mut()).zip(bias) {
                    *b += v as f64;
                    *w -= v as f64;
                }
            };
            if let Some(bias) = o.bias.as_ref().filter(|_| !prepared.attention_dropped[l]) {
                add_bias(bias, &mut written);
            }
            if let Some(bias) = earlier.mlp.as_ref().and_then(|m| m.proj.bias.as_ref()) {
                add_bias(bias, &mut written);
            }
            if has_mlp[l] {
                mlps.push(written);
            }
        }
        let mut parts = vec![resid[0].clone()];
        parts.extend(heads);
        parts.extend(mlps);
        parts.push(biases);
        (resid[layer].clone(), parts)
    };

    let scale = variant.beta() as f64 / (d_head as f64).sqrt();
    let rotary = c
        .rope()
        .map(|rope| RotaryTable::new(rope, query.max(key) + 1));
    // One side: every part through the frozen norm, the head's slice of the projection and the
    // rotary embedding at the side's position; the full stream through the same path (with its
    // own norm) for the score.
    let side = |position: usize, projection: &Linear, slot: usize| {
        let (stream, parts) = stream_parts(position);
        let norm = FrozenNorm::new(&block.attn_norm, c.norm, c.layer_norm_eps, &stream);
        let columns = slot * d_head..(slot + 1) * d_head;
        let weight = projection.weight.f32();
        let project = |x: &[f64]| -> Vec<f64> {
            let mut y = vec![0.0f64; d_head];
            for (i, xi) in x.iter().enumerate() {
                let w = &weight[i * projection.d_out..][columns.clone()];
                y.iter_mut().zip(w).for_each(|(y, w)| *y += xi * *w as f64);
            }
            y
        };
        let bias = projection.bias.as_ref().map_or(vec![0.0; d_head], |b| {
            b[columns.clone()].iter().map(|&v| v as f64).collect()
        });
        let rotate = |mut y: Vec<f64>| -> Vec<f64> {
            if let Some(table) = &rotary {
                rotate_at(table, position, &mut y);
            }
            y
        };
        let last = parts.len() - 1;
        let projected: Vec<Vec<f64>> = parts
            .iter()
            .enumerate()
            .map(|(index, part)| {
                let mut y = project(&norm.scaled(part));
                if index == last {
                    // The biases: the norm's shift and the projection's own bias.
                    let shift = project(&norm.shift());
                    y.iter_mut()
                        .zip(shift.iter().zip(&bias))
                        .for_each(|(y, (s, b))| *y += s + b);
                }
                rotate(y)
            })
            .collect();
        let mut full = project(&norm.apply(&stream));
        full.iter_mut().zip(&bias).for_each(|(y, b)| *y += b);
        (projected, rotate(full))
    };
    let (q_parts, q) = side(query, &block.attn.q, head);
    let (k_parts, k) = side(key, prepared.key(layer), group);
    let dot = |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    let parts = q_parts
        .iter()
        .map(|qa| k_parts.iter().map(|kb| scale * dot(qa, kb)).collect())
        .collect();
    Ok(QkAttribution {
        layer,
        head,
        query,
        key,
        score: scale * dot(&q, &k),
        components,
        parts,
    })
}

/// Rotates one head's `d_head` values by the angles of `position`, in f64 with the forward's
/// table (the rotary pairs `i`, `i + half` of the first `2 · half` dimensions).
fn rotate_at(table: &RotaryTable, position: usize, y: &mut [f64]) {
    let half = table.half;
    let cos = &table.cos[position * half..(position + 1) * half];
    let sin = &table.sin[position * half..(position + 1) * half];
    for i in 0..half {
        let (a, b) = (y[i], y[i + half]);
        let (cos, sin) = (cos[i] as f64, sin[i] as f64);
        y[i] = a * cos - b * sin;
        y[i + half] = b * cos + a * sin;
    }
}

fn subtract(x: &mut [f64], y: &[f64]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a -= b);
}

/// A layer's input norm with its scale frozen at one stream vector: linear in what it is given.
struct FrozenNorm<'a> {
    weights: &'a NormWeights,
    centre: bool,
    /// `1 / σ` of the full stream.
    inverse_sigma: f64,
    mean: f64,
}

impl<'a> FrozenNorm<'a> {
    fn new(weights: &'a NormWeights, kind: Norm, eps: f32, stream: &[f64]) -> Self {
        let centre = kind == Norm::LayerNorm;
        let n = stream.len() as f64;
        let mean = if centre {
            stream.iter().sum::<f64>() / n
        } else {
            0.0
        };
        let var = stream.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        FrozenNorm {
            weights,
            centre,
            inverse_sigma: 1.0 / (var + eps as f64).sqrt(),
            mean,
        }
    }

    /// `(x − mean x) · γ / σ` (no mean for RMSNorm): one part's share of the normed stream.
    fn scaled(&self, x: &[f64]) -> Vec<f64> {
        let mean = if self.centre {
            x.iter().sum::<f64>() / x.len() as f64
        } else {
            0.0
        };
        x.iter()
            .zip(&self.weights.weight)
            .map(|(v, g)| (v - mean) * *g as f64 * self.inverse_sigma)
            .collect()
    }

    /// The shift `β` (zeros for RMSNorm).
    fn shift(&self) -> Vec<f64> {
        match &self.weights.bias {
            Some(beta) => beta.iter().map(|&b| b as f64).collect(),
            None => vec![0.0; self.weights.weight.len()],
        }
    }

    /// The norm itself on the full stream it was frozen at.
    fn apply(&self, stream: &[f64]) -> Vec<f64> {
        let shift = self.shift();
        stream
            .iter()
            .zip(&self.weights.weight)
            .zip(&shift)
            .map(|((v, g), b)| (v - self.mean) * *g as f64 * self.inverse_sigma + b)
            .collect()
    }
}
