//! Initial weights for training, GPT-2 style: projections and embeddings `N(0, 0.02²)`, the two
//! projections that write into the residual stream (attention output, MLP output) scaled down by
//! `1/sqrt(2 · n_layer)` so the stream does not grow with depth, biases zero, LayerNorms the
//! identity. Drawn on the host from ChaCha8 (stream [`INIT_STREAM`] of the run's seed), so a
//! seed gives the same start on any machine.

use crate::{Model, ModelConfig, ParamRole, ParamSpec};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The ChaCha stream of the initial weights (training data uses 0, held-out sets 1).
pub const INIT_STREAM: u64 = 2;
/// Standard deviation of the initial weights.
const STD: f32 = 0.02;

/// The starting point of a training run with `config` and `seed`: every parameter of the
/// config's schema, drawn in the schema's order.
pub fn initial_model(config: &ModelConfig, seed: u64) -> crate::Result<Model> {
    config.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(INIT_STREAM);
    let mut normal = |n: usize, std: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut rng);
                z * std
            })
            .collect()
    };
    let residual_std = STD / (2.0 * config.n_layer as f32).sqrt();
    // The two projections that write into the residual stream.
    let writes_residual = |spec: &ParamSpec| {
        [".attn.o.weight", ".mlp.proj.weight"]
            .iter()
            .any(|s| spec.name.ends_with(s))
    };
    Model::from_parameters(config.clone(), |spec| {
        Ok(match spec.role {
            ParamRole::Weight if writes_residual(spec) => normal(spec.len(), residual_std),
            ParamRole::Weight | ParamRole::Embedding => normal(spec.len(), STD),
            ParamRole::Bias | ParamRole::NormShift => vec![0.0; spec.len()],
            ParamRole::NormScale => vec![1.0; spec.len()],
        }
        .into())
    })
}
