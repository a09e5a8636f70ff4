//! A whole lesson measured over samples: every step's sample (from the model's task, or windows
//! of held-out text), its measurement and its numbers with their intervals and verdicts — the
//! report `attn lesson ID --json` prints and the lesson tests check.

use serde::{Deserialize, Serialize};

use crate::engine::api::{Engine, Outcome, Progress};
use crate::lesson::{
    run_sampled, summarise, LessonStep, Sample, SampleKind, SampledResult, RANKING_INPUTS,
    TASK_INPUTS, TEXT_INPUTS,
};
use crate::model::Model;
use crate::training::tasks::Task;
use crate::training::Trainer;

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

/// Whether `model` is a language model: it predicts the next token of text, not a synthetic
/// task's answer or a class — the models a step marked `any_language_model` runs on.
pub fn is_language_model(model: &Model) -> bool {
    is_language_model_of(
        model.config.causal,
        model.config.n_classes.is_some(),
        model.metadata.get("task").and_then(|t| t.as_str()),
    )
}

/// The ids of `model`'s special tokens (its end of text, and the beginning of text and padding
/// a Hugging Face `config.json` names), which no sample of random tokens draws.
pub fn special_tokens(model: &Model) -> Vec<u32> {
    let mut ids = model.end_of_text();
    for key in ["bos_token_id", "pad_token_id"] {
        if let Some(id) = model.metadata.get(key).and_then(|v| v.as_u64()) {
            ids.push(id as u32);
        }
    }
    ids
}

/// The sample a step of kind `kind` runs on for `model`: repeated random tokens, or the model's
/// own kind — its task's held-out sequences, or windows of `held_out_text` (the plays'
/// held-out tails) through the model's tokenizer.
pub fn sample_for(
    model: &Model,
    kind: SampleKind,
    held_out_text: &[String],
) -> Result<Sample, String> {
    if kind == SampleKind::RepeatedRandomTokens {
        return Sample::repeated_random_tokens(
            model.config.vocab_size,
            model.config.n_ctx,
            &special_tokens(model),
            TEXT_INPUTS,
            RANKING_INPUTS,
            SAMPLE_SEED,
        )
        .map_err(|e| e.to_string());
    }
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

/// Whether `step` runs on `model` in place of its built-in model, whose task is `built_in_task`:
/// a step marked `any_language_model` on any language model, any step on a model of its
/// built-in model's task (e.g. a sorting model trained in the page).
pub fn step_fits(step: &LessonStep, built_in_task: Option<&str>, model: &Model) -> bool {
    step.fits(
        built_in_task,
        is_language_model(model),
        model_task(model).map(Task::name),
    )
}

impl LessonStep {
    /// [`step_fits`] from what the page knows of a model: whether it is a language model, and
    /// its task's name.
    pub fn fits(
        &self,
        built_in_task: Option<&str>,
        language_model: bool,
        task: Option<&str>,
    ) -> bool {
        (self.any_language_model && language_model)
            || task.is_some_and(|t| Some(t) == built_in_task)
    }
}

/// Whether a model of task `task` (its `metadata.task`; `None` for a model from elsewhere) that
/// predicts the next token (`causal`, no classes) is a language model: no synthetic task.
pub fn is_language_model_of(causal: bool, classifier: bool, task: Option<&str>) -> bool {
    causal
        && !classifier
        && task
            .and_then(Task::from_name)
            .is_none_or(|t| t.synthetic_data().is_none())
}

/// The run that uptrains `model` as `uptrain` says: the variant built into the weights
/// ([`Trainer::healing`]) and fine-tuned on the model's task for `fraction` of the steps its
/// recipe trains for, with the healing recipe ([`crate::training::healing_config`]). Step it to
/// the end and measure [`Trainer::weights`].
pub fn uptraining(model: &Model, uptrain: &crate::lesson::Uptrain) -> Result<Trainer, String> {
    let task = model_task(model)
        .filter(|t| t.synthetic_data().is_some())
        .ok_or("uptraining fine-tunes a model of a built-in task (sort, induction, …) on it")?;
    let steps = (task.default_config().steps as f64 * uptrain.fraction).round() as usize;
    let data = task.synthetic_data().ok_or("the task has no data")?;
    Trainer::healing(
        task,
        data,
        crate::training::healing_config(task, steps),
        model,
        &uptrain.variant,
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

/// Runs every measured step of `lesson` natively, each on its built-in model (read from
/// `static_dir/models`, listed in its `index.json`) — or, when `model` is given, the steps
/// marked `any_language_model` on that language model — over the step's sample (held-out text
/// from `static_dir/train/shakespeare.json`), on the engine `engine_for` makes, and on the
/// step's own input as the page shows it.
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
    let entry_of = |step: &LessonStep| {
        entries
            .iter()
            .find(|m| m["id"] == step.model.as_str())
            .ok_or_else(|| format!("no built-in model {:?}", step.model))
    };
    let given = match model {
        Some(path) => Some((
            crate::load_model(path).map_err(|e| format!("{}: {e}", path.display()))?,
            path.display().to_string(),
        )),
        None => None,
    };
    let mut steps = Vec::new();
    let mut models_used: Vec<String> = Vec::new();
    for (i, step) in lesson.steps.iter().enumerate() {
        if step.measure.is_none() {
            continue;
        }
        let entry = entry_of(step).map_err(|e| format!("step {}: {e}", i + 1))?;
        let (loaded, examples, name) = match &given {
            Some((loaded, name)) => {
                if !step_fits(step, entry["task"].as_str(), loaded) {
                    continue;
                }
                (loaded.clone(), Vec::new(), name.clone())
            }
            None => {
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
        } else if let Some(uptrain) = &step.uptrain {
            let mut run =
                uptraining(&loaded, uptrain).map_err(|e| format!("step {}: {e}", i + 1))?;
            while !run.steps().finished() {
                run.step().map_err(|e| format!("step {}: {e}", i + 1))?;
            }
            run.weights().clone()
        } else {
            loaded
        };
        if !models_used.contains(&name) {
            models_used.push(name);
        }
        step.variant
            .validate(&loaded.config)
            .map_err(|e| format!("step {}: {e}", i + 1))?;
        let sample = sample_for(&loaded, step.sample, &held_out)
            .map_err(|e| format!("step {}: {e}", i + 1))?;
        let prompt = step.prompt.clone().or_else(|| examples.first().cloned());
        let on_screen = match (
            &prompt,
            loaded.build_tokenizer().map_err(|e| e.to_string())?,
        ) {
            // Cut to the context, as the page cuts what it shows (a model from disk may hold
            // less than the built-in one the prompt was written for).
            (Some(p), Some(t)) => {
                let mut tokens = t.encode(p).map_err(|e| e.to_string())?;
                tokens.truncate(loaded.config.n_ctx);
                Some(tokens)
            }
            _ => None,
        };
        let mut engine = engine_for(loaded)?;
        let step = match model {
            Some(_) => step.on_another_model(),
            None => step.clone(),
        };
        if let Some(report) = report_step(
            &mut engine,
            i + 1,
            &step,
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
    if let (Some((loaded, name)), true) = (&given, steps.is_empty()) {
        let kind = if is_language_model(loaded) {
            "a language model".to_string()
        } else {
            match model_task(loaded) {
                Some(task) => format!("a model of the {} task", task.name()),
                None => "a model of no task the lessons know".to_string(),
            }
        };
        return Err(format!(
            "no measured step of this lesson runs on {name}, {kind}: a step runs on a model of \
             its built-in model's task, and the steps marked any_language_model on any language \
             model"
        ));
    }
    Ok(LessonReport {
        id: lesson.id.clone(),
        model: models_used.join(", "),
        steps,
    })
}
