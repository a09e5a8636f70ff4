//! The page's trainer (attn-model's hand-written backward pass and AdamW) against this crate's
//! (burn's autodiff and optimiser): for the same weights and batch the gradients agree to 1e-4
//! of each parameter's gradient scale, on every architecture option the trainers support, and
//! 50 steps of both runs give the same loss curve.

use attn_model::training::backprop::{loss_and_gradients, parameters_mut};
use attn_model::training::{initial_model, model_config, Trainer as PageTrainer};
use attn_model::Model;
use attn_train::net::Transformer;
use attn_train::train::{batch_loss, Event, Trainer};
use attn_train::{Task, TrainConfig};
use burn::tensor::Device;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// Every architecture option of the training panel, on the task that exercises it.
fn options() -> Vec<(Task, Value)> {
    vec![
        // Attention-only, two heads, with the head-sparsity penalty (the induction recipe).
        (
            Task::Induction,
            json!({"model": {"d_model": 16, "n_layer": 2, "n_head": 2}, "head_penalty": 0.03}),
        ),
        // MLPs and four heads; sequences of different lengths in one batch (padding).
        (
            Task::Sort,
            json!({"model": {"d_model": 16, "n_layer": 2, "n_head": 4, "mlp": true}}),
        ),
        // Grouped-query and multi-query attention trained from the start.
        (
            Task::Reverse,
            json!({"model": {"d_model": 16, "n_layer": 1, "n_head": 4, "n_kv_head": 2}}),
        ),
        (
            Task::Recall,
            json!({"model": {"d_model": 16, "n_layer": 2, "n_head": 2, "n_kv_head": 1}}),
        ),
        // A bidirectional classifier.
        (
            Task::Brackets,
            json!({"model": {"d_model": 16, "n_layer": 1, "n_head": 2, "mlp": true, "d_mlp": 24}}),
        ),
    ]
}

fn config(task: Task, overrides: &Value, steps: usize) -> TrainConfig {
    task.default_config()
        .with_overrides(
            Some(&json!({"batch_size": 6, "warmup_steps": 5, "log_every": 1})),
            Some(steps),
            Some(7),
        )
        .and_then(|c| c.with_overrides(Some(overrides), None, None))
        .unwrap()
}

#[test]
fn gradients_agree_with_burns_autodiff_on_every_option() {
    for (task, overrides) in options() {
        let config = config(task, &overrides, 10);
        let data = task.synthetic_data().unwrap();
        let model_config = model_config(&config, data.as_ref()).unwrap();
        let model = initial_model(&model_config, 3).unwrap();
        let batch = data.batch(&mut ChaCha8Rng::seed_from_u64(5), config.batch_size);

        let (page_loss, page_grads) =
            loss_and_gradients(&model, &batch, config.head_penalty as f32).unwrap();

        let device = Device::flex().autodiff();
        let net = Transformer::from_model(&model, &device);
        let (loss, head_norms) = batch_loss(&net, &batch, &device);
        let burn_loss = loss.clone().into_scalar::<f32>() as f64;
        let burn_norms = head_norms.clone().into_scalar::<f32>() as f64;
        let total = loss + head_norms * config.head_penalty;
        let burn_grads = net.gradients(&model_config, &total.backward()).unwrap();

        assert!(
            (page_loss.loss - burn_loss).abs() < 1e-5 * (1.0 + burn_loss),
            "{task:?}: loss {} vs burn {burn_loss}",
            page_loss.loss
        );
        assert!(
            (page_loss.head_norms - burn_norms).abs() < 1e-4 * (1.0 + burn_norms),
            "{task:?}: head norms {} vs burn {burn_norms}",
            page_loss.head_norms
        );
        let (mut page_grads, mut burn_grads): (Model, Model) = (page_grads, burn_grads);
        let names: Vec<String> = model_config
            .parameters()
            .into_iter()
            .map(|p| p.name)
            .collect();
        for (i, (mine, theirs)) in parameters_mut(&mut page_grads)
            .into_iter()
            .zip(parameters_mut(&mut burn_grads))
            .enumerate()
        {
            // Relative to the parameter's largest gradient, so that entries near zero compare
            // at the precision of the ones that matter.
            let scale = theirs.iter().fold(0.0f32, |m, g| m.max(g.abs())).max(1e-6);
            let worst = mine
                .iter()
                .zip(theirs.iter())
                .map(|(a, b)| (a - b).abs() / scale)
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{task:?}: gradient of parameter {i} ({}) differs by {worst} of its scale {scale}",
                names.get(i).map_or("?", String::as_str)
            );
        }
    }
}

#[test]
fn fifty_steps_follow_the_same_loss_curve() {
    for (task, overrides) in options().into_iter().take(3) {
        let config = config(task, &overrides, 50);
        let mut burn_losses = Vec::new();
        Trainer::new(task, config.clone())
            .unwrap()
            .run(&mut |event| {
                if let Event::Progress(p) = event {
                    burn_losses.push(p.train_loss);
                }
            })
            .unwrap();
        let mut page = PageTrainer::new(task, task.synthetic_data().unwrap(), config).unwrap();
        let page_losses: Vec<f64> = (0..50).map(|_| page.step().unwrap().batch.loss).collect();
        assert_eq!(burn_losses.len(), 50);
        for (step, (a, b)) in page_losses.iter().zip(&burn_losses).enumerate() {
            assert!(
                (a - b).abs() < 1e-3,
                "{task:?} step {}: page {a} vs offline {b}",
                step + 1
            );
        }
    }
}
