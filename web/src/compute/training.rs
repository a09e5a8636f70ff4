//! Training in the worker: a run of a task (attn-model's trainer on the CPU, or attn-gpu's on a
//! WebGPU device), stepped in bursts so other requests get in, with checkpoints; healing a
//! loaded model with the page's variant built in; the run's weights as a model.

use super::state::{RunTrainer, State, TrainRun};
use crate::browser::{fetch_bytes, next_tick};
use crate::protocol::{AsJson, EngineChoice, Response, TrainState, TrainUpdate};
use attn_gpu::training::{GpuTrainer, PendingStep};
use attn_gpu::{GpuContext, GpuError};
use attn_model::training::{
    healing_config, healing_start, probe, run_metadata, score, score_with, Corpus, ShakespeareTask,
    StepReport, Task, TaskData, TrainConfig, Trainer,
};
use attn_model::{Model, Variant};
use std::collections::VecDeque;

/// The plays the character model trains on, relative to the page.
const TRAINING_TEXT: &str = "train/shakespeare.json";

/// How long the worker steps before it reports and lets other requests in.
const TRAIN_BURST_MS: f64 = 60.0;

/// Steps between checkpoints (held-out score and the probe's maps and roles).
const TRAIN_CHECK_EVERY: usize = 20;

/// Held-out sequences scored at a checkpoint.
const TRAIN_HELD_OUT: usize = 200;

/// `Request::Train`: starts a run of `task` with `config` on `engine`'s trainer (replacing any
/// run) and steps it as job `job`.
pub(super) async fn start(
    state: &State,
    job: u32,
    task: &str,
    config: TrainConfig,
    engine: EngineChoice,
    reply: &dyn Fn(Response),
) {
    match start_training(state, task, config, engine).await {
        Ok((trainer, engine)) => {
            *state.training.borrow_mut() = Some(TrainRun {
                job,
                trainer,
                millis: 0.0,
                engine,
            });
            train(state, job, reply).await;
        }
        Err(message) => reply(Response::TrainFailed { job, message }),
    }
}

/// `Request::Heal`: starts healing the loaded model `model` under `variant` (see
/// [`start_healing`]), reports the scores before and right after the cut, and steps it as job
/// `job`.
pub(super) async fn heal(
    state: &State,
    job: u32,
    model: u32,
    variant: &Variant,
    (steps, engine): (usize, EngineChoice),
    reply: &dyn Fn(Response),
) {
    match start_healing(state, model, variant, (steps, engine)).await {
        Ok((trainer, engine, before, cut)) => {
            *state.training.borrow_mut() = Some(TrainRun {
                job,
                trainer,
                millis: 0.0,
                engine,
            });
            reply(Response::HealStarted { job, before, cut });
            train(state, job, reply).await;
        }
        Err(message) => reply(Response::TrainFailed { job, message }),
    }
}

/// `Request::ResumeTraining`: goes on with the paused run as job `job` (a finished one for
/// another run's length, at the final learning rate).
pub(super) async fn resume(state: &State, job: u32, reply: &dyn Fn(Response)) {
    if let Some(run) = state.training.borrow_mut().as_mut() {
        run.job = job;
        if run.trainer.steps().finished() {
            let more = run.trainer.config().steps;
            run.trainer.steps_mut().continue_for(more);
        }
    }
    train(state, job, reply).await
}

/// `Request::SaveTrained`: the run's weights as a file, named after its task, shape and step.
pub(super) async fn save(state: &State, reply: &dyn Fn(Response)) {
    let name = state.training.borrow().as_ref().map(|run| {
        let t = &run.trainer;
        format!(
            "{}-{}x{}-step{}.safetensors",
            t.task().name(),
            t.model_config().n_layer,
            t.model_config().n_head,
            t.steps().done()
        )
    });
    let Some(name) = name else { return };
    let written = trained_model(state)
        .await
        .and_then(|m| m.to_safetensors_bytes().map_err(|e| e.to_string()));
    match written {
        Ok(bytes) => reply(Response::TrainedFile { name, bytes }),
        Err(e) => reply(Response::TrainFailed {
            job: 0,
            message: format!("Could not write the model: {e}"),
        }),
    }
}

/// Held-out (loss, accuracy).
type Score = (f64, f64);

/// The data of `task`: a synthetic task's generator, or the character model's windows of
/// `n_ctx` characters over the bundled plays (fetched once).
async fn training_data(
    state: &State,
    task: Task,
    n_ctx: Option<usize>,
) -> Result<Box<dyn TaskData>, String> {
    if let Some(data) = task.synthetic_data() {
        return Ok(data);
    }
    let cached = state.corpus.borrow().clone();
    let corpus = match cached {
        Some(corpus) => corpus,
        None => {
            let bytes = fetch_bytes(TRAINING_TEXT)
                .await
                .map_err(|e| format!("Could not load the training text: {e}"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{TRAINING_TEXT} is not UTF-8 text"))?;
            let corpus = Corpus::from_json(&text).map_err(|e| e.to_string())?;
            *state.corpus.borrow_mut() = Some(corpus.clone());
            corpus
        }
    };
    let data = ShakespeareTask::new(corpus, n_ctx.unwrap_or(64)).map_err(|e| e.to_string())?;
    Ok(Box::new(data))
}

/// A healing run of the loaded model `model` (a built-in task's) under `variant` on `engine`'s
/// trainer (as [`start_training`] chooses it; a K/V rank cut heals on the CPU, saying why),
/// where it trains, and the held-out (loss, accuracy) before and right after the cut. The
/// fine-tune uses the task's recipe at a third of its learning rate, warming up over a tenth of
/// the steps.
async fn start_healing(
    state: &State,
    model: u32,
    variant: &Variant,
    (steps, engine): (usize, EngineChoice),
) -> Result<(RunTrainer, String, Score, Score), String> {
    let base = state
        .session
        .borrow()
        .as_ref()
        .filter(|_| state.model.get() == model)
        .map(|session| session.model.clone())
        .ok_or("the model changed")?;
    let task_name = base.metadata.get("task").and_then(|t| t.as_str());
    let task = task_name
        .and_then(Task::from_name)
        .filter(|task| task.synthetic_data().is_some())
        .ok_or_else(|| {
            "Healing fine-tunes a model of a built-in task (induction, sort, reverse, recall, \
             brackets) on that task; this model names no such task."
                .to_string()
        })?;
    let data = || task.synthetic_data().expect("a built-in task has data");
    let config = healing_config(task, steps);
    let held_out = data().held_out();
    let held_out = &held_out[..held_out.len().min(TRAIN_HELD_OUT)];
    let before = score(&base, held_out).map_err(|e| e.to_string())?;
    let (built, _, built_config) =
        healing_start(&base, variant, config.clone()).map_err(|e| e.to_string())?;
    let cut =
        score_with(&built, &built_config.model.variant(), held_out).map_err(|e| e.to_string())?;
    let on_cpu = |why: String| {
        Trainer::healing(task, data(), config.clone(), &base, variant)
            .map(|t| (RunTrainer::Cpu(t), why, before, cut))
            .map_err(|e| e.to_string())
    };
    let ctx = match training_place(state, engine).await? {
        Ok(ctx) => ctx,
        Err(why) => return on_cpu(why),
    };
    let run = (config.clone(), base.as_ref(), variant);
    match GpuTrainer::healing(&ctx, task, data(), run) {
        Ok(t) => Ok((RunTrainer::Gpu(t), on_gpu(&ctx), before, cut)),
        Err(GpuError::Unsupported(why)) => on_cpu(format!("the CPU ({why})")),
        Err(e) => Err(format!("Cannot train on the GPU: {e}")),
    }
}

/// Creates the run of `task` with `config` on `engine`'s trainer, and says where it trains
/// (see [`training_place`]).
async fn start_training(
    state: &State,
    task: &str,
    config: TrainConfig,
    engine: EngineChoice,
) -> Result<(RunTrainer, String), String> {
    let task = Task::from_name(task)
        .ok_or_else(|| format!("There is no task called {task:?} to train."))?;
    let ctx = match training_place(state, engine).await? {
        Ok(ctx) => ctx,
        Err(why) => return cpu_training(state, task, config, why).await,
    };
    let data = training_data(state, task, config.model.n_ctx).await?;
    match GpuTrainer::new(&ctx, task, data, config) {
        Ok(trainer) => Ok((RunTrainer::Gpu(trainer), on_gpu(&ctx))),
        Err(e) => Err(format!("Cannot train on the GPU: {e}")),
    }
}

/// Where a run asked for on `engine` trains: the WebGPU device, or the CPU with the words the
/// panel shows. `Auto` trains on a hardware GPU, on the CPU otherwise (saying why); `Gpu`
/// insists on WebGPU, a software adapter too, and fails with a message where there is none.
async fn training_place(
    state: &State,
    engine: EngineChoice,
) -> Result<Result<GpuContext, String>, String> {
    if engine == EngineChoice::Cpu {
        return Ok(Err("the CPU".into()));
    }
    let ctx = match training_device(state).await {
        Ok(ctx) => ctx,
        Err(e) if engine == EngineChoice::Gpu => {
            return Err(format!("Cannot train on the GPU: {e}"));
        }
        Err(e) => return Ok(Err(format!("the CPU (no WebGPU: {e})"))),
    };
    let adapter = ctx.adapter();
    if engine == EngineChoice::Auto && adapter.is_software {
        return Ok(Err(format!(
            "the CPU (the WebGPU adapter {} is a software fallback; choose GPU to train on it \
             anyway)",
            adapter.name
        )));
    }
    Ok(Ok(ctx))
}

/// How the panel names a run on the GPU of `ctx`.
fn on_gpu(ctx: &GpuContext) -> String {
    format!("the GPU ({})", ctx.adapter().name)
}

/// The CPU trainer's run of `task` with `config`, and `why` it trains there.
async fn cpu_training(
    state: &State,
    task: Task,
    config: TrainConfig,
    why: String,
) -> Result<(RunTrainer, String), String> {
    let data = training_data(state, task, config.model.n_ctx).await?;
    let trainer = Trainer::new(task, data, config).map_err(|e| e.to_string())?;
    Ok((RunTrainer::Cpu(trainer), why))
}

/// The WebGPU device a training run uses: the page's when it runs on the GPU engine, else one
/// of the run's own (opened once, and again after a loss).
async fn training_device(state: &State) -> Result<GpuContext, GpuError> {
    if let Some(ctx) = state.gpu.borrow().as_ref() {
        return Ok(ctx.clone());
    }
    let kept = state.train_gpu.borrow().clone();
    if let Some(ctx) = kept.filter(|ctx| !ctx.is_lost()) {
        return Ok(ctx);
    }
    let ctx = GpuContext::new().await?;
    *state.train_gpu.borrow_mut() = Some(ctx.clone());
    Ok(ctx)
}

/// The run's model as it is now (read back from the GPU for a GPU run), labelled like a
/// trained model file.
pub(super) async fn trained_model(state: &State) -> Result<Model, String> {
    let pending = {
        let training = state.training.borrow();
        let run = training
            .as_ref()
            .ok_or("There is no trained model to open: train one first.")?;
        let label = format!(
            "the playground's trainer (on {}, in the browser), attn-web {}",
            run.engine,
            env!("CARGO_PKG_VERSION")
        );
        let seconds = run.millis / 1000.0;
        match &run.trainer {
            RunTrainer::Cpu(t) => return Ok(t.labelled_model(&label, seconds)),
            RunTrainer::Gpu(t) => {
                let metadata = run_metadata(
                    t.task(),
                    t.data(),
                    t.config(),
                    t.model_config(),
                    t.steps().done(),
                    seconds,
                    &label,
                );
                (t.submit_weights(), metadata)
            }
        }
    };
    let (weights, metadata) = pending;
    let mut model = weights.model().await.map_err(|e| gpu_training_failed(&e))?;
    model.metadata = metadata;
    Ok(model)
}

/// What the panel says when the GPU fails under a run.
fn gpu_training_failed(e: &GpuError) -> String {
    format!(
        "The GPU failed during training ({e}); start the run again, on the CPU if it fails again."
    )
}

/// Runs the worker's training run as job `job` until it finishes or the page pauses it
/// (`Cancel`), stepping in bursts of [`TRAIN_BURST_MS`] and reporting after each; other requests
/// run between bursts.
async fn train(state: &State, job: u32, reply: &dyn Fn(Response)) {
    loop {
        let paused = state.cancelled.borrow_mut().remove(&job);
        match train_burst(state, job, paused).await {
            Ok(None) => return, // A newer loop steps this run now, or it was reset.
            Ok(Some(update)) => {
                let running = update.state == TrainState::Running;
                reply(Response::Training { job, update });
                if !running {
                    return;
                }
            }
            Err(message) => return reply(Response::TrainFailed { job, message }),
        }
        next_tick().await;
    }
}

/// A step on its way: done (the CPU trainer), or submitted to the GPU.
enum Stepping {
    Done(attn_model::Result<StepReport>),
    Submitted(attn_gpu::Result<PendingStep>),
}

/// Steps the run of job `job` for about [`TRAIN_BURST_MS`] (none when `paused`), up to the next
/// checkpoint, and says what happened; at a checkpoint, the end or a pause, with the held-out
/// score and the probe. `None` when the run is no longer this job's. The run is borrowed only
/// between the GPU's round trips, so other requests can use it meanwhile.
async fn train_burst(state: &State, job: u32, paused: bool) -> Result<Option<TrainUpdate>, String> {
    let started = js_sys::Date::now();
    let mut losses = Vec::new();
    let mut checkpoint = false;
    // A pause reports where the run is, without stepping.
    let mut stepping = !paused;
    // The GPU trainer keeps a second step queued behind the running one, so that the GPU does
    // not wait for the read-back of each batch's loss — never past a checkpoint, whose weights
    // are read right after it.
    let mut in_flight: VecDeque<PendingStep> = VecDeque::new();
    loop {
        let queue_open = in_flight.len() < 2
            && in_flight
                .back()
                .is_none_or(|p| p.step() % TRAIN_CHECK_EVERY != 0);
        let report = if stepping && queue_open {
            let next = {
                let mut training = state.training.borrow_mut();
                let Some(run) = training.as_mut().filter(|run| run.job == job) else {
                    return Ok(None);
                };
                let finished = run.trainer.steps().finished();
                match &mut run.trainer {
                    _ if finished => None,
                    RunTrainer::Cpu(t) => Some(Stepping::Done(t.step())),
                    RunTrainer::Gpu(t) => Some(Stepping::Submitted(t.submit_step())),
                }
            };
            match next {
                None => {
                    stepping = false;
                    continue;
                }
                Some(Stepping::Done(report)) => report.map_err(|e| e.to_string())?,
                Some(Stepping::Submitted(pending)) => {
                    in_flight.push_back(pending.map_err(|e| gpu_training_failed(&e))?);
                    continue;
                }
            }
        } else {
            let Some(pending) = in_flight.pop_front() else {
                break;
            };
            let report = pending.report().await;
            report.map_err(|e| gpu_training_failed(&e))?
        };
        losses.push((report.step, report.batch.loss));
        checkpoint = report.step % TRAIN_CHECK_EVERY == 0;
        stepping = stepping && !checkpoint && js_sys::Date::now() - started <= TRAIN_BURST_MS;
    }
    let elapsed = js_sys::Date::now() - started;
    let (weights, mut update) = {
        let mut training = state.training.borrow_mut();
        let Some(run) = training.as_mut().filter(|run| run.job == job) else {
            return Ok(None);
        };
        run.millis += elapsed;
        let t = &run.trainer;
        let finished = t.steps().finished();
        let check = checkpoint || finished || paused;
        let weights = match (&run.trainer, check) {
            (_, false) => None,
            (RunTrainer::Cpu(t), true) => Some(Ok(t.weights().clone())),
            (RunTrainer::Gpu(t), true) => Some(Err(t.submit_weights())),
        };
        let update = TrainUpdate {
            step: t.steps().done(),
            steps: t.steps().run_length(),
            steps_per_second: losses.len() as f64 / (elapsed / 1000.0).max(1e-3),
            losses,
            held_out: None,
            probe: None,
            state: if paused {
                TrainState::Paused
            } else if finished {
                TrainState::Finished
            } else {
                TrainState::Running
            },
            engine: run.engine.clone(),
        };
        (weights, update)
    };
    // The checkpoint: the held-out score and the probe on the CPU engine (the oracle), from
    // the weights read back when the run is on the GPU.
    if let Some(weights) = weights {
        let model = match weights {
            Ok(model) => model,
            Err(pending) => pending.model().await.map_err(|e| gpu_training_failed(&e))?,
        };
        let training = state.training.borrow();
        let Some(run) = training.as_ref().filter(|run| run.job == job) else {
            return Ok(None);
        };
        let variant = run.trainer.variant();
        let held_out = run.trainer.data().held_out();
        let held_out = &held_out[..held_out.len().min(TRAIN_HELD_OUT)];
        update.held_out = score_with(&model, &variant, held_out).ok();
        update.probe = probe(&model, &variant).ok().map(AsJson);
    }
    Ok(Some(update))
}
