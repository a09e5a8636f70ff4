//! The CPU reference forward pass: plain, readable `f32` Rust that every other engine is checked
//! against. Runtime-side variants (window, top-k, β, kernel, ablation, dropped layers) are
//! applied here; weight-side ones were applied by [`crate::prepare()`]. The CPU engine that
//! runs it is `engine/cpu.rs`.

use crate::config::ModelConfig;
use crate::engine::hooks::{Captured, HookPoint, Hooks};
use crate::engine::prepared::PreparedModel;
use crate::error::{ModelError, Result};
use crate::fastmath::softmax_in_place;
use crate::linalg::{
    activate_in_place, elu_plus_one, linear, matmul, matmul_add_rows, norm, times_table_transposed,
    MatRef,
};
use crate::model::{Mlp, Model};
use crate::rope::RotaryTable;
use crate::variant::{AblationMode, Kernel, KernelName, Variant};

// What a forward returns, where it was defined before `engine/output.rs`.
pub use crate::engine::output::{argmax, top_k, Output};

/// Checks that `tokens` can be run: not empty, no longer than the context, all in the vocabulary.
pub fn check_tokens(config: &ModelConfig, tokens: &[u32]) -> Result<()> {
    if tokens.is_empty() {
        return Err(ModelError::Input("the input has no tokens".into()));
    }
    if tokens.len() > config.n_ctx {
        return Err(ModelError::Input(format!(
            "the input has {} tokens but the model's context holds {}",
            tokens.len(),
            config.n_ctx
        )));
    }
    if let Some((pos, &tok)) = tokens
        .iter()
        .enumerate()
        .find(|(_, &t)| t as usize >= config.vocab_size)
    {
        return Err(ModelError::Input(format!(
            "token {tok} at position {pos} is outside the vocabulary (size {})",
            config.vocab_size
        )));
    }
    Ok(())
}

/// Runs the prepared model on `tokens`.
pub fn forward(prepared: &PreparedModel, tokens: &[u32]) -> Result<Output> {
    forward_hooked(prepared, tokens, &Hooks::none()).map(|(output, _)| output)
}

/// [`forward`] with hooks: captures the activations at `hooks.capture` and uses those in
/// `hooks.replace` in place of the computed ones (see [`HookPoint`]).
pub fn forward_hooked(
    prepared: &PreparedModel,
    tokens: &[u32],
    hooks: &Hooks,
) -> Result<(Output, Captured)> {
    forward_unembedding(prepared, tokens, hooks, 0..tokens.len())
}

/// [`forward_hooked`] computing the logits of the positions in `rows` only, the others NaN: the
/// output projection of a large vocabulary is a third of GPT-2 small's forward at 128 tokens, and
/// a forward read for its last row (the next token) or for its maps alone need not pay for it.
pub fn forward_unembedding(
    prepared: &PreparedModel,
    tokens: &[u32],
    hooks: &Hooks,
    rows: std::ops::Range<usize>,
) -> Result<(Output, Captured)> {
    forward_keeping_kv(prepared, tokens, hooks, rows, &mut |_, _, _, _| {})
}

/// Takes an attention layer's input (after its norm), keys (rotated) and values:
/// `(layer, x, k, v)`.
pub(crate) type KeepKv<'a> = dyn FnMut(usize, &[f32], &[f32], &[f32]) + 'a;

/// [`forward_unembedding`], handing every attention layer's input, keys (rotated) and values to
/// `keep` (`keep(layer, x, k, v)`: `[T, d_model]`, then `[T, kv_heads · d_head]` each): what a
/// prefill caches.
pub(crate) fn forward_keeping_kv(
    prepared: &PreparedModel,
    tokens: &[u32],
    hooks: &Hooks,
    rows: std::ops::Range<usize>,
    keep: &mut KeepKv<'_>,
) -> Result<(Output, Captured)> {
    let model = prepared.model();
    let c = &prepared.config;
    check_tokens(c, tokens)?;
    hooks.check(prepared, tokens.len())?;
    let mut captured: Vec<Option<Vec<f32>>> = vec![None; hooks.capture.len()];
    // Replaces then captures the activation `values` at `point`.
    let mut hook = |point: HookPoint, values: &mut [f32]| {
        if let Some((_, new)) = hooks.replace.iter().find(|(p, _)| *p == point) {
            values.copy_from_slice(new);
        }
        for (slot, _) in hooks
            .capture
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == point)
        {
            captured[slot] = Some(values.to_vec());
        }
    };
    let t_len = tokens.len();
    let d = c.d_model;
    let (n_layer, n_head, d_head) = (c.n_layer, c.n_head, c.d_head());

    // Embeddings: token row (+ learned position row).
    let mut x = vec![0.0f32; t_len * d];
    for (t, &tok) in tokens.iter().enumerate() {
        let row = &mut x[t * d..(t + 1) * d];
        row.copy_from_slice(
            &model
                .token_embedding
                .range_f32(tok as usize * d..(tok as usize + 1) * d),
        );
        if let Some(positions) = &model.position_embedding {
            add_assign(row, &positions[t * d..(t + 1) * d]);
        }
    }
    let rotary = c.rope().map(|rope| RotaryTable::new(rope, t_len));

    let mut attention = vec![0.0f32; n_layer * n_head * t_len * t_len];
    let mut head_out_norms = vec![0.0f32; n_layer * n_head * t_len];

    for (layer, block) in model.blocks.iter().enumerate() {
        hook(HookPoint::ResidPre { layer }, &mut x);
        let mut attn_out = None;
        if !prepared.attention_dropped[layer] {
            let normed = norm(&x, &block.attn_norm, c.norm, c.layer_norm_eps);
            let mut q = linear(&normed, t_len, &block.attn.q);
            let mut k = linear(&normed, t_len, prepared.key(layer));
            let v = linear(&normed, t_len, prepared.value(layer));
            if let Some(rotary) = &rotary {
                rotary.apply(&mut q, t_len, d_head);
                rotary.apply(&mut k, t_len, d_head);
            }
            keep(layer, &normed, &k, &v);
            let kv_heads = c.kv_heads();
            let q_all = MatRef::new(&q, t_len, n_head * d_head);
            let k_all = MatRef::new(&k, t_len, kv_heads * d_head);
            let v_all = MatRef::new(&v, t_len, kv_heads * d_head);

            // Every head's output (after ablation), then the routing proxy, then the hooks.
            let mut heads_z = Vec::with_capacity(n_head);
            for head in 0..n_head {
                let group = head / (n_head / kv_heads);
                let q_h = q_all.columns(head * d_head, d_head);
                let k_g = k_all.columns(group * d_head, d_head);
                let v_g = v_all.columns(group * d_head, d_head);
                let omega = prepared.random_features.as_ref().map(|all| {
                    let m = prepared.n_random_features();
                    let start = (layer * n_head + head) * m * d_head;
                    MatRef::new(&all[start..start + m * d_head], m, d_head)
                });
                // The probabilities are written straight into the output's map.
                let map_start = (layer * n_head + head) * t_len * t_len;
                let probs = &mut attention[map_start..map_start + t_len * t_len];
                attention_probs_into(c, &prepared.variant, q_h, k_g, omega, probs);
                let mut z = weighted_values(c.causal, prepared.variant.window, probs, v_g);
                if prepared.is_ablated(layer, head) {
                    ablate(
                        &mut z,
                        d_head,
                        prepared.variant.heads.as_ref().map(|h| h.mode),
                    );
                }

                for t in 0..t_len {
                    let row = &z[t * d_head..(t + 1) * d_head];
                    head_out_norms[(layer * n_head + head) * t_len + t] =
                        row.iter().map(|v| v * v).sum::<f32>().sqrt();
                }
                heads_z.push(z);
            }
            if let Some(k) = prepared.variant.route_heads {
                let norms = &head_out_norms[layer * n_head * t_len..(layer + 1) * n_head * t_len];
                for t in 0..t_len {
                    for (head, z) in heads_z.iter_mut().enumerate() {
                        if routing_rank(norms, n_head, t_len, head, t) >= k {
                            z[t * d_head..(t + 1) * d_head].fill(0.0);
                        }
                    }
                }
            }
            let mut z_all = vec![0.0f32; t_len * n_head * d_head];
            for (head, mut z) in heads_z.into_iter().enumerate() {
                hook(HookPoint::HeadOutput { layer, head }, &mut z);
                for t in 0..t_len {
                    let row = &z[t * d_head..(t + 1) * d_head];
                    z_all[t * n_head * d_head + head * d_head..][..d_head].copy_from_slice(row);
                }
            }
            attn_out = Some(linear(&z_all, t_len, &block.attn.o));
        }
        // Sequential blocks feed the MLP the stream after attention; parallel ones (GPT-NeoX) the
        // block's input.
        if !c.parallel_residual {
            if let Some(attn_out) = attn_out.take() {
                add_assign(&mut x, &attn_out);
            }
        }
        if let Some(mlp) = &block.mlp {
            let mlp_out = mlp_output(c, mlp, &x, t_len);
            add_assign(&mut x, &mlp_out);
        }
        if let Some(attn_out) = attn_out {
            add_assign(&mut x, &attn_out);
        }
    }

    hook(HookPoint::ResidPre { layer: n_layer }, &mut x);
    let rows = rows.start.min(t_len)..rows.end.min(t_len);
    let logits = if rows == (0..t_len) {
        output_logits(model, &x, t_len)
    } else {
        let n_out = c.n_out();
        let mut logits = vec![f32::NAN; t_len * n_out];
        let read = output_logits(model, &x[rows.start * d..rows.end * d], rows.len());
        logits[rows.start * n_out..rows.end * n_out].copy_from_slice(&read);
        logits
    };

    let output = Output {
        seq_len: t_len,
        n_layer,
        n_head,
        n_out: c.n_out(),
        logits,
        attention,
        head_out_norms,
        kv_bytes_per_token: prepared.kv_bytes_per_token,
    };
    // Points never reached (a head of a dropped layer) hold zeros.
    let captured = hooks
        .capture
        .iter()
        .zip(captured)
        .map(|(point, values)| {
            let values = values.unwrap_or_else(|| vec![0.0; point.len(c, t_len)]);
            (*point, values)
        })
        .collect();
    Ok((output, captured))
}

/// What an MLP adds to the stream `x` (`[t_len, d_model]`): its norm, the up projection
/// (gated or not), the activation and the down projection.
pub(crate) fn mlp_output(c: &ModelConfig, mlp: &Mlp, x: &[f32], t_len: usize) -> Vec<f32> {
    let normed = norm(x, &mlp.norm, c.norm, c.layer_norm_eps);
    let mut hidden = linear(&normed, t_len, &mlp.fc);
    match &mlp.gate {
        Some(gate) => {
            let mut gate = linear(&normed, t_len, gate);
            activate_in_place(c.activation, &mut gate);
            for (h, g) in hidden.iter_mut().zip(gate) {
                *h *= g;
            }
        }
        None => activate_in_place(c.activation, &mut hidden),
    }
    linear(&hidden, t_len, &mlp.proj)
}

/// Where head `head` ranks at position `t` for the routing proxy: how many heads of the layer
/// write more (a larger output norm), or as much with a smaller index. `norms` is the layer's
/// `[n_head, t_len]`. The GPU's `head_output.wgsl` (`route`) ranks the same way.
pub fn routing_rank(norms: &[f32], n_head: usize, t_len: usize, head: usize, t: usize) -> usize {
    let mine = norms[head * t_len + t];
    (0..n_head)
        .filter(|&h| {
            let other = norms[h * t_len + t];
            other > mine || (other == mine && h < head)
        })
        .count()
}

/// The output head on a residual stream `x` (`[t_len, d_model]`): the final norm, then the
/// unembedding (or the classifier). The forward's last step, and the logit lens's at every depth.
pub fn output_logits(model: &Model, x: &[f32], t_len: usize) -> Vec<f32> {
    let c = &model.config;
    let final_x = norm(x, &model.final_norm, c.norm, c.layer_norm_eps);
    match (&model.classifier, &model.lm_head) {
        (Some(classifier), _) => linear(&final_x, t_len, classifier),
        (None, head) => {
            let unembedding = head.as_ref().unwrap_or(&model.token_embedding);
            times_table_transposed(MatRef::new(&final_x, t_len, c.d_model), unembedding)
        }
    }
}

/// The output weights of output `index` as a `d_model` vector, what the logit of `index` reads
/// from the final norm's output: its classifier column, or its row of the LM head (the token
/// embedding when tied).
pub fn unembedding_row(model: &Model, index: usize) -> Vec<f32> {
    let d = model.config.d_model;
    match (&model.classifier, &model.lm_head) {
        (Some(classifier), _) => {
            let w = classifier.weight.f32();
            (0..d).map(|i| w[i * classifier.d_out + index]).collect()
        }
        (None, head) => head
            .as_ref()
            .unwrap_or(&model.token_embedding)
            .range_f32(index * d..(index + 1) * d),
    }
}

pub(crate) fn add_assign(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// Replaces a head's output rows `z` (`[T, d_head]`) by zeros or by their mean.
pub(crate) fn ablate(z: &mut [f32], d_head: usize, mode: Option<AblationMode>) {
    match mode.unwrap_or_default() {
        AblationMode::Zero => z.fill(0.0),
        AblationMode::Mean => {
            let rows = z.len() / d_head;
            let mut mean = vec![0.0f32; d_head];
            for row in z.chunks_exact(d_head) {
                add_assign(&mut mean, row);
            }
            mean.iter_mut().for_each(|m| *m /= rows as f32);
            for row in z.chunks_exact_mut(d_head) {
                row.copy_from_slice(&mean);
            }
        }
    }
}

/// Whether query `i` may look at key `j` (causal mask and sliding window).
pub fn is_allowed(causal: bool, window: Option<usize>, i: usize, j: usize) -> bool {
    if causal && j > i {
        return false;
    }
    match window {
        None => true,
        Some(w) if causal => i < j + w,
        Some(w) => i.abs_diff(j) < w,
    }
}

/// The keys query `i` of `t_len` may look at, [`is_allowed`] as one range: the causal mask and
/// the sliding window both leave a contiguous run.
pub fn allowed_keys(
    causal: bool,
    window: Option<usize>,
    i: usize,
    t_len: usize,
) -> std::ops::Range<usize> {
    let end = if causal { i + 1 } else { t_len };
    match window {
        None => 0..end,
        Some(w) => {
            let start = (i + 1).saturating_sub(w);
            start..end.min(i + w).max(start)
        }
    }
}

/// Query rows per block in the attention products. A causal mask (or a window) leaves part of
/// every map zero, and a block of queries multiplies only the keys one of its rows may see: at
/// long inputs a causal map's two products cost a little over half the full ones.
const QUERY_BLOCK: usize = 32;

/// The query rows of each block, and the keys any of them may see ([`allowed_keys`], whose
/// start and end only grow with the row).
fn query_blocks(
    causal: bool,
    window: Option<usize>,
    t_len: usize,
) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)> {
    (0..t_len).step_by(QUERY_BLOCK).map(move |start| {
        let end = (start + QUERY_BLOCK).min(t_len);
        let first = allowed_keys(causal, window, start, t_len);
        let last = allowed_keys(causal, window, end - 1, t_len);
        (start..end, first.start..last.end)
    })
}

/// `P · V` for a head's probabilities `P` (`T × T`, zero outside each row's allowed keys, as
/// every kernel leaves them) and its values, block by block over the keys a block may see.
pub fn weighted_values(
    causal: bool,
    window: Option<usize>,
    probs: &[f32],
    v: MatRef<'_>,
) -> Vec<f32> {
    let t_len = v.rows;
    let mut z = vec![0.0f32; t_len * v.cols];
    let p = MatRef::new(probs, t_len, t_len);
    for (queries, keys) in query_blocks(causal, window, t_len) {
        matmul_add_rows(
            p.row_block(queries.start, queries.len())
                .columns(keys.start, keys.len()),
            v.row_block(keys.start, keys.len()),
            &mut z[queries.start * v.cols..],
            v.cols,
        );
    }
    z
}

/// The keys query row `i` keeps: the allowed ones, cut to the `top_k` highest scores (ties go to
/// the smaller index).
pub fn kept_keys(scores: &[f32], i: usize, causal: bool, variant: &Variant) -> Vec<usize> {
    let mut keys: Vec<usize> = allowed_keys(causal, variant.window, i, scores.len()).collect();
    if let Some(k) = variant.top_k {
        if k < keys.len() {
            keys.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            keys.truncate(k);
            keys.sort_unstable();
        }
    }
    keys
}

/// The `T × T` attention matrix of one head: scores, mask, window, top-k, then the kernel's
/// weights normalised over the kept keys. `omega` holds the random features (`m × d_head`) when
/// the kernel is random-feature attention.
pub fn attention_probs(
    config: &ModelConfig,
    variant: &Variant,
    q: MatRef<'_>,
    k: MatRef<'_>,
    omega: Option<MatRef<'_>>,
) -> Vec<f32> {
    let mut probs = vec![0.0; q.rows * q.rows];
    attention_probs_into(config, variant, q, k, omega, &mut probs);
    probs
}

/// [`attention_probs`] written into `probs` (`T × T`, row-major).
pub fn attention_probs_into(
    config: &ModelConfig,
    variant: &Variant,
    q: MatRef<'_>,
    k: MatRef<'_>,
    omega: Option<MatRef<'_>>,
    probs: &mut [f32],
) {
    let t_len = q.rows;
    let d_head = q.cols;
    assert_eq!(
        probs.len(),
        t_len * t_len,
        "probabilities have the wrong size"
    );
    let beta = variant.beta();
    let scale = beta / (d_head as f32).sqrt();
    let kernel = variant.kernel();
    if variant.top_k.is_none() && kernel.is_softmax() {
        // Plain softmax, the common case, in place: the scores go straight into `probs`, and
        // each row's kept keys are one run (no list, no branch per key).
        probs.fill(0.0);
        for (queries, keys) in query_blocks(config.causal, variant.window, t_len) {
            matmul_add_rows(
                q.row_block(queries.start, queries.len()),
                k.row_block(keys.start, keys.len()).t(),
                &mut probs[queries.start * t_len + keys.start..],
                t_len,
            );
        }
        for (i, row) in probs.chunks_exact_mut(t_len).enumerate() {
            let keys = allowed_keys(config.causal, variant.window, i, t_len);
            row[..keys.start].fill(0.0);
            row[keys.end..].fill(0.0);
            let kept = &mut row[keys];
            kept.iter_mut().for_each(|s| *s *= scale);
            softmax_in_place(kept);
        }
        return;
    }
    let mut scores = matmul(q, k.t());
    scores.iter_mut().for_each(|s| *s *= scale);

    // Unnormalised kernel weights for every (i, j); only kept entries are used below.
    let weights = match &kernel {
        Kernel::Named(KernelName::Softmax) => None,
        Kernel::Named(KernelName::Linear) => {
            let phi_q = map_rows(q, |v| elu_plus_one(v * scale));
            let phi_k = map_rows(k, elu_plus_one);
            Some(matmul(
                MatRef::new(&phi_q, t_len, d_head),
                MatRef::new(&phi_k, t_len, d_head).t(),
            ))
        }
        Kernel::RandomFeatures { .. } => {
            let omega = omega.expect("random features are drawn by prepare");
            Some(random_feature_weights(q, k, omega, scale.sqrt()))
        }
    };

    probs.fill(0.0);
    for i in 0..t_len {
        let row_scores = &scores[i * t_len..(i + 1) * t_len];
        let kept = kept_keys(row_scores, i, config.causal, variant);
        let row = &mut probs[i * t_len..(i + 1) * t_len];
        match &weights {
            None => {
                let max = kept
                    .iter()
                    .map(|&j| row_scores[j])
                    .fold(f32::NEG_INFINITY, f32::max);
                for &j in &kept {
                    row[j] = (row_scores[j] - max).exp();
                }
            }
            Some(w) => {
                for &j in &kept {
                    row[j] = w[i * t_len + j];
                }
            }
        }
        let sum: f32 = kept.iter().map(|&j| row[j]).sum();
        if sum > 0.0 && sum.is_finite() {
            kept.iter().for_each(|&j| row[j] /= sum);
        } else {
            // Only random features can underflow to an all-zero row; spread evenly rather than
            // divide by zero.
            let uniform = 1.0 / kept.len().max(1) as f32;
            for &j in &kept {
                row[j] = uniform;
            }
        }
    }
}

/// A dense copy of `m` with `f` applied to every element.
pub(crate) fn map_rows(m: MatRef<'_>, f: impl Fn(f32) -> f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(m.rows * m.cols);
    for r in 0..m.rows {
        for c in 0..m.cols {
            out.push(f(m.data[r * m.row_stride + c * m.col_stride]));
        }
    }
    out
}

/// FAVOR+ positive random features: `w_ij = φ(c·q_i) · φ(c·k_j)` with
/// `φ(x)_r = exp(ω_r·x − |x|²/2)`; `c = sqrt(β / sqrt(d))` so that `c²·q·k = s_ij`.
/// Per-query and global key offsets keep `exp` finite; they cancel in the normalisation, as
/// does the `1/sqrt(m)` factor, which is therefore left out.
fn random_feature_weights(q: MatRef<'_>, k: MatRef<'_>, omega: MatRef<'_>, c: f32) -> Vec<f32> {
    let t_len = q.rows;
    let m = omega.rows;
    let q_scaled = map_rows(q, |v| v * c);
    let k_scaled = map_rows(k, |v| v * c);
    let features = |x: &[f32]| -> Vec<f32> {
        // Rows of x projected on every ω, minus half the squared norm of the row.
        let mut proj = matmul(MatRef::new(x, t_len, q.cols), omega.t());
        for (row, x_row) in proj.chunks_exact_mut(m).zip(x.chunks_exact(q.cols)) {
            let half_norm = 0.5 * x_row.iter().map(|v| v * v).sum::<f32>();
            row.iter_mut().for_each(|p| *p -= half_norm);
        }
        proj
    };
    let mut phi_q = features(&q_scaled);
    for row in phi_q.chunks_exact_mut(m) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|p| *p = (*p - max).exp());
    }
    let mut phi_k = features(&k_scaled);
    let max = phi_k.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    phi_k.iter_mut().for_each(|p| *p = (*p - max).exp());
    matmul(
        MatRef::new(&phi_q, t_len, m),
        MatRef::new(&phi_k, t_len, m).t(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_keys_are_the_keys_is_allowed_allows() {
        let t_len = 9;
        for causal in [true, false] {
            for window in [None, Some(0), Some(1), Some(3), Some(20)] {
                for i in 0..t_len {
                    let want: Vec<usize> = (0..t_len)
                        .filter(|&j| is_allowed(causal, window, i, j))
                        .collect();
                    let got: Vec<usize> = allowed_keys(causal, window, i, t_len).collect();
                    assert_eq!(got, want, "causal {causal}, window {window:?}, query {i}");
                }
            }
        }
    }

    /// Values in [-1, 1) from a fixed seed, so a failure repeats.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn blockwise_attention_matches_the_full_products_over_the_allowed_keys() {
        // Lengths around the query block, so the first, middle and last blocks are all cut.
        let d_head = 5;
        for t_len in [
            1,
            QUERY_BLOCK - 1,
            QUERY_BLOCK,
            QUERY_BLOCK + 1,
            3 * QUERY_BLOCK + 7,
        ] {
            let q = values(t_len * d_head, 1);
            let k = values(t_len * d_head, 2);
            let v = values(t_len * d_head, 3);
            for causal in [true, false] {
                for window in [None, Some(1), Some(3), Some(40)] {
                    let config = ModelConfig {
                        causal,
                        ..ModelConfig::tiny(8)
                    };
                    let variant = Variant {
                        window,
                        ..Variant::default()
                    };
                    let (q, k, v) = (
                        MatRef::new(&q, t_len, d_head),
                        MatRef::new(&k, t_len, d_head),
                        MatRef::new(&v, t_len, d_head),
                    );
                    let mut probs = vec![f32::NAN; t_len * t_len];
                    attention_probs_into(&config, &variant, q, k, None, &mut probs);
                    let z = weighted_values(causal, window, &probs, v);

                    // The plain definition: every score, softmax over the allowed keys.
                    let scores = matmul(q, k.t());
                    let scale = 1.0 / (d_head as f32).sqrt();
                    for i in 0..t_len {
                        let row = &scores[i * t_len..(i + 1) * t_len];
                        let allowed: Vec<usize> = (0..t_len)
                            .filter(|&j| is_allowed(causal, window, i, j))
                            .collect();
                        let max = allowed
                            .iter()
                            .map(|&j| row[j] * scale)
                            .fold(f32::MIN, f32::max);
                        let sum: f32 = allowed.iter().map(|&j| (row[j] * scale - max).exp()).sum();
                        let mut want_z = vec![0.0f32; d_head];
                        for j in 0..t_len {
                            let p = if allowed.contains(&j) {
                                (row[j] * scale - max).exp() / sum
                            } else {
                                0.0
                            };
                            let got = probs[i * t_len + j];
                            assert!(
                                (got - p).abs() < 1e-6,
                                "T {t_len}, causal {causal}, window {window:?}: p[{i}][{j}] {got} vs {p}"
                            );
                            for (c, w) in want_z.iter_mut().enumerate() {
                                *w += p * v.data[j * d_head + c];
                            }
                        }
                        for (c, want) in want_z.iter().enumerate() {
                            let got = z[i * d_head + c];
                            assert!(
                                (got - want).abs() < 1e-5,
                                "T {t_len}, causal {causal}, window {window:?}: z[{i}][{c}] {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
