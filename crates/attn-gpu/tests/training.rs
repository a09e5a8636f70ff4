//! The GPU trainer's gradients against the CPU trainer's (attn-model's hand-written backward
//! pass, itself checked against finite differences and against burn's autodiff): for the same
//! weights and batch, the loss, the head norms and every parameter's gradient agree to 1e-4 of
//! that parameter's largest gradient, on every architecture option the page trains.
#![cfg(not(target_arch = "wasm32"))]

use crate::common;

use attn_gpu::training::loss_and_gradients_blocking;
use attn_model::training::backprop::{check_gradients, loss_and_gradients_with, parameters_mut};
use attn_model::training::{initial_model, model_config, Task, TrainConfig};
use attn_model::variant::KernelName;
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

/// The agreement test's options, then what burn's network does not have — rotary positions and
/// linear attention — on a multi-head and a grouped-query option each, checked against the CPU
/// trainer only.
fn gpu_options() -> Vec<(Task, TrainConfig)> {
    let mut options = options();
    assert_eq!(options.len(), 5, "every training option");
    assert_eq!(
        [0, 2].map(|i| options[i].1.model.n_kv_head),
        [None, Some(2)],
        "a multi-head and a grouped-query option"
    );
    let with = |change: fn(&mut TrainConfig)| {
        [0, 2].map(|i| {
            let (task, mut config) = options[i].clone();
            change(&mut config);
            (task, config)
        })
    };
    let rotary = with(|c| c.model.rotary = true);
    let linear = with(|c| c.model.linear_attention = true);
    options.extend(rotary);
    options.extend(linear);
    options
}

#[test]
fn gpu_gradients_match_the_cpu_trainer_on_every_option() {
    let ctx = pollster::block_on(common::new_context());
    for (task, config) in gpu_options() {
        let data = task.synthetic_data().unwrap();
        let model = initial_model(&model_config(&config, data.as_ref()).unwrap(), 3).unwrap();
        let batch = data.batch(
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(5),
            config.batch_size,
        );
        let penalty = config.head_penalty as f32;
        let kernel = if config.model.linear_attention {
            KernelName::Linear
        } else {
            KernelName::Softmax
        };
        let (cpu_loss, cpu_grads) =
            loss_and_gradients_with(&model, kernel, &batch, penalty).unwrap();
        let (gpu_loss, gpu_grads) =
            loss_and_gradients_blocking(&ctx, &model, kernel, &batch, penalty).unwrap();

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
        check_gradients(&gpu_grads, &cpu_grads, 1e-4).unwrap_or_else(|e| panic!("{task:?}: {e}"));
    }
}

#[test]
fn fifty_gpu_steps_follow_the_cpu_trainers_loss_curve() {
    use attn_gpu::training::GpuTrainer;
    use attn_model::training::Trainer;
    let ctx = pollster::block_on(common::new_context());
    // Three of the agreement test's options, a rotary one and a linear-attention one.
    let options = gpu_options();
    let chosen = [0, 1, 2, 5, 7].map(|i| options[i].clone());
    for (task, mut config) in chosen {
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

#[test]
fn healing_on_the_gpu_follows_the_cpu_trainer_and_keeps_ablated_heads_silent() {
    use attn_gpu::training::GpuTrainer;
    use attn_model::training::Trainer;
    use attn_model::Variant;
    let ctx = pollster::block_on(common::new_context());
    let task = Task::Sort;
    let mut config = task.default_config();
    config.steps = 10;
    config.warmup_steps = 2;
    config.batch_size = 16;
    let data = task.synthetic_data().unwrap();
    let model = initial_model(&model_config(&config, data.as_ref()).unwrap(), 3).unwrap();
    assert!(model.config.n_head >= 2, "a head to ablate and one to keep");
    let variant = Variant::from_json(r#"{"kv_groups": 1, "heads": {"ablate": [[0, 1]]}}"#).unwrap();
    let mut cpu = Trainer::healing(
        task,
        task.synthetic_data().unwrap(),
        config.clone(),
        &model,
        &variant,
    )
    .unwrap();
    let mut gpu = GpuTrainer::healing(
        &ctx,
        task,
        task.synthetic_data().unwrap(),
        (config.clone(), &model, &variant),
    )
    .unwrap();
    assert_eq!(
        gpu.model_config().kv_heads(),
        1,
        "pooled to one key/value head"
    );
    for step in 1..=10 {
        let (a, b) = (cpu.step().unwrap(), gpu.step_blocking().unwrap());
        assert!(
            (a.batch.loss - b.batch.loss).abs() < 1e-3,
            "step {step}: CPU {} vs GPU {}",
            a.batch.loss,
            b.batch.loss
        );
    }
    let weights = pollster::block_on(gpu.weights()).unwrap();
    let o = &weights.blocks[0].attn.o;
    let d_head = weights.config.d_head();
    let rows = &o.weight.f32()[d_head * o.d_out..2 * d_head * o.d_out];
    assert!(
        rows.iter().all(|&w| w == 0.0),
        "the ablated head stays silent"
    );
    assert!(o.weight.f32()[..d_head * o.d_out].iter().any(|&w| w != 0.0));

    // A rank cut is put back with an SVD after every step: the CPU trainer's job.
    let cut = Variant::from_json(r#"{"kv_rank": 4}"#).unwrap();
    let refused = GpuTrainer::healing(
        &ctx,
        task,
        task.synthetic_data().unwrap(),
        (config, &model, &cut),
    );
    assert!(
        matches!(refused, Err(attn_gpu::GpuError::Unsupported(_))),
        "a rank cut heals on the CPU"
    );
}
