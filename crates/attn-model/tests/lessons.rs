//! Every built-in lesson (`static/lessons/`) runs on the CPU engine with the built-in models, and
//! each measured number lands in the range its lesson claims: the lessons' claims are checked
//! here as well as in the page.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};

use attn_model::engine::unwatched;
use attn_model::{load_model, now, run_measurement, CpuEngine, Lesson, Tokenizer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lessons() -> Vec<Lesson> {
    attn_model::lesson::read_lessons(&root().join("static/lessons")).unwrap()
}

#[test]
fn every_lesson_measures_what_it_claims() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("static/models/index.json")).unwrap(),
    )
    .unwrap();
    let models = manifest["models"].as_array().unwrap();
    let lessons = lessons();
    assert!(lessons.len() >= 8, "eight lessons or more");
    let mut failures = Vec::new();
    for lesson in &lessons {
        assert!(
            lesson.steps.iter().any(|s| s.measure.is_some()),
            "{}: a lesson measures something",
            lesson.id
        );
        for (n, step) in lesson.steps.iter().enumerate() {
            let entry = models
                .iter()
                .find(|m| m["id"] == step.model.as_str())
                .unwrap_or_else(|| panic!("{} step {n}: no model {:?}", lesson.id, step.model));
            let model = load_model(
                root()
                    .join("static/models")
                    .join(entry["file"].as_str().unwrap()),
            )
            .unwrap();
            let prompt = step
                .prompt
                .clone()
                .unwrap_or_else(|| entry["example_inputs"][0].as_str().unwrap().to_string());
            let tokenizer = Tokenizer::from_spec(model.tokenizer.clone().unwrap()).unwrap();
            let tokens = tokenizer.encode(&prompt).unwrap();
            step.variant.validate(&model.config).unwrap();
            let Some(measure) = &step.measure else {
                assert!(
                    step.results.is_empty(),
                    "{} step {n}: results need a measurement",
                    lesson.id
                );
                continue;
            };
            measure
                .check(&model.config, &tokens)
                .unwrap_or_else(|e| panic!("{} step {n}: {e}", lesson.id));
            let mut engine = CpuEngine::new(model).unwrap();
            let measured = now(run_measurement(
                &mut engine,
                &tokens,
                measure,
                &mut unwatched(),
            ))
            .unwrap()
            .done()
            .unwrap();
            println!(
                "{} step {n}: unmodified {:.4}",
                lesson.id, measured.unmodified
            );
            for s in &measured.series {
                let points: Vec<String> = s
                    .points
                    .iter()
                    .map(|p| format!("{}={:.4}", p.x, p.y))
                    .collect();
                println!("{} step {n} [{}]: {}", lesson.id, s.name, points.join(" "));
            }
            for spec in &step.results {
                let value = measured
                    .result(spec)
                    .unwrap_or_else(|e| panic!("{} step {n}: {e}", lesson.id));
                println!(
                    "{} step {n}: {} = {value:.4} (claims {})",
                    lesson.id,
                    spec.label,
                    spec.range_text()
                );
                if !spec.holds(value) {
                    failures.push(format!(
                        "{} step {n}: {} = {value:.4}, claimed {}",
                        lesson.id,
                        spec.label,
                        spec.range_text()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
