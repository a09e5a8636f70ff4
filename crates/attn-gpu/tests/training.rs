//! The GPU trainer's gradients against the CPU trainer's (attn-model's hand-written backward
//! pass, itself checked against finite differences and against burn's autodiff): for the same
//! weights and batch, the loss, the head norms and every parameter's gradient agree to 1e-4 of
//! that parameter's largest gradient, on every architecture option the GPU trainer supports.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use attn_gpu::training::loss_and_gradients_blocking;
use attn_gpu::GpuError;
use attn_model::training::backprop::{gradient_differences, loss_and_gradients, parameters_mut};
use attn_model::training::{initial_model, model_config, Task, TrainConfig};
use rand_chacha::rand_core::SeedableRng;
use serde_json::Value;

/// The training options of the trainers' agreement test, each on the task that uses it, with
/// its batch: read from the fixture attn-train's `tests/agreement.rs` writes, so that the GPU
/// trainer is checked on exactly the options the page's trainer is checked against burn on.
fn options() -> Vec<(Task, TrainConfig)> {
    let fixture: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/training/agreement.json"
    )))
    .unwrap();
    fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            (
                Task::from_name(case["task"].as_str().unwrap()).unwrap(),
                serde_json::from_value(case["config"].clone()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn gpu_gradients_match_the_cpu_trainer_on_every_option() {
    let ctx = pollster::block_on(common::new_context());
    let options = options();
    assert_eq!(options.len(), 5, "every training option");
    for (task, config) in options {
        let data = task.synthetic_data().unwrap();
        let model = initial_model(&model_config(&config, data.as_ref()).unwrap(), 3).unwrap();
        let batch = data.batch(
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(5),
            config.batch_size,
        );
        let penalty = config.head_penalty as f32;
        let (cpu_loss, cpu_grads) = loss_and_gradients(&model, &batch, penalty).unwrap();
        let (gpu_loss, gpu_grads) =
            loss_and_gradients_blocking(&ctx, &model, &batch, penalty).unwrap();

        assert!(
            (gpu_loss.loss - cpu_loss.loss).abs() < 1e-5 * (1.0 + cpu_loss.loss),
            "{task:?}: loss {} vs CPU {}",
            gpu_loss.loss,
            cpu_loss.loss
        );
        assert!(
            (gpu_loss.head_norms - cpu_loss.head_norms).abs() < 1e-4 * (1.0 + cpu_loss.head_norms),
            "{task:?}: head norms {} vs CPU {}",
            gpu_loss.head_norms,
            cpu_loss.head_norms
        );
        assert_eq!(
            (gpu_loss.correct, gpu_loss.scored),
            (cpu_loss.correct, cpu_loss.scored),
            "{task:?}: hits"
        );
        let names: Vec<String> = model
            .config
            .parameters()
            .into_iter()
            .map(|p| p.name)
            .collect();
        let differences = gradient_differences(&gpu_grads, &cpu_grads).unwrap();
        for (i, (worst, scale)) in differences.into_iter().enumerate() {
            assert!(
                worst < 1e-4,
                "{task:?}: gradient of parameter {i} ({}) differs by {worst} of its scale {scale}",
                names.get(i).map_or("?", String::as_str)
            );
        }
    }
}

#[test]
fn what_the_gpu_trainer_does_not_train_yet_is_refused() {
    let ctx = pollster::block_on(common::new_context());
    let (task, mut config) = options().remove(0);
    config.model.rotary = true;
    let data = task.synthetic_data().unwrap();
    let model = initial_model(&model_config(&config, data.as_ref()).unwrap(), 3).unwrap();
    let batch = data.batch(&mut rand_chacha::ChaCha8Rng::seed_from_u64(5), 2);
    let e = loss_and_gradients_blocking(&ctx, &model, &batch, 0.0).unwrap_err();
    assert!(matches!(e, GpuError::Unsupported(_)), "{e}");
}

#[test]
fn fifty_gpu_steps_follow_the_cpu_trainers_loss_curve() {
    use attn_gpu::training::GpuTrainer;
    use attn_model::training::Trainer;
    let ctx = pollster::block_on(common::new_context());
    for (task, mut config) in options().into_iter().take(3) {
        config.steps = 50;
        config.warmup_steps = 5;
        let mut cpu = Trainer::new(task, task.synthetic_data().unwrap(), config.clone()).unwrap();
        let mut gpu = GpuTrainer::new(&ctx, task, task.synthetic_data().unwrap(), config).unwrap();
        for step in 1..=50 {
            let (a, b) = (cpu.step().unwrap(), gpu.step_blocking().unwrap());
            assert_eq!((a.step, a.learning_rate), (b.step, b.learning_rate));
            assert!(
                (a.batch.loss - b.batch.loss).abs() < 1e-3,
                "{task:?} step {step}: CPU {} vs GPU {}",
                a.batch.loss,
                b.batch.loss
            );
        }
        // The weights after 50 steps: the same run.
        let mut gpu_weights = pollster::block_on(gpu.weights()).unwrap();
        let mut cpu_weights = cpu.weights().clone();
        for (i, (g, c)) in parameters_mut(&mut gpu_weights)
            .into_iter()
            .zip(parameters_mut(&mut cpu_weights))
            .enumerate()
        {
            let worst = g
                .iter()
                .zip(c.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-2,
                "{task:?}: parameter {i} differs by {worst} after 50 steps"
            );
        }
    }
}
