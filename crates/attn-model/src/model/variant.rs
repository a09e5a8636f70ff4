//! `Variant`: every toggle the playground offers, as one plain serde struct. The formulas are in
//! `docs/VARIANTS.md`; [`mod@crate::forward`] and [`mod@crate::prepare`] implement them.

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// How attention weights are computed from queries and keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Kernel {
    /// `"softmax"` or `"linear"`.
    Named(KernelName),
    /// `{"random_features": m, "seed": s}`: Performer-style positive random features, drawn
    /// block-orthogonal as FAVOR+ does; `"iid": true` draws them independently instead (the
    /// comparison the Performer paper makes).
    RandomFeatures {
        random_features: usize,
        #[serde(default)]
        seed: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        iid: bool,
    },
}

impl Default for Kernel {
    fn default() -> Self {
        Kernel::Named(KernelName::Softmax)
    }
}

/// The kernels that need no parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelName {
    /// `exp(s_ij)`, normalised: standard attention.
    Softmax,
    /// `φ(q̃_i)·φ(k_j)` with `φ = elu + 1`: linear attention.
    Linear,
}

impl Kernel {
    /// Whether this is plain softmax attention.
    pub fn is_softmax(&self) -> bool {
        matches!(self, Kernel::Named(KernelName::Softmax))
    }
}

/// What an ablated head's output becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AblationMode {
    /// Zeros.
    #[default]
    Zero,
    /// The head's output averaged over the positions of the current input.
    Mean,
}

/// Which heads to ablate, and how.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadAblation {
    /// `[layer, head]` pairs.
    #[serde(default)]
    pub ablate: Vec<[usize; 2]>,
    #[serde(default)]
    pub mode: AblationMode,
}

/// Every attention modification the playground offers. All fields are optional; the default is
/// the unmodified model. Serialised as the JSON object documented in `docs/VARIANTS.md`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Sliding window: query `i` sees key `j` only if `i − w < j` (`|i − j| < w` when
    /// bidirectional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// Keep only the `k` highest-scoring allowed keys per query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Softmax (default), linear, or random-feature attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Kernel>,
    /// Heads whose output is replaced by zeros or by its mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<HeadAblation>,
    /// Layers whose attention sub-layer adds nothing to the residual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_attention_layers: Option<Vec<usize>>,
    /// Grouped-query conversion: pool key/value heads into this many groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_groups: Option<usize>,
    /// Latent K/V: best rank-`r` approximation of each layer's `[W_k | W_v]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_rank: Option<usize>,
    /// Routing proxy (Mixture-of-Head-style, untrained): in every layer each token keeps only
    /// the `k` heads whose output is largest (Euclidean norm), the others are zeroed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_heads: Option<usize>,
    /// Per-head PCA of keys and values: each key/value head keeps this many principal
    /// components, fitted on the model's calibration text (`prepare::calibration_inputs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_pca: Option<usize>,
    /// Attention temperature (Hopfield β); 1.0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f32>,
}

impl Variant {
    /// Parses a variant from JSON, with a message that names the bad field.
    pub fn from_json(text: &str) -> Result<Variant> {
        let json_error = |message: String| ModelError::Json {
            what: "variant".into(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| json_error(e.to_string()))?;
        // serde would also accept a struct written as an array; a variant is always an object.
        if !value.is_object() {
            return Err(json_error(
                "a variant is a JSON object, e.g. {\"window\": 4}".into(),
            ));
        }
        serde_json::from_value(value).map_err(|e| json_error(e.to_string()))
    }

    /// The attention temperature, 1.0 by default.
    pub fn beta(&self) -> f32 {
        self.beta.unwrap_or(1.0)
    }

    /// The attention kernel, softmax by default.
    pub fn kernel(&self) -> Kernel {
        self.kernel.clone().unwrap_or_default()
    }

    /// Whether the variant changes nothing.
    pub fn is_baseline(&self) -> bool {
        self.normalised() == Variant::default()
    }

    /// The same variant with empty lists and explicit defaults removed, so two variants that mean
    /// the same thing compare equal (useful for URLs and caches).
    pub fn normalised(&self) -> Variant {
        let mut v = self.clone();
        if v.kernel.as_ref().is_some_and(Kernel::is_softmax) {
            v.kernel = None;
        }
        if v.heads.as_ref().is_some_and(|h| h.ablate.is_empty()) {
            v.heads = None;
        }
        if let Some(h) = &mut v.heads {
            h.ablate.sort_unstable();
            h.ablate.dedup();
        }
        if v.drop_attention_layers.as_ref().is_some_and(Vec::is_empty) {
            v.drop_attention_layers = None;
        }
        if let Some(layers) = &mut v.drop_attention_layers {
            layers.sort_unstable();
            layers.dedup();
        }
        if v.beta == Some(1.0) {
            v.beta = None;
        }
        v
    }

    /// The largest `kv_rank` this model accepts: `min(d_model, 2·n_kv·d_head)` after `kv_groups`.
    pub fn max_kv_rank(&self, config: &ModelConfig) -> usize {
        let kv_heads = self.kv_groups.unwrap_or(config.kv_heads());
        config.d_model.min(2 * kv_heads * config.d_head())
    }

    /// Checks that the variant fits `config`; the error names the offending field.
    pub fn validate(&self, config: &ModelConfig) -> Result<()> {
        let err = |m: String| Err(ModelError::Variant(m));
        if self.window == Some(0) {
            return err("window must be at least 1".into());
        }
        if self.top_k == Some(0) {
            return err("top_k must be at least 1".into());
        }
        if let Some(Kernel::RandomFeatures {
            random_features: 0, ..
        }) = self.kernel
        {
            return err("random_features must be at least 1".into());
        }
        if let Some(beta) = self.beta {
            if !(beta.is_finite() && beta > 0.0) {
                return err(format!("beta must be a positive number, got {beta}"));
            }
        }
        if let Some(heads) = &self.heads {
            for &[layer, head] in &heads.ablate {
                if layer >= config.n_layer || head >= config.n_head {
                    return err(format!(
                        "heads.ablate has [{layer}, {head}] but the model has {} layers of {} heads",
                        config.n_layer, config.n_head
                    ));
                }
            }
        }
        if let Some(layers) = &self.drop_attention_layers {
            if let Some(&layer) = layers.iter().find(|&&l| l >= config.n_layer) {
                return err(format!(
                    "drop_attention_layers has layer {layer} but the model has {} layers",
                    config.n_layer
                ));
            }
        }
        if let Some(groups) = self.kv_groups {
            let kv = config.kv_heads();
            if groups == 0 || config.n_head % groups != 0 || kv % groups != 0 {
                return err(format!(
                    "kv_groups {groups} must divide the number of heads ({}) and of key/value \
                     heads ({kv})",
                    config.n_head
                ));
            }
        }
        if let Some(rank) = self.kv_rank {
            let max = self.max_kv_rank(config);
            if rank == 0 || rank > max {
                return err(format!("kv_rank must be between 1 and {max}, got {rank}"));
            }
        }
        if let Some(k) = self.route_heads {
            if k == 0 || k > config.n_head {
                return err(format!(
                    "route_heads must be between 1 and the number of heads ({}), got {k}",
                    config.n_head
                ));
            }
        }
        if let Some(components) = self.kv_pca {
            let d_head = config.d_head();
            if components == 0 || components > d_head {
                return err(format!(
                    "kv_pca must be between 1 and d_head ({d_head}), got {components}"
                ));
            }
            if self.kv_rank.is_some() {
                return err(
                    "kv_pca and kv_rank are two ways to compress the same cache: choose one".into(),
                );
            }
        }
        Ok(())
    }
}
