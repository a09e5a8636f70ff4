//! A model with a variant applied, as the forward reads it ([`PreparedModel`]): the unmodified
//! weights, shared, and an overlay of what the variant's weight-side settings replace
//! ([`KvProjection`]s, random features), with the runtime settings beside. `prepare` builds it.

use std::sync::Arc;

use crate::config::ModelConfig;
use crate::model::{Linear, Model};
use crate::variant::{Kernel, Variant};

/// The part of a variant that changes weights: what [`prepare`] computes from the model and
/// what a preparation can share with the next one when it stays the same.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightSettings {
    /// Key/value heads after mean-pooling.
    pub kv_groups: Option<usize>,
    /// Rank of the joint `[W_k | W_v]` after truncation.
    pub kv_rank: Option<usize>,
    /// Principal components kept per key/value head.
    pub kv_pca: Option<usize>,
    /// Random features `(m, seed)` of the random-feature kernel.
    pub random_features: Option<(usize, u64)>,
}

impl WeightSettings {
    /// The weight-side settings of `variant`.
    pub fn of(variant: &Variant) -> Self {
        WeightSettings {
            kv_groups: variant.kv_groups,
            kv_rank: variant.kv_rank,
            kv_pca: variant.kv_pca,
            random_features: match variant.kernel() {
                Kernel::RandomFeatures {
                    random_features,
                    seed,
                } => Some((random_features, seed)),
                _ => None,
            },
        }
    }

    /// Whether these settings change the key/value projections.
    pub fn changes_kv(&self) -> bool {
        self.kv_groups.is_some() || self.kv_rank.is_some() || self.kv_pca.is_some()
    }
}

/// One layer's key and value projections under a variant.
#[derive(Clone, Debug, PartialEq)]
pub struct KvProjection {
    pub k: Linear,
    pub v: Linear,
}

/// A model with a variant applied, ready to run: the unmodified weights (shared, never copied)
/// plus an overlay of what the variant's weight-side settings replace.
#[derive(Clone, Debug)]
pub struct PreparedModel {
    pub(crate) base: Arc<Model>,
    /// The base config, with `n_kv_head` the number of key/value heads that remain.
    pub config: ModelConfig,
    /// The variant, validated and normalised.
    pub variant: Variant,
    /// Per layer, the pooled / truncated key and value projections; `None` keeps the model's own.
    pub kv: Option<Arc<Vec<KvProjection>>>,
    /// `attention_dropped[layer]`.
    pub attention_dropped: Vec<bool>,
    /// `ablated[layer * n_head + head]`.
    pub ablated: Vec<bool>,
    /// For random-feature attention: the Gaussian vectors `ω`, laid out
    /// `[layer][head][feature][d_head]`.
    pub random_features: Option<Arc<Vec<f32>>>,
    /// KV-cache bytes per token (fp32) implied by the variant.
    pub kv_bytes_per_token: usize,
}

impl PreparedModel {
    /// The unmodified model this preparation overlays.
    pub fn model(&self) -> &Model {
        &self.base
    }

    /// The unmodified model, shared.
    pub fn base(&self) -> &Arc<Model> {
        &self.base
    }

    /// The key projection of `layer` under the variant.
    pub fn key(&self, layer: usize) -> &Linear {
        match &self.kv {
            Some(kv) => &kv[layer].k,
            None => &self.base.blocks[layer].attn.k,
        }
    }

    /// The value projection of `layer` under the variant.
    pub fn value(&self, layer: usize) -> &Linear {
        match &self.kv {
            Some(kv) => &kv[layer].v,
            None => &self.base.blocks[layer].attn.v,
        }
    }

    /// The weight-side settings this preparation was made with.
    pub fn weight_settings(&self) -> WeightSettings {
        WeightSettings::of(&self.variant)
    }

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
        self.ablated[layer * self.config.n_head + head]
    }

    /// Whether this preparation and `other` share their weight-side work (the same overlay and
    /// random features, not copies): what a runtime-only variant change must keep.
    pub fn shares_weights_with(&self, other: &PreparedModel) -> bool {
        fn same<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        Arc::ptr_eq(&self.base, &other.base)
            && same(&self.kv, &other.kv)
            && same(&self.random_features, &other.random_features)
    }
}
