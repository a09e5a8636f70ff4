//! A whole lesson measured over samples: every step's sample (from the model's task, or windows
//! of held-out text), its measurement and its numbers with their intervals and verdicts — the
//! report `attn lesson ID --json` prints and the lesson tests check.

use serde::{Deserialize, Serialize};

use crate::engine::api::{Engine, Outcome, Progress};
use crate::lesson::{
    run_sampled, summarise, LessonStep, Sample, SampledResult, RANKING_INPUTS, TASK_INPUTS,
    TEXT_INPUTS,
};
use crate::model::Model;
use crate::training::tasks::Task;

/// The seed of every step's sample and bootstrap.
pub const SAMPLE_SEED: u64 = 0;

/// One step's numbers over its sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's number in the lesson, from 1.
    pub step: usize,
    pub title: String,
    /// What was scored and what was ranked on.
    pub sample: String,
    pub ranking: String,
    pub results: Vec<SampledResult>,
}

/// Every measured step of a lesson.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonReport {
    pub id: String,
    /// The model the steps ran on: the built-in models' ids, or the path given.
    pub model: String,
    pub steps: Vec<StepReport>,
}

/// The task a model was trained on, from its metadata (`None` for a language model from
/// elsewhere).
pub fn model_task(model: &Model) -> Option<Task> {
    model
        .metadata
        .get("task")
        .and_then(|t| t.as_str())
        .and_then(Task::from_name)
}

/// Whether `model`'s sample is held-out text (it was not trained on a synthetic task), which
/// [`sample_for`] then needs.
pub fn reads_held_out_text(model: &Model) -> bool {
    model_task(model).is_none_or(|task| task.synthetic_data().is_none())
}

/// The sample a step runs on for `model`: its task's held-out sequences, or windows of
/// `held_out_text` (the plays' held-out tails) through the model's tokenizer.
pub fn sample_for(model: &Model, held_out_text: &[String]) -> Result<Sample, String> {
    if !reads_held_out_text(model) {
        if let Some(sample) = model_task(model)
            .and_then(|task| Sample::from_task(task, TASK_INPUTS, RANKING_INPUTS, SAMPLE_SEED))
        {
            return Ok(sample);
        }
    }
    let tokenizer = model
        .build_tokenizer()
        .map_err(|e| e.to_string())?
        .ok_or("a model without a tokenizer cannot read held-out text")?;
    Sample::from_text(
        held_out_text,
        &tokenizer,
        model.config.n_ctx,
        TEXT_INPUTS,
        RANKING_INPUTS,
        SAMPLE_SEED,
    )
    .map_err(|e| e.to_string())
}

/// `model` before training: its architecture, tokenizer and metadata with the trainer's initial
/// weights (seed 0).
pub fn untrained_twin(model: &Model) -> crate::Result<Model> {
    let mut twin = crate::training::initial_model(&model.config, 0)?;
    twin.tokenizer = model.tokenizer.clone();
    twin.metadata = model.metadata.clone();
    Ok(twin)
}

/// Measures one step over `sample` (and on `on_screen`) and reports its numbers; `None` when the
/// step measures nothing or it was cancelled.
pub async fn report_step<E: Engine>(
    engine: &mut E,
    number: usize,
    step: &LessonStep,
    sample: &Sample,
    on_screen: Option<&[u32]>,
    progress: &mut impl Progress,
) -> Result<Option<StepReport>, String> {
    let Some(measure) = &step.measure else {
        return Ok(None);
    };
    if let Some(tokens) = on_screen {
        measure
            .check(&engine.model().config, tokens)
            .map_err(|e| e.to_string())?;
    }
    let measured = match run_sampled(engine, measure, sample, on_screen, progress)
        .await
        .map_err(|e| e.to_string())?
    {
        Outcome::Done(m) => m,
        Outcome::Cancelled => return Ok(None),
    };
    Ok(Some(StepReport {
        step: number,
        title: step.title.clone(),
        sample: measured.scoring_name.clone(),
        ranking: measured.ranking_name.clone(),
        results: summarise(
            &measured,
            &step.results,
            step.reported.as_deref(),
            SAMPLE_SEED,
        )?,
    }))
}

/// Runs every measured step of `lesson` natively: each step on its built-in model (read from
/// `static_dir/models`, listed in its `index.json`) or on `model` when given, over the step's
/// sample (held-out text from `static_dir/train/shakespeare.json`), on the engine `engine_for`
/// makes, and on the step's own input as the page shows it.
#[cfg(not(target_arch = "wasm32"))]
pub async fn run_lesson<E: Engine>(
    lesson: &crate::Lesson,
    static_dir: &std::path::Path,
    model: Option<&std::path::Path>,
    mut engine_for: impl FnMut(Model) -> Result<E, String>,
    progress: &mut impl Progress,
) -> Result<LessonReport, String> {
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let index: serde_json::Value =
        serde_json::from_str(&read(static_dir.join("models/index.json"))?)
            .map_err(|e| format!("models/index.json: {e}"))?;
    let held_out =
        crate::training::tasks::held_out_text(&read(static_dir.join("train/shakespeare.json"))?)
            .map_err(|e| e.to_string())?;
    let entries = index["models"].as_array().cloned().unwrap_or_default();
    let mut steps = Vec::new();
    let mut models_used: Vec<String> = Vec::new();
    for (i, step) in lesson.steps.iter().enumerate() {
        if step.measure.is_none() {
            continue;
        }
        let (loaded, examples, name) = match model {
            Some(path) => (
                crate::load_model(path).map_err(|e| format!("{}: {e}", path.display()))?,
                Vec::new(),
                path.display().to_string(),
            ),
            None => {
                let entry = entries
                    .iter()
                    .find(|m| m["id"] == step.model.as_str())
                    .ok_or_else(|| format!("step {}: no built-in model {:?}", i + 1, step.model))?;
                let file = static_dir
                    .join("models")
                    .join(entry["file"].as_str().unwrap_or_default());
                let examples: Vec<String> = entry["example_inputs"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    crate::load_model(&file).map_err(|e| format!("{}: {e}", file.display()))?,
                    examples,
                    step.model.clone(),
                )
            }
        };
        let loaded = if step.untrained {
            untrained_twin(&loaded).map_err(|e| format!("step {}: {e}", i + 1))?
        } else {
            loaded
        };
        if !models_used.contains(&name) {
            models_used.push(name);
        }
        step.variant
            .validate(&loaded.config)
            .map_err(|e| format!("step {}: {e}", i + 1))?;
        let sample = sample_for(&loaded, &held_out).map_err(|e| format!("step {}: {e}", i + 1))?;
        let prompt = step.prompt.clone().or_else(|| examples.first().cloned());
        let on_screen = match (
            &prompt,
            loaded.build_tokenizer().map_err(|e| e.to_string())?,
        ) {
            (Some(p), Some(t)) => Some(t.encode(p).map_err(|e| e.to_string())?),
            _ => None,
        };
        let mut engine = engine_for(loaded)?;
        if let Some(report) = report_step(
            &mut engine,
            i + 1,
            step,
            &sample,
            on_screen.as_deref(),
            progress,
        )
        .await
        .map_err(|e| format!("step {}: {e}", i + 1))?
        {
            steps.push(report);
        }
    }
    Ok(LessonReport {
        id: lesson.id.clone(),
        model: models_used.join(", "),
        steps,
    })
}
