//! Training configs: the architecture and optimisation settings of one training run.
//!
//! Every task has a default config (see [`super::Task::default_config`]); a user overrides any
//! part of it with a JSON object that is merged field by field into the defaults, so
//! `{"model": {"n_head": 1}}` changes the head count and keeps everything else. Unknown fields
//! are errors, so a typo never silently trains the wrong model.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::variant::{Kernel, KernelName, Variant};

/// The architecture choices a config may make. What the task determines — vocabulary, classifier
/// head, causal or bidirectional attention and (for the synthetic tasks) the context length — is
/// not here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchConfig {
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Query heads per layer.
    pub n_head: usize,
    /// Key/value heads per layer; `null` means `n_head` (multi-head attention), fewer trains a
    /// grouped-query (1: multi-query) model natively.
    #[serde(default)]
    pub n_kv_head: Option<usize>,
    /// Whether blocks have an MLP (`false`: attention-only).
    pub mlp: bool,
    /// MLP hidden width; `null` means `4 · d_model`.
    #[serde(default)]
    pub d_mlp: Option<usize>,
    /// Rotary positions (θ = 10 000 over every dimension of a head) instead of a learned
    /// position table. Only the page's trainer trains them.
    #[serde(default)]
    pub rotary: bool,
    /// Linear attention (`φ(q̃_i)·φ(k_j)` normalised over the allowed keys, `φ = elu + 1`:
    /// the forward's `kernel: linear`) instead of softmax; the model must then run with that
    /// kernel. Only the page's trainer trains it.
    #[serde(default)]
    pub linear_attention: bool,
    /// Context length. Only the language model lets it be chosen; the synthetic tasks fix it to
    /// their longest sequence, so it must stay `null` (or equal that length) for them.
    #[serde(default)]
    pub n_ctx: Option<usize>,
}

impl ArchConfig {
    /// The attention weights the architecture trains with: softmax, or linear attention.
    pub fn kernel(&self) -> KernelName {
        if self.linear_attention {
            KernelName::Linear
        } else {
            KernelName::Softmax
        }
    }

    /// What weights trained so run with: the unmodified model, or the linear kernel.
    pub fn variant(&self) -> Variant {
        match self.kernel() {
            KernelName::Softmax => Variant::default(),
            kernel => Variant {
                kernel: Some(Kernel::Named(kernel)),
                ..Variant::default()
            },
        }
    }
}

/// One training run: architecture, optimiser, schedule and seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ArchConfig,
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate of AdamW.
    pub learning_rate: f64,
    /// Linear warm-up from 0 to the peak over this many steps; then cosine decay.
    pub warmup_steps: usize,
    /// Where the cosine decay ends, as a fraction of the peak learning rate.
    pub final_lr_fraction: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Clip each parameter's gradient to this L2 norm (`null`: no clipping).
    #[serde(default)]
    pub grad_clip: Option<f64>,
    /// Weight of a head-sparsity penalty added to the loss: the sum over layers and heads of
    /// each head's mean output norm (a group lasso on heads). It pushes the heads a task does
    /// not need towards silence, so a mechanism lives in as few heads as possible — what makes
    /// the induction model's heads individually meaningful. 0 disables it.
    #[serde(default)]
    pub head_penalty: f64,
    /// Seeds the weight initialisation and the training data stream. The held-out set does not
    /// depend on it.
    pub seed: u64,
    /// Print the running loss every this many steps.
    pub log_every: usize,
}

impl TrainConfig {
    /// Applies a JSON object of overrides (merged recursively into this config) and then the
    /// command-line `--steps` and `--seed`, and checks the result.
    pub fn with_overrides(
        self,
        overrides: Option<&Value>,
        steps: Option<usize>,
        seed: Option<u64>,
    ) -> Result<TrainConfig> {
        let mut value = serde_json::to_value(&self)
            .map_err(|e| ModelError::Training(format!("cannot serialise the defaults: {e}")))?;
        if let Some(overrides) = overrides {
            if !overrides.is_object() {
                return Err(ModelError::Training(
                    "the config must be a JSON object, e.g. {\"steps\": 500}".into(),
                ));
            }
            merge(&mut value, overrides);
        }
        let mut config: TrainConfig =
            serde_json::from_value(value).map_err(|e| ModelError::Training(e.to_string()))?;
        if let Some(steps) = steps {
            config.steps = steps;
        }
        if let Some(seed) = seed {
            config.seed = seed;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the optimisation settings (the architecture is checked when the model config is
    /// built from it and the task).
    pub fn validate(&self) -> Result<()> {
        let err = |m: &str| Err(ModelError::Training(m.to_string()));
        if self.steps == 0 {
            return err("steps must be at least 1");
        }
        if self.batch_size == 0 {
            return err("batch_size must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return err("learning_rate must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.final_lr_fraction) {
            return err("final_lr_fraction must be between 0 and 1");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return err("weight_decay must be a non-negative number");
        }
        if self.grad_clip.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return err("grad_clip must be a positive number or null");
        }
        if !(self.head_penalty.is_finite() && self.head_penalty >= 0.0) {
            return err("head_penalty must be a non-negative number");
        }
        if self.log_every == 0 {
            return err("log_every must be at least 1");
        }
        Ok(())
    }

    /// The learning rate at `step` (0-based): linear warm-up, then cosine decay to
    /// `final_lr_fraction` of the peak at the last step.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        let peak = self.learning_rate;
        if step < self.warmup_steps {
            return peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        peak * (self.final_lr_fraction + (1.0 - self.final_lr_fraction) * cosine)
    }
}

/// Merges `overrides` into `base`: objects field by field (recursively), anything else replaced.
fn merge(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match base.get_mut(key) {
                    Some(slot) => merge(slot, value),
                    // Kept so that deserialisation reports the unknown field by name.
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overrides) => *base = overrides.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> TrainConfig {
        TrainConfig {
            model: ArchConfig {
                d_model: 32,
                n_layer: 2,
                n_head: 2,
                n_kv_head: None,
                mlp: false,
                d_mlp: None,
                rotary: false,
                linear_attention: false,
                n_ctx: None,
            },
            steps: 100,
            batch_size: 8,
            learning_rate: 1e-3,
            warmup_steps: 10,
            final_lr_fraction: 0.1,
            weight_decay: 0.0,
            grad_clip: Some(1.0),
            head_penalty: 0.0,
            seed: 0,
            log_every: 10,
        }
    }

    #[test]
    fn overrides_merge_field_by_field() {
        let c = defaults()
            .with_overrides(
                Some(&json!({"model": {"n_head": 1}, "batch_size": 4})),
                Some(7),
                None,
            )
            .unwrap();
        assert_eq!(c.model.n_head, 1);
        assert_eq!(c.model.d_model, 32);
        assert_eq!(c.batch_size, 4);
        assert_eq!(c.steps, 7);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        let e = defaults()
            .with_overrides(Some(&json!({"model": {"n_heads": 1}})), None, None)
            .unwrap_err();
        assert!(e.to_string().contains("n_heads"), "{e}");
        let e = defaults()
            .with_overrides(Some(&json!({"learning_rate": -1.0})), None, None)
            .unwrap_err();
        assert!(e.to_string().contains("learning_rate"), "{e}");
        let e = defaults()
            .with_overrides(Some(&json!([1, 2])), None, None)
            .unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        let c = defaults();
        assert!((c.learning_rate_at(0) - 1e-4).abs() < 1e-12);
        assert!((c.learning_rate_at(9) - 1e-3).abs() < 1e-12);
        assert!(c.learning_rate_at(50) < 1e-3);
        assert!((c.learning_rate_at(100) - 1e-4).abs() < 1e-9);
    }
}
