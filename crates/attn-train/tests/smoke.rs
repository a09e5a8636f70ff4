//! The CI smoke test: a few hundred steps of the smallest task must lower the loss, and the
//! exported file must load in attn-model and score the same there as at export.

use attn_model::{Model, Variant};
use attn_train::train::{Event, Trainer};
use attn_train::{evaluate, Task};
use serde_json::json;

#[test]
fn a_short_run_learns_and_exports_a_loadable_model() {
    let task = Task::Reverse;
    let overrides = json!({
        "model": {"d_model": 32, "n_layer": 2, "n_head": 2},
        "batch_size": 32,
        "learning_rate": 3e-3,
        "warmup_steps": 20,
        "log_every": 25,
    });
    let config = task
        .default_config()
        .with_overrides(Some(&overrides), Some(300), Some(1))
        .unwrap();
    let trainer = Trainer::new(task, config).unwrap();
    let mut losses = Vec::new();
    let outcome = trainer
        .run(&mut |event| {
            if let Event::Progress(p) = event {
                losses.push(p.train_loss);
            }
        })
        .unwrap();
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last < 0.8 * first,
        "the loss did not fall enough: {first:.3} → {last:.3}"
    );
    // Guessing a digit is right one time in ten; even this short run does much better.
    assert!(outcome.report.value > 0.2, "{:?}", outcome.report);

    let bytes = outcome.model.to_safetensors_bytes().unwrap();
    let loaded = Model::from_safetensors_bytes(&bytes).unwrap();
    assert_eq!(loaded, outcome.model);
    assert_eq!(loaded.metadata["task"], "reverse");
    assert_eq!(loaded.metadata["steps"], 300);
    assert_eq!(
        evaluate(&loaded, &Variant::default()).unwrap(),
        outcome.report
    );
}

#[test]
fn the_same_seed_gives_the_same_model() {
    let config = Task::Sort
        .default_config()
        .with_overrides(
            Some(&json!({"model": {"d_model": 16, "n_layer": 1, "n_head": 2}, "batch_size": 8})),
            Some(5),
            Some(9),
        )
        .unwrap();
    let a = attn_train::train(Task::Sort, config.clone()).unwrap();
    let b = attn_train::train(Task::Sort, config).unwrap();
    assert_eq!(a.model.token_embedding, b.model.token_embedding);
    assert_eq!(a.report, b.report);
}
