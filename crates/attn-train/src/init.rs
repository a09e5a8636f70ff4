//! Initial weights for training, GPT-2 style: projections and embeddings `N(0, 0.02²)`, the two
//! projections that write into the residual stream (attention output, MLP output) scaled down by
//! `1/sqrt(2 · n_layer)` so the stream does not grow with depth, biases zero, LayerNorms the
//! identity. Drawn on the host from ChaCha8 (stream [`INIT_STREAM`] of the run's seed), so a
//! seed gives the same start on any machine.

use attn_model::model::{Attention, Block, LayerNorm, Linear, Mlp};
use attn_model::{Model, ModelConfig};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The ChaCha stream of the initial weights (training data uses 0, held-out sets 1).
pub const INIT_STREAM: u64 = 2;
/// Standard deviation of the initial weights.
const STD: f32 = 0.02;

struct Draw(ChaCha8Rng);

impl Draw {
    fn normal(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut self.0);
                z * std
            })
            .collect()
    }

    fn linear(&mut self, d_in: usize, d_out: usize, std: f32) -> Linear {
        Linear {
            d_in,
            d_out,
            weight: self.normal(d_in * d_out, std),
            bias: vec![0.0; d_out],
        }
    }
}

/// The starting point of a training run with `config` and `seed`.
pub fn initial_model(config: &ModelConfig, seed: u64) -> attn_model::Result<Model> {
    config.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(INIT_STREAM);
    let mut draw = Draw(rng);
    let d = config.d_model;
    let inner = config.n_head * config.d_head();
    let kv = config.kv_heads() * config.d_head();
    let residual_std = STD / (2.0 * config.n_layer as f32).sqrt();
    let token_embedding = draw.normal(config.vocab_size * d, STD);
    let position_embedding = draw.normal(config.n_ctx * d, STD);
    let blocks = (0..config.n_layer)
        .map(|_| Block {
            attn_norm: LayerNorm::identity(d),
            attn: Attention {
                q: draw.linear(d, inner, STD),
                k: draw.linear(d, kv, STD),
                v: draw.linear(d, kv, STD),
                o: draw.linear(inner, d, residual_std),
            },
            mlp: config.mlp.then(|| Mlp {
                norm: LayerNorm::identity(d),
                fc: draw.linear(d, config.mlp_width(), STD),
                proj: draw.linear(config.mlp_width(), d, residual_std),
            }),
        })
        .collect();
    let lm_head = (!config.tied_embeddings && config.n_classes.is_none())
        .then(|| draw.normal(config.vocab_size * d, STD));
    let classifier = config.n_classes.map(|n| draw.linear(d, n, STD));
    let model = Model {
        config: config.clone(),
        token_embedding,
        position_embedding,
        blocks,
        final_norm: LayerNorm::identity(d),
        lm_head,
        classifier,
        tokenizer: None,
        metadata: Default::default(),
    };
    model.check_shapes()?;
    Ok(model)
}
