//! What a model is: its config (`config`), the parameters a config implies (`schema`), the
//! weights' storage and precision (`weights`), what the playground can change (`variant`, and
//! its URL form in `url`), and — in this file — the model itself, [`Model`].
//!
//! The weights of a model, held as row-major vectors: the large matrices (dense layers, token
//! embedding, untied LM head) as [`Weights`] in the precision their file stored them in, the
//! small ones (norms, biases, position embeddings) as `f32`.
//!
//! Every weight matrix is stored `[in, out]` (as GPT-2's `Conv1D` stores it), so a layer is
//! `y = x · W + b` with `x` a `[rows, in]` matrix. The token embedding and an untied LM head are
//! `[vocab, d_model]`, so logits are `x · Eᵀ`.

pub mod config;
pub mod schema;
pub mod url;
pub mod variant;
pub mod weights;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use std::collections::HashMap;

use crate::config::{ModelConfig, Norm, Positional};
use crate::error::{ModelError, Result};
use crate::schema::{ParamRole, ParamSpec};
use crate::tokenizer::TokenizerSpec;
use crate::weights::Weights;

/// A dense layer `y = x · weight + bias` with `weight` stored `[d_in, d_out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub d_in: usize,
    pub d_out: usize,
    /// Row-major `[d_in, d_out]`, in its stored precision.
    pub weight: Weights,
    /// `[d_out]`, or `None` for a layer without bias (most of the Llama family's).
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    /// A layer of zeros, the starting point for loaders that fill it in.
    pub fn zeros(d_in: usize, d_out: usize) -> Self {
        Linear {
            d_in,
            d_out,
            weight: vec![0.0; d_in * d_out].into(),
            bias: Some(vec![0.0; d_out]),
        }
    }

    /// Number of parameters (weights and biases).
    pub fn parameter_count(&self) -> usize {
        self.weight.len() + self.bias.as_ref().map_or(0, Vec::len)
    }
}

/// A norm's scale and (for LayerNorm) shift, `[d_model]` each. Which norm it is — LayerNorm or
/// RMSNorm — is the config's [`crate::Norm`].
#[derive(Clone, Debug, PartialEq)]
pub struct NormWeights {
    pub weight: Vec<f32>,
    /// LayerNorm's shift; `None` for RMSNorm.
    pub bias: Option<Vec<f32>>,
}

impl NormWeights {
    /// The identity LayerNorm (scale 1, shift 0).
    pub fn identity(d: usize) -> Self {
        NormWeights {
            weight: vec![1.0; d],
            bias: Some(vec![0.0; d]),
        }
    }
}

/// The four projections of one attention layer. `q` is `[d_model, n_head·d_head]`, `k` and `v`
/// are `[d_model, n_kv_head·d_head]`, `o` is `[n_head·d_head, d_model]`. Heads are contiguous
/// `d_head`-wide column blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
}

/// The feed-forward sub-layer with its own pre-norm: `x += proj(act(fc(N(x))))`, or with a gate
/// (SwiGLU) `x += proj(act(gate(N(x))) · fc(N(x)))`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub norm: NormWeights,
    /// The up projection `[d_model, d_mlp]`.
    pub fc: Linear,
    /// The gate projection `[d_model, d_mlp]` of a gated MLP.
    pub gate: Option<Linear>,
    /// The down projection `[d_mlp, d_model]`.
    pub proj: Linear,
}

/// One transformer block: `x += attn(attn_norm(x))`, then the MLP if the model has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub attn_norm: NormWeights,
    pub attn: Attention,
    pub mlp: Option<Mlp>,
}

/// Parameter values by schema name, claimed one by one while a [`Model`] is assembled.
#[derive(Default)]
struct Values(HashMap<String, Weights>);

impl Values {
    /// A large matrix, kept in its stored precision.
    fn take(&mut self, name: &str) -> Result<Weights> {
        self.0
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    /// A small tensor, widened to `f32`.
    fn take_f32(&mut self, name: &str) -> Result<Vec<f32>> {
        self.take(name).map(Weights::into_f32)
    }

    fn optional(&mut self, name: &str, present: bool) -> Result<Option<Vec<f32>>> {
        present.then(|| self.take_f32(name)).transpose()
    }

    fn norm(&mut self, config: &ModelConfig, name: &str) -> Result<NormWeights> {
        Ok(NormWeights {
            weight: self.take_f32(&format!("{name}.weight"))?,
            bias: self.optional(&format!("{name}.bias"), config.norm == Norm::LayerNorm)?,
        })
    }

    fn linear(&mut self, name: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        Ok(Linear {
            d_in,
            d_out,
            weight: self.take(&format!("{name}.weight"))?,
            bias: self.optional(&format!("{name}.bias"), bias)?,
        })
    }
}

/// A whole model: its config, weights, and the tokenizer and free-form metadata that travel with
/// it in the project's own file format.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub config: ModelConfig,
    /// Token embeddings `[vocab_size, d_model]`, in their stored precision.
    pub token_embedding: Weights,
    /// Learned position embeddings `[n_ctx, d_model]`; `None` for rotary models.
    pub position_embedding: Option<Vec<f32>>,
    pub blocks: Vec<Block>,
    pub final_norm: NormWeights,
    /// Untied LM head `[vocab_size, d_model]`; `None` when the embeddings are tied or the model
    /// is a classifier. In its stored precision.
    pub lm_head: Option<Weights>,
    /// Classifier head `[d_model, n_classes]`, present exactly when `config.n_classes` is set.
    pub classifier: Option<Linear>,
    /// How to turn text into tokens, when the file says.
    pub tokenizer: Option<TokenizerSpec>,
    /// Anything else the file carries (training task, seed, metrics, a description).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Model {
    /// Builds a model whose every parameter — those of [`ModelConfig::parameters`], in order —
    /// comes from `value`. Every loader and the random initialisation go through here, so the
    /// schema alone decides which tensors a model has.
    pub fn from_parameters(
        config: ModelConfig,
        mut value: impl FnMut(&ParamSpec) -> Result<Weights>,
    ) -> Result<Model> {
        config.validate()?;
        let mut values = Values::default();
        for spec in config.parameters() {
            let data = value(&spec)?;
            if data.len() != spec.len() {
                return Err(ModelError::Shape {
                    name: spec.name,
                    expected: spec.shape,
                    found: vec![data.len()],
                });
            }
            values.0.insert(spec.name, data);
        }
        let c = &config;
        let d = c.d_model;
        let (q_width, kv_width) = (c.n_head * c.d_head(), c.kv_heads() * c.d_head());
        let v = &mut values;
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = format!("blocks.{i}");
            let attn_norm = v.norm(c, &format!("{p}.attn_norm"))?;
            let attn = Attention {
                q: v.linear(&format!("{p}.attn.q"), d, q_width, c.qkv_bias)?,
                k: v.linear(&format!("{p}.attn.k"), d, kv_width, c.qkv_bias)?,
                v: v.linear(&format!("{p}.attn.v"), d, kv_width, c.qkv_bias)?,
                o: v.linear(&format!("{p}.attn.o"), q_width, d, c.out_bias)?,
            };
            let mlp = if c.mlp {
                let (f, bias) = (c.mlp_width(), c.mlp_bias);
                Some(Mlp {
                    norm: v.norm(c, &format!("{p}.mlp_norm"))?,
                    gate: c
                        .gated_mlp
                        .then(|| v.linear(&format!("{p}.mlp.gate"), d, f, bias))
                        .transpose()?,
                    fc: v.linear(&format!("{p}.mlp.fc"), d, f, bias)?,
                    proj: v.linear(&format!("{p}.mlp.proj"), f, d, bias)?,
                })
            } else {
                None
            };
            blocks.push(Block {
                attn_norm,
                attn,
                mlp,
            });
        }
        let model = Model {
            token_embedding: v.take("wte")?,
            position_embedding: v.optional("wpe", c.positional == Positional::Learned)?,
            final_norm: v.norm(c, "ln_f")?,
            lm_head: (!c.tied_embeddings && c.n_classes.is_none())
                .then(|| v.take("lm_head.weight"))
                .transpose()?,
            classifier: c
                .n_classes
                .map(|n| v.linear("classifier", d, n, true))
                .transpose()?,
            blocks,
            config,
            tokenizer: None,
            metadata: Default::default(),
        };
        model.check_shapes()?;
        Ok(model)
    }

    /// A model with random weights: Gaussian projections and embeddings with standard deviation
    /// `std`, small random biases and norm parameters near identity. Deterministic in `seed`.
    /// Used by tests and as the trainer's starting point.
    pub fn random(config: ModelConfig, seed: u64, std: f32) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut normal = |n: usize, scale: f32, offset: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    offset + z * scale
                })
                .collect()
        };
        // Drawn in three passes (dense layers, then embeddings, then norms) so that a seed gives
        // the same weights it always has.
        let specs = config.parameters();
        let mut values = HashMap::new();
        let passes: [&[ParamRole]; 3] = [
            &[ParamRole::Weight, ParamRole::Bias],
            &[ParamRole::Embedding],
            &[ParamRole::NormScale, ParamRole::NormShift],
        ];
        for roles in passes {
            for spec in specs.iter().filter(|s| roles.contains(&s.role)) {
                let data = match spec.role {
                    ParamRole::Weight | ParamRole::Embedding => normal(spec.len(), std, 0.0),
                    ParamRole::Bias => normal(spec.len(), std * 0.25, 0.0),
                    ParamRole::NormScale => normal(spec.len(), 0.1, 1.0),
                    ParamRole::NormShift => normal(spec.len(), 0.1, 0.0),
                };
                values.insert(spec.name.clone(), data);
            }
        }
        Model::from_parameters(config, |spec| {
            values
                .remove(&spec.name)
                .map(Weights::from)
                .ok_or_else(|| ModelError::MissingTensor(spec.name.clone()))
        })
    }

    /// The same model with its large matrices (dense layers, token embedding, untied head) held
    /// in `precision`: 16-bit copies of a model, or a 16-bit model widened.
    pub fn to_precision(&self, precision: crate::Precision) -> Model {
        let mut model = self.clone();
        let convert = |w: &mut Weights| *w = w.to_precision(precision);
        convert(&mut model.token_embedding);
        if let Some(head) = &mut model.lm_head {
            convert(head);
        }
        for linear in model.linears_mut() {
            convert(&mut linear.weight);
        }
        model
    }

    /// Every dense layer, for edits that touch them all.
    fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.blocks
            .iter_mut()
            .flat_map(|b| {
                let a = &mut b.attn;
                let mut layers = vec![&mut a.q, &mut a.k, &mut a.v, &mut a.o];
                if let Some(m) = &mut b.mlp {
                    layers.extend(m.gate.iter_mut());
                    layers.push(&mut m.fc);
                    layers.push(&mut m.proj);
                }
                layers
            })
            .chain(self.classifier.iter_mut())
    }

    /// The precision the large matrices are held in (a checkpoint stores them in one; the token
    /// embedding's).
    pub fn weight_precision(&self) -> crate::Precision {
        self.token_embedding.precision()
    }

    /// "bf16 weights, 723 MB" (or "f32 weights, 150 KB"): what the model's weights are held in
    /// and take.
    pub fn weights_label(&self) -> String {
        let bytes = self.memory_bytes() as f64;
        let size = if bytes < 1e6 {
            format!("{:.0} KB", bytes / 1e3)
        } else {
            format!("{:.0} MB", bytes / 1e6)
        };
        format!("{} weights, {size}", self.weight_precision().label())
    }

    /// Bytes the weights take in memory (16-bit matrices at 2 bytes a value).
    pub fn memory_bytes(&self) -> usize {
        self.named_tensors()
            .iter()
            .map(|(_, _, t)| t.byte_len())
            .sum()
    }

    /// Total number of trainable parameters (tied embeddings counted once), from the schema.
    pub fn parameter_count(&self) -> usize {
        self.config.parameter_count()
    }

    /// The tokens that end a text (`eos_token_id` of a Hugging Face `config.json`, kept in the
    /// metadata): generation stops after one. Empty for models that have none.
    pub fn end_of_text(&self) -> Vec<u32> {
        let ids = |v: &serde_json::Value| v.as_u64().map(|id| id as u32);
        match self.metadata.get("eos_token_id") {
            Some(serde_json::Value::Array(list)) => list.iter().filter_map(ids).collect(),
            Some(one) => ids(one).into_iter().collect(),
            None => Vec::new(),
        }
    }

    /// Verifies that the weights are exactly those the config's parameter schema
    /// ([`ModelConfig::parameters`]) implies: every one present, none extra, each of its shape.
    /// Loaders call this, so a model that exists is a model the forward pass can run.
    pub fn check_shapes(&self) -> Result<()> {
        let c = &self.config;
        c.validate()?;
        if self.blocks.len() != c.n_layer {
            return Err(ModelError::Config(format!(
                "config says {} layers but the weights have {}",
                c.n_layer,
                self.blocks.len()
            )));
        }
        let specs = c.parameters();
        let tensors = self.named_tensors();
        for spec in &specs {
            let Some((name, shape, data)) = tensors.iter().find(|(name, ..)| *name == spec.name)
            else {
                return Err(ModelError::MissingTensor(spec.name.clone()));
            };
            if *shape != spec.shape || data.len() != spec.len() {
                let found = if *shape != spec.shape {
                    shape.clone()
                } else {
                    vec![data.len()]
                };
                return Err(ModelError::Shape {
                    name: name.clone(),
                    expected: spec.shape.clone(),
                    found,
                });
            }
        }
        if let Some((name, ..)) = tensors
            .iter()
            .find(|(name, ..)| !specs.iter().any(|spec| spec.name == *name))
        {
            return Err(ModelError::UnexpectedTensor(name.clone()));
        }
        Ok(())
    }
}
