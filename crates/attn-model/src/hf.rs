//! Import of Hugging Face GPT-2 checkpoints: `config.json` + `model.safetensors` as saved by
//! `transformers` (Conv1D weights stored `[in, out]`, a fused `c_attn`, `h.N.*` names with or
//! without the `transformer.` prefix, the LM head tied or present, and the causal-mask buffers
//! that older exports carry).

use serde::Deserialize;

use crate::config::{ModelConfig, Norm, Positional};
use crate::error::{ModelError, Result};
use crate::format::parse_json;
use crate::model::{Attention, Block, LayerNorm, Linear, Mlp, Model};
use crate::tensors::TensorMap;

/// The fields of a GPT-2 `config.json` that decide the architecture.
#[derive(Debug, Deserialize)]
struct Gpt2Config {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    #[serde(alias = "n_ctx")]
    n_positions: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default = "default_activation")]
    activation_function: String,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f32,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    #[serde(default = "yes")]
    scale_attn_weights: bool,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
}

fn default_activation() -> String {
    "gelu_new".into()
}
fn default_eps() -> f32 {
    1e-5
}
fn yes() -> bool {
    true
}

impl Gpt2Config {
    fn to_model_config(&self) -> Result<ModelConfig> {
        if let Some(t) = &self.model_type {
            if t != "gpt2" {
                return Err(ModelError::Config(format!(
                    "model_type `{t}` is not supported (only GPT-2 checkpoints are)"
                )));
            }
        }
        if !matches!(
            self.activation_function.as_str(),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast"
        ) {
            return Err(ModelError::Config(format!(
                "activation_function `{}` is not supported (the engine uses GELU's tanh \
                 approximation, `gelu_new`)",
                self.activation_function
            )));
        }
        if !self.scale_attn_weights || self.scale_attn_by_inverse_layer_idx {
            return Err(ModelError::Config(
                "only the standard 1/sqrt(d_head) attention scaling is supported".into(),
            ));
        }
        let config = ModelConfig {
            vocab_size: self.vocab_size,
            n_ctx: self.n_positions,
            d_model: self.n_embd,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_kv_head: None,
            d_mlp: self.n_inner,
            mlp: true,
            causal: true,
            tied_embeddings: self.tie_word_embeddings,
            n_classes: None,
            layer_norm_eps: self.layer_norm_epsilon,
            norm: Norm::LayerNorm,
            positional: Positional::Learned,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Maps a stored tensor name to the name used while loading: drops the `transformer.` prefix and
/// the causal-mask buffers (`attn.bias`, `attn.masked_bias`), which are not weights.
fn normalise_name(name: &str) -> Option<String> {
    let name = name.strip_prefix("transformer.").unwrap_or(name);
    if name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") {
        return None;
    }
    Some(name.to_string())
}

impl Model {
    /// Builds a model from the contents of a GPT-2 `config.json` and `model.safetensors`.
    pub fn from_hf_gpt2(config_json: &str, safetensors: &[u8]) -> Result<Model> {
        let hf: Gpt2Config = parse_json("config.json", config_json)?;
        let config = hf.to_model_config()?;
        let mut t = TensorMap::from_bytes(safetensors, normalise_name)?;
        let d = config.d_model;
        let f = config.mlp_width();
        let norm = |t: &mut TensorMap, name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: t.take(&format!("{name}.weight"), &[d])?,
                bias: t.take(&format!("{name}.bias"), &[d])?,
            })
        };
        let conv1d = |t: &mut TensorMap, name: &str, d_in: usize, d_out: usize| -> Result<Linear> {
            Ok(Linear {
                d_in,
                d_out,
                weight: t.take(&format!("{name}.weight"), &[d_in, d_out])?,
                bias: t.take(&format!("{name}.bias"), &[d_out])?,
            })
        };
        let token_embedding = t.take("wte.weight", &[config.vocab_size, d])?;
        let position_embedding = t.take("wpe.weight", &[config.n_ctx, d])?;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = format!("h.{i}");
            let fused = conv1d(&mut t, &format!("{p}.attn.c_attn"), d, 3 * d)?;
            let (q, k, v) = split_fused_qkv(&fused);
            blocks.push(Block {
                attn_norm: norm(&mut t, &format!("{p}.ln_1"))?,
                attn: Attention {
                    q,
                    k,
                    v,
                    o: conv1d(&mut t, &format!("{p}.attn.c_proj"), d, d)?,
                },
                mlp: Some(Mlp {
                    norm: norm(&mut t, &format!("{p}.ln_2"))?,
                    fc: conv1d(&mut t, &format!("{p}.mlp.c_fc"), d, f)?,
                    proj: conv1d(&mut t, &format!("{p}.mlp.c_proj"), f, d)?,
                }),
            });
        }
        let final_norm = norm(&mut t, "ln_f")?;
        // `lm_head.weight` is an `nn.Linear`, stored `[vocab, d_model]` like the embedding.
        let stored_head = t.take_optional("lm_head.weight", &[config.vocab_size, d])?;
        let lm_head = match (config.tied_embeddings, stored_head) {
            // Tied: a stored copy is the embedding itself, so it adds nothing.
            (true, _) => None,
            (false, Some(h)) => Some(h),
            (false, None) => return Err(ModelError::MissingTensor("lm_head.weight".into())),
        };
        t.finish()?;
        let model = Model {
            config,
            token_embedding,
            position_embedding,
            blocks,
            final_norm,
            lm_head,
            classifier: None,
            tokenizer: None,
            metadata: Default::default(),
        };
        model.check_shapes()?;
        Ok(model)
    }
}

/// Splits GPT-2's fused `c_attn` (`[d, 3d]`, columns q | k | v) into three `[d, d]` layers.
fn split_fused_qkv(fused: &Linear) -> (Linear, Linear, Linear) {
    let d = fused.d_in;
    let part = |index: usize| Linear {
        d_in: d,
        d_out: d,
        weight: fused
            .weight
            .chunks_exact(3 * d)
            .flat_map(|row| &row[index * d..(index + 1) * d])
            .copied()
            .collect(),
        bias: fused.bias[index * d..(index + 1) * d].to_vec(),
    };
    (part(0), part(1), part(2))
}
