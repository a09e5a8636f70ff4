//! The training loss of a batch and its gradient with respect to every parameter, by hand: the
//! CPU forward of a GPT-2-style model, keeping what the backward pass needs, then the chain
//! rule layer by layer in reverse. Plain `f32` like the forward it differentiates; checked
//! against finite differences here and against burn's autodiff (the offline trainer) in
//! attn-train's tests.
//!
//! The loss is what the offline trainer minimises: the mean cross-entropy over the positions
//! of the batch that carry a target, plus `head_penalty` times the summed mean output norm of
//! every head (a group lasso on heads). A batch is padded, as there, to its longest sequence
//! with token 0 and no target — only a causal model's sequences differ in length, and no real
//! position of a causal model sees the padding, but the padded positions do count in the
//! head-norm mean, exactly as in the offline trainer.

use crate::config::{Activation, Norm};
use crate::error::{ModelError, Result};
use crate::forward::map_rows;
use crate::linalg::{elu_plus_one, matmul, matmul_add, MatRef};
use crate::model::{Linear, Model, NormWeights};
use crate::rope::RotaryTable;
use crate::training::tasks::Sequence;
use crate::variant::KernelName;
use crate::ModelConfig;

/// Added under the square root of a head's output norm so that its gradient stays finite at 0
/// (the offline trainer's constant).
const NORM_FLOOR: f32 = 1e-8;

/// What one batch scored, before the update.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchLoss {
    /// Mean cross-entropy over the scored positions, in nats.
    pub loss: f64,
    /// Sum over layers and heads of each head's mean output norm (what `head_penalty` weighs).
    pub head_norms: f64,
    /// Scored positions whose most probable output is the target.
    pub correct: usize,
    /// Scored positions.
    pub scored: usize,
}

/// Checks that `config` is a model this module differentiates: LayerNorm, learned or rotary
/// positions, the tanh GELU, plain (ungated, sequential) blocks with biases everywhere — the
/// models the trainers make.
pub fn check_trainable(config: &ModelConfig) -> Result<()> {
    let refuse = |what: &str| {
        Err(ModelError::Training(format!(
            "training supports GPT-2-style models (LayerNorm, learned or rotary positions, \
             tanh GELU, biases); this one has {what}"
        )))
    };
    if config.norm != Norm::LayerNorm {
        return refuse("RMSNorm");
    }
    if config.mlp && config.activation != Activation::GeluTanh {
        return refuse("a different MLP activation");
    }
    if config.gated_mlp || config.parallel_residual {
        return refuse("a gated or parallel MLP");
    }
    if !(config.qkv_bias && config.out_bias && config.mlp_bias) {
        return refuse("layers without biases");
    }
    Ok(())
}

/// How far the gradient `mine` is from `reference`, parameter by parameter in
/// [`parameters_mut`]'s order: the largest absolute difference over the reference's largest
/// magnitude (at least 1e-6), and that scale. How the trainers are checked against each other
/// (the offline trainer, the browser build, the GPU trainer); models of different shapes are an
/// error.
pub fn gradient_differences(mine: &Model, reference: &Model) -> Result<Vec<(f32, f32)>> {
    let (mut mine, mut reference) = (mine.clone(), reference.clone());
    let (mine, reference) = (parameters_mut(&mut mine), parameters_mut(&mut reference));
    let same_shapes = mine.len() == reference.len()
        && mine.iter().zip(&reference).all(|(a, b)| a.len() == b.len());
    if !same_shapes {
        return Err(ModelError::Training(
            "the two gradients belong to models of different shapes".into(),
        ));
    }
    Ok(mine
        .iter()
        .zip(&reference)
        .map(|(a, b)| {
            let scale = b.iter().fold(0.0f32, |m, g| m.max(g.abs())).max(1e-6);
            let worst = a
                .iter()
                .zip(b.iter())
                .map(|(x, y)| (x - y).abs() / scale)
                .fold(0.0f32, f32::max);
            (worst, scale)
        })
        .collect())
}

/// Whether the gradient `mine` agrees with `reference` to `tolerance` of each parameter's scale
/// ([`gradient_differences`]); the error names the first parameter that does not.
pub fn check_gradients(mine: &Model, reference: &Model, tolerance: f32) -> Result<()> {
    let names = reference.config.parameters();
    for (i, (worst, scale)) in gradient_differences(mine, reference)?
        .into_iter()
        .enumerate()
    {
        if worst.is_nan() || worst >= tolerance {
            let name = names.get(i).map_or("?", |p| p.name.as_str());
            return Err(ModelError::Training(format!(
                "the gradient of parameter {i} ({name}) differs by {worst} of its scale {scale}"
            )));
        }
    }
    Ok(())
}

/// A model of zeros with `model`'s shapes: the container the gradient accumulates in.
pub fn zeros_like(model: &Model) -> Result<Model> {
    Model::from_parameters(
        model.config.clone(),
        |spec| Ok(vec![0.0; spec.len()].into()),
    )
}

/// Every parameter of `model` as a mutable `f32` vector (widening any 16-bit matrix), in one
/// fixed order: what the optimiser walks, in step with the gradient's and its own moments.
pub fn parameters_mut(model: &mut Model) -> Vec<&mut Vec<f32>> {
    fn norm<'a>(n: &'a mut NormWeights, out: &mut Vec<&'a mut Vec<f32>>) {
        out.push(&mut n.weight);
        out.extend(n.bias.as_mut());
    }
    fn linear<'a>(l: &'a mut Linear, out: &mut Vec<&'a mut Vec<f32>>) {
        out.push(l.weight.make_f32());
        out.extend(l.bias.as_mut());
    }
    let mut out = vec![model.token_embedding.make_f32()];
    out.extend(model.position_embedding.as_mut());
    for block in &mut model.blocks {
        norm(&mut block.attn_norm, &mut out);
        for l in [
            &mut block.attn.q,
            &mut block.attn.k,
            &mut block.attn.v,
            &mut block.attn.o,
        ] {
            linear(l, &mut out);
        }
        if let Some(mlp) = &mut block.mlp {
            norm(&mut mlp.norm, &mut out);
            linear(&mut mlp.fc, &mut out);
            if let Some(gate) = &mut mlp.gate {
                linear(gate, &mut out);
            }
            linear(&mut mlp.proj, &mut out);
        }
    }
    norm(&mut model.final_norm, &mut out);
    if let Some(head) = &mut model.lm_head {
        out.push(head.make_f32());
    }
    if let Some(classifier) = &mut model.classifier {
        linear(classifier, &mut out);
    }
    out
}

/// The loss of `batch` under `model` and its gradient (a model of the same shapes). `model`
/// must pass [`check_trainable`] and hold `f32` weights (16-bit ones are widened on the fly,
/// slowly).
pub fn loss_and_gradients(
    model: &Model,
    batch: &[Sequence],
    head_penalty: f32,
) -> Result<(BatchLoss, Model)> {
    loss_and_gradients_with(model, KernelName::Softmax, batch, head_penalty)
}

/// [`loss_and_gradients`] with the attention weights of `kernel`: softmax, or linear attention
/// (`φ(q̃_i)·φ(k_j)` normalised over the allowed keys, `φ = elu + 1`, as the forward's
/// [`KernelName::Linear`]).
pub fn loss_and_gradients_with(
    model: &Model,
    kernel: KernelName,
    batch: &[Sequence],
    head_penalty: f32,
) -> Result<(BatchLoss, Model)> {
    check_trainable(&model.config)?;
    let c = &model.config;
    let t_len = batch.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
    if t_len == 0 || t_len > c.n_ctx {
        return Err(ModelError::Training(format!(
            "a batch needs sequences of 1 to {} tokens (found {t_len})",
            c.n_ctx
        )));
    }
    let scored: usize = batch.iter().map(Sequence::scored).sum();
    let mut grads = zeros_like(model)?;
    let mut total = BatchLoss {
        scored,
        ..BatchLoss::default()
    };
    // Each head's norm is a mean over every (padded) position of the batch.
    let norm_scale = 1.0 / (batch.len() * t_len) as f32;
    for sequence in batch {
        let mut tokens = sequence.tokens.clone();
        tokens.resize(t_len, 0);
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(ModelError::Training(format!(
                "token {bad} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        let mut targets = sequence.targets.clone();
        targets.resize(t_len, None);
        let pass = Pass::forward(model, kernel, &tokens);
        let (loss, correct) = pass.backward(
            model,
            &tokens,
            &targets,
            1.0 / scored.max(1) as f32,
            head_penalty * norm_scale,
            &mut grads,
        );
        total.loss += loss / scored.max(1) as f64;
        total.correct += correct;
        total.head_norms += pass.head_norm_sum() * norm_scale as f64;
    }
    Ok((total, grads))
}

/// A LayerNorm's forward, kept for its backward: the normalised rows and each row's
/// `1 / sqrt(var + eps)`.
struct NormPass {
    normalised: Vec<f32>,
    inv_std: Vec<f32>,
    out: Vec<f32>,
}

impl NormPass {
    fn forward(x: &[f32], weights: &NormWeights, eps: f32) -> NormPass {
        let d = weights.weight.len();
        let rows = x.len() / d;
        let mut normalised = vec![0.0; x.len()];
        let mut inv_std = vec![0.0; rows];
        let mut out = vec![0.0; x.len()];
        layer_norm_keep(
            x,
            &weights.weight,
            weights.bias.as_deref(),
            eps,
            &mut out,
            &mut normalised,
            &mut inv_std,
        );
        NormPass {
            normalised,
            inv_std,
            out,
        }
    }

    /// Accumulates the scale's and shift's gradients and adds the input's to `dx`.
    fn backward(&self, dy: &[f32], weights: &NormWeights, grads: &mut NormWeights, dx: &mut [f32]) {
        layer_norm_backward(
            dy,
            &self.normalised,
            &self.inv_std,
            &weights.weight,
            &mut grads.weight,
            grads.bias.as_deref_mut(),
            dx,
        );
    }
}

/// LayerNorm's backward over rows of width `gamma.len()`, from its normalised rows `x̂` and
/// each row's `1 / sqrt(var + eps)`: accumulates the scale's gradient `Σ dy ⊙ x̂` and the
/// shift's `Σ dy` over the rows, and adds to `dx` the input's gradient
/// `inv · (g − mean(g) − x̂ · mean(g ⊙ x̂))` with `g = dy ⊙ γ`. The CPU twin of the GPU
/// trainer's kernel.
pub fn layer_norm_backward(
    dy: &[f32],
    normalised: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    mut dbeta: Option<&mut [f32]>,
    dx: &mut [f32],
) {
    let d = gamma.len();
    let mut dn = vec![0.0f32; d];
    for (r, &inv) in inv_std.iter().enumerate() {
        let (dy, n) = (&dy[r * d..(r + 1) * d], &normalised[r * d..(r + 1) * d]);
        for i in 0..d {
            dgamma[i] += dy[i] * n[i];
            if let Some(b) = dbeta.as_deref_mut() {
                b[i] += dy[i];
            }
            dn[i] = dy[i] * gamma[i];
        }
        let mean_dn = dn.iter().sum::<f32>() / d as f32;
        let mean_dn_n = dn.iter().zip(n).map(|(a, b)| a * b).sum::<f32>() / d as f32;
        for i in 0..d {
            dx[r * d + i] += inv * (dn[i] - mean_dn - n[i] * mean_dn_n);
        }
    }
}

/// The head penalty's gradient: every `d_head`-wide piece `z_h` of `z` (one head at one
/// position) adds `weight · z_h / sqrt(‖z_h‖² + floor)` to the same piece of `dz`. The CPU twin
/// of the GPU trainer's kernel.
pub fn head_norm_backward(z: &[f32], d_head: usize, weight: f32, dz: &mut [f32]) {
    for (dzh, zh) in dz.chunks_exact_mut(d_head).zip(z.chunks_exact(d_head)) {
        let n = (zh.iter().map(|v| v * v).sum::<f32>() + NORM_FLOOR).sqrt();
        dzh.iter_mut()
            .zip(zh)
            .for_each(|(g, z)| *g += weight * z / n);
    }
}

/// LayerNorm's forward as the trainer runs it, keeping what its backward needs: writes the
/// output rows to `out`, the normalised rows `x̂` to `normalised` and each row's
/// `1 / sqrt(var + eps)` to `inv_std` (two passes: the mean, then the biased variance of the
/// centred values). The CPU twin of the GPU trainer's kernel.
pub fn layer_norm_keep(
    x: &[f32],
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
    out: &mut [f32],
    normalised: &mut [f32],
    inv_std: &mut [f32],
) {
    let d = gamma.len();
    for (r, row) in x.chunks_exact(d).enumerate() {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        inv_std[r] = inv;
        for i in 0..d {
            let n = (row[i] - mean) * inv;
            normalised[r * d + i] = n;
            out[r * d + i] = n * gamma[i] + beta.map_or(0.0, |b| b[i]);
        }
    }
}

/// Adds each column's sum over the rows of `dy` (rows of `sums.len()`) to `sums`: a dense
/// layer's bias gradient. The CPU twin of the GPU trainer's kernel.
pub fn column_sums_add(dy: &[f32], sums: &mut [f32]) {
    for row in dy.chunks_exact(sums.len()) {
        sums.iter_mut().zip(row).for_each(|(s, g)| *s += g);
    }
}

/// The token embedding's gradient: row `tokens[t]` of `dtable` gains row `t` of `dx` (rows of
/// `dx.len() / tokens.len()`), in the order of the positions. The CPU twin of the GPU
/// trainer's kernel.
pub fn embedding_backward(tokens: &[u32], dx: &[f32], dtable: &mut [f32]) {
    let d = dx.len() / tokens.len().max(1);
    for (t, &tok) in tokens.iter().enumerate() {
        let row = &dx[t * d..(t + 1) * d];
        dtable[tok as usize * d..(tok as usize + 1) * d]
            .iter_mut()
            .zip(row)
            .for_each(|(g, v)| *g += v);
    }
}

/// One position's cross-entropy against `target` and its gradient: writes `weight ·
/// (softmax(logits) − one-hot(target))` to `dlogits` and returns the negative log-likelihood
/// (in f64) and whether the most probable output is the target. The CPU twin of the GPU
/// trainer's kernel.
pub fn cross_entropy_backward(
    logits: &[f32],
    target: u32,
    weight: f32,
    dlogits: &mut [f32],
) -> (f64, bool) {
    let log_probs = crate::linalg::log_softmax(logits);
    for (g, lp) in dlogits.iter_mut().zip(&log_probs) {
        *g = lp.exp() as f32 * weight;
    }
    dlogits[target as usize] -= weight;
    (
        -log_probs[target as usize],
        crate::engine::output::argmax(logits) == target,
    )
}

/// Softmax's backward over rows of `width`: `ds = p ⊙ (dp − Σ_row dp ⊙ p) · scale` (the score
/// scale folded in). The CPU twin of the GPU trainer's kernel.
pub fn softmax_backward(p: &[f32], dp: &[f32], width: usize, scale: f32, ds: &mut [f32]) {
    for ((p, dp), ds) in p
        .chunks_exact(width)
        .zip(dp.chunks_exact(width))
        .zip(ds.chunks_exact_mut(width))
    {
        let dot: f32 = dp.iter().zip(p).map(|(a, b)| a * b).sum();
        for j in 0..width {
            ds[j] = p[j] * (dp[j] - dot) * scale;
        }
    }
}

/// What one block's forward keeps.
struct BlockPass {
    attn_norm: NormPass,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention probabilities `[head][query][key]`.
    probs: Vec<f32>,
    /// Head outputs, `[T, n_head · d_head]`.
    z: Vec<f32>,
    /// The MLP's norm, pre-activation and activation.
    mlp: Option<(NormPass, Vec<f32>, Vec<f32>)>,
}

/// The forward of one sequence with everything the backward needs.
struct Pass {
    t_len: usize,
    d_head: usize,
    kernel: KernelName,
    /// The rotation of queries and keys, for a rotary model.
    rotary: Option<RotaryTable>,
    blocks: Vec<BlockPass>,
    final_norm: NormPass,
    logits: Vec<f32>,
}

/// `x · W + b` for the rows of `x`.
fn dense(x: &[f32], layer: &Linear) -> Vec<f32> {
    crate::linalg::linear(x, x.len() / layer.d_in, layer)
}

/// Accumulates a dense layer's weight and bias gradients from its input `x` and output
/// gradient `dy`, and adds `dy · Wᵀ` to `dx` when asked.
fn dense_backward(
    x: &[f32],
    dy: &[f32],
    layer: &Linear,
    grads: &mut Linear,
    dx: Option<&mut [f32]>,
) {
    let rows = x.len() / layer.d_in;
    let (d_in, d_out) = (layer.d_in, layer.d_out);
    matmul_add(
        MatRef::new(x, rows, d_in).t(),
        MatRef::new(dy, rows, d_out),
        grads.weight.make_f32(),
    );
    if let Some(bias) = grads.bias.as_mut() {
        column_sums_add(dy, bias);
    }
    if let Some(dx) = dx {
        let weight = layer.weight.f32();
        matmul_add(
            MatRef::new(dy, rows, d_out),
            MatRef::new(&weight, d_in, d_out).t(),
            dx,
        );
    }
}

/// Linear attention's unnormalised weights `φ(q · scale) · φ(k)ᵀ` (`T × T`), `φ = elu + 1`,
/// as the forward computes them.
fn linear_weights(q: MatRef<'_>, k: MatRef<'_>, scale: f32) -> Vec<f32> {
    let t_len = q.rows;
    let d_head = q.cols;
    let phi_q = map_rows(q, |v| elu_plus_one(v * scale));
    let phi_k = map_rows(k, elu_plus_one);
    matmul(
        MatRef::new(&phi_q, t_len, d_head),
        MatRef::new(&phi_k, k.rows, d_head).t(),
    )
}

/// The derivative of `elu(x) + 1`.
fn elu_plus_one_grad(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else {
        x.exp()
    }
}

/// The gradient through linear attention's feature map `φ(scale · x)`, `φ = elu + 1`, in place:
/// `grad ← grad · φ'(scale · x) · scale` (the CPU twin of the GPU trainer's `elu_backward`).
pub fn elu_feature_backward(x: &[f32], scale: f32, grad: &mut [f32]) {
    for (g, &v) in grad.iter_mut().zip(x) {
        *g *= elu_plus_one_grad(v * scale) * scale;
    }
}

/// Linear attention's backward through its normalisation, for square maps of `width` stacked
/// row by row (row `r` is query `r % width`): with `P = W / Σ_row W` over the keys the query may
/// see (all, or the first `r % width + 1` when `causal`), `dw = (dp − Σ_row dp ⊙ p) / Σ_row w` on
/// those keys and 0 on the others (the CPU twin of the GPU trainer's `linear_backward`).
pub fn linear_weights_backward(
    probs: &[f32],
    dp: &[f32],
    w: &[f32],
    width: usize,
    causal: bool,
    dw: &mut [f32],
) {
    for (r, out) in dw.chunks_exact_mut(width).enumerate() {
        let row = r * width..(r + 1) * width;
        let keys = if causal { r % width + 1 } else { width };
        let allowed = row.start..row.start + keys;
        let dot: f32 = dp[allowed.clone()]
            .iter()
            .zip(&probs[allowed.clone()])
            .map(|(a, b)| a * b)
            .sum();
        let sum: f32 = w[allowed].iter().sum();
        for (j, g) in out.iter_mut().enumerate() {
            *g = if j < keys {
                (dp[row.start + j] - dot) / sum
            } else {
                0.0
            };
        }
    }
}

// The tanh GELU's derivative lives beside the activations it differentiates.
pub use crate::linalg::gelu_tanh_grad;

impl Pass {
    fn forward(model: &Model, kernel: KernelName, tokens: &[u32]) -> Pass {
        let c = &model.config;
        let (t_len, d) = (tokens.len(), c.d_model);
        let (n_head, n_kv, d_head) = (c.n_head, c.kv_heads(), c.d_head());
        let group = n_head / n_kv;
        let scale = 1.0 / (d_head as f32).sqrt();
        let wte = model.token_embedding.f32();
        let wpe = model.position_embedding.as_deref().unwrap_or_default();
        let mut x = vec![0.0f32; t_len * d];
        for (t, &tok) in tokens.iter().enumerate() {
            for i in 0..d {
                x[t * d + i] =
                    wte[tok as usize * d + i] + wpe.get(t * d + i).copied().unwrap_or(0.0);
            }
        }
        let rotary = c.rope().map(|rope| RotaryTable::new(rope, t_len));
        let mut blocks = Vec::with_capacity(c.n_layer);
        for block in &model.blocks {
            let attn_norm = NormPass::forward(&x, &block.attn_norm, c.layer_norm_eps);
            let mut q = dense(&attn_norm.out, &block.attn.q);
            let mut k = dense(&attn_norm.out, &block.attn.k);
            if let Some(table) = &rotary {
                table.apply(&mut q, t_len, d_head);
                table.apply(&mut k, t_len, d_head);
            }
            let v = dense(&attn_norm.out, &block.attn.v);
            let (q_width, kv_width) = (n_head * d_head, n_kv * d_head);
            let mut probs = vec![0.0f32; n_head * t_len * t_len];
            let mut z = vec![0.0f32; t_len * q_width];
            for h in 0..n_head {
                let j = h / group;
                let q_h = MatRef::new(&q, t_len, q_width).columns(h * d_head, d_head);
                let k_j = MatRef::new(&k, t_len, kv_width).columns(j * d_head, d_head);
                let v_j = MatRef::new(&v, t_len, kv_width).columns(j * d_head, d_head);
                let p = &mut probs[h * t_len * t_len..(h + 1) * t_len * t_len];
                match kernel {
                    KernelName::Softmax => {
                        let scores = matmul(q_h, k_j.t());
                        for i in 0..t_len {
                            let keys = if c.causal { i + 1 } else { t_len };
                            let row = &scores[i * t_len..i * t_len + keys];
                            let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s * scale));
                            let mut sum = 0.0;
                            for (jk, &s) in row.iter().enumerate() {
                                let e = (s * scale - max).exp();
                                p[i * t_len + jk] = e;
                                sum += e;
                            }
                            p[i * t_len..i * t_len + keys]
                                .iter_mut()
                                .for_each(|e| *e /= sum);
                        }
                    }
                    KernelName::Linear => {
                        let weights = linear_weights(q_h, k_j, scale);
                        for i in 0..t_len {
                            let keys = if c.causal { i + 1 } else { t_len };
                            let row = &weights[i * t_len..i * t_len + keys];
                            let sum: f32 = row.iter().sum();
                            for (jk, &w) in row.iter().enumerate() {
                                p[i * t_len + jk] = w / sum;
                            }
                        }
                    }
                }
                let z_h = matmul(MatRef::new(p, t_len, t_len), v_j);
                for t in 0..t_len {
                    z[t * q_width + h * d_head..t * q_width + (h + 1) * d_head]
                        .copy_from_slice(&z_h[t * d_head..(t + 1) * d_head]);
                }
            }
            let attn_out = dense(&z, &block.attn.o);
            x.iter_mut().zip(&attn_out).for_each(|(a, b)| *a += b);
            let mlp = block.mlp.as_ref().map(|mlp| {
                let norm = NormPass::forward(&x, &mlp.norm, c.layer_norm_eps);
                let pre = dense(&norm.out, &mlp.fc);
                let act: Vec<f32> = pre.iter().map(|&p| crate::linalg::gelu_tanh(p)).collect();
                let out = dense(&act, &mlp.proj);
                x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
                (norm, pre, act)
            });
            blocks.push(BlockPass {
                attn_norm,
                q,
                k,
                v,
                probs,
                z,
                mlp,
            });
        }
        let final_norm = NormPass::forward(&x, &model.final_norm, c.layer_norm_eps);
        let logits = match (&model.classifier, &model.lm_head) {
            (Some(classifier), _) => dense(&final_norm.out, classifier),
            (None, head) => {
                let table = head.as_ref().unwrap_or(&model.token_embedding).f32();
                matmul(
                    MatRef::new(&final_norm.out, t_len, d),
                    MatRef::new(&table, table.len() / d, d).t(),
                )
            }
        };
        Pass {
            t_len,
            d_head,
            kernel,
            rotary,
            blocks,
            final_norm,
            logits,
        }
    }

    /// Sum over layers and heads of each head's summed output-row norm over positions.
    fn head_norm_sum(&self) -> f64 {
        let mut sum = 0.0f64;
        for block in &self.blocks {
            for head in block.z.chunks_exact(self.d_head) {
                {
                    let sq: f32 = head.iter().map(|v| v * v).sum();
                    sum += (sq + NORM_FLOOR).sqrt() as f64;
                }
            }
        }
        sum
    }

    /// Accumulates the gradient of `loss_weight · Σ cross-entropy + norm_weight · Σ head norms`
    /// into `grads`; returns the summed cross-entropy and the number of correct predictions.
    fn backward(
        &self,
        model: &Model,
        tokens: &[u32],
        targets: &[Option<u32>],
        loss_weight: f32,
        norm_weight: f32,
        grads: &mut Model,
    ) -> (f64, usize) {
        let c = &model.config;
        let (t_len, d) = (self.t_len, c.d_model);
        let n_out = self.logits.len() / t_len;
        let (n_head, n_kv, d_head) = (c.n_head, c.kv_heads(), c.d_head());
        let group = n_head / n_kv;
        let scale = 1.0 / (d_head as f32).sqrt();
        let (q_width, kv_width) = (n_head * d_head, n_kv * d_head);

        // Cross-entropy: d/dlogits = softmax − one-hot, at the scored positions.
        let mut loss = 0.0f64;
        let mut correct = 0;
        let mut dlogits = vec![0.0f32; self.logits.len()];
        for (t, target) in targets.iter().enumerate() {
            let Some(target) = *target else { continue };
            let row = t * n_out..(t + 1) * n_out;
            let (nll, right) = cross_entropy_backward(
                &self.logits[row.clone()],
                target,
                loss_weight,
                &mut dlogits[row],
            );
            loss += nll;
            correct += usize::from(right);
        }

        // The output head.
        let mut dfinal = vec![0.0f32; t_len * d];
        match (&model.classifier, &model.lm_head) {
            (Some(classifier), _) => dense_backward(
                &self.final_norm.out,
                &dlogits,
                classifier,
                grads.classifier.as_mut().expect("same shapes"),
                Some(&mut dfinal),
            ),
            (None, head) => {
                let table = head.as_ref().unwrap_or(&model.token_embedding).f32();
                let rows = table.len() / d;
                let dtable = match grads.lm_head.as_mut() {
                    Some(h) => h.make_f32(),
                    None => grads.token_embedding.make_f32(),
                };
                matmul_add(
                    MatRef::new(&dlogits, t_len, rows).t(),
                    MatRef::new(&self.final_norm.out, t_len, d),
                    dtable,
                );
                matmul_add(
                    MatRef::new(&dlogits, t_len, rows),
                    MatRef::new(&table, rows, d),
                    &mut dfinal,
                );
            }
        }
        let mut dx = vec![0.0f32; t_len * d];
        self.final_norm
            .backward(&dfinal, &model.final_norm, &mut grads.final_norm, &mut dx);

        for ((block, pass), g) in model
            .blocks
            .iter()
            .zip(&self.blocks)
            .zip(grads.blocks.iter_mut())
            .rev()
        {
            if let (Some(mlp), Some((norm, pre, act)), Some(gm)) =
                (&block.mlp, &pass.mlp, g.mlp.as_mut())
            {
                let mut dact = vec![0.0f32; act.len()];
                dense_backward(act, &dx, &mlp.proj, &mut gm.proj, Some(&mut dact));
                let dpre: Vec<f32> = dact
                    .iter()
                    .zip(pre)
                    .map(|(g, &p)| g * gelu_tanh_grad(p))
                    .collect();
                let mut dnorm = vec![0.0f32; t_len * d];
                dense_backward(&norm.out, &dpre, &mlp.fc, &mut gm.fc, Some(&mut dnorm));
                norm.backward(&dnorm, &mlp.norm, &mut gm.norm, &mut dx);
            }

            // Attention: x += z · Wo + bo.
            let mut dz = vec![0.0f32; t_len * q_width];
            dense_backward(&pass.z, &dx, &block.attn.o, &mut g.attn.o, Some(&mut dz));
            if norm_weight != 0.0 {
                head_norm_backward(&pass.z, d_head, norm_weight, &mut dz);
            }
            let mut dq = vec![0.0f32; t_len * q_width];
            let mut dk = vec![0.0f32; t_len * kv_width];
            let mut dv = vec![0.0f32; t_len * kv_width];
            for h in 0..n_head {
                let j = h / group;
                let p = &pass.probs[h * t_len * t_len..(h + 1) * t_len * t_len];
                let p_mat = MatRef::new(p, t_len, t_len);
                let dz_h = MatRef::new(&dz, t_len, q_width).columns(h * d_head, d_head);
                let v_j = MatRef::new(&pass.v, t_len, kv_width).columns(j * d_head, d_head);
                // dP = dz_h · v_jᵀ; dv_j += Pᵀ · dz_h.
                let dp = matmul(dz_h, v_j.t());
                let dv_j = matmul(p_mat.t(), dz_h);
                let q_h = MatRef::new(&pass.q, t_len, q_width).columns(h * d_head, d_head);
                let k_j = MatRef::new(&pass.k, t_len, kv_width).columns(j * d_head, d_head);
                // Through the normalisation: with P = W / rowsum(W), the softmax's W = exp(S)
                // gives dS = P ⊙ (dP − rowsum(dP ⊙ P)); linear attention's dW is that over W's
                // row sum instead. Masked entries have P = 0 and stay out.
                let mut ds = vec![0.0f32; t_len * t_len];
                match self.kernel {
                    KernelName::Softmax => softmax_backward(p, &dp, t_len, scale, &mut ds),
                    KernelName::Linear => {
                        let w = linear_weights(q_h, k_j, scale);
                        linear_weights_backward(p, &dp, &w, t_len, c.causal, &mut ds);
                    }
                }
                let ds = MatRef::new(&ds, t_len, t_len);
                let (dq_h, dk_j) = match self.kernel {
                    KernelName::Softmax => (matmul(ds, k_j), matmul(ds.t(), q_h)),
                    KernelName::Linear => {
                        // W = φ(q̃)·φ(k)ᵀ with q̃ = q · scale: dφ(q̃) = dW · φ(k),
                        // dφ(k) = dWᵀ · φ(q̃), then φ' (1 above zero, eˣ below) and q̃'s scale.
                        let phi_q = map_rows(q_h, |v| elu_plus_one(v * scale));
                        let phi_k = map_rows(k_j, elu_plus_one);
                        let mut dq = matmul(ds, MatRef::new(&phi_k, t_len, d_head));
                        let mut dk = matmul(ds.t(), MatRef::new(&phi_q, t_len, d_head));
                        elu_feature_backward(&map_rows(q_h, |v| v), scale, &mut dq);
                        elu_feature_backward(&map_rows(k_j, |v| v), 1.0, &mut dk);
                        (dq, dk)
                    }
                };
                for t in 0..t_len {
                    let (qa, ka) = (t * q_width + h * d_head, t * kv_width + j * d_head);
                    for e in 0..d_head {
                        dq[qa + e] += dq_h[t * d_head + e];
                        dk[ka + e] += dk_j[t * d_head + e];
                        dv[ka + e] += dv_j[t * d_head + e];
                    }
                }
            }
            // The rotation is orthogonal: its backward is its transpose.
            if let Some(table) = &self.rotary {
                table.apply_transpose(&mut dq, t_len, d_head);
                table.apply_transpose(&mut dk, t_len, d_head);
            }
            let a = &pass.attn_norm.out;
            let mut da = vec![0.0f32; t_len * d];
            dense_backward(a, &dq, &block.attn.q, &mut g.attn.q, Some(&mut da));
            dense_backward(a, &dk, &block.attn.k, &mut g.attn.k, Some(&mut da));
            dense_backward(a, &dv, &block.attn.v, &mut g.attn.v, Some(&mut da));
            pass.attn_norm
                .backward(&da, &block.attn_norm, &mut g.attn_norm, &mut dx);
        }

        // Embeddings.
        embedding_backward(tokens, &dx, grads.token_embedding.make_f32());
        if let Some(dwpe) = grads.position_embedding.as_mut() {
            dwpe[..t_len * d]
                .iter_mut()
                .zip(&dx)
                .for_each(|(g, v)| *g += v);
        }
        (loss, correct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequences(config: &ModelConfig, lengths: &[usize]) -> Vec<Sequence> {
        let v = config.vocab_size as u32;
        let n_out = config.n_out() as u32;
        lengths
            .iter()
            .enumerate()
            .map(|(r, &len)| Sequence {
                tokens: (0..len as u32)
                    .map(|t| (t * 5 + r as u32 * 3 + 1) % v)
                    .collect(),
                targets: (0..len as u32)
                    .map(|t| (t % 3 != 1).then_some((t * 7 + r as u32) % n_out))
                    .collect(),
            })
            .collect()
    }

    fn total(model: &Model, kernel: KernelName, batch: &[Sequence], penalty: f32) -> f64 {
        let (l, _) = loss_and_gradients_with(model, kernel, batch, penalty).unwrap();
        l.loss + penalty as f64 * l.head_norms
    }

    /// Central differences: a step of 1e-3 is small enough for the curvature of attention and
    /// large enough that the f32 rounding of the loss (≈ 1e-7 relative) stays far below the
    /// difference measured.
    fn check_against_finite_differences(config: ModelConfig, lengths: &[usize], penalty: f32) {
        check_kernel_against_finite_differences(config, KernelName::Softmax, lengths, penalty);
    }

    fn check_kernel_against_finite_differences(
        config: ModelConfig,
        kernel: KernelName,
        lengths: &[usize],
        penalty: f32,
    ) {
        let model = Model::random(config.clone(), 5, 0.4).unwrap();
        let batch = sequences(&config, lengths);
        let (_, grads) = loss_and_gradients_with(&model, kernel, &batch, penalty).unwrap();
        let mut probe = model.clone();
        let mut grads = grads;
        let analytic: Vec<Vec<f32>> = parameters_mut(&mut grads)
            .into_iter()
            .map(|g| g.clone())
            .collect();
        for (p, grad) in analytic.iter().enumerate() {
            let len = grad.len();
            // A few coordinates of every parameter, spread over it.
            for i in [0, len / 3, len / 2, len - 1] {
                let h = 1e-3f32;
                let original = parameters_mut(&mut probe)[p][i];
                parameters_mut(&mut probe)[p][i] = original + h;
                let up = total(&probe, kernel, &batch, penalty);
                parameters_mut(&mut probe)[p][i] = original - h;
                let down = total(&probe, kernel, &batch, penalty);
                parameters_mut(&mut probe)[p][i] = original;
                let numeric = (up - down) / (2.0 * h as f64);
                let error = (numeric - grad[i] as f64).abs() / (0.05 + numeric.abs());
                assert!(
                    error < 5e-3,
                    "{config:?}, {kernel:?}: parameter {p}[{i}]: analytic {} numeric {numeric}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences_on_every_trainable_shape() {
        let base = ModelConfig {
            n_ctx: 8,
            ..ModelConfig::tiny(11)
        };
        check_against_finite_differences(base.clone(), &[6, 4], 0.0);
        check_against_finite_differences(
            ModelConfig {
                mlp: false,
                n_head: 2,
                ..base.clone()
            },
            &[5, 5],
            0.3,
        );
        check_against_finite_differences(
            ModelConfig {
                causal: false,
                n_classes: Some(3),
                ..base.clone()
            },
            &[5, 5],
            0.0,
        );
        check_against_finite_differences(
            ModelConfig {
                n_kv_head: Some(1),
                tied_embeddings: false,
                ..base.clone()
            },
            &[7, 3, 5],
            0.1,
        );
        check_against_finite_differences(
            ModelConfig {
                n_kv_head: Some(2),
                positional: crate::Positional::Rope(crate::Rope {
                    theta: 10000.0,
                    rotary_dim: 4,
                    scaling: crate::RopeScaling::None,
                }),
                ..base
            },
            &[7, 5],
            0.0,
        );
    }

    #[test]
    fn linear_attention_gradients_match_finite_differences() {
        let base = ModelConfig {
            n_ctx: 8,
            ..ModelConfig::tiny(11)
        };
        check_kernel_against_finite_differences(base.clone(), KernelName::Linear, &[6, 4], 0.0);
        check_kernel_against_finite_differences(
            ModelConfig {
                mlp: false,
                n_head: 2,
                n_kv_head: Some(1),
                ..base.clone()
            },
            KernelName::Linear,
            &[5, 7],
            0.3,
        );
        check_kernel_against_finite_differences(
            ModelConfig {
                causal: false,
                n_classes: Some(3),
                ..base
            },
            KernelName::Linear,
            &[5, 5],
            0.0,
        );
    }

    #[test]
    fn the_loss_is_the_engines_cross_entropy() {
        for kernel in [KernelName::Softmax, KernelName::Linear] {
            the_loss_is_the_engines_cross_entropy_with(kernel);
        }
    }

    fn the_loss_is_the_engines_cross_entropy_with(kernel: KernelName) {
        let config = ModelConfig::tiny(13);
        let model = Model::random(config.clone(), 2, 0.3).unwrap();
        let batch = sequences(&config, &[9, 6]);
        let (loss, _) = loss_and_gradients_with(&model, kernel, &batch, 0.0).unwrap();
        let mut engine = crate::CpuEngine::new(model).unwrap();
        engine
            .set_variant(&crate::Variant {
                kernel: Some(crate::variant::Kernel::Named(kernel)),
                ..crate::Variant::default()
            })
            .unwrap();
        let (mut nll, mut correct) = (0.0f64, 0);
        for s in &batch {
            let out = engine.forward(&s.tokens).unwrap();
            for (t, target) in s.targets.iter().enumerate() {
                let Some(target) = *target else { continue };
                nll -= crate::linalg::log_softmax(out.logits_at(t))[target as usize];
                correct += usize::from(out.argmax_at(t) == target);
            }
        }
        let scored = batch.iter().map(Sequence::scored).sum::<usize>();
        assert!(
            (loss.loss - nll / scored as f64).abs() < 1e-5,
            "{} vs {}",
            loss.loss,
            nll / scored as f64
        );
        assert_eq!((loss.correct, loss.scored), (correct, scored));
    }

    #[test]
    fn rotary_gradients_follow_the_engines_forward() {
        // The loss the backward pass differentiates is the CPU engine's, rotation included.
        let config = ModelConfig {
            positional: crate::Positional::Rope(crate::Rope {
                theta: 10000.0,
                rotary_dim: 4,
                scaling: crate::RopeScaling::None,
            }),
            ..ModelConfig::tiny(13)
        };
        let model = Model::random(config.clone(), 2, 0.3).unwrap();
        let batch = sequences(&config, &[9]);
        let (loss, _) = loss_and_gradients(&model, &batch, 0.0).unwrap();
        let out = crate::CpuEngine::new(model)
            .unwrap()
            .forward(&batch[0].tokens)
            .unwrap();
        let nll: f64 = batch[0]
            .targets
            .iter()
            .enumerate()
            .filter_map(|(t, target)| {
                target.map(|y| -crate::linalg::log_softmax(out.logits_at(t))[y as usize])
            })
            .sum();
        assert!((loss.loss - nll / batch[0].scored() as f64).abs() < 1e-5);
    }

    #[test]
    fn models_the_trainer_cannot_differentiate_are_refused() {
        let config = ModelConfig {
            norm: Norm::RmsNorm,
            ..ModelConfig::tiny(13)
        };
        let model = Model::random(config.clone(), 2, 0.3).unwrap();
        let e = loss_and_gradients(&model, &sequences(&config, &[3]), 0.0).unwrap_err();
        assert!(e.to_string().contains("RMSNorm"), "{e}");
    }
}
