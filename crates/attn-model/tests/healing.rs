//! Healing a built-in model: the sort model (4 heads a layer) pooled to one key/value head, or
//! switched to linear attention, loses accuracy, and a short fine-tune with the change built in
//! wins most of it back while the model keeps the change.

use std::path::Path;

use attn_model::training::{score, Task, Trainer};
use attn_model::{load_model, Variant};

/// Heals the built-in sort model with `variant` for 60 steps; returns the held-out accuracy
/// (200 sequences) before the change, right after it and after healing, and the run.
fn heal_the_sort_model(variant: &Variant) -> (f64, f64, f64, Trainer) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../static/models/sort.safetensors");
    let model = load_model(&path).unwrap();
    let task = Task::Sort;
    let data = task.synthetic_data().unwrap();
    let held_out = data.held_out()[..200].to_vec();
    let (_, before) = score(&model, &held_out).unwrap();
    let mut config = task.default_config();
    config.steps = 60;
    config.warmup_steps = 5;
    config.learning_rate /= 3.0;
    let mut trainer = Trainer::healing(task, data, config, &model, variant).unwrap();
    let (_, cut) = trainer.held_out_score(200).unwrap();
    while !trainer.steps().finished() {
        trainer.step().unwrap();
    }
    let (_, healed) = trainer.held_out_score(200).unwrap();
    (before, cut, healed, trainer)
}

#[test]
fn fine_tuning_with_mqa_built_in_heals_the_sort_model() {
    let variant = Variant::from_json(r#"{"kv_groups": 1, "heads": {"ablate": [[1, 3]]}}"#).unwrap();
    let (before, cut, healed, trainer) = heal_the_sort_model(&variant);
    assert!(
        before > 0.9 && cut < before - 0.1,
        "before {before}, after the cut {cut}"
    );
    assert!(healed > cut + 0.1, "after the cut {cut}, healed {healed}");

    // The healed model is still multi-query, and the ablated head still silent.
    let healed_model = trainer.weights();
    assert_eq!(healed_model.config.kv_heads(), 1);
    let o = &healed_model.blocks[1].attn.o;
    let d_head = healed_model.config.d_head();
    assert!(o.weight.f32()[3 * d_head * o.d_out..]
        .iter()
        .all(|&w| w == 0.0));
}

#[test]
fn fine_tuning_with_linear_attention_heals_the_sort_model() {
    // Switching a softmax model to linear attention costs most of its accuracy; fine-tuning with
    // the linear kernel (the trainer's backward through it) wins much of it back.
    let variant = Variant::from_json(r#"{"kernel": "linear"}"#).unwrap();
    let (before, cut, healed, trainer) = heal_the_sort_model(&variant);
    assert_eq!(
        trainer.variant(),
        variant,
        "the run keeps the linear kernel"
    );
    println!(
        "sort model, linear attention: before {before}, after the switch {cut}, healed {healed}"
    );
    assert!(
        before > 0.9 && cut < before - 0.1,
        "before {before}, after the switch {cut}"
    );
    assert!(
        healed > cut + 0.1,
        "after the switch {cut}, healed {healed}"
    );
}
