//! The page's trainer (attn-model's hand-written backward pass and AdamW) against this crate's
//! (burn's autodiff and optimiser): for the same weights and batch the gradients agree to 1e-4
//! of each parameter's gradient scale, on every architecture option the trainers support, and
//! 50 steps of both runs give the same loss curve.

use attn_model::training::backprop::{check_gradients, loss_and_gradients, parameters_mut};
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

/// The seeds of the gradient comparison: the initial weights', the batch's.
const INIT_SEED: u64 = 3;
const BATCH_SEED: u64 = 5;

/// burn's loss, head-norm sum and gradients for `config`'s initial weights (seed
/// [`INIT_SEED`]) on the batch drawn with [`BATCH_SEED`], and that model and batch.
fn burn_gradients(
    task: Task,
    config: &TrainConfig,
) -> (f64, f64, Model, Model, Vec<attn_model::training::Sequence>) {
    let data = task.synthetic_data().unwrap();
    let model_config = model_config(config, data.as_ref()).unwrap();
    let model = initial_model(&model_config, INIT_SEED).unwrap();
    let batch = data.batch(
        &mut ChaCha8Rng::seed_from_u64(BATCH_SEED),
        config.batch_size,
    );
    let device = Device::flex().autodiff();
    let net = Transformer::from_model(&model, &device);
    let (loss, head_norms) = batch_loss(&net, &batch, &device);
    let burn_loss = loss.clone().into_scalar::<f32>() as f64;
    let burn_norms = head_norms.clone().into_scalar::<f32>() as f64;
    let total = loss + head_norms * config.head_penalty;
    let burn_grads = net.gradients(&model_config, &total.backward()).unwrap();
    (burn_loss, burn_norms, burn_grads, model, batch)
}

/// burn's training loss at each of `config.steps` steps.
fn burn_curve(task: Task, config: &TrainConfig) -> Vec<f64> {
    let mut losses = Vec::new();
    Trainer::new(task, config.clone())
        .unwrap()
        .run(&mut |event| {
            if let Event::Progress(p) = event {
                losses.push(p.train_loss);
            }
        })
        .unwrap();
    losses
}

/// The browser twin of these tests (attn-model's `tests/browser.rs`, in headless Chromium,
/// where burn does not run) reads burn's results from here.
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/training/agreement.json"
);

/// burn's results for every option, as the fixture holds them.
fn fixture_cases() -> Value {
    let cases: Vec<Value> = options()
        .into_iter()
        .enumerate()
        .map(|(i, (task, overrides))| {
            let config = config(task, &overrides, 10);
            let (loss, head_norms, mut grads, _, _) = burn_gradients(task, &config);
            let gradients: Vec<Vec<f32>> = parameters_mut(&mut grads)
                .into_iter()
                .map(|g| g.clone())
                .collect();
            // The curves of the first three options, as `fifty_steps_follow_the_same_loss_curve`.
            let curve_config = config_for_curve(task, &overrides);
            let curve = (i < 3).then(|| burn_curve(task, &curve_config));
            json!({
                "task": task.name(),
                "config": config,
                "init_seed": INIT_SEED,
                "batch_seed": BATCH_SEED,
                "loss": loss,
                "head_norms": head_norms,
                "gradients": gradients,
                "curve_config": curve.as_ref().map(|_| curve_config),
                "curve": curve,
            })
        })
        .collect();
    json!({
        "about": "burn's loss, head norms and gradients for the first batch of each training \
                  option, and its 50-step loss curves: written by attn-train's tests/agreement.rs \
                  (UPDATE_FIXTURES=1 cargo test -p attn-train --test agreement), read by \
                  attn-model's tests/browser.rs",
        "cases": cases,
    })
}

#[test]
fn the_browser_fixture_holds_burns_results() {
    let fresh = fixture_cases();
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(std::path::Path::new(FIXTURE).parent().unwrap()).unwrap();
        std::fs::write(FIXTURE, serde_json::to_string(&fresh).unwrap()).unwrap();
    }
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(FIXTURE)
            .expect("the fixture exists (UPDATE_FIXTURES=1 writes it)"),
    )
    .unwrap();
    let (fresh, stored) = (&fresh["cases"], &stored["cases"]);
    assert_eq!(
        fresh.as_array().unwrap().len(),
        stored.as_array().unwrap().len()
    );
    for (a, b) in fresh
        .as_array()
        .unwrap()
        .iter()
        .zip(stored.as_array().unwrap())
    {
        let task = &a["task"];
        assert_eq!(
            (&a["task"], &a["config"], &a["curve_config"]),
            (&b["task"], &b["config"], &b["curve_config"])
        );
        let close = |x: &Value, y: &Value, what: &str| {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-6 * (1.0 + y.abs()),
                "{task}: {what} {x} vs stored {y}"
            );
        };
        close(&a["loss"], &b["loss"], "loss");
        close(&a["head_norms"], &b["head_norms"], "head norms");
        for (p, (ga, gb)) in a["gradients"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["gradients"].as_array().unwrap())
            .enumerate()
        {
            let (ga, gb) = (ga.as_array().unwrap(), gb.as_array().unwrap());
            assert_eq!(ga.len(), gb.len(), "{task}: parameter {p}");
            let scale = gb
                .iter()
                .map(|g| g.as_f64().unwrap().abs())
                .fold(1e-6, f64::max);
            for (x, y) in ga.iter().zip(gb) {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!(
                    (x - y).abs() <= 1e-5 * scale,
                    "{task}: parameter {p}: {x} vs stored {y}"
                );
            }
        }
        if let (Some(ca), Some(cb)) = (a["curve"].as_array(), b["curve"].as_array()) {
            assert_eq!(ca.len(), cb.len());
            for (x, y) in ca.iter().zip(cb) {
                close(x, y, "curve");
            }
        }
    }
}

/// The config of the 50-step curves.
fn config_for_curve(task: Task, overrides: &Value) -> TrainConfig {
    config(task, overrides, 50)
}

#[test]
fn gradients_agree_with_burns_autodiff_on_every_option() {
    for (task, overrides) in options() {
        let config = config(task, &overrides, 10);
        let (burn_loss, burn_norms, burn_grads, model, batch) = burn_gradients(task, &config);

        let (page_loss, page_grads) =
            loss_and_gradients(&model, &batch, config.head_penalty as f32).unwrap();

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
        // Relative to each parameter's largest gradient, so that entries near zero compare at the
        // precision of the ones that matter.
        check_gradients(&page_grads, &burn_grads, 1e-4).unwrap_or_else(|e| panic!("{task:?}: {e}"));
    }
}

#[test]
fn fifty_steps_follow_the_same_loss_curve() {
    for (task, overrides) in options().into_iter().take(3) {
        let config = config_for_curve(task, &overrides);
        let burn_losses = burn_curve(task, &config);
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
