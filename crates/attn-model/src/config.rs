//! The architecture of a model: sizes and the few structural choices the playground supports.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Which normalisation each block uses. Only LayerNorm (GPT family) runs today; RMSNorm is
/// reserved so Llama-family models can be described without a format change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    #[default]
    LayerNorm,
    RmsNorm,
}

/// How positions enter the model. Only learned absolute embeddings (GPT-2) run today; RoPE is
/// reserved for the Llama family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positional {
    #[default]
    Learned,
    Rope,
}

/// The configuration of a decoder-style, pre-LayerNorm transformer:
/// token + position embeddings, `n_layer` blocks of
/// `x += Attn(LN1(x))` and (optionally) `x += MLP(LN2(x))`, a final LayerNorm and an output head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Number of token ids the embedding table holds.
    pub vocab_size: usize,
    /// Longest input the position table covers.
    pub n_ctx: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Number of query heads per attention layer.
    pub n_head: usize,
    /// Number of key/value heads; `None` means `n_head` (multi-head attention). A smaller value
    /// describes a model trained with grouped-query (or, at 1, multi-query) attention.
    #[serde(default)]
    pub n_kv_head: Option<usize>,
    /// Hidden width of the MLP; `None` means `4 * d_model`. Ignored when `mlp` is false.
    #[serde(default)]
    pub d_mlp: Option<usize>,
    /// Whether blocks have an MLP. Attention-only models (e.g. for induction) set this to false.
    #[serde(default = "yes")]
    pub mlp: bool,
    /// Causal (decoder) attention, or bidirectional for classifier-style models.
    #[serde(default = "yes")]
    pub causal: bool,
    /// Whether the language-model head reuses the token embedding matrix.
    #[serde(default = "yes")]
    pub tied_embeddings: bool,
    /// When set, the output head is a classifier with this many classes (a `[d_model, n]` matrix
    /// and bias applied at every position) instead of the language-model head.
    #[serde(default)]
    pub n_classes: Option<usize>,
    /// Epsilon inside LayerNorm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    /// Reserved for the Llama family; must be `layer_norm` today.
    #[serde(default)]
    pub norm: Norm,
    /// Reserved for the Llama family; must be `learned` today.
    #[serde(default)]
    pub positional: Positional,
}

fn yes() -> bool {
    true
}

fn default_eps() -> f32 {
    1e-5
}

impl ModelConfig {
    /// Width of one attention head.
    pub fn d_head(&self) -> usize {
        self.d_model / self.n_head
    }

    /// Number of key/value heads (equal to `n_head` for multi-head attention).
    pub fn kv_heads(&self) -> usize {
        self.n_kv_head.unwrap_or(self.n_head)
    }

    /// Hidden width of the MLP.
    pub fn mlp_width(&self) -> usize {
        self.d_mlp.unwrap_or(4 * self.d_model)
    }

    /// Width of the output: the vocabulary, or the number of classes for a classifier.
    pub fn n_out(&self) -> usize {
        self.n_classes.unwrap_or(self.vocab_size)
    }

    /// Checks that the sizes are positive and consistent, and that only implemented features are
    /// requested.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(ModelError::Config(m));
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("n_ctx", self.n_ctx),
            ("d_model", self.d_model),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ] {
            if value == 0 {
                return err(format!("{name} must be at least 1"));
            }
        }
        if self.d_model % self.n_head != 0 {
            return err(format!(
                "d_model {} is not divisible by n_head {}",
                self.d_model, self.n_head
            ));
        }
        let kv = self.kv_heads();
        if kv == 0 || self.n_head % kv != 0 {
            return err(format!(
                "n_kv_head {kv} must be at least 1 and divide n_head {}",
                self.n_head
            ));
        }
        if self.mlp && self.mlp_width() == 0 {
            return err("d_mlp must be at least 1".into());
        }
        if self.n_classes == Some(0) {
            return err("n_classes must be at least 1".into());
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return err("layer_norm_eps must be a positive number".into());
        }
        if self.norm != Norm::LayerNorm {
            return err("RMSNorm models are not supported yet".into());
        }
        if self.positional != Positional::Learned {
            return err("RoPE models are not supported yet".into());
        }
        Ok(())
    }

    /// A small GPT-2-shaped config, handy for tests and examples.
    pub fn tiny(vocab_size: usize) -> Self {
        ModelConfig {
            vocab_size,
            n_ctx: 16,
            d_model: 16,
            n_layer: 2,
            n_head: 4,
            n_kv_head: None,
            d_mlp: None,
            mlp: true,
            causal: true,
            tied_embeddings: true,
            n_classes: None,
            layer_norm_eps: 1e-5,
            norm: Norm::LayerNorm,
            positional: Positional::Learned,
        }
    }
}
