//! Weight-side variants, applied once per variant change: key/value head pooling (`kv_groups`),
//! low-rank K/V (`kv_rank`), and the bookkeeping the forward pass needs (dropped layers, ablated
//! heads, random features). Both engines start from a [`PreparedModel`].

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{ModelError, Result};
use crate::model::{Linear, Model};
use crate::variant::{Kernel, Variant};

/// A model with a variant's weight-side changes applied, ready to run.
#[derive(Clone, Debug)]
pub struct PreparedModel {
    /// The weights after `kv_groups` pooling and `kv_rank` truncation; its config's `n_kv_head`
    /// is the number of key/value heads that remain.
    pub model: Model,
    /// The variant, validated and normalised.
    pub variant: Variant,
    /// `attention_dropped[layer]`.
    pub attention_dropped: Vec<bool>,
    /// `ablated[layer * n_head + head]`.
    pub ablated: Vec<bool>,
    /// For random-feature attention: the Gaussian vectors `ω`, laid out
    /// `[layer][head][feature][d_head]`.
    pub random_features: Option<Vec<f32>>,
    /// KV-cache bytes per token (fp32) implied by the variant.
    pub kv_bytes_per_token: usize,
}

impl PreparedModel {
    /// Number of random features per head (0 unless the kernel is random-feature attention).
    pub fn n_random_features(&self) -> usize {
        match self.variant.kernel() {
            Kernel::RandomFeatures {
                random_features, ..
            } => random_features,
            _ => 0,
        }
    }

    /// Whether head `head` of layer `layer` is ablated.
    pub fn is_ablated(&self, layer: usize, head: usize) -> bool {
        self.ablated[layer * self.model.config.n_head + head]
    }
}

/// Applies `variant` to `model`: validates it, pools key/value heads, truncates `[W_k | W_v]`
/// to the requested rank, draws random features, and counts the KV-cache bytes.
pub fn prepare(model: &Model, variant: &Variant) -> Result<PreparedModel> {
    model.check_shapes()?;
    variant.validate(&model.config)?;
    let variant = variant.normalised();
    let mut model = model.clone();
    let c = model.config.clone();
    let d_head = c.d_head();

    if let Some(groups) = variant.kv_groups {
        let per_group = c.kv_heads() / groups;
        for block in &mut model.blocks {
            block.attn.k = pool_heads(&block.attn.k, d_head, per_group);
            block.attn.v = pool_heads(&block.attn.v, d_head, per_group);
        }
        model.config.n_kv_head = Some(groups);
    }
    if let Some(rank) = variant.kv_rank {
        for block in &mut model.blocks {
            truncate_joint_kv(&mut block.attn.k, &mut block.attn.v, rank)?;
        }
    }

    let mut attention_dropped = vec![false; c.n_layer];
    for &layer in variant.drop_attention_layers.iter().flatten() {
        attention_dropped[layer] = true;
    }
    let mut ablated = vec![false; c.n_layer * c.n_head];
    for &[layer, head] in variant.heads.iter().flat_map(|h| &h.ablate) {
        ablated[layer * c.n_head + head] = true;
    }

    let random_features = match variant.kernel() {
        Kernel::RandomFeatures {
            random_features,
            seed,
        } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let count = c.n_layer * c.n_head * random_features * d_head;
            Some(
                (0..count)
                    .map(|_| StandardNormal.sample(&mut rng))
                    .collect(),
            )
        }
        _ => None,
    };

    let kv_heads = model.config.kv_heads();
    let per_layer = match variant.kv_rank {
        Some(rank) => rank * 4,
        None => 2 * kv_heads * d_head * 4,
    };
    let kv_bytes_per_token = attention_dropped.iter().filter(|d| !**d).count() * per_layer;

    Ok(PreparedModel {
        model,
        variant,
        attention_dropped,
        ablated,
        random_features,
        kv_bytes_per_token,
    })
}

/// Averages contiguous groups of `per_group` heads (each `d_head` columns wide) of a key or value
/// projection into one head: weights and biases alike.
fn pool_heads(layer: &Linear, d_head: usize, per_group: usize) -> Linear {
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
            .chunks_exact(layer.d_out)
            .flat_map(pool_row)
            .collect(),
        bias: pool_row(&layer.bias),
    }
}

/// Replaces the joint matrix `[W_k | W_v]` by its best rank-`rank` approximation (truncated SVD,
/// computed in f64). Biases are kept.
fn truncate_joint_kv(k: &mut Linear, v: &mut Linear, rank: usize) -> Result<()> {
    let rows = k.d_in;
    let (dk, dv) = (k.d_out, v.d_out);
    let joint = faer::Mat::<f64>::from_fn(rows, dk + dv, |r, c| {
        if c < dk {
            k.weight[r * dk + c] as f64
        } else {
            v.weight[r * dv + c - dk] as f64
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
            k.weight[r * dk + c] = approx(r, c);
        }
        for c in 0..dv {
            v.weight[r * dv + c] = approx(r, dk + c);
        }
    }
    Ok(())
}
