//! The parameter schema: every weight a config implies, with its name (as the project's own
//! format stores it), its shape and its role, derived from the config alone. The model's shape
//! check and its parameter count are derived from it; a test keeps `Model::named_tensors` (the
//! saver and the GPU upload's source) in step with it.

use crate::config::{ModelConfig, Norm, Positional};

/// What a parameter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    /// A lookup table: token or position embeddings, or an untied output head.
    Embedding,
    /// A norm's scale (initialised to one).
    NormScale,
    /// A LayerNorm's shift (initialised to zero).
    NormShift,
    /// A dense layer's weight `[d_in, d_out]`.
    Weight,
    /// A dense layer's bias `[d_out]`.
    Bias,
}

/// One parameter of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: ParamRole,
}

impl ParamSpec {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ModelConfig {
    /// Every parameter this config implies, in the order the own format lists them. Names are the
    /// project's own (`wte`, `blocks.{i}.attn.q.weight`, …); each Hugging Face family maps its
    /// names onto these (see `hf`).
    pub fn parameters(&self) -> Vec<ParamSpec> {
        let d = self.d_model;
        let (q_width, kv_width) = (self.n_head * self.d_head(), self.kv_heads() * self.d_head());
        let mut specs = Vec::new();
        let mut add = |name: String, shape: Vec<usize>, role: ParamRole| {
            specs.push(ParamSpec { name, shape, role })
        };
        let shift = self.norm == Norm::LayerNorm;
        let norm = |add: &mut dyn FnMut(String, Vec<usize>, ParamRole), name: &str| {
            add(format!("{name}.weight"), vec![d], ParamRole::NormScale);
            if shift {
                add(format!("{name}.bias"), vec![d], ParamRole::NormShift);
            }
        };
        let linear = |add: &mut dyn FnMut(String, Vec<usize>, ParamRole),
                      name: &str,
                      (d_in, d_out): (usize, usize),
                      bias: bool| {
            add(
                format!("{name}.weight"),
                vec![d_in, d_out],
                ParamRole::Weight,
            );
            if bias {
                add(format!("{name}.bias"), vec![d_out], ParamRole::Bias);
            }
        };
        add("wte".into(), vec![self.vocab_size, d], ParamRole::Embedding);
        if self.positional == Positional::Learned {
            add("wpe".into(), vec![self.n_ctx, d], ParamRole::Embedding);
        }
        for i in 0..self.n_layer {
            let p = format!("blocks.{i}");
            norm(&mut add, &format!("{p}.attn_norm"));
            linear(
                &mut add,
                &format!("{p}.attn.q"),
                (d, q_width),
                self.qkv_bias,
            );
            linear(
                &mut add,
                &format!("{p}.attn.k"),
                (d, kv_width),
                self.qkv_bias,
            );
            linear(
                &mut add,
                &format!("{p}.attn.v"),
                (d, kv_width),
                self.qkv_bias,
            );
            linear(
                &mut add,
                &format!("{p}.attn.o"),
                (q_width, d),
                self.out_bias,
            );
            if self.mlp {
                let f = self.mlp_width();
                norm(&mut add, &format!("{p}.mlp_norm"));
                if self.gated_mlp {
                    linear(&mut add, &format!("{p}.mlp.gate"), (d, f), self.mlp_bias);
                }
                linear(&mut add, &format!("{p}.mlp.fc"), (d, f), self.mlp_bias);
                linear(&mut add, &format!("{p}.mlp.proj"), (f, d), self.mlp_bias);
            }
        }
        norm(&mut add, "ln_f");
        match self.n_classes {
            Some(n) => linear(&mut add, "classifier", (d, n), true),
            None if !self.tied_embeddings => add(
                "lm_head.weight".into(),
                vec![self.vocab_size, d],
                ParamRole::Embedding,
            ),
            None => {}
        }
        specs
    }

    /// Number of parameters (tied embeddings counted once).
    pub fn parameter_count(&self) -> usize {
        self.parameters().iter().map(ParamSpec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Model;

    /// GPT-2 small's shape: 12 layers × 12 heads, d_model 768, MLP 3072, 50 257 tokens, 1024
    /// positions, tied embeddings.
    fn gpt2_small() -> ModelConfig {
        ModelConfig {
            vocab_size: 50257,
            n_ctx: 1024,
            d_model: 768,
            n_layer: 12,
            n_head: 12,
            ..ModelConfig::tiny(50257)
        }
    }

    #[test]
    fn gpt2_small_has_its_published_parameter_count() {
        assert_eq!(gpt2_small().parameter_count(), 124_439_808);
    }

    /// SmolLM2-135M: 30 layers, 9 query heads sharing 3 key/value heads, d_model 576, SwiGLU
    /// 1536, 49 152 tokens, tied embeddings, no biases.
    #[test]
    fn smollm2_135m_has_its_published_parameter_count() {
        let config = ModelConfig {
            vocab_size: 49152,
            n_ctx: 8192,
            d_model: 576,
            n_layer: 30,
            n_head: 9,
            n_kv_head: Some(3),
            d_mlp: Some(1536),
            ..ModelConfig::tiny_llama(49152)
        };
        assert_eq!(config.parameter_count(), 134_515_008);
    }

    /// Pythia-70m: 6 layers × 8 heads, d_model 512, MLP 2048, 50 304 tokens, untied output.
    #[test]
    fn pythia_70m_has_its_published_parameter_count() {
        let config = ModelConfig {
            vocab_size: 50304,
            n_ctx: 2048,
            d_model: 512,
            n_layer: 6,
            n_head: 8,
            ..ModelConfig::tiny_neox(50304)
        };
        assert_eq!(config.parameter_count(), 70_426_624);
    }

    #[test]
    fn the_saved_tensors_follow_the_schema_for_every_kind_of_model() {
        let tiny = ModelConfig::tiny(30);
        let configs = [
            tiny.clone(),
            ModelConfig {
                mlp: false,
                ..tiny.clone()
            },
            ModelConfig {
                tied_embeddings: false,
                ..tiny.clone()
            },
            ModelConfig {
                n_kv_head: Some(2),
                ..tiny.clone()
            },
            ModelConfig {
                n_classes: Some(3),
                causal: false,
                ..tiny.clone()
            },
            ModelConfig::tiny_llama(30),
            ModelConfig {
                tied_embeddings: false,
                qkv_bias: true,
                ..ModelConfig::tiny_llama(30)
            },
            ModelConfig::tiny_neox(30),
        ];
        for config in configs {
            let model = Model::random(config.clone(), 1, 0.1).unwrap();
            let saved: Vec<(String, Vec<usize>, usize)> = model
                .named_tensors()
                .into_iter()
                .map(|(name, shape, data)| (name, shape, data.len()))
                .collect();
            let schema: Vec<(String, Vec<usize>, usize)> = config
                .parameters()
                .into_iter()
                .map(|p| {
                    let len = p.len();
                    (p.name, p.shape, len)
                })
                .collect();
            assert_eq!(saved, schema, "{config:?}");
            assert_eq!(
                model.parameter_count(),
                schema.iter().map(|s| s.2).sum::<usize>()
            );
        }
    }

    #[test]
    fn a_missing_extra_or_misshaped_weight_is_named() {
        let mut model = Model::random(ModelConfig::tiny(30), 1, 0.1).unwrap();
        model.blocks[1].attn.k.bias.as_mut().unwrap().pop();
        let err = model.check_shapes().unwrap_err().to_string();
        assert!(err.contains("blocks.1.attn.k.bias"), "{err}");
        let mut model = Model::random(ModelConfig::tiny(30), 1, 0.1).unwrap();
        model.lm_head = Some(vec![0.0; 30 * 16].into());
        let err = model.check_shapes().unwrap_err().to_string();
        assert!(err.contains("lm_head.weight"), "{err}");
    }
}
