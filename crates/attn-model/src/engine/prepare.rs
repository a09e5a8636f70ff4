//! Weight-side variants as an overlay on the unmodified model: key/value head pooling
//! (`kv_groups`), low-rank K/V (`kv_rank`) and random features are computed once per weight-side
//! setting and shared; everything else a variant sets (window, top-k, β, kernel choice, ablation,
//! dropped layers) is a runtime parameter of the forward pass and costs no copy. Both engines
//! start from a [`PreparedModel`] (`engine/prepared.rs`). Per-head PCA is fitted here, by
//! running the unmodified model's forward on calibration text (`engine/inputs.rs`).

use std::sync::Arc;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::config::ModelConfig;
use crate::engine::forward::forward_hooked;
use crate::engine::hooks::{HookPoint, Hooks};
use crate::error::{ModelError, Result};
use crate::model::{Linear, Model};
use crate::variant::Variant;

// The overlay's types and the calibration text, where they were defined before
// `engine/prepared.rs` and `engine/inputs.rs`.
pub use crate::engine::inputs::calibration_inputs;
pub use crate::engine::prepared::{KvCodec, KvProjection, PreparedModel, WeightSettings};

impl PreparedModel {
    /// `variant` applied to the same model, reusing this preparation's weight-side work when the
    /// weight-side settings are the same (then only runtime parameters change: no copy, no SVD).
    /// On error nothing changes.
    pub fn with_variant(&self, variant: &Variant) -> Result<PreparedModel> {
        variant.validate(&self.base.config)?;
        let variant = variant.normalised();
        let settings = WeightSettings::of(&variant);
        let previous = self.weight_settings();
        let kv = if (settings.kv_groups, settings.kv_rank, settings.kv_pca)
            == (previous.kv_groups, previous.kv_rank, previous.kv_pca)
        {
            self.kv.clone()
        } else {
            kv_overlay(&self.base, &settings)?
        };
        let random_features = if settings.random_features == previous.random_features {
            self.random_features.clone()
        } else {
            draw_random_features(&self.base.config, &settings)
        };
        Ok(assemble(self.base.clone(), variant, kv, random_features))
    }
}

/// Applies `variant` to `model`: validates it, pools key/value heads, truncates `[W_k | W_v]`
/// to the requested rank, draws random features, and counts the KV-cache bytes. The model is
/// shared, not copied.
pub fn prepare(model: &Arc<Model>, variant: &Variant) -> Result<PreparedModel> {
    model.check_shapes()?;
    variant.validate(&model.config)?;
    let variant = variant.normalised();
    let settings = WeightSettings::of(&variant);
    let kv = kv_overlay(model, &settings)?;
    let random_features = draw_random_features(&model.config, &settings);
    Ok(assemble(model.clone(), variant, kv, random_features))
}

/// The pooled / truncated key and value projections of every layer, when the settings ask for
/// any.
fn kv_overlay(
    model: &Arc<Model>,
    settings: &WeightSettings,
) -> Result<Option<Arc<Vec<KvProjection>>>> {
    if !settings.changes_kv() {
        return Ok(None);
    }
    let c = &model.config;
    let d_head = c.d_head();
    let mut layers = Vec::with_capacity(c.n_layer);
    for block in &model.blocks {
        let (mut k, mut v) = match settings.kv_groups {
            Some(groups) => {
                let per_group = c.kv_heads() / groups;
                (
                    pool_heads(&block.attn.k, d_head, per_group),
                    pool_heads(&block.attn.v, d_head, per_group),
                )
            }
            None => (block.attn.k.clone(), block.attn.v.clone()),
        };
        let codec = match settings.kv_rank {
            Some(rank) => Some(truncate_joint_kv(&mut k, &mut v, rank)?),
            None => None,
        };
        layers.push(KvProjection { k, v, codec });
    }
    if let Some(components) = settings.kv_pca {
        let calibration = calibration_inputs(model);
        project_on_principal_components(model, &mut layers, &calibration, components)?;
    }
    Ok(Some(Arc::new(layers)))
}

/// Per-head PCA of keys and values (MatryoshkaKV-style, fitted post hoc): runs the unmodified
/// model on `calibration`, computes every layer's keys and values from its attention input with
/// the projections in `layers` (already pooled, if pooling), and for each key/value head keeps
/// the `components` principal directions of its centred samples (`U`, `d_head × r`, from an SVD
/// in f64). With `P = U Uᵀ` and the samples' mean `μ`, `k ↦ μ + (k − μ) P` becomes
/// `W ← W P`, `b ← b P + μ (I − P)`: the cache holds the `r` coordinates `(k − μ) U` per head,
/// and the basis rebuilds `k` from them. Keys are fitted before the rotary embedding.
pub fn project_on_principal_components(
    model: &Arc<Model>,
    layers: &mut [KvProjection],
    calibration: &[Vec<u32>],
    components: usize,
) -> Result<()> {
    let c = &model.config;
    let base = prepare(model, &Variant::default())?;
    let hooks = Hooks {
        capture: (0..c.n_layer)
            .map(|layer| HookPoint::ResidPre { layer })
            .collect(),
        replace: Vec::new(),
    };
    // Every layer's attention input, all calibration positions stacked.
    let mut inputs: Vec<Vec<f32>> = vec![Vec::new(); c.n_layer];
    let mut rows = 0;
    for tokens in calibration {
        let (_, captured) = forward_hooked(&base, tokens, &hooks)?;
        for (layer, (_, resid)) in captured.into_iter().enumerate() {
            let block = &model.blocks[layer];
            inputs[layer].extend(crate::linalg::norm(
                &resid,
                &block.attn_norm,
                c.norm,
                c.layer_norm_eps,
            ));
        }
        rows += tokens.len();
    }
    let d_head = c.d_head();
    for (layer, kv) in layers.iter_mut().enumerate() {
        // The cache's codec: every head's mean and basis, for keys and for values.
        let mut fitted: Vec<(Vec<f32>, Vec<f32>)> = Vec::with_capacity(2);
        for projection in [&mut kv.k, &mut kv.v] {
            let (mut means, mut bases) = (Vec::new(), Vec::new());
            let samples = crate::linalg::linear(&inputs[layer], rows, projection);
            let width = projection.d_out;
            let weight = projection.weight.make_f32();
            let bias = projection.bias.get_or_insert_with(|| vec![0.0; width]);
            for head in 0..width / d_head {
                let cols = head * d_head..(head + 1) * d_head;
                let (mean, basis) =
                    principal_components(&samples, width, cols.clone(), components)?;
                // P = U Uᵀ, d_head × d_head.
                let p = |i: usize, j: usize| -> f64 {
                    (0..components)
                        .map(|r| basis[i * components + r] * basis[j * components + r])
                        .sum()
                };
                let p: Vec<f64> = (0..d_head * d_head)
                    .map(|ij| p(ij / d_head, ij % d_head))
                    .collect();
                let project = |row: &[f32]| -> Vec<f32> {
                    (0..d_head)
                        .map(|j| {
                            (0..d_head)
                                .map(|i| row[i] as f64 * p[i * d_head + j])
                                .sum::<f64>() as f32
                        })
                        .collect()
                };
                for r in 0..projection.d_in {
                    let row = &mut weight[r * width..(r + 1) * width][cols.clone()];
                    let projected = project(row);
                    row.copy_from_slice(&projected);
                }
                let b = &mut bias[cols.clone()];
                let projected_b = project(b);
                let mean_f32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
                let projected_mean = project(&mean_f32);
                for j in 0..d_head {
                    b[j] = projected_b[j] + (mean[j] as f32 - projected_mean[j]);
                }
                means.extend(&mean_f32);
                bases.extend(basis.iter().map(|&u| u as f32));
            }
            fitted.push((means, bases));
        }
        let (v_means, v_bases) = fitted.pop().expect("fitted for values");
        let (k_means, k_bases) = fitted.pop().expect("fitted for keys");
        kv.codec = Some(KvCodec::Pca {
            components,
            d_head,
            k_means,
            k_bases,
            v_means,
            v_bases,
        });
    }
    Ok(())
}

/// The mean and the first `components` principal directions (`d × r`, row-major, unit columns)
/// of the columns `cols` of `samples` (`[rows, width]`), from an SVD of the centred samples.
fn principal_components(
    samples: &[f32],
    width: usize,
    cols: std::ops::Range<usize>,
    components: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let d = cols.len();
    let rows = samples.len() / width;
    let mut mean = vec![0.0f64; d];
    for r in 0..rows {
        for (j, m) in mean.iter_mut().enumerate() {
            *m += samples[r * width + cols.start + j] as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    let centred = faer::Mat::<f64>::from_fn(rows, d, |r, j| {
        samples[r * width + cols.start + j] as f64 - mean[j]
    });
    let svd = centred
        .thin_svd()
        .map_err(|e| ModelError::Variant(format!("kv_pca: the SVD did not converge ({e:?})")))?;
    let v = svd.V();
    let r = components.min(v.ncols());
    let mut basis = vec![0.0f64; d * components];
    for i in 0..d {
        for k in 0..r {
            basis[i * components + k] = v[(i, k)];
        }
    }
    Ok((mean, basis))
}

/// What the KV cache holds per token under `variant`, in words: the KV meter's legend. `n_kv_head`
/// is the model's own number of key/value heads (pooling with `kv_groups` changes it).
pub fn kv_cache_contents(
    n_layer: usize,
    n_kv_head: usize,
    d_head: usize,
    variant: &Variant,
) -> String {
    let dropped = variant.drop_attention_layers.as_ref().map_or(0, Vec::len);
    let layers = match dropped {
        0 => format!("{n_layer} layers"),
        d => format!("{} of {n_layer} layers ({d} dropped)", n_layer - d),
    };
    let heads = variant.kv_groups.unwrap_or(n_kv_head);
    let linear =
        variant.kernel() == crate::variant::Kernel::Named(crate::variant::KernelName::Linear);
    if linear && variant.window.is_none() && variant.top_k.is_none() {
        // Generation keeps linear attention's recurrent state instead (engine/decode.rs).
        return format!(
            "when generating, linear attention's recurrent state instead: per K/V head a \
             {d_head}×{d_head} sum and a {d_head}-long normaliser, {heads} heads × {layers}, f32, \
             whatever the length"
        );
    }
    let kept = match variant.window {
        Some(w) => format!("; generation keeps the last {w} positions"),
        None => String::new(),
    };
    let contents = match (variant.kv_rank, variant.kv_pca) {
        (Some(rank), _) => {
            format!("a rank-{rank} latent per token (K and V are rebuilt from it) × {layers}, f32")
        }
        (None, Some(components)) => format!(
            "K and V: 2 × {heads} heads × {components} of {d_head} PCA components (a fixed basis \
             per head, fitted on calibration text, rebuilds them) × {layers}, f32"
        ),
        (None, None) => {
            let pooled = match variant.kv_groups {
                Some(_) if heads != n_kv_head => format!(", pooled from {n_kv_head}"),
                _ => String::new(),
            };
            format!("K and V: 2 × {heads} heads{pooled} × {d_head} dims × {layers}, f32")
        }
    };
    contents + &kept
}

/// The random feature vectors `ω` of every (layer, head), `[layer][head][feature][d_head]`,
/// seeded: FAVOR+'s block-orthogonal draw (see [`orthogonal_features`]), or i.i.d. `N(0, I_d)`
/// vectors when asked.
fn draw_random_features(c: &ModelConfig, settings: &WeightSettings) -> Option<Arc<Vec<f32>>> {
    let (m, seed, iid) = settings.random_features?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut all = Vec::with_capacity(c.n_layer * c.n_head * m * c.d_head());
    for _ in 0..c.n_layer * c.n_head {
        if iid {
            all.extend((0..m * c.d_head()).map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                z as f32
            }));
        } else {
            all.extend(orthogonal_features(&mut rng, m, c.d_head()));
        }
    }
    Some(Arc::new(all))
}

/// `m` random feature vectors of dimension `d`, block-orthogonal as in the Performer paper
/// (FAVOR+): each block of `d` vectors is the orthonormal `Q` of a Gaussian matrix's QR
/// decomposition (signs fixed so `Q` is Haar-distributed), each row rescaled by the norm of an
/// independent `N(0, I_d)` vector, so every vector is still marginally `N(0, I_d)` while the
/// vectors within a block are exactly orthogonal. The last block keeps its first `m mod d` rows.
pub fn orthogonal_features(rng: &mut ChaCha8Rng, m: usize, d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(m * d);
    let mut normal = || -> f64 { StandardNormal.sample(&mut *rng) };
    while out.len() < m * d {
        let g = faer::Mat::<f64>::from_fn(d, d, |_, _| normal());
        let qr = g.qr();
        let (q, r) = (qr.compute_Q(), qr.R());
        let rows = (m - out.len() / d).min(d);
        for i in 0..rows {
            let norm = (0..d).map(|_| normal().powi(2)).sum::<f64>().sqrt();
            // Row i of the orthogonal matrix: column i of Q, with R's diagonal sign.
            let sign = if r[(i, i)] < 0.0 { -1.0 } else { 1.0 };
            out.extend((0..d).map(|j| (sign * q[(j, i)] * norm) as f32));
        }
    }
    out
}

/// The runtime part of a preparation (dropped layers, the ablation table, KV-cache bytes) around
/// the weight-side overlay.
fn assemble(
    base: Arc<Model>,
    variant: Variant,
    kv: Option<Arc<Vec<KvProjection>>>,
    random_features: Option<Arc<Vec<f32>>>,
) -> PreparedModel {
    let mut config = base.config.clone();
    if let Some(groups) = variant.kv_groups {
        config.n_kv_head = Some(groups);
    }
    let (n_layer, n_head, d_head) = (config.n_layer, config.n_head, config.d_head());
    let mut attention_dropped = vec![false; n_layer];
    for &layer in variant.drop_attention_layers.iter().flatten() {
        attention_dropped[layer] = true;
    }
    let mut ablated = vec![false; n_layer * n_head];
    for &[layer, head] in variant.heads.iter().flat_map(|h| &h.ablate) {
        ablated[layer * n_head + head] = true;
    }
    let per_layer = match (variant.kv_rank, variant.kv_pca) {
        (Some(rank), _) => rank * 4,
        (None, Some(components)) => 2 * config.kv_heads() * components * 4,
        (None, None) => 2 * config.kv_heads() * d_head * 4,
    };
    let kv_bytes_per_token = attention_dropped.iter().filter(|d| !**d).count() * per_layer;
    PreparedModel {
        base,
        config,
        variant,
        kv,
        attention_dropped,
        ablated,
        random_features,
        kv_bytes_per_token,
    }
}

/// Averages contiguous groups of `per_group` heads (each `d_head` columns wide) of a key or value
/// projection into one head: weights and biases alike.
pub(crate) fn pool_heads(layer: &Linear, d_head: usize, per_group: usize) -> Linear {
    let heads = layer.d_out / d_head;
    let groups = heads / per_group;
    let d_out = groups * d_head;
    let scale = 1.0 / per_group as f32;
    let pool_row = |row: &[f32]| -> Vec<f32> {
        (0..d_out)
            .map(|col| {
                let (group, within) = (col / d_head, col % d_head);
                (0..per_group)
                    .map(|s| row[(group * per_group + s) * d_head + within])
                    .sum::<f32>()
                    * scale
            })
            .collect()
    };
    Linear {
        d_in: layer.d_in,
        d_out,
        weight: layer
            .weight
            .f32()
            .chunks_exact(layer.d_out)
            .flat_map(pool_row)
            .collect::<Vec<f32>>()
            .into(),
        bias: layer.bias.as_deref().map(pool_row),
    }
}

/// Replaces the joint matrix `[W_k | W_v]` by its best rank-`rank` approximation (truncated SVD,
/// computed in f64). Biases are kept. Returns the factors, `U·S` and `Vᵀ`, as the latent a KV
/// cache holds instead ([`KvCodec::Latent`]).
pub(crate) fn truncate_joint_kv(k: &mut Linear, v: &mut Linear, rank: usize) -> Result<KvCodec> {
    let rows = k.d_in;
    let (dk, dv) = (k.d_out, v.d_out);
    let (k_weight, v_weight) = (k.weight.make_f32(), v.weight.make_f32());
    let joint = faer::Mat::<f64>::from_fn(rows, dk + dv, |r, c| {
        if c < dk {
            k_weight[r * dk + c] as f64
        } else {
            v_weight[r * dv + c - dk] as f64
        }
    });
    let svd = joint
        .thin_svd()
        .map_err(|e| ModelError::Variant(format!("kv_rank: the SVD did not converge ({e:?})")))?;
    let (u, s, vt) = (svd.U(), svd.S().column_vector(), svd.V());
    let rank = rank.min(s.nrows());
    let approx = |r: usize, c: usize| -> f32 {
        (0..rank)
            .map(|i| u[(r, i)] * s[i] * vt[(c, i)])
            .sum::<f64>() as f32
    };
    for r in 0..rows {
        for c in 0..dk {
            k_weight[r * dk + c] = approx(r, c);
        }
        for c in 0..dv {
            v_weight[r * dv + c] = approx(r, dk + c);
        }
    }
    let down = (0..rows * rank)
        .map(|ri| (u[(ri / rank, ri % rank)] * s[ri % rank]) as f32)
        .collect();
    let up = (0..rank * (dk + dv))
        .map(|ic| vt[(ic % (dk + dv), ic / (dk + dv))] as f32)
        .collect();
    Ok(KvCodec::Latent { rank, down, up })
}
