//! The trainable transformer, written with burn tensors so that burn's autodiff supplies the
//! backward pass. It is the same architecture as attn-model's CPU forward, operation for
//! operation: token + learned position embeddings; pre-LayerNorm blocks
//! `x += Attn(LN₁(x))`, `x += MLP(LN₂(x))` (optional) with the tanh GELU; causal or
//! bidirectional softmax attention with `n_kv_head` key/value heads shared by contiguous groups
//! of query heads; a final LayerNorm; a tied or untied LM head, or a classifier.
//!
//! Weights move in and out only through [`attn_model::Model`] ([`Transformer::from_model`] and
//! [`Transformer::to_model`]), whose `[in, out]` layout burn's `linear` uses as well, so export
//! is a copy, never a transpose — and the parity test compares the two forwards directly.

use attn_model::model::{Attention, Block, Linear, Mlp, NormWeights};
use attn_model::{Model, ModelConfig};
use burn::module::{Module, Param};
use burn::tensor::{activation, Bool, Device, Gradients, Int, Tensor, TensorData};

/// A dense layer `y = x · weight + bias`, `weight` stored `[in, out]`.
#[derive(Module, Debug)]
pub struct Dense {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Dense {
    fn from_linear(l: &Linear, device: &Device) -> Self {
        Dense {
            weight: param2(&l.weight.f32(), l.d_in, l.d_out, device),
            // The trainer's own models always have biases; a layer without one starts at zero.
            bias: match &l.bias {
                Some(bias) => param1(bias, device),
                None => param1(&vec![0.0; l.d_out], device),
            },
        }
    }

    fn to_linear(&self, source: Source<'_>) -> Linear {
        let [d_in, d_out] = self.weight.val().dims();
        Linear {
            d_in,
            d_out,
            weight: source.read(&self.weight).into(),
            bias: Some(source.read(&self.bias)),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        burn::tensor::module::linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

/// LayerNorm over the last dimension with the biased variance (as PyTorch and attn-model).
#[derive(Module, Debug)]
pub struct Norm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    eps: f64,
}

impl Norm {
    fn from_layer_norm(n: &NormWeights, eps: f32, device: &Device) -> Self {
        Norm {
            weight: param1(&n.weight, device),
            bias: match &n.bias {
                Some(bias) => param1(bias, device),
                None => param1(&vec![0.0; n.weight.len()], device),
            },
            eps: eps as f64,
        }
    }

    fn to_layer_norm(&self, source: Source<'_>) -> NormWeights {
        NormWeights {
            weight: source.read(&self.weight),
            bias: Some(source.read(&self.bias)),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mean = x.clone().mean_dim(2);
        let centered = x - mean;
        let variance = centered.clone().powi_scalar(2).mean_dim(2);
        let normed = centered / (variance + self.eps).sqrt();
        normed * self.weight.val().unsqueeze::<3>() + self.bias.val().unsqueeze::<3>()
    }
}

/// The four projections of one attention layer.
#[derive(Module, Debug)]
pub struct AttentionLayer {
    pub q: Dense,
    pub k: Dense,
    pub v: Dense,
    pub o: Dense,
}

/// The MLP sub-layer with its own pre-norm.
#[derive(Module, Debug)]
pub struct MlpLayer {
    pub norm: Norm,
    pub fc: Dense,
    pub proj: Dense,
}

/// One block.
#[derive(Module, Debug)]
pub struct BlockLayer {
    pub attn_norm: Norm,
    pub attn: AttentionLayer,
    pub mlp: Option<MlpLayer>,
}

/// The whole trainable model.
#[derive(Module, Debug)]
pub struct Transformer {
    /// Token embeddings `[vocab, d_model]` (also the LM head when tied).
    pub wte: Param<Tensor<2>>,
    /// Position embeddings `[n_ctx, d_model]`.
    pub wpe: Param<Tensor<2>>,
    pub blocks: Vec<BlockLayer>,
    pub ln_f: Norm,
    /// Untied LM head `[vocab, d_model]`.
    pub lm_head: Option<Param<Tensor<2>>>,
    pub classifier: Option<Dense>,
    n_head: usize,
    n_kv_head: usize,
    causal: bool,
}

impl Transformer {
    /// A trainable copy of `model`'s weights on `device` (use an autodiff device to train).
    pub fn from_model(model: &Model, device: &Device) -> Self {
        let c = &model.config;
        let eps = c.layer_norm_eps;
        let blocks = model
            .blocks
            .iter()
            .map(|b| BlockLayer {
                attn_norm: Norm::from_layer_norm(&b.attn_norm, eps, device),
                attn: AttentionLayer {
                    q: Dense::from_linear(&b.attn.q, device),
                    k: Dense::from_linear(&b.attn.k, device),
                    v: Dense::from_linear(&b.attn.v, device),
                    o: Dense::from_linear(&b.attn.o, device),
                },
                mlp: b.mlp.as_ref().map(|m| MlpLayer {
                    norm: Norm::from_layer_norm(&m.norm, eps, device),
                    fc: Dense::from_linear(&m.fc, device),
                    proj: Dense::from_linear(&m.proj, device),
                }),
            })
            .collect();
        Transformer {
            wte: param2(
                &model.token_embedding.f32(),
                c.vocab_size,
                c.d_model,
                device,
            ),
            // Only learned positions train; a rotary model has no table (and does not train here).
            wpe: match &model.position_embedding {
                Some(wpe) => param2(wpe, c.n_ctx, c.d_model, device),
                None => param2(&vec![0.0; c.n_ctx * c.d_model], c.n_ctx, c.d_model, device),
            },
            blocks,
            ln_f: Norm::from_layer_norm(&model.final_norm, eps, device),
            lm_head: model
                .lm_head
                .as_ref()
                .map(|h| param2(&h.f32(), c.vocab_size, c.d_model, device)),
            classifier: model
                .classifier
                .as_ref()
                .map(|l| Dense::from_linear(l, device)),
            n_head: c.n_head,
            n_kv_head: c.kv_heads(),
            causal: c.causal,
        }
    }

    /// The weights as an attn-model [`Model`] with `config` (which must be the config this
    /// network was built from), without tokenizer or metadata.
    pub fn to_model(&self, config: &ModelConfig) -> attn_model::Result<Model> {
        self.export(config, Source::Values)
    }

    /// The gradient of every parameter in `grads` (from `loss.backward()` on an autodiff
    /// device), laid out as an attn-model [`Model`]: what the page's trainer is checked against.
    pub fn gradients(&self, config: &ModelConfig, grads: &Gradients) -> attn_model::Result<Model> {
        self.export(config, Source::Gradients(grads))
    }

    fn export(&self, config: &ModelConfig, source: Source<'_>) -> attn_model::Result<Model> {
        let blocks = self
            .blocks
            .iter()
            .map(|b| Block {
                attn_norm: b.attn_norm.to_layer_norm(source),
                attn: Attention {
                    q: b.attn.q.to_linear(source),
                    k: b.attn.k.to_linear(source),
                    v: b.attn.v.to_linear(source),
                    o: b.attn.o.to_linear(source),
                },
                mlp: b.mlp.as_ref().map(|m| Mlp {
                    gate: None,
                    norm: m.norm.to_layer_norm(source),
                    fc: m.fc.to_linear(source),
                    proj: m.proj.to_linear(source),
                }),
            })
            .collect();
        let model = Model {
            config: config.clone(),
            token_embedding: source.read(&self.wte).into(),
            position_embedding: Some(source.read(&self.wpe)),
            blocks,
            final_norm: self.ln_f.to_layer_norm(source),
            lm_head: self.lm_head.as_ref().map(|h| source.read(h).into()),
            classifier: self.classifier.as_ref().map(|c| c.to_linear(source)),
            tokenizer: None,
            metadata: Default::default(),
        };
        model.check_shapes()?;
        Ok(model)
    }

    /// Logits `[batch, T, n_out]` for token ids `[batch, T]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward_with_head_norms(tokens).0
    }

    /// The logits and, summed over every layer and head, the mean Euclidean norm of the head's
    /// output rows (what attn-model reports as `head_out_norms`): the quantity the optional
    /// head-sparsity penalty of training pushes down.
    pub fn forward_with_head_norms(&self, tokens: Tensor<2, Int>) -> (Tensor<3>, Tensor<1>) {
        let [batch, t_len] = tokens.dims();
        let device = tokens.device();
        let wte = self.wte.val();
        let d_model = wte.dims()[1];
        let embedded = wte
            .clone()
            .select(0, tokens.reshape([batch * t_len]))
            .reshape([batch, t_len, d_model]);
        let positions = self.wpe.val().slice(0..t_len).unsqueeze::<3>();
        let mut x = embedded + positions;

        // `true` where query i may not see key j (j > i): filled with −∞ before the softmax.
        let future = self
            .causal
            .then(|| Tensor::<2, Bool>::tril_mask([t_len, t_len], 0, &device));
        let mut head_norms = Tensor::<1>::zeros([1], &device);
        for block in &self.blocks {
            let (attn_out, norms) = self.attention(
                &block.attn,
                block.attn_norm.forward(x.clone()),
                future.clone(),
            );
            x = x + attn_out;
            head_norms = head_norms + norms;
            if let Some(mlp) = &block.mlp {
                let hidden = gelu_tanh(mlp.fc.forward(mlp.norm.forward(x.clone())));
                x = x + mlp.proj.forward(hidden);
            }
        }
        let x = self.ln_f.forward(x);
        let logits = match (&self.classifier, &self.lm_head) {
            (Some(classifier), _) => classifier.forward(x),
            (None, Some(head)) => burn::tensor::module::linear(x, head.val().transpose(), None),
            (None, None) => burn::tensor::module::linear(x, wte.transpose(), None),
        };
        (logits, head_norms)
    }

    /// Multi-head (or grouped-query) softmax attention of one layer on normed input
    /// `[batch, T, d_model]`, with the sum over heads of each head's mean output-row norm.
    fn attention(
        &self,
        attn: &AttentionLayer,
        x: Tensor<3>,
        future: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, Tensor<1>) {
        let [batch, t_len, _] = x.dims();
        let (n_head, n_kv) = (self.n_head, self.n_kv_head);
        let d_head = attn.q.weight.val().dims()[1] / n_head;
        let split =
            |t: Tensor<3>, heads: usize| t.reshape([batch, t_len, heads, d_head]).swap_dims(1, 2);
        let q = split(attn.q.forward(x.clone()), n_head);
        let k = repeat_kv(split(attn.k.forward(x.clone()), n_kv), n_head / n_kv);
        let v = repeat_kv(split(attn.v.forward(x), n_kv), n_head / n_kv);

        let mut scores = q.matmul(k.swap_dims(2, 3)) / (d_head as f64).sqrt();
        if let Some(future) = future {
            let mask = future
                .unsqueeze::<4>()
                .expand([batch, n_head, t_len, t_len]);
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        let probs = activation::softmax(scores, 3);
        let z = probs.matmul(v);
        // The small constant keeps the gradient of the square root finite at zero.
        let norms = (z.clone().powi_scalar(2).sum_dim(3) + 1e-8).sqrt().mean() * n_head as f64;
        let z = z.swap_dims(1, 2).reshape([batch, t_len, n_head * d_head]);
        (attn.o.forward(z), norms)
    }
}

/// Key/value heads `[batch, n_kv, T, d]` repeated so that query head `h` meets key/value head
/// `h / group` (contiguous groups, as attn-model's GQA).
fn repeat_kv(x: Tensor<4>, group: usize) -> Tensor<4> {
    if group == 1 {
        return x;
    }
    let [batch, n_kv, t_len, d_head] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .repeat_dim(2, group)
        .reshape([batch, n_kv * group, t_len, d_head])
}

/// GELU with the tanh approximation (GPT-2's `gelu_new`), written out so that it matches
/// attn-model's formula exactly.
fn gelu_tanh(x: Tensor<3>) -> Tensor<3> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044_715) * SQRT_2_OVER_PI;
    x * (inner.tanh() + 1.0) * 0.5
}

fn param1(data: &[f32], device: &Device) -> Param<Tensor<1>> {
    Param::from_data(TensorData::new(data.to_vec(), [data.len()]), device)
}

fn param2(data: &[f32], rows: usize, cols: usize, device: &Device) -> Param<Tensor<2>> {
    Param::from_data(TensorData::new(data.to_vec(), [rows, cols]), device)
}

/// What an export reads from each parameter.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Its values.
    Values,
    /// Its gradient (zeros where the loss does not depend on it).
    Gradients(&'a Gradients),
}

impl Source<'_> {
    /// The parameter's values or gradient, row-major.
    fn read<const D: usize>(self, param: &Param<Tensor<D>>) -> Vec<f32> {
        let tensor = match self {
            Source::Values => param.val(),
            Source::Gradients(grads) => match param.val().grad(grads) {
                Some(grad) => grad,
                None => return vec![0.0; param.val().shape().num_elements()],
            },
        };
        tensor
            .into_data()
            .try_to_vec::<f32>()
            .expect("parameters are f32")
    }
}

/// Token ids `[batch, T]` as a burn tensor.
pub fn token_tensor(rows: &[Vec<u32>], t_len: usize, device: &Device) -> Tensor<2, Int> {
    let mut ids = Vec::with_capacity(rows.len() * t_len);
    for row in rows {
        ids.extend(row.iter().map(|&t| t as i64));
        // Padding only ever follows a causal sequence, where no real position can see it.
        ids.extend(std::iter::repeat_n(0i64, t_len - row.len()));
    }
    Tensor::from_data(TensorData::new(ids, [rows.len(), t_len]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use attn_model::CpuEngine;

    /// Runs `config` with random weights through burn and through attn-model's CPU engine.
    fn check_parity(config: ModelConfig) {
        let model = Model::random(config.clone(), 11, 0.3).unwrap();
        let device = Device::flex();
        let net = Transformer::from_model(&model, &device);
        // Export is an exact copy of what was imported.
        assert_eq!(net.to_model(&config).unwrap(), model);

        let t_len = config.n_ctx.min(9);
        let rows: Vec<Vec<u32>> = (0..3u32)
            .map(|r| {
                (0..t_len as u32)
                    .map(|t| (t * 7 + r * 3 + 1) % config.vocab_size as u32)
                    .collect()
            })
            .collect();
        let logits = net.forward(token_tensor(&rows, t_len, &device));
        let burn_logits = logits.into_data().try_to_vec::<f32>().unwrap();
        let n_out = config.n_out();

        // Through the file format too, as the playground loads it.
        let loaded = Model::from_safetensors_bytes(&model.to_safetensors_bytes().unwrap()).unwrap();
        let engine = CpuEngine::new(loaded).unwrap();
        let mut worst = 0.0f32;
        for (r, row) in rows.iter().enumerate() {
            let cpu = engine.forward(row).unwrap();
            for (i, v) in cpu.logits.iter().enumerate() {
                let b = burn_logits[r * t_len * n_out + i];
                worst = worst.max((b - v).abs() / (1.0 + v.abs()));
            }
        }
        assert!(worst < 1e-4, "{config:?}: logits differ by {worst}");
    }

    #[test]
    fn burn_forward_matches_the_cpu_engine() {
        let base = ModelConfig::tiny(13);
        check_parity(base.clone());
        check_parity(ModelConfig {
            mlp: false,
            n_head: 2,
            ..base.clone()
        });
        check_parity(ModelConfig {
            causal: false,
            n_classes: Some(3),
            n_layer: 3,
            ..base.clone()
        });
        check_parity(ModelConfig {
            n_kv_head: Some(2),
            tied_embeddings: false,
            ..base.clone()
        });
        check_parity(ModelConfig {
            n_kv_head: Some(1),
            d_mlp: Some(24),
            n_ctx: 7,
            ..base
        });
    }
}
