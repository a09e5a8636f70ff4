//! The logit lens: the model's own unembedding (after its final norm) applied to the residual
//! stream before each layer and after the last, so one sees at which depth a prediction forms.
//! Entry `n_layer` is the model's logits.

use crate::engine::api::{Engine, Readback};
use crate::engine::hooks::{HookPoint, Hooks};
use crate::forward::output_logits;

/// The lens of one input: `logits[l]` is `[T, n_out]`, the unembedding of the residual stream
/// before layer `l` (`l = n_layer`: after the last block, the model's output).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogitLens {
    pub tokens: Vec<u32>,
    pub n_out: usize,
    pub logits: Vec<Vec<f32>>,
}

impl LogitLens {
    /// Row `t` of the lens at depth `layer`.
    pub fn at(&self, layer: usize, t: usize) -> &[f32] {
        &self.logits[layer][t * self.n_out..(t + 1) * self.n_out]
    }

    /// The shallowest depth from which on position `t`'s top-1 is the model's final top-1
    /// (`n_layer` when it only becomes so at the output).
    pub fn settles_at(&self, t: usize) -> usize {
        let last = self.logits.len() - 1;
        let final_top = crate::engine::output::argmax(self.at(last, t));
        let mut depth = last;
        while depth > 0 && crate::engine::output::argmax(self.at(depth - 1, t)) == final_top {
            depth -= 1;
        }
        depth
    }
}

/// Runs `tokens` once on the engine's current variant, capturing the residual stream before
/// every layer and after the last, and unembeds each.
pub async fn logit_lens<E: Engine>(engine: &mut E, tokens: &[u32]) -> Result<LogitLens, E::Error> {
    let n_layer = engine.model().config.n_layer;
    let hooks = Hooks {
        capture: (0..=n_layer)
            .map(|layer| HookPoint::ResidPre { layer })
            .collect(),
        replace: Vec::new(),
    };
    let readback = Readback {
        logits: crate::engine::api::LogitRows::None,
        attention: crate::engine::api::AttentionMaps::None,
        head_out_norms: false,
    };
    let (_, captured) = engine.forward_hooked(tokens, &readback, &hooks).await?;
    let model = engine.model();
    let logits = captured
        .iter()
        .map(|(_, resid)| output_logits(model, resid, tokens.len()))
        .collect();
    Ok(LogitLens {
        tokens: tokens.to_vec(),
        n_out: model.config.n_out(),
        logits,
    })
}
