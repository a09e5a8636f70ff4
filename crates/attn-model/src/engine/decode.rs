//! Incremental decoding on the CPU engine: a prompt runs once ([`Decoder::prefill`]), then each
//! new token runs one position against what every layer cached ([`Decoder::step`]) — the way
//! language models generate. The cache is shaped by the variant ([`LayerCache`]):
//!
//! - keys and values of the key/value heads that remain (pooling with `kv_groups` caches `G`
//!   heads, not the model's own count);
//! - a sliding window keeps a ring of `W` positions per layer;
//! - a latent rank (`kv_rank`) caches the rank-`r` latent per token, and per-head PCA (`kv_pca`)
//!   the `c` coordinates of each head's key and value; the keys and values are rebuilt from them
//!   (then rotated, for a rotary model) at every step;
//! - a dropped attention layer caches nothing;
//! - linear (elu + 1) attention keeps its recurrent state — per key/value head the sum of
//!   `φ(k) vᵀ` and of `φ(k)` — whatever the length: the transformer read as an RNN;
//! - top-k, β and random features keep the full cache (their weights need every key).
//!
//! Each step computes what [`crate::forward()`] computes at the last position of the same prefix
//! (the tests hold it to that). What does not decode: classifiers and bidirectional models (no
//! next token), and mean ablation (a head's output averaged over the whole input, later tokens
//! included, changes every earlier position as the text grows).

use std::collections::VecDeque;

use crate::config::Rope;
use crate::engine::forward::{
    ablate, add_assign, check_tokens, forward_keeping_kv, mlp_output, output_logits, routing_rank,
};
use crate::engine::hooks::Hooks;
use crate::engine::output::Output;
use crate::engine::prepared::{KvCodec, KvProjection, PreparedModel};
use crate::error::{ModelError, Result};
use crate::fastmath::softmax_in_place;
use crate::linalg::{elu_plus_one, linear, matmul, norm, MatRef};
use crate::rope::RotaryTable;
use crate::variant::{AblationMode, Kernel, KernelName, Variant};

/// What one attention layer keeps between decoding steps.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerCache {
    /// The layer's attention is dropped: nothing.
    Dropped,
    /// The rotated keys and the values of the positions a new token may still see, oldest
    /// first, each `kv_heads · d_head` wide: every position, or the last `window` of them.
    Keys {
        keys: VecDeque<Vec<f32>>,
        values: VecDeque<Vec<f32>>,
        /// The sliding window, when the variant has one: at most this many positions are kept.
        window: Option<usize>,
    },
    /// The codes of the positions a new token may still see, oldest first, under the layer's
    /// [`KvCodec`](crate::prepare::KvCodec): a latent, or PCA coordinates.
    Codes {
        codes: VecDeque<Vec<f32>>,
        window: Option<usize>,
    },
    /// Linear attention's recurrent state, per key/value head `g`: `Σ_j φ(k_j) v_jᵀ`
    /// (`[kv_heads, d_head, d_head]`) and `Σ_j φ(k_j)` (`[kv_heads, d_head]`).
    LinearState { kv: Vec<f32>, k_sum: Vec<f32> },
}

impl LayerCache {
    /// The bytes of keys, values or state this layer holds now (f32).
    pub fn bytes(&self) -> usize {
        4 * match self {
            LayerCache::Dropped => 0,
            LayerCache::Keys { keys, values, .. } => {
                keys.iter().chain(values).map(Vec::len).sum::<usize>()
            }
            LayerCache::Codes { codes, .. } => codes.iter().map(Vec::len).sum::<usize>(),
            LayerCache::LinearState { kv, k_sum } => kv.len() + k_sum.len(),
        }
    }

    /// Adds one position's code.
    fn push_code(&mut self, code: Vec<f32>) {
        if let LayerCache::Codes { codes, window } = self {
            if window.is_some_and(|w| codes.len() == w) {
                codes.pop_front();
            }
            codes.push_back(code);
        }
    }

    /// Adds the keys and values of one position (a layer of codes takes [`LayerCache::push_code`]).
    fn push(&mut self, k: &[f32], v: &[f32], d_head: usize) {
        match self {
            LayerCache::Dropped | LayerCache::Codes { .. } => {}
            LayerCache::Keys {
                keys,
                values,
                window,
            } => {
                if window.is_some_and(|w| keys.len() == w) {
                    keys.pop_front();
                    values.pop_front();
                }
                keys.push_back(k.to_vec());
                values.push_back(v.to_vec());
            }
            LayerCache::LinearState { kv, k_sum } => {
                let square = d_head * d_head;
                for (g, (k_g, v_g)) in k
                    .chunks_exact(d_head)
                    .zip(v.chunks_exact(d_head))
                    .enumerate()
                {
                    let phi_k: Vec<f32> = k_g.iter().map(|&x| elu_plus_one(x)).collect();
                    add_assign(&mut k_sum[g * d_head..(g + 1) * d_head], &phi_k);
                    let state = &mut kv[g * square..(g + 1) * square];
                    for (row, &p) in state.chunks_exact_mut(d_head).zip(&phi_k) {
                        row.iter_mut().zip(v_g).for_each(|(s, &x)| *s += p * x);
                    }
                }
            }
        }
    }
}

/// The KV cache of a whole model: a [`LayerCache`] per layer and the positions seen.
#[derive(Clone, Debug, PartialEq)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
    /// Positions decoded so far: the next token's position.
    pub len: usize,
}

impl KvCache {
    /// An empty cache shaped by `prepared`'s variant.
    pub fn new(prepared: &PreparedModel) -> KvCache {
        let c = &prepared.config;
        let d_head = c.d_head();
        let recurrent = recurrent_linear(&prepared.variant);
        let layers = prepared
            .attention_dropped
            .iter()
            .enumerate()
            .map(|(layer, &dropped)| {
                if dropped {
                    LayerCache::Dropped
                } else if recurrent {
                    LayerCache::LinearState {
                        kv: vec![0.0; c.kv_heads() * d_head * d_head],
                        k_sum: vec![0.0; c.kv_heads() * d_head],
                    }
                } else if prepared.kv_codec(layer).is_some() {
                    LayerCache::Codes {
                        codes: VecDeque::new(),
                        window: prepared.variant.window,
                    }
                } else {
                    LayerCache::Keys {
                        keys: VecDeque::new(),
                        values: VecDeque::new(),
                        window: prepared.variant.window,
                    }
                }
            })
            .collect();
        KvCache { layers, len: 0 }
    }

    /// The bytes the cache holds now: keys, values or recurrent state, f32 — not what was
    /// allocated ahead.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerCache::bytes).sum()
    }
}

/// Whether `variant` decodes linear attention from its recurrent state (no window or top-k,
/// which need the keys themselves).
fn recurrent_linear(variant: &Variant) -> bool {
    variant.kernel() == Kernel::Named(KernelName::Linear)
        && variant.window.is_none()
        && variant.top_k.is_none()
}

/// The bytes a cache holds after `tokens` positions under `prepared`'s variant, from the
/// variant's shape alone (the KV meter's formula): [`KvCache::bytes`] measures the same.
pub fn kv_cache_bytes(prepared: &PreparedModel, tokens: usize) -> usize {
    let c = &prepared.config;
    let (kv_heads, d_head) = (c.kv_heads(), c.d_head());
    let held = prepared.variant.window.map_or(tokens, |w| tokens.min(w));
    let per_layer = |layer: usize| match prepared.kv_codec(layer) {
        _ if recurrent_linear(&prepared.variant) => kv_heads * (d_head * d_head + d_head),
        Some(KvCodec::Latent { rank, .. }) => rank * held,
        Some(KvCodec::Pca { components, .. }) => 2 * kv_heads * components * held,
        None => 2 * kv_heads * d_head * held,
    };
    let layers = (0..c.n_layer).filter(|&l| !prepared.attention_dropped[l]);
    4 * layers.map(per_layer).sum::<usize>()
}

/// One decoded position: its next-token logits and the attention of its query.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput {
    /// The position decoded (tokens before it: `position`).
    pub position: usize,
    /// `[n_out]`: the distribution of the token after it.
    pub logits: Vec<f32>,
    /// `[n_layer, n_head, position + 1]`: each head's attention from this position over every
    /// position so far, zero outside what it may see (as in a forward's map). NaN where the
    /// cache holds no keys to weigh (linear attention's recurrent state).
    pub attention: Vec<f32>,
}

impl StepOutput {
    /// The attention row of `(layer, head)`.
    pub fn attention_row(&self, n_head: usize, layer: usize, head: usize) -> &[f32] {
        let len = self.position + 1;
        &self.attention[(layer * n_head + head) * len..][..len]
    }
}

/// Decodes a language model one token at a time over a [`KvCache`].
#[derive(Clone, Debug)]
pub struct Decoder {
    prepared: PreparedModel,
    cache: KvCache,
}

impl Decoder {
    /// A decoder for `prepared`, with an empty cache. Refuses what cannot decode (see the
    /// module documentation).
    pub fn new(prepared: &PreparedModel) -> Result<Decoder> {
        check_decodable(prepared)?;
        Ok(Decoder {
            prepared: prepared.clone(),
            cache: KvCache::new(prepared),
        })
    }

    /// The cache as it stands.
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// The model and variant decoded.
    pub fn prepared(&self) -> &PreparedModel {
        &self.prepared
    }

    /// Empties the cache and runs `tokens` as one forward pass, caching every layer's keys and
    /// values: the forward's own output.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<Output> {
        let mut cache = KvCache::new(&self.prepared);
        let kv_width = self.prepared.config.kv_heads() * self.prepared.config.d_head();
        let d_head = self.prepared.config.d_head();
        let prepared = &self.prepared;
        let d = prepared.config.d_model;
        let mut keep = |layer: usize, x: &[f32], k: &[f32], v: &[f32]| {
            let cache = &mut cache.layers[layer];
            match prepared.kv_projection(layer) {
                Some(kv) if matches!(cache, LayerCache::Codes { .. }) => {
                    // The codes come from the keys before their rotation: the projection again.
                    let k = linear(x, x.len() / d, &kv.k);
                    let rows = x.chunks_exact(d).zip(k.chunks_exact(kv_width));
                    for ((x, k), v) in rows.zip(v.chunks_exact(kv_width)) {
                        cache.push_code(kv.encode(x, k, v).expect("a layer of codes has a codec"));
                    }
                }
                _ => {
                    for (k, v) in k.chunks_exact(kv_width).zip(v.chunks_exact(kv_width)) {
                        cache.push(k, v, d_head);
                    }
                }
            }
        };
        let (output, _) =
            forward_keeping_kv(prepared, tokens, &Hooks::none(), 0..tokens.len(), &mut keep)?;
        cache.len = tokens.len();
        self.cache = cache;
        Ok(output)
    }

    /// Runs `token` at the next position against the cache, and caches its keys and values.
    pub fn step(&mut self, token: u32) -> Result<StepOutput> {
        let prepared = &self.prepared;
        let c = &prepared.config;
        let position = self.cache.len;
        if position == 0 {
            return Err(ModelError::Input(
                "decoding starts with a prefill of the prompt".into(),
            ));
        }
        if position >= c.n_ctx {
            return Err(ModelError::Input(format!(
                "the text fills the model's context ({} tokens): no position is left for another \
                 token",
                c.n_ctx
            )));
        }
        check_tokens(c, &[token])?;
        let model = prepared.model();
        let d = c.d_model;
        let (n_layer, n_head, d_head) = (c.n_layer, c.n_head, c.d_head());
        let kv_heads = c.kv_heads();
        let group = n_head / kv_heads;
        let rotary = c
            .rope()
            .map(|rope| RotaryTable::for_positions(rope, position..position + 1));

        let tok = token as usize;
        let mut x = model.token_embedding.range_f32(tok * d..(tok + 1) * d);
        if let Some(positions) = &model.position_embedding {
            add_assign(&mut x, &positions[position * d..(position + 1) * d]);
        }
        let len = position + 1;
        let mut attention = vec![0.0f32; n_layer * n_head * len];
        for (layer, block) in model.blocks.iter().enumerate() {
            let mut attn_out = None;
            if !prepared.attention_dropped[layer] {
                let normed = norm(&x, &block.attn_norm, c.norm, c.layer_norm_eps);
                let mut q = linear(&normed, 1, &block.attn.q);
                let mut k = linear(&normed, 1, prepared.key(layer));
                let v = linear(&normed, 1, prepared.value(layer));
                let code = prepared
                    .kv_projection(layer)
                    .and_then(|kv| kv.encode(&normed, &k, &v));
                if let Some(rotary) = &rotary {
                    rotary.apply(&mut q, 1, d_head);
                    rotary.apply(&mut k, 1, d_head);
                }
                let cache = &mut self.cache.layers[layer];
                match code {
                    Some(code) if matches!(cache, LayerCache::Codes { .. }) => {
                        cache.push_code(code)
                    }
                    _ => cache.push(&k, &v, d_head),
                }
                // A layer of codes attends over the keys and values rebuilt from them.
                let rebuilt = match &*cache {
                    LayerCache::Codes { codes, .. } => {
                        let kv = prepared.kv_projection(layer).expect("codes have a codec");
                        Some(rebuild(kv, codes, position, c.rope(), d_head))
                    }
                    _ => None,
                };
                let rows = &mut attention[layer * n_head * len..(layer + 1) * n_head * len];
                let mut heads_z = Vec::with_capacity(n_head);
                for (head, row) in rows.chunks_exact_mut(len).enumerate() {
                    let g = head / group;
                    let q_h = &q[head * d_head..(head + 1) * d_head];
                    let mut z = match &*cache {
                        LayerCache::LinearState { kv, k_sum } => {
                            row.fill(f32::NAN);
                            linear_state_output(prepared, q_h, g, kv, k_sum)
                        }
                        LayerCache::Keys { .. } | LayerCache::Codes { .. } => {
                            let (keys, values) = match (&*cache, &rebuilt) {
                                (LayerCache::Keys { keys, values, .. }, _) => (keys, values),
                                (_, Some((keys, values))) => (keys, values),
                                _ => unreachable!("codes are rebuilt above"),
                            };
                            let omega = prepared.random_features.as_ref().map(|all| {
                                let m = prepared.n_random_features();
                                let start = (layer * n_head + head) * m * d_head;
                                MatRef::new(&all[start..start + m * d_head], m, d_head)
                            });
                            // The row covers every position; the cache holds the last ones.
                            let first = position + 1 - keys.len();
                            let head = HeadCache {
                                keys,
                                values,
                                group: g,
                                d_head,
                            };
                            head.attend(&prepared.variant, q_h, omega, &mut row[first..])
                        }
                        LayerCache::Dropped => unreachable!("a dropped layer is skipped"),
                    };
                    if prepared.is_ablated(layer, head) {
                        ablate(&mut z, d_head, Some(AblationMode::Zero));
                    }
                    heads_z.push(z);
                }
                if let Some(k) = prepared.variant.route_heads {
                    let norms: Vec<f32> = heads_z
                        .iter()
                        .map(|z| z.iter().map(|v| v * v).sum::<f32>().sqrt())
                        .collect();
                    for (head, z) in heads_z.iter_mut().enumerate() {
                        if routing_rank(&norms, n_head, 1, head, 0) >= k {
                            z.fill(0.0);
                        }
                    }
                }
                attn_out = Some(linear(&heads_z.concat(), 1, &block.attn.o));
            }
            if !c.parallel_residual {
                if let Some(attn_out) = attn_out.take() {
                    add_assign(&mut x, &attn_out);
                }
            }
            if let Some(mlp) = &block.mlp {
                let mlp_out = mlp_output(c, mlp, &x, 1);
                add_assign(&mut x, &mlp_out);
            }
            if let Some(attn_out) = attn_out {
                add_assign(&mut x, &attn_out);
            }
        }
        self.cache.len = len;
        Ok(StepOutput {
            position,
            logits: output_logits(model, &x, 1),
            attention,
        })
    }
}

/// One head's view of a layer's cached keys and values: those of its key/value head `group`.
struct HeadCache<'a> {
    keys: &'a VecDeque<Vec<f32>>,
    values: &'a VecDeque<Vec<f32>>,
    group: usize,
    d_head: usize,
}

impl HeadCache<'_> {
    /// The attention of query `q` over the cached positions (written into `row`, one weight a
    /// position) and the weighted sum of their values: the head's output.
    fn attend(
        &self,
        variant: &Variant,
        q: &[f32],
        omega: Option<MatRef<'_>>,
        row: &mut [f32],
    ) -> Vec<f32> {
        let (g, d_head) = (self.group, self.d_head);
        let keys: Vec<f32> = self
            .keys
            .iter()
            .flat_map(|k| &k[g * d_head..(g + 1) * d_head])
            .copied()
            .collect();
        attention_row_into(
            variant,
            q,
            MatRef::new(&keys, self.keys.len(), d_head),
            omega,
            row,
        );
        let mut z = vec![0.0f32; d_head];
        for (p, v) in row.iter().zip(self.values) {
            let v_g = &v[g * d_head..(g + 1) * d_head];
            z.iter_mut().zip(v_g).for_each(|(z, &v)| *z += p * v);
        }
        z
    }
}

/// The keys (rotated at their positions) and values that `codes` stand for, oldest first, the
/// newest at `position`.
fn rebuild(
    kv: &KvProjection,
    codes: &VecDeque<Vec<f32>>,
    position: usize,
    rope: Option<&Rope>,
    d_head: usize,
) -> (VecDeque<Vec<f32>>, VecDeque<Vec<f32>>) {
    let first = position + 1 - codes.len();
    let rotary = rope.map(|rope| RotaryTable::for_positions(rope, first..position + 1));
    let (mut keys, mut values) = (VecDeque::new(), VecDeque::new());
    for (i, code) in codes.iter().enumerate() {
        let (mut k, v) = kv.decode(code).expect("codes have a codec");
        if let Some(rotary) = &rotary {
            rotary.apply_at(&mut k, i, d_head);
        }
        keys.push_back(k);
        values.push_back(v);
    }
    (keys, values)
}

/// Refuses what cannot be decoded incrementally, with why.
pub fn check_decodable(prepared: &PreparedModel) -> Result<()> {
    let c = &prepared.config;
    if c.n_classes.is_some() || !c.causal {
        return Err(ModelError::Input(
            "decoding needs a causal language model (a classifier or a bidirectional model has \
             no next token)"
                .into(),
        ));
    }
    let mean_ablation = prepared
        .variant
        .heads
        .as_ref()
        .is_some_and(|h| h.mode == AblationMode::Mean && !h.ablate.is_empty());
    if mean_ablation {
        return Err(ModelError::Variant(
            "mean ablation averages a head over the whole input, later tokens included, so it \
             cannot be decoded from a cache (the text is recomputed instead)"
                .into(),
        ));
    }
    Ok(())
}

/// Linear attention's output for query head `q_h` of key/value head `g` from the recurrent
/// state: `φ(q̃) · S_g / φ(q̃) · Σφ(k)`, with `q̃` the scaled query (as the quadratic form scales
/// it).
fn linear_state_output(
    prepared: &PreparedModel,
    q_h: &[f32],
    g: usize,
    kv: &[f32],
    k_sum: &[f32],
) -> Vec<f32> {
    let d_head = q_h.len();
    let scale = prepared.variant.beta() / (d_head as f32).sqrt();
    let phi_q: Vec<f32> = q_h.iter().map(|&v| elu_plus_one(v * scale)).collect();
    let state = &kv[g * d_head * d_head..(g + 1) * d_head * d_head];
    let k_sum = &k_sum[g * d_head..(g + 1) * d_head];
    // Summed in f64: the quotient of two long sums is where f32 would lose the most.
    let denominator: f64 = phi_q
        .iter()
        .zip(k_sum)
        .map(|(&p, &s)| p as f64 * s as f64)
        .sum();
    let mut z = vec![0.0f64; d_head];
    for (row, &p) in state.chunks_exact(d_head).zip(&phi_q) {
        z.iter_mut()
            .zip(row)
            .for_each(|(z, &s)| *z += p as f64 * s as f64);
    }
    z.iter().map(|z| (z / denominator) as f32).collect()
}

/// The attention weights of one query (the last position) over `keys` (`[n, d_head]`, the
/// positions it may see, oldest first) into `row` (`n` long): what row `T − 1` of
/// [`crate::forward::attention_probs_into`] holds over those keys — the scaled scores, top-k,
/// then the kernel's weights normalised over the kept keys.
fn attention_row_into(
    variant: &Variant,
    q: &[f32],
    keys: MatRef<'_>,
    omega: Option<MatRef<'_>>,
    row: &mut [f32],
) {
    let n = keys.rows;
    let d_head = q.len();
    let scale = variant.beta() / (d_head as f32).sqrt();
    let kernel = variant.kernel();
    let q_row = MatRef::new(q, 1, d_head);
    let mut scores = matmul(q_row, keys.t());
    if variant.top_k.is_none() && kernel.is_softmax() {
        scores.iter_mut().for_each(|s| *s *= scale);
        softmax_in_place(&mut scores);
        row.copy_from_slice(&scores);
        return;
    }
    scores.iter_mut().for_each(|s| *s *= scale);
    let mut kept: Vec<usize> = (0..n).collect();
    if let Some(k) = variant.top_k {
        if k < n {
            kept.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            kept.truncate(k);
            kept.sort_unstable();
        }
    }
    row.fill(0.0);
    match &kernel {
        Kernel::Named(KernelName::Softmax) => {
            let max = kept
                .iter()
                .map(|&j| scores[j])
                .fold(f32::NEG_INFINITY, f32::max);
            for &j in &kept {
                row[j] = (scores[j] - max).exp();
            }
        }
        Kernel::Named(KernelName::Linear) => {
            let phi_q: Vec<f32> = q.iter().map(|&v| elu_plus_one(v * scale)).collect();
            for &j in &kept {
                let k_j = &keys.data[j * d_head..(j + 1) * d_head];
                row[j] = phi_q
                    .iter()
                    .zip(k_j)
                    .map(|(p, &k)| p * elu_plus_one(k))
                    .sum();
            }
        }
        Kernel::RandomFeatures { .. } => {
            let omega = omega.expect("random features are drawn by prepare");
            let weights = random_feature_row(q, keys, omega, scale.sqrt());
            for &j in &kept {
                row[j] = weights[j];
            }
        }
    }
    let sum: f32 = kept.iter().map(|&j| row[j]).sum();
    if sum > 0.0 && sum.is_finite() {
        kept.iter().for_each(|&j| row[j] /= sum);
    } else {
        let uniform = 1.0 / kept.len().max(1) as f32;
        for &j in &kept {
            row[j] = uniform;
        }
    }
}

/// FAVOR+'s weights of one query over `keys`, as `forward`'s `random_feature_weights` computes
/// a row: `φ(c·q) · φ(c·k_j)`, the query's features offset by their maximum and the keys' by
/// the maximum over the keys (both cancel in the normalisation).
fn random_feature_row(q: &[f32], keys: MatRef<'_>, omega: MatRef<'_>, c: f32) -> Vec<f32> {
    let (n, d_head, m) = (keys.rows, q.len(), omega.rows);
    let features = |x: &[f32], rows: usize| -> Vec<f32> {
        let mut proj = matmul(MatRef::new(x, rows, d_head), omega.t());
        for (row, x_row) in proj.chunks_exact_mut(m).zip(x.chunks_exact(d_head)) {
            let half_norm = 0.5 * x_row.iter().map(|v| v * v).sum::<f32>();
            row.iter_mut().for_each(|p| *p -= half_norm);
        }
        proj
    };
    let q_scaled: Vec<f32> = q.iter().map(|v| v * c).collect();
    let mut phi_q = features(&q_scaled, 1);
    let max = phi_q.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    phi_q.iter_mut().for_each(|p| *p = (*p - max).exp());
    let k_scaled: Vec<f32> = keys.data[..n * d_head].iter().map(|v| v * c).collect();
    let mut phi_k = features(&k_scaled, n);
    let max = phi_k.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    phi_k.iter_mut().for_each(|p| *p = (*p - max).exp());
    phi_k
        .chunks_exact(m)
        .map(|k| k.iter().zip(&phi_q).map(|(a, b)| a * b).sum())
        .collect()
}
