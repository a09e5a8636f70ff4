//! The weights of a model, held as plain row-major `f32` vectors.
//!
//! Every weight matrix is stored `[in, out]` (as GPT-2's `Conv1D` stores it), so a layer is
//! `y = x · W + b` with `x` a `[rows, in]` matrix. The token embedding and an untied LM head are
//! `[vocab, d_model]`, so logits are `x · Eᵀ`.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::tokenizer::TokenizerSpec;

/// A dense layer `y = x · weight + bias` with `weight` stored `[d_in, d_out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub d_in: usize,
    pub d_out: usize,
    /// Row-major `[d_in, d_out]`.
    pub weight: Vec<f32>,
    /// `[d_out]`.
    pub bias: Vec<f32>,
}

impl Linear {
    /// A layer of zeros, the starting point for loaders that fill it in.
    pub fn zeros(d_in: usize, d_out: usize) -> Self {
        Linear {
            d_in,
            d_out,
            weight: vec![0.0; d_in * d_out],
            bias: vec![0.0; d_out],
        }
    }

    /// Number of parameters (weights and biases).
    pub fn parameter_count(&self) -> usize {
        self.weight.len() + self.bias.len()
    }
}

/// LayerNorm's scale and shift, `[d_model]` each.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LayerNorm {
    /// The identity normalisation (scale 1, shift 0).
    pub fn identity(d: usize) -> Self {
        LayerNorm {
            weight: vec![1.0; d],
            bias: vec![0.0; d],
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

/// The feed-forward sub-layer with its own pre-norm: `x += proj(gelu(fc(LN(x))))`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub norm: LayerNorm,
    pub fc: Linear,
    pub proj: Linear,
}

/// One transformer block: `x += attn(attn_norm(x))`, then the MLP if the model has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub attn_norm: LayerNorm,
    pub attn: Attention,
    pub mlp: Option<Mlp>,
}

/// A whole model: its config, weights, and the tokenizer and free-form metadata that travel with
/// it in the project's own file format.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub config: ModelConfig,
    /// Token embeddings `[vocab_size, d_model]`.
    pub token_embedding: Vec<f32>,
    /// Learned position embeddings `[n_ctx, d_model]`.
    pub position_embedding: Vec<f32>,
    pub blocks: Vec<Block>,
    pub final_norm: LayerNorm,
    /// Untied LM head `[vocab_size, d_model]`; `None` when the embeddings are tied or the model
    /// is a classifier.
    pub lm_head: Option<Vec<f32>>,
    /// Classifier head `[d_model, n_classes]`, present exactly when `config.n_classes` is set.
    pub classifier: Option<Linear>,
    /// How to turn text into tokens, when the file says.
    pub tokenizer: Option<TokenizerSpec>,
    /// Anything else the file carries (training task, seed, metrics, a description).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Model {
    /// A model with random weights: Gaussian projections and embeddings with standard deviation
    /// `std`, small random biases and LayerNorm parameters near identity. Deterministic in
    /// `seed`. Used by tests and as the trainer's starting point.
    pub fn random(config: ModelConfig, seed: u64, std: f32) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut normal = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    z * scale
                })
                .collect()
        };
        let d = config.d_model;
        let dh = config.d_head();
        let mut linear = |d_in: usize, d_out: usize| Linear {
            d_in,
            d_out,
            weight: normal(d_in * d_out, std),
            bias: normal(d_out, std * 0.25),
        };
        let mut blocks = Vec::with_capacity(config.n_layer);
        for _ in 0..config.n_layer {
            let attn = Attention {
                q: linear(d, config.n_head * dh),
                k: linear(d, config.kv_heads() * dh),
                v: linear(d, config.kv_heads() * dh),
                o: linear(config.n_head * dh, d),
            };
            let mlp = config.mlp.then(|| Mlp {
                norm: LayerNorm::identity(d),
                fc: linear(d, config.mlp_width()),
                proj: linear(config.mlp_width(), d),
            });
            blocks.push(Block {
                attn_norm: LayerNorm::identity(d),
                attn,
                mlp,
            });
        }
        let classifier = config.n_classes.map(|c| linear(d, c));
        let mut normal = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    z * scale
                })
                .collect()
        };
        let token_embedding = normal(config.vocab_size * d, std);
        let position_embedding = normal(config.n_ctx * d, std);
        let lm_head = (!config.tied_embeddings && config.n_classes.is_none())
            .then(|| normal(config.vocab_size * d, std));
        let mut perturb = |ln: &mut LayerNorm| {
            for w in &mut ln.weight {
                *w += normal(1, 0.1)[0];
            }
            for b in &mut ln.bias {
                *b = normal(1, 0.1)[0];
            }
        };
        for block in &mut blocks {
            perturb(&mut block.attn_norm);
            if let Some(mlp) = &mut block.mlp {
                perturb(&mut mlp.norm);
            }
        }
        let mut final_norm = LayerNorm::identity(d);
        perturb(&mut final_norm);
        let model = Model {
            config,
            token_embedding,
            position_embedding,
            blocks,
            final_norm,
            lm_head,
            classifier,
            tokenizer: None,
            metadata: Default::default(),
        };
        model.check_shapes()?;
        Ok(model)
    }

    /// Total number of trainable parameters (tied embeddings counted once), from the schema.
    pub fn parameter_count(&self) -> usize {
        self.config.parameter_count()
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
