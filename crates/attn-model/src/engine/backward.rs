//! The gradient of a logit difference with respect to the reference forward's activations: the
//! residual stream before every block and every head's output (the hook points), for any family
//! and any variant whose attention is a softmax. What attribution patching multiplies by the
//! difference between two runs' activations ([`crate::patching::attribution_patching`]).
//!
//! Only activations are differentiated (no weight gradients, unlike the trainer's
//! `training::backprop`), through exactly the operations [`crate::forward`] runs: the norms
//! (LayerNorm or RMSNorm), the query/key/value projections the variant runs (pooled, latent or
//! PCA keys and values are linear maps like the model's own), rotary positions, the masked,
//! windowed, top-k or β-scaled softmax, ablation and the routing proxy (piecewise constant: the
//! gradient flows through the heads kept), the output projection, sequential or parallel blocks,
//! plain or gated MLPs, and the final norm and unembedding. Each block is recomputed from the
//! stream that entered it in the run being differentiated, so whatever the engine added to that
//! stream (steering) is part of the point the gradient is taken at.

use crate::config::{ModelConfig, Norm};
use crate::engine::forward::{
    ablate, attention_probs_into, routing_rank, unembedding_row, weighted_values,
};
use crate::engine::prepared::PreparedModel;
use crate::error::{ModelError, Result};
use crate::linalg::{activate, activation_grad, linear, matmul, norm, MatRef};
use crate::model::{Linear, Mlp, NormWeights};
use crate::rope::RotaryTable;
use crate::variant::{AblationMode, Kernel, KernelName};

/// `∂ metric / ∂ activation` at every hook point of one run, for the metric
/// `logit[target] − logit[contrast]` at the last position.
#[derive(Clone, Debug, PartialEq)]
pub struct LogitDifferenceGradient {
    /// The metric at the point the gradient was taken (recomputed from the last stream).
    pub metric: f64,
    /// `[L + 1]`: the gradient with respect to the residual stream entering block `l`
    /// (`[T, d_model]`); the last is the stream after the last block.
    pub resid: Vec<Vec<f32>>,
    /// `[L][H]`: the gradient with respect to each head's output where the `HeadOutput` hook
    /// reads it (`[T, d_head]`, after ablation and routing); zero in a dropped layer.
    pub heads: Vec<Vec<Vec<f32>>>,
}

/// Checks that the gradient is defined for `prepared`'s variant: the attention must be a
/// softmax (linear and random-feature kernels have their own normalisations, which this
/// backward does not differentiate).
pub fn check_differentiable(prepared: &PreparedModel) -> Result<()> {
    match prepared.variant.kernel() {
        Kernel::Named(KernelName::Softmax) => Ok(()),
        _ => Err(ModelError::Variant(
            "attribution patching differentiates softmax attention; with the linear or \
             random-feature kernel use exact activation patching"
                .into(),
        )),
    }
}

/// The gradient of `logit[target] − logit[contrast]` at the last position with respect to every
/// hook point, at the run whose residual streams `resid` (`ResidPre` of layers `0..=L`, each
/// `[T, d_model]`) the engine captured. One backward pass, block by block from the last.
pub fn logit_difference_gradient(
    prepared: &PreparedModel,
    resid: &[Vec<f32>],
    (target, contrast): (u32, u32),
) -> Result<LogitDifferenceGradient> {
    check_differentiable(prepared)?;
    let c = &prepared.config;
    let d = c.d_model;
    if resid.len() != c.n_layer + 1 || resid[0].is_empty() || resid[0].len() % d != 0 {
        return Err(ModelError::Input(format!(
            "the gradient needs the residual stream before each of the {} blocks and after the \
             last",
            c.n_layer
        )));
    }
    let t_len = resid[0].len() / d;
    let model = prepared.model();

    // The metric's gradient with respect to the final norm's output: the difference of the two
    // tokens' unembedding rows (or classifier columns), at the last position only.
    let (u_target, u_contrast) = (
        unembedding_row(model, target as usize),
        unembedding_row(model, contrast as usize),
    );
    let last = &resid[c.n_layer][(t_len - 1) * d..];
    let final_x = norm(last, &model.final_norm, c.norm, c.layer_norm_eps);
    let direction: Vec<f32> = u_target
        .iter()
        .zip(&u_contrast)
        .map(|(a, b)| a - b)
        .collect();
    let bias_difference = model
        .classifier
        .as_ref()
        .and_then(|classifier| classifier.bias.as_ref())
        .map_or(0.0, |b| {
            b[target as usize] as f64 - b[contrast as usize] as f64
        });
    let metric = dot(&final_x, &direction) as f64 + bias_difference;
    let mut d_stream = vec![0.0f32; t_len * d];
    norm_backward(
        last,
        &model.final_norm,
        c,
        &direction,
        &mut d_stream[(t_len - 1) * d..],
    );

    let rotary = c.rope().map(|rope| RotaryTable::new(rope, t_len));
    let mut resid_grads = vec![Vec::new(); c.n_layer + 1];
    let mut head_grads = vec![vec![vec![0.0f32; t_len * c.d_head()]; c.n_head]; c.n_layer];
    resid_grads[c.n_layer] = d_stream.clone();
    for layer in (0..c.n_layer).rev() {
        let block = Block {
            prepared,
            layer,
            t_len,
            rotary: rotary.as_ref(),
        };
        d_stream = block.backward(&resid[layer], &d_stream, &mut head_grads[layer]);
        resid_grads[layer] = d_stream.clone();
    }
    Ok(LogitDifferenceGradient {
        metric,
        resid: resid_grads,
        heads: head_grads,
    })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Adds to `dx` the gradient through the model's norm of the rows `x`, given the gradient `dy`
/// of its output: with `x̂` the normalised rows and `g = dy ⊙ scale`,
/// `inv · (g − mean(g) − x̂ · mean(g ⊙ x̂))` for LayerNorm and `inv · (g − x̂ · mean(g ⊙ x̂))`
/// for RMSNorm (which subtracts no mean).
fn norm_backward(x: &[f32], weights: &NormWeights, c: &ModelConfig, dy: &[f32], dx: &mut [f32]) {
    let d = weights.weight.len();
    for ((row, dy), dx) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
    {
        let mean = match c.norm {
            Norm::LayerNorm => row.iter().sum::<f32>() / d as f32,
            Norm::RmsNorm => 0.0,
        };
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + c.layer_norm_eps).sqrt();
        let g: Vec<f32> = dy.iter().zip(&weights.weight).map(|(a, w)| a * w).collect();
        let normalised: Vec<f32> = row.iter().map(|v| (v - mean) * inv).collect();
        let mean_g = match c.norm {
            Norm::LayerNorm => g.iter().sum::<f32>() / d as f32,
            Norm::RmsNorm => 0.0,
        };
        let mean_gn = dot(&g, &normalised) / d as f32;
        for i in 0..d {
            dx[i] += inv * (g[i] - mean_g - normalised[i] * mean_gn);
        }
    }
}

/// `dY · Wᵀ`: the gradient with respect to a linear layer's input.
fn linear_backward(dy: &[f32], rows: usize, layer: &Linear) -> Vec<f32> {
    matmul(
        MatRef::new(dy, rows, layer.d_out),
        MatRef::new(&layer.weight.f32(), layer.d_in, layer.d_out).t(),
    )
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// One block of the prepared model, recomputed and differentiated.
struct Block<'a> {
    prepared: &'a PreparedModel,
    layer: usize,
    t_len: usize,
    rotary: Option<&'a RotaryTable>,
}

/// What an attention layer's backward needs from its forward.
struct AttentionPass {
    /// Rotated queries `[T, H · d_head]`, rotated keys and values `[T, kv_heads · d_head]`.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Per head, the `T × T` probabilities.
    probs: Vec<Vec<f32>>,
    /// Per head and position, whether the routing proxy zeroed the head's output there.
    routed_out: Vec<Vec<bool>>,
    /// What the layer adds to the stream, `[T, d_model]`.
    out: Vec<f32>,
}

impl Block<'_> {
    /// The gradient with respect to the block's input `x`, given the one with respect to its
    /// output `d_out`; writes each head's output gradient into `head_grads`.
    fn backward(&self, x: &[f32], d_out: &[f32], head_grads: &mut [Vec<f32>]) -> Vec<f32> {
        let c = &self.prepared.config;
        let block = &self.prepared.model().blocks[self.layer];
        let attention = (!self.prepared.attention_dropped[self.layer]).then(|| self.attention(x));
        let mut dx = d_out.to_vec();
        // The gradient reaching the attention's output: after the MLP's share in a sequential
        // block, the block's output gradient in a parallel one.
        let d_attention_out = if c.parallel_residual {
            if let Some(mlp) = &block.mlp {
                self.mlp_backward(mlp, x, d_out, &mut dx);
            }
            d_out.to_vec()
        } else {
            let mut mid = x.to_vec();
            if let Some(pass) = &attention {
                add_assign(&mut mid, &pass.out);
            }
            if let Some(mlp) = &block.mlp {
                self.mlp_backward(mlp, &mid, d_out, &mut dx);
            }
            dx.clone()
        };
        if let Some(pass) = attention {
            self.attention_backward(x, &pass, &d_attention_out, head_grads, &mut dx);
        }
        dx
    }

    /// The attention layer's forward as `forward` runs it, keeping what the backward needs.
    fn attention(&self, x: &[f32]) -> AttentionPass {
        let (prepared, layer, t_len) = (self.prepared, self.layer, self.t_len);
        let c = &prepared.config;
        let block = &prepared.model().blocks[layer];
        let (n_head, d_head, kv_heads) = (c.n_head, c.d_head(), c.kv_heads());
        let normed = norm(x, &block.attn_norm, c.norm, c.layer_norm_eps);
        let mut q = linear(&normed, t_len, &block.attn.q);
        let mut k = linear(&normed, t_len, prepared.key(layer));
        let v = linear(&normed, t_len, prepared.value(layer));
        if let Some(rotary) = self.rotary {
            rotary.apply(&mut q, t_len, d_head);
            rotary.apply(&mut k, t_len, d_head);
        }
        let (q_all, k_all, v_all) = (
            MatRef::new(&q, t_len, n_head * d_head),
            MatRef::new(&k, t_len, kv_heads * d_head),
            MatRef::new(&v, t_len, kv_heads * d_head),
        );
        let mut probs = Vec::with_capacity(n_head);
        let mut heads_z = Vec::with_capacity(n_head);
        let mut norms = vec![0.0f32; n_head * t_len];
        for head in 0..n_head {
            let group = head / (n_head / kv_heads);
            let mut p = vec![0.0f32; t_len * t_len];
            attention_probs_into(
                c,
                &prepared.variant,
                q_all.columns(head * d_head, d_head),
                k_all.columns(group * d_head, d_head),
                None,
                &mut p,
            );
            let mut z = weighted_values(
                c.causal,
                prepared.variant.window,
                &p,
                v_all.columns(group * d_head, d_head),
            );
            if prepared.is_ablated(layer, head) {
                ablate(&mut z, d_head, self.ablation_mode());
            }
            for (t, row) in z.chunks_exact(d_head).enumerate() {
                norms[head * t_len + t] = dot(row, row).sqrt();
            }
            probs.push(p);
            heads_z.push(z);
        }
        let mut routed_out = vec![vec![false; t_len]; n_head];
        if let Some(k) = prepared.variant.route_heads {
            for t in 0..t_len {
                for (head, z) in heads_z.iter_mut().enumerate() {
                    if routing_rank(&norms, n_head, t_len, head, t) >= k {
                        z[t * d_head..(t + 1) * d_head].fill(0.0);
                        routed_out[head][t] = true;
                    }
                }
            }
        }
        let mut z_all = vec![0.0f32; t_len * n_head * d_head];
        for (head, z) in heads_z.iter().enumerate() {
            for (t, row) in z.chunks_exact(d_head).enumerate() {
                z_all[(t * n_head + head) * d_head..][..d_head].copy_from_slice(row);
            }
        }
        let out = linear(&z_all, t_len, &block.attn.o);
        AttentionPass {
            q,
            k,
            v,
            probs,
            routed_out,
            out,
        }
    }

    fn ablation_mode(&self) -> Option<AblationMode> {
        self.prepared.variant.heads.as_ref().map(|h| h.mode)
    }

    /// Adds to `dx` the gradient through the attention layer on the stream `x`, given the
    /// gradient `d_out` of its output, and writes each head's output gradient into `head_grads`.
    fn attention_backward(
        &self,
        x: &[f32],
        pass: &AttentionPass,
        d_out: &[f32],
        head_grads: &mut [Vec<f32>],
        dx: &mut [f32],
    ) {
        let (prepared, layer, t_len) = (self.prepared, self.layer, self.t_len);
        let c = &prepared.config;
        let block = &prepared.model().blocks[layer];
        let (n_head, d_head, kv_heads) = (c.n_head, c.d_head(), c.kv_heads());
        let scale = prepared.variant.beta() / (d_head as f32).sqrt();
        let dz_all = linear_backward(d_out, t_len, &block.attn.o);
        let (q_width, kv_width) = (n_head * d_head, kv_heads * d_head);
        let mut dq = vec![0.0f32; t_len * q_width];
        let mut dk = vec![0.0f32; t_len * kv_width];
        let mut dv = vec![0.0f32; t_len * kv_width];
        for head in 0..n_head {
            let group = head / (n_head / kv_heads);
            // The gradient at the hook, then back through routing and ablation.
            let grad = &mut head_grads[head];
            for (t, row) in grad.chunks_exact_mut(d_head).enumerate() {
                row.copy_from_slice(&dz_all[(t * n_head + head) * d_head..][..d_head]);
            }
            let mut dz = grad.clone();
            for (t, out) in pass.routed_out[head].iter().enumerate() {
                if *out {
                    dz[t * d_head..(t + 1) * d_head].fill(0.0);
                }
            }
            if prepared.is_ablated(layer, head) {
                match self.ablation_mode().unwrap_or_default() {
                    AblationMode::Zero => dz.fill(0.0),
                    // Every row was the mean of all rows: each row gets the mean gradient.
                    AblationMode::Mean => ablate(&mut dz, d_head, Some(AblationMode::Mean)),
                }
            }
            // z = P·V: dP = dz·Vᵀ, dV += Pᵀ·dz; then the softmax, dS = P ⊙ (dP − Σ_row P ⊙ dP),
            // which is zero wherever P is (masked, outside the window, not in the top k).
            let p = &pass.probs[head];
            let (q_at, kv_at) = (head * d_head, group * d_head);
            for i in 0..t_len {
                let dz_i = &dz[i * d_head..(i + 1) * d_head];
                let p_row = &p[i * t_len..(i + 1) * t_len];
                let mut dp = vec![0.0f32; t_len];
                for (j, dp_j) in dp.iter_mut().enumerate() {
                    if p_row[j] != 0.0 {
                        *dp_j = dot(dz_i, &pass.v[j * kv_width + kv_at..][..d_head]);
                        let dv_j = &mut dv[j * kv_width + kv_at..][..d_head];
                        dv_j.iter_mut()
                            .zip(dz_i)
                            .for_each(|(g, &z)| *g += p_row[j] * z);
                    }
                }
                let mean = dot(p_row, &dp);
                for j in 0..t_len {
                    if p_row[j] == 0.0 {
                        continue;
                    }
                    let ds = p_row[j] * (dp[j] - mean) * scale;
                    let k_j = &pass.k[j * kv_width + kv_at..][..d_head];
                    let q_i = &pass.q[i * q_width + q_at..][..d_head];
                    let dq_i = &mut dq[i * q_width + q_at..][..d_head];
                    dq_i.iter_mut().zip(k_j).for_each(|(g, &k)| *g += ds * k);
                    let dk_j = &mut dk[j * kv_width + kv_at..][..d_head];
                    dk_j.iter_mut().zip(q_i).for_each(|(g, &q)| *g += ds * q);
                }
            }
        }
        if let Some(rotary) = self.rotary {
            rotary.apply_transpose(&mut dq, t_len, d_head);
            rotary.apply_transpose(&mut dk, t_len, d_head);
        }
        let mut d_normed = linear_backward(&dq, t_len, &block.attn.q);
        add_assign(
            &mut d_normed,
            &linear_backward(&dk, t_len, prepared.key(layer)),
        );
        add_assign(
            &mut d_normed,
            &linear_backward(&dv, t_len, prepared.value(layer)),
        );
        norm_backward(x, &block.attn_norm, c, &d_normed, dx);
    }

    /// Adds to `dx` the gradient through the MLP on the stream `x`, given the gradient `dy` of
    /// what it adds.
    fn mlp_backward(&self, mlp: &Mlp, x: &[f32], dy: &[f32], dx: &mut [f32]) {
        let c = &self.prepared.config;
        let t_len = self.t_len;
        let normed = norm(x, &mlp.norm, c.norm, c.layer_norm_eps);
        let up = linear(&normed, t_len, &mlp.fc);
        let d_hidden = linear_backward(dy, t_len, &mlp.proj);
        let d_normed = match &mlp.gate {
            Some(gate) => {
                let gate_pre = linear(&normed, t_len, gate);
                let mut d_up = vec![0.0f32; up.len()];
                let mut d_gate = vec![0.0f32; up.len()];
                for i in 0..up.len() {
                    d_up[i] = d_hidden[i] * activate(c.activation, gate_pre[i]);
                    d_gate[i] = d_hidden[i] * up[i] * activation_grad(c.activation, gate_pre[i]);
                }
                let mut d = linear_backward(&d_up, t_len, &mlp.fc);
                add_assign(&mut d, &linear_backward(&d_gate, t_len, gate));
                d
            }
            None => {
                let d_up: Vec<f32> = d_hidden
                    .iter()
                    .zip(&up)
                    .map(|(g, &u)| g * activation_grad(c.activation, u))
                    .collect();
                linear_backward(&d_up, t_len, &mlp.fc)
            }
        };
        norm_backward(x, &mlp.norm, c, &d_normed, dx);
    }
}
