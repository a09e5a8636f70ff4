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
    /// (m, seed, i.i.d. instead of block-orthogonal).
    pub random_features: Option<(usize, u64, bool)>,
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
                    iid,
                } => Some((random_features, seed, iid)),
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
    /// What a KV cache stores per token instead of the keys and values, when the variant
    /// compresses them (a latent rank, PCA components).
    pub codec: Option<KvCodec>,
}

/// How a KV cache stores a token's keys and values in fewer numbers, and rebuilds them: the
/// compressed form of the projections in the same [`KvProjection`] (which equal encoding then
/// decoding, up to rounding).
#[derive(Clone, Debug, PartialEq)]
pub enum KvCodec {
    /// A rank-`rank` latent of the joint `[K | V]` (multi-head latent attention's cache): the
    /// code is `c = x · down` for the attention input `x` (`down`: `[d_in, rank]`), and the keys
    /// and values are `c · up` (`up`: `[rank, d_k + d_v]`) plus their biases.
    Latent {
        rank: usize,
        down: Vec<f32>,
        up: Vec<f32>,
    },
    /// Per key/value head, the `components` coordinates `(k − μ) U` of its key and of its value
    /// (MatryoshkaKV): `k = μ + c Uᵀ`. Means are `[heads, d_head]` and bases `[heads, d_head,
    /// components]`; the code is every head's key coordinates, then every head's value
    /// coordinates.
    Pca {
        components: usize,
        d_head: usize,
        k_means: Vec<f32>,
        k_bases: Vec<f32>,
        v_means: Vec<f32>,
        v_bases: Vec<f32>,
    },
}

impl KvProjection {
    /// One token's code under `codec` (see [`KvCodec`]) from its attention input `x`, key and
    /// value (before any rotary embedding).
    pub fn encode(&self, x: &[f32], k: &[f32], v: &[f32]) -> Option<Vec<f32>> {
        match self.codec.as_ref()? {
            KvCodec::Latent { rank, down, .. } => {
                let mut code = vec![0.0f32; *rank];
                for (row, &x) in down.chunks_exact(*rank).zip(x) {
                    code.iter_mut().zip(row).for_each(|(c, &d)| *c += x * d);
                }
                Some(code)
            }
            KvCodec::Pca {
                components,
                d_head,
                k_means,
                k_bases,
                v_means,
                v_bases,
            } => {
                let coordinates = |x: &[f32], means: &[f32], bases: &[f32]| -> Vec<f32> {
                    let mut code = Vec::with_capacity(x.len() / d_head * components);
                    for (head, x_h) in x.chunks_exact(*d_head).enumerate() {
                        let mean = &means[head * d_head..(head + 1) * d_head];
                        let basis = &bases[head * d_head * components..][..d_head * components];
                        code.extend((0..*components).map(|r| {
                            (0..*d_head)
                                .map(|i| (x_h[i] - mean[i]) * basis[i * components + r])
                                .sum::<f32>()
                        }));
                    }
                    code
                };
                let mut code = coordinates(k, k_means, k_bases);
                code.extend(coordinates(v, v_means, v_bases));
                Some(code)
            }
        }
    }

    /// The key and value (before any rotary embedding) a code stands for.
    pub fn decode(&self, code: &[f32]) -> Option<(Vec<f32>, Vec<f32>)> {
        let (d_k, d_v) = (self.k.d_out, self.v.d_out);
        match self.codec.as_ref()? {
            KvCodec::Latent { rank, up, .. } => {
                let mut kv = vec![0.0f32; d_k + d_v];
                for (row, &c) in up.chunks_exact(d_k + d_v).zip(&code[..*rank]) {
                    kv.iter_mut().zip(row).for_each(|(y, &u)| *y += c * u);
                }
                let mut v = kv.split_off(d_k);
                let mut k = kv;
                for (out, bias) in [(&mut k, &self.k.bias), (&mut v, &self.v.bias)] {
                    if let Some(bias) = bias {
                        out.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
                    }
                }
                Some((k, v))
            }
            KvCodec::Pca {
                components,
                d_head,
                k_means,
                k_bases,
                v_means,
                v_bases,
            } => {
                let rebuild = |code: &[f32], means: &[f32], bases: &[f32]| -> Vec<f32> {
                    let mut x = means.to_vec();
                    for (head, c) in code.chunks_exact(*components).enumerate() {
                        let basis = &bases[head * d_head * components..][..d_head * components];
                        for (i, x) in x[head * d_head..(head + 1) * d_head].iter_mut().enumerate() {
                            *x += (0..*components)
                                .map(|r| c[r] * basis[i * components + r])
                                .sum::<f32>();
                        }
                    }
                    x
                };
                let split = d_k / d_head * components;
                Some((
                    rebuild(&code[..split], k_means, k_bases),
                    rebuild(&code[split..], v_means, v_bases),
                ))
            }
        }
    }
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

    /// The layer's pooled / compressed projections, when the variant changes them.
    pub fn kv_projection(&self, layer: usize) -> Option<&KvProjection> {
        self.kv.as_ref().map(|kv| &kv[layer])
    }

    /// The codec a KV cache stores `layer`'s tokens with, when the variant compresses them.
    pub fn kv_codec(&self, layer: usize) -> Option<&KvCodec> {
        self.kv_projection(layer).and_then(|kv| kv.codec.as_ref())
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
