//! The architecture of a model: sizes and the few structural choices the playground supports.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Which normalisation each block uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// `(x − mean) / sqrt(var + eps) · scale + shift` (GPT-2, GPT-NeoX).
    #[default]
    LayerNorm,
    /// `x / sqrt(mean(x²) + eps) · scale`, no shift (Llama, Qwen2).
    RmsNorm,
}

/// How positions enter the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positional {
    /// A learned position table added to the token embeddings (GPT-2).
    #[default]
    Learned,
    /// Rotary position embeddings applied to every head's queries and keys (Llama, Qwen2,
    /// GPT-NeoX).
    Rope(Rope),
}

/// Rotary position embeddings in Hugging Face's "rotate half" convention: within the first
/// `rotary_dim` dimensions of a head, dimension `i` and `i + rotary_dim/2` form a pair rotated by
/// the angle `position · inv_freq[i]`, with `inv_freq[i] = theta^(−2i / rotary_dim)` (then
/// rescaled by `scaling`). Dimensions past `rotary_dim` are left as they are (GPT-NeoX's partial
/// rotary).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rope {
    /// The base of the frequencies (`rope_theta`).
    pub theta: f32,
    /// How many dimensions of each head rotate; even, at most `d_head`.
    pub rotary_dim: usize,
    /// How the frequencies are rescaled for a longer context.
    #[serde(default)]
    pub scaling: RopeScaling,
}

/// The `rope_scaling` kinds small models use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeScaling {
    /// The frequencies as they are (`rope_type: "default"`).
    #[default]
    None,
    /// Positions divided by `factor` (`rope_type: "linear"`).
    Linear { factor: f32 },
    /// Llama 3's wavelength-dependent rescaling (`rope_type: "llama3"`).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
}

/// The MLP's nonlinearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// GELU's tanh approximation (GPT-2's `gelu_new`).
    #[default]
    GeluTanh,
    /// The exact, erf-based GELU (GPT-NeoX's `gelu`).
    Gelu,
    /// `x · sigmoid(x)` (Llama's `silu`).
    Silu,
}

/// The architecture family a model comes from, as the page and `attn inspect` name it. The
/// structural choices themselves are the config's other fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// GPT-2 and the playground's own trained models.
    #[default]
    Gpt2,
    /// `LlamaForCausalLM`: Llama, SmolLM, TinyLlama.
    Llama,
    /// `Qwen2ForCausalLM`.
    Qwen2,
    /// `GPTNeoXForCausalLM`: Pythia.
    GptNeox,
}

impl Family {
    /// The name people know the family by.
    pub fn label(self) -> &'static str {
        match self {
            Family::Gpt2 => "GPT-2",
            Family::Llama => "Llama",
            Family::Qwen2 => "Qwen2",
            Family::GptNeox => "GPT-NeoX",
        }
    }
}

/// The configuration of a decoder-style, pre-norm transformer: token (+ learned position)
/// embeddings, `n_layer` blocks of `x += Attn(N1(x))` and (optionally) `x += MLP(N2(x))` — or,
/// with `parallel_residual`, `x += Attn(N1(x)) + MLP(N2(x))` — a final norm and an output head.
/// GPT-2 is the default of every structural field, so older files read unchanged.
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
    /// Epsilon inside the norms (LayerNorm or RMSNorm).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    /// The normalisation of every block and of the final norm.
    #[serde(default)]
    pub norm: Norm,
    /// Learned positions or rotary embeddings.
    #[serde(default)]
    pub positional: Positional,
    /// Which family the model comes from (for display only).
    #[serde(default)]
    pub family: Family,
    /// The MLP's nonlinearity.
    #[serde(default)]
    pub activation: Activation,
    /// Whether the MLP is gated, `proj(act(gate(x)) · fc(x))` (SwiGLU in the Llama family),
    /// rather than `proj(act(fc(x)))`.
    #[serde(default)]
    pub gated_mlp: bool,
    /// GPT-NeoX's parallel block: attention and MLP both read the block's input.
    #[serde(default)]
    pub parallel_residual: bool,
    /// Whether the query, key and value projections have biases.
    #[serde(default = "yes")]
    pub qkv_bias: bool,
    /// Whether the attention output projection has a bias.
    #[serde(default = "yes")]
    pub out_bias: bool,
    /// Whether the MLP's layers have biases.
    #[serde(default = "yes")]
    pub mlp_bias: bool,
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
        if let Positional::Rope(rope) = self.positional {
            if rope.rotary_dim == 0 || rope.rotary_dim % 2 != 0 || rope.rotary_dim > self.d_head() {
                return err(format!(
                    "the rotary dimension {} must be even and between 2 and d_head {}",
                    rope.rotary_dim,
                    self.d_head()
                ));
            }
            if !(rope.theta.is_finite() && rope.theta > 1.0) {
                return err(format!(
                    "rope theta {} must be a number above 1",
                    rope.theta
                ));
            }
            match rope.scaling {
                RopeScaling::None => {}
                RopeScaling::Linear { factor } if factor.is_finite() && factor >= 1.0 => {}
                RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings,
                } if factor.is_finite()
                    && factor >= 1.0
                    && low_freq_factor > 0.0
                    && high_freq_factor > low_freq_factor
                    && original_max_position_embeddings > 0 => {}
                other => return err(format!("rope scaling {other:?} has invalid settings")),
            }
        }
        if self.gated_mlp && !self.mlp {
            return err("gated_mlp needs mlp".into());
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
            family: Family::Gpt2,
            activation: Activation::GeluTanh,
            gated_mlp: false,
            parallel_residual: false,
            qkv_bias: true,
            out_bias: true,
            mlp_bias: true,
        }
    }

    /// A small Llama-shaped config: RMSNorm, rotary positions, SwiGLU, no biases, grouped-query
    /// attention (4 query heads sharing 2 key/value heads), tied embeddings.
    pub fn tiny_llama(vocab_size: usize) -> Self {
        ModelConfig {
            n_kv_head: Some(2),
            d_mlp: Some(24),
            norm: Norm::RmsNorm,
            positional: Positional::Rope(Rope {
                theta: 500.0,
                rotary_dim: 4,
                scaling: RopeScaling::None,
            }),
            family: Family::Llama,
            activation: Activation::Silu,
            gated_mlp: true,
            qkv_bias: false,
            out_bias: false,
            mlp_bias: false,
            ..Self::tiny(vocab_size)
        }
    }

    /// A small GPT-NeoX-shaped config: LayerNorm, partial rotary (half of each head), parallel
    /// residual, exact GELU, untied output head.
    pub fn tiny_neox(vocab_size: usize) -> Self {
        ModelConfig {
            positional: Positional::Rope(Rope {
                theta: 10000.0,
                rotary_dim: 2,
                scaling: RopeScaling::None,
            }),
            family: Family::GptNeox,
            activation: Activation::Gelu,
            parallel_residual: true,
            tied_embeddings: false,
            ..Self::tiny(vocab_size)
        }
    }

    /// How positions enter the model, in words: "learned positions" or e.g. "rotary (θ 500,
    /// 8 of 8 dims per head, llama3 scaling ×4)".
    pub fn positional_label(&self) -> String {
        match self.rope() {
            None => "learned positions".into(),
            Some(rope) => {
                let scaling = match rope.scaling {
                    RopeScaling::None => String::new(),
                    RopeScaling::Linear { factor } => format!(", linear scaling ×{factor}"),
                    RopeScaling::Llama3 { factor, .. } => format!(", llama3 scaling ×{factor}"),
                };
                format!(
                    "rotary (θ {}, {} of {} dims per head{scaling})",
                    rope.theta,
                    rope.rotary_dim,
                    self.d_head()
                )
            }
        }
    }

    /// The key/value layout, in words: multi-head, grouped-query or multi-query.
    pub fn kv_layout_label(&self) -> String {
        match self.kv_heads() {
            kv if kv == self.n_head => format!("multi-head ({kv} key/value heads)"),
            1 => format!(
                "multi-query ({} query heads share 1 key/value head)",
                self.n_head
            ),
            kv => format!(
                "grouped-query ({} query heads share {kv} key/value heads)",
                self.n_head
            ),
        }
    }

    /// The block's structure, in words: e.g. "RMSNorm, SwiGLU MLP" or "LayerNorm, GELU MLP,
    /// parallel residual".
    pub fn block_label(&self) -> String {
        let norm = match self.norm {
            Norm::LayerNorm => "LayerNorm",
            Norm::RmsNorm => "RMSNorm",
        };
        let mlp = match (self.mlp, self.gated_mlp, self.activation) {
            (false, ..) => "attention only".to_string(),
            (true, true, Activation::Silu) => "SwiGLU MLP".into(),
            (true, true, a) => format!("gated {a:?} MLP"),
            (true, false, Activation::GeluTanh) => "GELU (tanh) MLP".into(),
            (true, false, Activation::Gelu) => "GELU MLP".into(),
            (true, false, Activation::Silu) => "SiLU MLP".into(),
        };
        let residual = if self.parallel_residual {
            ", parallel residual"
        } else {
            ""
        };
        format!("{norm}, {mlp}{residual}")
    }

    /// The rotary settings, when the model uses rotary positions.
    pub fn rope(&self) -> Option<&Rope> {
        match &self.positional {
            Positional::Rope(rope) => Some(rope),
            Positional::Learned => None,
        }
    }
}
