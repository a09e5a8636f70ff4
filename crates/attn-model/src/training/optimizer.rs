//! AdamW with per-parameter gradient clipping, step for step the offline trainer's optimiser
//! (burn's `AdamW` with β₁ = 0.9, β₂ = 0.99, ε = 1e-8, and `GradientClippingConfig::Norm`), so
//! that the two trainers follow the same trajectory from the same start.

use crate::model::Model;
use crate::training::backprop::parameters_mut;
use crate::training::config::TrainConfig;

const BETA_1: f32 = 0.9;
/// 0.99 rather than the usual 0.999: the second moment follows the fast-changing attention
/// gradients of small models sooner (the offline trainer's choice).
const BETA_2: f32 = 0.99;
/// 1e-8, the usual Adam value: a larger one stretches the plateau before induction heads form.
const EPSILON: f32 = 1e-8;

/// The optimiser's state: the two moments of every parameter and the step count.
#[derive(Clone, Debug)]
pub struct AdamW {
    weight_decay: f32,
    grad_clip: Option<f32>,
    /// Steps taken.
    time: i32,
    /// First and second moments, in [`parameters_mut`]'s order.
    moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl AdamW {
    /// A fresh optimiser with `config`'s weight decay and clipping.
    pub fn new(config: &TrainConfig) -> Self {
        AdamW {
            weight_decay: config.weight_decay as f32,
            grad_clip: config.grad_clip.map(|c| c as f32),
            time: 0,
            moments: Vec::new(),
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.time as usize
    }

    /// One update of `model` by `grads` (same shapes) at `learning_rate`: each parameter's
    /// gradient clipped to the configured L2 norm, the moments updated and bias-corrected,
    /// decoupled weight decay, then `θ ← θ(1 − lr·λ) − lr · m̂ / (√v̂ + ε)`.
    pub fn step(&mut self, learning_rate: f64, model: &mut Model, grads: &mut Model) {
        let params = parameters_mut(model);
        let grads = parameters_mut(grads);
        assert_eq!(params.len(), grads.len(), "gradient of another model");
        if self.moments.is_empty() {
            self.moments = params
                .iter()
                .map(|p| (vec![0.0; p.len()], vec![0.0; p.len()]))
                .collect();
        }
        self.time += 1;
        let correction_1 = 1.0 - BETA_1.powi(self.time);
        let correction_2 = 1.0 - BETA_2.powi(self.time);
        let lr = learning_rate as f32;
        let decay_rate = learning_rate * self.weight_decay as f64;
        let keep = (1.0 - decay_rate) as f32;
        let step = AdamStep {
            learning_rate: lr,
            correction_1,
            correction_2,
            // Exactly 1 without decay: θ · 1 is θ.
            keep: if decay_rate == 0.0 { 1.0 } else { keep },
        };
        for ((param, grad), (m, v)) in params.into_iter().zip(grads).zip(&mut self.moments) {
            let coef = clip_coefficient(grad, self.grad_clip);
            adamw_update(param, grad, coef, m, v, step);
        }
    }
}

/// The constants of one AdamW step, the same for every parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub learning_rate: f32,
    /// The bias corrections `1 − β₁ᵗ` and `1 − β₂ᵗ`.
    pub correction_1: f32,
    pub correction_2: f32,
    /// The decoupled weight decay's factor `1 − lr · λ` (1 without decay).
    pub keep: f32,
}

/// The factor that clips `grad` to an L2 norm of `threshold`: `min(threshold / (‖grad‖ + tiny),
/// 1)`, or 1 without clipping. The CPU twin of the GPU trainer's `clip` kernel.
pub fn clip_coefficient(grad: &[f32], threshold: Option<f32>) -> f32 {
    match threshold {
        Some(threshold) => {
            let norm = grad.iter().map(|g| g * g).sum::<f32>().sqrt();
            (threshold / (norm + f32::MIN_POSITIVE)).min(1.0)
        }
        None => 1.0,
    }
}

/// One parameter tensor's AdamW update with its gradient scaled by `coef` (the clipping):
/// the moments, bias-corrected, then `θ ← θ · keep − lr · m̂ / (√v̂ + ε)`. The CPU twin of the
/// GPU trainer's `update` kernel.
pub fn adamw_update(
    param: &mut [f32],
    grad: &[f32],
    coef: f32,
    m: &mut [f32],
    v: &mut [f32],
    step: AdamStep,
) {
    for i in 0..param.len() {
        let g = grad[i] * coef;
        m[i] = m[i] * BETA_1 + g * (1.0 - BETA_1);
        v[i] = v[i] * BETA_2 + g * g * (1.0 - BETA_2);
        let delta = (m[i] / step.correction_1) / ((v[i] / step.correction_2).sqrt() + EPSILON);
        param[i] = param[i] * step.keep - delta * step.learning_rate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;

    #[test]
    fn the_first_step_moves_every_weight_by_the_learning_rate() {
        // With bias correction, Adam's first step is lr · sign(g) wherever g ≠ 0.
        let config = ModelConfig::tiny(7);
        let mut model = Model::random(config, 1, 0.3).unwrap();
        let before = model.clone();
        let mut grads = crate::training::backprop::zeros_like(&model).unwrap();
        parameters_mut(&mut grads)[0][3] = 0.5;
        parameters_mut(&mut grads)[0][4] = -2e-3;
        let mut train = TrainConfig {
            weight_decay: 0.0,
            grad_clip: Some(1.0),
            ..crate::training::Task::Sort.default_config()
        };
        train.learning_rate = 0.01;
        let mut adam = AdamW::new(&train);
        adam.step(0.01, &mut model, &mut grads);
        let (a, b) = (before.token_embedding.f32(), model.token_embedding.f32());
        assert!((b[3] - (a[3] - 0.01)).abs() < 1e-6);
        assert!((b[4] - (a[4] + 0.01)).abs() < 1e-6);
        assert_eq!(a[5], b[5]);
        assert_eq!(adam.steps(), 1);
    }
}
