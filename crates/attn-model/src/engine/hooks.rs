//! Hook points: where a forward can capture or replace an activation (TransformerLens's
//! names), what a hooked forward captures and replaces, and what it returns.

use crate::config::ModelConfig;
use crate::engine::prepared::PreparedModel;
use crate::error::{ModelError, Result};

/// A point in the forward pass where an engine can capture or replace an activation. The names
/// follow TransformerLens's hook points.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum HookPoint {
    /// `blocks.{layer}.hook_resid_pre`: the residual stream entering block `layer`,
    /// `[T, d_model]`. `layer = n_layer` is the stream after the last block, before the final
    /// LayerNorm.
    ResidPre { layer: usize },
    /// `blocks.{layer}.attn.hook_z` of one head: its output before the output projection (after
    /// any ablation), `[T, d_head]`. In a layer whose attention is dropped it is zero and cannot
    /// be replaced. `head_out_norms` stay those of the head's own output.
    HeadOutput { layer: usize, head: usize },
}

impl HookPoint {
    /// Number of values at this point for a `t_len`-token input.
    pub fn len(&self, config: &ModelConfig, t_len: usize) -> usize {
        match self {
            HookPoint::ResidPre { .. } => t_len * config.d_model,
            HookPoint::HeadOutput { .. } => t_len * config.d_head(),
        }
    }

    /// Whether the point exists in a model of this shape.
    pub fn check(&self, config: &ModelConfig) -> Result<()> {
        let fits = match *self {
            HookPoint::ResidPre { layer } => layer <= config.n_layer,
            HookPoint::HeadOutput { layer, head } => layer < config.n_layer && head < config.n_head,
        };
        if fits {
            Ok(())
        } else {
            Err(ModelError::Input(format!(
                "hook point {self:?} does not exist in a model of {} layers × {} heads",
                config.n_layer, config.n_head
            )))
        }
    }
}

/// What a hooked forward captures and replaces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hooks {
    /// Points whose activations to return.
    pub capture: Vec<HookPoint>,
    /// Activations to use in place of the computed ones (each of [`HookPoint::len`] values).
    pub replace: Vec<(HookPoint, Vec<f32>)>,
}

/// The activations a hooked forward captured, in the order [`Hooks::capture`] asked for them.
pub type Captured = Vec<(HookPoint, Vec<f32>)>;

impl Hooks {
    /// No hooks.
    pub fn none() -> Self {
        Hooks::default()
    }

    /// Whether there is nothing to capture or replace.
    pub fn is_empty(&self) -> bool {
        self.capture.is_empty() && self.replace.is_empty()
    }

    /// Checks every point against the model and each replacement's length against the input;
    /// a head of a layer whose attention is dropped cannot be replaced.
    pub fn check(&self, prepared: &PreparedModel, t_len: usize) -> Result<()> {
        let c = &prepared.config;
        for point in &self.capture {
            point.check(c)?;
        }
        for (i, (point, values)) in self.replace.iter().enumerate() {
            point.check(c)?;
            if self.replace[..i].iter().any(|(p, _)| p == point) {
                return Err(ModelError::Input(format!("two replacements for {point:?}")));
            }
            if values.len() != point.len(c, t_len) {
                return Err(ModelError::Input(format!(
                    "the replacement at {point:?} has {} values; {} tokens need {}",
                    values.len(),
                    t_len,
                    point.len(c, t_len)
                )));
            }
            if let HookPoint::HeadOutput { layer, .. } = *point {
                if prepared.attention_dropped[layer] {
                    return Err(ModelError::Input(format!(
                        "layer {layer}'s attention is dropped: its heads cannot be replaced"
                    )));
                }
            }
        }
        Ok(())
    }
}
