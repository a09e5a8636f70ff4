//! The compute worker: a dedicated Web Worker that loads models and runs every forward and every
//! analysis, so the page's main thread only renders. The page talks to it with the messages of
//! `protocol.rs` through `gloo-worker`; [`run_worker`] registers it, and Trunk builds it twice
//! as worker entries (`index.html`, `data-type="worker"`): `bin/attn-worker.rs` for every browser
//! with wasm SIMD and `bin/attn-worker-relaxed.rs`, built with the feature `relaxed-simd`, for
//! browsers with relaxed SIMD (the page probes which, `browser::has_relaxed_simd`).
//!
//! Requests run as tasks on the worker's event loop. Each task takes the session's engine pair
//! for its duration ([`take_engines`]) so tasks never overlap on an engine; long ones yield
//! between forwards ([`Yielding`]), which is when a `Cancel` gets in.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

use attn_gpu::{is_device_failure, EngineKind, EnginePair, GpuContext, GpuError};
use attn_model::engine::{Outcome, Progress, Step};
use attn_model::{
    activation_patching, direct_logit_attribution, generate, head_importance, head_roles,
    layer_similarity, logit_lens, run_measurement, AblationMode, Engine, HeadImportance, Measured,
    Measurement, Model, Output, Readback, Sampling, TensorStream, Variant,
};
use gloo_worker::{HandlerId, Registrable, Worker, WorkerScope};
use wasm_bindgen_futures::spawn_local;

use attn_gpu::training::{GpuTrainer, PendingStep};
use attn_model::training::{
    healing_start, probe, run_metadata, score, score_with, Corpus, RunSteps, ShakespeareTask,
    StepReport, Task, TaskData, TrainConfig, Trainer,
};

use crate::browser::{fetch_bytes, next_tick, read_in_pieces};
use crate::page_state::EngineChoice;
use crate::protocol::{
    Analysis, AnalysisTool, AsJson, JobOutcome, MapsWanted, ModelSource, Request, Response,
    TrainState, TrainUpdate,
};
use crate::session::{
    check_fits, logits_only, return_engines, run_timed, take_engines, PickedFiles, RunResult,
    Session, SessionCell, Yielding, TOP_OUTPUTS,
};

/// The compute worker's `main`: registers [`ComputeWorker`] to answer the page.
pub fn run_worker() {
    console_error_panic_hook::set_once();
    ComputeWorker::registrar().register();
}

/// The worker's state, shared by its running tasks.
#[derive(Default)]
struct State {
    session: SessionCell,
    /// The page's number of the model in `session`.
    model: Cell<u32>,
    /// The WebGPU device, once the page asked for it and it opened; gone after a GPU failure.
    gpu: RefCell<Option<GpuContext>>,
    /// The device a training run opened for itself when the page runs on the CPU engine.
    train_gpu: RefCell<Option<GpuContext>>,
    /// Jobs the page cancelled.
    cancelled: RefCell<HashSet<u32>>,
    /// The unmodified model's last output with its logits, (model, tokens, output): what the
    /// variant's results are compared with.
    baseline: RefCell<Option<(u32, Vec<u32>, Output)>>,
    /// The training run, running or paused.
    training: RefCell<Option<TrainRun>>,
    /// The character model's text, once fetched.
    corpus: RefCell<Option<Corpus>>,
}

/// The plays the character model trains on, relative to the page.
const TRAINING_TEXT: &str = "train/shakespeare.json";

/// A training run in the worker.
struct TrainRun {
    /// The page's job number of the loop that steps it; an older loop stops when it sees a
    /// newer number (the run was restarted or resumed meanwhile).
    job: u32,
    trainer: RunTrainer,
    /// Milliseconds spent stepping (for the saved file's `train_seconds`).
    millis: f64,
    /// Where it trains, as the panel says it.
    engine: String,
}

/// The trainer of a run: attn-model's on the CPU, or attn-gpu's on a WebGPU device (the same
/// run for the same seed: the same initial weights, batches and updates).
#[allow(clippy::large_enum_variant)] // The worker holds one run at a time.
enum RunTrainer {
    Cpu(Trainer),
    Gpu(GpuTrainer),
}

impl RunTrainer {
    fn steps(&self) -> &RunSteps {
        match self {
            RunTrainer::Cpu(t) => t.steps(),
            RunTrainer::Gpu(t) => t.steps(),
        }
    }

    fn steps_mut(&mut self) -> &mut RunSteps {
        match self {
            RunTrainer::Cpu(t) => t.steps_mut(),
            RunTrainer::Gpu(t) => t.steps_mut(),
        }
    }

    fn task(&self) -> Task {
        match self {
            RunTrainer::Cpu(t) => t.task(),
            RunTrainer::Gpu(t) => t.task(),
        }
    }

    fn config(&self) -> &TrainConfig {
        match self {
            RunTrainer::Cpu(t) => t.config(),
            RunTrainer::Gpu(t) => t.config(),
        }
    }

    fn data(&self) -> &dyn TaskData {
        match self {
            RunTrainer::Cpu(t) => t.data(),
            RunTrainer::Gpu(t) => t.data(),
        }
    }

    fn model_config(&self) -> &attn_model::ModelConfig {
        match self {
            RunTrainer::Cpu(t) => t.model_config(),
            RunTrainer::Gpu(t) => t.model_config(),
        }
    }

    /// What the weights run with: the unmodified model, or the linear kernel they train with.
    fn variant(&self) -> Variant {
        match self {
            RunTrainer::Cpu(t) => t.variant(),
            RunTrainer::Gpu(t) => t.variant(),
        }
    }
}

/// How long the worker steps before it reports and lets other requests in.
const TRAIN_BURST_MS: f64 = 60.0;
/// Steps between checkpoints (held-out score and the probe's maps and roles).
const TRAIN_CHECK_EVERY: usize = 20;
/// Held-out sequences scored at a checkpoint.
const TRAIN_HELD_OUT: usize = 200;

/// Sends the page `Response::Crashed { why }`.
type CrashReport = Box<dyn Fn(String)>;

thread_local! {
    /// How the panic hook reaches the page (through its latest connection).
    static CRASH_REPORT: RefCell<Option<CrashReport>> = const { RefCell::new(None) };
}

/// The worker (see the module documentation).
pub struct ComputeWorker {
    state: Rc<State>,
}

impl Worker for ComputeWorker {
    type Message = ();
    type Input = Request;
    type Output = Response;

    fn create(_scope: &WorkerScope<Self>) -> Self {
        // A panic leaves the worker's wasm unusable: the hook tells the page, which starts a
        // new worker (`controller.rs`), after the usual console message.
        std::panic::set_hook(Box::new(|info| {
            console_error_panic_hook::hook(info);
            CRASH_REPORT.with(|report| {
                if let Ok(report) = report.try_borrow() {
                    if let Some(report) = report.as_ref() {
                        report(info.to_string());
                    }
                }
            });
        }));
        ComputeWorker {
            state: Rc::new(State::default()),
        }
    }

    fn update(&mut self, _scope: &WorkerScope<Self>, _msg: Self::Message) {}

    fn received(&mut self, scope: &WorkerScope<Self>, request: Request, id: HandlerId) {
        let crash_scope = scope.clone();
        CRASH_REPORT.with(|report| {
            *report.borrow_mut() = Some(Box::new(move |why: String| {
                crash_scope.respond(id, Response::Crashed { why })
            }));
        });
        match request {
            Request::Cancel { job } => {
                self.state.cancelled.borrow_mut().insert(job);
                return;
            }
            Request::SimulateDeviceLoss => {
                // The page's device and the one a training run opened for itself.
                for device in [&self.state.gpu, &self.state.train_gpu] {
                    if let Some(gpu) = device.borrow().as_ref() {
                        gpu.simulate_device_loss();
                    }
                }
                return;
            }
            Request::ResetTraining => {
                *self.state.training.borrow_mut() = None;
                return;
            }
            _ => {}
        }
        let state = self.state.clone();
        let scope = scope.clone();
        spawn_local(async move {
            let reply = |response: Response| scope.respond(id, response);
            handle(&state, request, &reply).await;
        });
    }
}

async fn handle(state: &State, request: Request, reply: &dyn Fn(Response)) {
    match request {
        Request::UseGpu => use_gpu(state, reply).await,
        Request::Open {
            model,
            source,
            title,
            description,
            examples,
        } => open(state, model, source, title, description, examples, reply).await,
        Request::Run {
            model,
            tokens,
            variant,
            with_baseline,
            maps,
        } => {
            let wanted = (variant.0, maps);
            run(state, model, tokens, wanted, with_baseline, reply).await
        }
        Request::Importance {
            model,
            job,
            base,
            tokens,
            mode,
        } => {
            let outcome = rank_heads(state, model, job, &base.0, &tokens, mode, reply).await;
            state.cancelled.borrow_mut().remove(&job);
            reply(Response::Ranked { job, outcome });
        }
        Request::Generate {
            model,
            job,
            tokens,
            variant,
            n,
            sampling,
        } => {
            let outcome =
                generate_text(state, model, job, &tokens, &variant.0, n, &sampling, reply).await;
            state.cancelled.borrow_mut().remove(&job);
            reply(Response::Generated { job, outcome });
        }
        Request::Analyse {
            model,
            job,
            tokens,
            variant,
            tool,
        } => {
            let outcome = analyse(state, model, job, &tokens, &variant.0, &tool, reply).await;
            state.cancelled.borrow_mut().remove(&job);
            reply(Response::Analysed { job, outcome });
        }
        Request::Measure {
            model,
            job,
            tokens,
            measurement,
        } => {
            let outcome = measure(state, model, job, &tokens, &measurement.0, reply).await;
            state.cancelled.borrow_mut().remove(&job);
            reply(Response::Measured { job, outcome });
        }
        Request::Train {
            job,
            task,
            config,
            engine,
        } => match start_training(state, &task, config.0, engine).await {
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
        },
        Request::Heal {
            job,
            model,
            variant,
            steps,
            engine,
        } => match start_healing(state, model, &variant.0, (steps, engine)).await {
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
        },
        Request::ResumeTraining { job } => {
            if let Some(run) = state.training.borrow_mut().as_mut() {
                run.job = job;
                if run.trainer.steps().finished() {
                    // Another run's length, at the final learning rate.
                    let more = run.trainer.config().steps;
                    run.trainer.steps_mut().continue_for(more);
                }
            }
            train(state, job, reply).await
        }
        Request::ResetTraining => {}
        Request::SaveTrained => {
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
        Request::Cancel { job } => {
            state.cancelled.borrow_mut().insert(job);
        }
        Request::SimulateDeviceLoss => {}
        Request::Crash => panic!("fault injection: the page asked the compute worker to crash"),
    }
}

/// Head importance on the variant engine, reporting progress; `None` when cancelled.
async fn rank_heads(
    state: &State,
    model: u32,
    job: u32,
    base: &Variant,
    tokens: &[u32],
    mode: AblationMode,
    reply: &dyn Fn(Response),
) -> JobOutcome<Vec<HeadImportance>> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let mut watch = progress(state, job, reply);
    let mut engine = Yielding(&mut pair.variant);
    let mut result = head_importance(&mut engine, base, tokens, mode, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            let mut engine = Yielding(&mut pair.variant);
            result = head_importance(&mut engine, base, tokens, mode, &mut watch).await;
        }
    }
    return_engines(&state.session, pair);
    result.map(Outcome::done).map_err(|e| e.to_string())
}

/// One interpretability tool on the variant engine; `None` when stopped.
#[allow(clippy::too_many_arguments)]
async fn analyse(
    state: &State,
    model: u32,
    job: u32,
    tokens: &[u32],
    variant: &Variant,
    tool: &AnalysisTool,
    reply: &dyn Fn(Response),
) -> JobOutcome<Analysis> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let mut watch = progress(state, job, reply);
    let mut result = analyse_on(&mut pair, tokens, variant, tool, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            result = analyse_on(&mut pair, tokens, variant, tool, &mut watch).await;
        }
    }
    return_engines(&state.session, pair);
    result.map(Outcome::done).map_err(|e| e.to_string())
}

async fn analyse_on(
    pair: &mut EnginePair,
    tokens: &[u32],
    variant: &Variant,
    tool: &AnalysisTool,
    watch: &mut impl Progress,
) -> Result<Outcome<Analysis>, GpuError> {
    let mut engine = Yielding(&mut pair.variant);
    engine.set_variant(variant)?;
    let last = tokens.len().saturating_sub(1);
    Ok(match tool {
        AnalysisTool::Lens => {
            let lens = logit_lens(&mut engine, tokens).await?;
            let top = (0..lens.logits.len())
                .map(|depth| attn_model::forward::top_k(lens.at(depth, last), 3))
                .collect();
            Outcome::Done(Analysis::Lens {
                top,
                settles_at: lens.settles_at(last),
            })
        }
        AnalysisTool::Attribute { target } => {
            let target = match target {
                Some(t) => *t,
                None => predicted(&mut engine, tokens).await?,
            };
            let attribution = direct_logit_attribution(&mut engine, tokens, target, None).await?;
            Outcome::Done(Analysis::Attribution(attribution))
        }
        AnalysisTool::Patch { corrupt } => {
            let target = predicted(&mut engine, tokens).await?;
            let output = engine.forward(corrupt, &Readback::next_token()).await?;
            let ranked = output.top_at(output.seq_len - 1, 2);
            let contrast = match ranked.as_slice() {
                [(first, _), (second, _), ..] if *first == target => *second,
                [(first, _), ..] => *first,
                [] => target,
            };
            match activation_patching(&mut engine, tokens, corrupt, (target, contrast), watch)
                .await?
            {
                Outcome::Done(patching) => Outcome::Done(Analysis::Patching {
                    patching,
                    target,
                    contrast,
                }),
                Outcome::Cancelled => Outcome::Cancelled,
            }
        }
        AnalysisTool::KvTradeoff => {
            match attn_model::kv_cache_tradeoff(&mut engine, tokens, watch).await? {
                Outcome::Done(points) => Outcome::Done(Analysis::KvTradeoff(AsJson(points))),
                Outcome::Cancelled => Outcome::Cancelled,
            }
        }
        AnalysisTool::LayerDrop => Outcome::Done(Analysis::LayerDrop(
            layer_similarity(&mut engine, tokens).await?,
        )),
        AnalysisTool::Circuits => {
            Outcome::Done(Analysis::Circuits(attn_model::circuits(engine.model())))
        }
    })
}

/// A lesson step's measurement on the variant engine; `None` when cancelled.
async fn measure(
    state: &State,
    model: u32,
    job: u32,
    tokens: &[u32],
    measurement: &Measurement,
    reply: &dyn Fn(Response),
) -> JobOutcome<Measured> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let checked = measurement.check(&pair.variant.model().config, tokens);
    if let Err(e) = checked {
        return_engines(&state.session, pair);
        return Err(e.to_string());
    }
    let mut watch = progress(state, job, reply);
    let mut engine = Yielding(&mut pair.variant);
    let mut result = run_measurement(&mut engine, tokens, measurement, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            let mut engine = Yielding(&mut pair.variant);
            result = run_measurement(&mut engine, tokens, measurement, &mut watch).await;
        }
    }
    return_engines(&state.session, pair);
    result.map(Outcome::done).map_err(|e| e.to_string())
}

/// The most probable next output after `tokens`.
async fn predicted(
    engine: &mut impl Engine<Error = GpuError>,
    tokens: &[u32],
) -> Result<u32, GpuError> {
    let output = engine.forward(tokens, &Readback::next_token()).await?;
    Ok(output.argmax_at(output.seq_len - 1))
}

/// Generation under `variant` on the variant engine, as text; `None` when stopped.
#[allow(clippy::too_many_arguments)]
async fn generate_text(
    state: &State,
    model: u32,
    job: u32,
    tokens: &[u32],
    variant: &Variant,
    n: usize,
    sampling: &Sampling,
    reply: &dyn Fn(Response),
) -> JobOutcome<String> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let mut watch = progress(state, job, reply);
    let mut result = generate_on(&mut pair, tokens, variant, n, sampling, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            result = generate_on(&mut pair, tokens, variant, n, sampling, &mut watch).await;
        }
    }
    return_engines(&state.session, pair);
    let ids = match result.map_err(|e| e.to_string())? {
        Outcome::Done(ids) => ids,
        Outcome::Cancelled => return Ok(None),
    };
    let session = state.session.borrow();
    let text = session.as_ref().and_then(|s| s.text.decode(&ids));
    Ok(Some(text.unwrap_or_else(|| format!("{ids:?}"))))
}

/// Generation on the variant engine of `pair`, under `variant`.
async fn generate_on(
    pair: &mut EnginePair,
    tokens: &[u32],
    variant: &Variant,
    n: usize,
    sampling: &Sampling,
    watch: &mut impl FnMut(Step) -> bool,
) -> Result<Outcome<Vec<u32>>, GpuError> {
    pair.variant.set_variant(variant)?;
    generate(&mut Yielding(&mut pair.variant), tokens, n, sampling, watch).await
}

/// Whether `error` on `pair` is the GPU's fault, so the pair should move to the CPU engine.
fn falls_back(pair: &EnginePair, error: &GpuError) -> bool {
    pair.kind() == EngineKind::Gpu && is_device_failure(error)
}

/// The GPU failed: later models start on the CPU engine, and the page says so.
fn gpu_failed(state: &State, error: &GpuError, reply: &dyn Fn(Response)) {
    *state.gpu.borrow_mut() = None;
    reply(Response::GpuFailed {
        why: error.to_string(),
    });
}

/// Reports each step of job `job` and stops it once the page cancelled it.
fn progress<'a>(
    state: &'a State,
    job: u32,
    reply: &'a dyn Fn(Response),
) -> impl FnMut(Step) -> bool + 'a {
    move |step: Step| {
        reply(Response::Progress { job, step });
        !state.cancelled.borrow().contains(&job)
    }
}

/// The engines of model `model`, when it is still the one loaded.
async fn take_current(state: &State, model: u32) -> Option<EnginePair> {
    let pair = take_engines(&state.session).await?;
    if state.model.get() == model {
        Some(pair)
    } else {
        return_engines(&state.session, pair);
        None
    }
}

async fn use_gpu(state: &State, reply: &dyn Fn(Response)) {
    let ctx = match GpuContext::new().await {
        Ok(ctx) => ctx,
        Err(e) => return reply(Response::GpuUnavailable { why: e.to_string() }),
    };
    let adapter = ctx.adapter().name.clone();
    *state.gpu.borrow_mut() = Some(ctx.clone());
    // A model that loaded first moves onto the GPU now (once no task holds its engines).
    if let Some(pair) = take_engines(&state.session).await {
        let mut session = state.session.borrow_mut();
        match session.as_mut() {
            Some(s) if pair.kind() == EngineKind::Cpu => {
                if s.use_gpu(&ctx).is_err() {
                    s.engines = Some(pair); // Too big for the GPU: it stays on the CPU.
                }
            }
            _ => {
                drop(session);
                return_engines(&state.session, pair);
            }
        }
    }
    reply(Response::GpuReady { adapter });
}

async fn open(
    state: &State,
    model: u32,
    source: ModelSource,
    title: String,
    description: String,
    examples: Vec<String>,
    reply: &dyn Fn(Response),
) {
    let loaded: Result<Model, String> = match source {
        ModelSource::Url(url) => {
            reply(Response::Loading {
                model,
                what: format!("Loading {title}…"),
            });
            match fetch_bytes(&url).await {
                Ok(bytes) => {
                    Model::from_safetensors_bytes(&bytes).map_err(|e| format!("{title}: {e}"))
                }
                Err(e) => Err(e),
            }
        }
        ModelSource::Trained => trained_model(state).await,
        ModelSource::Files(files) => {
            reply(Response::Loading {
                model,
                what: format!("Reading {title}…"),
            });
            match read_picked(files, &title, &|what| {
                reply(Response::Loading { model, what })
            })
            .await
            {
                Ok(picked) => picked
                    .into_model()
                    .map_err(|e| format!("Could not load {title}: {e}")),
                Err(message) => return reply(Response::OpenFailed { model, message }),
            }
        }
    };
    // Opens overlap (a file picked while the first built-in model still loads): one that
    // finishes after a newer model was installed must not replace it, or the page, which
    // shows the newer one, would get "the model changed" for every run. Numbers only grow.
    if model < state.model.get() {
        return;
    }
    let session = loaded.and_then(|m| Session::new(m, title, description, examples));
    let mut session = match session {
        Ok(s) => s,
        Err(message) => return reply(Response::OpenFailed { model, message }),
    };
    let gpu_refused = match state.gpu.borrow().as_ref() {
        Some(ctx) => session.use_gpu(ctx).err(),
        None => None,
    };
    let opened = Response::Opened {
        model,
        info: session.info.clone(),
        config: session.model.config.clone(),
        tokenizer: AsJson(session.model.tokenizer.clone()),
        classes: session.text.classes.clone(),
        gpu_refused,
    };
    *state.session.borrow_mut() = Some(session);
    state.model.set(model);
    reply(opened);

    // The role badges: one forward of the unmodified model on the worker's engine.
    if let Some(mut pair) = take_current(state, model).await {
        let roles = head_roles(&mut pair.baseline, 0).await;
        return_engines(&state.session, pair);
        reply(Response::Roles {
            model,
            roles: roles.unwrap_or_default(),
        });
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
    let mut config = task.default_config();
    config.steps = steps.max(1);
    config.warmup_steps = (steps / 10).max(1);
    config.learning_rate /= 3.0;
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
async fn trained_model(state: &State) -> Result<Model, String> {
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

/// Reads the picked files: text files whole; safetensors files piece by piece into their
/// tensors, checking the declared sizes against the page's memory before any weight is read, and
/// saying how far each file has got.
async fn read_picked(
    files: Vec<(String, String)>,
    title: &str,
    progress: &dyn Fn(String),
) -> Result<PickedFiles, String> {
    const MB: u64 = 1 << 20;
    let mut picked = PickedFiles::default();
    let mut declared = 0u64;
    for (name, url) in files {
        if !name.ends_with(".safetensors") {
            let bytes = fetch_bytes(&url)
                .await
                .map_err(|e| format!("Could not read {name}: {e}"))?;
            let text = String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8 text"))?;
            picked.texts.insert(name, text);
            continue;
        }
        let mut stream = TensorStream::new();
        let (mut counted, mut reported) = (false, 0u64);
        read_in_pieces(&url, |piece, read, total| {
            stream
                .push(piece)
                .map_err(|e| format!("Could not load {name}: {e}"))?;
            if let (false, Some(header)) = (counted, stream.declared()) {
                counted = true;
                declared += header.memory_bytes();
                check_fits(title, declared)?;
            }
            if read >= reported + 16 * MB || Some(read) == total {
                reported = read;
                progress(match total {
                    Some(total) => format!("Reading {name}: {} of {} MB", read / MB, total / MB),
                    None => format!("Reading {name}: {} MB", read / MB),
                });
            }
            Ok(())
        })
        .await
        .map_err(|e| {
            if e.starts_with("Could not") || e.contains("the page holds") {
                e
            } else {
                format!("Could not read {name}: {e}")
            }
        })?;
        let loaded = stream
            .finish()
            .map_err(|e| format!("Could not load {name}: {e}"))?;
        picked.tensors.push((name, loaded));
    }
    Ok(picked)
}

/// The forwards of a `Request::Run`: the variant's, and the unmodified model's when the page
/// asks for it or the worker has none for these tokens; `maps` are the maps the page shows.
async fn run(
    state: &State,
    model: u32,
    tokens: Vec<u32>,
    (variant, maps): (Variant, MapsWanted),
    with_baseline: bool,
    reply: &dyn Fn(Response),
) {
    let Some(mut pair) = take_current(state, model).await else {
        let stale = Err("the model changed".to_string());
        return reply(Response::Ran {
            model,
            baseline: None,
            current: stale,
        });
    };
    let mut failures = Vec::new();
    let engine = |pair: &EnginePair| pair.kind();
    // The baseline on these tokens: run now when the page asks for it or the worker has none.
    let cached = state
        .baseline
        .borrow()
        .as_ref()
        .is_some_and(|(m, t, _)| *m == model && *t == tokens);
    let mut baseline = None;
    if with_baseline || !cached {
        // Its maps only when the page asks for the baseline (it keeps them for the diff view).
        let wanted = with_baseline.then_some(&maps);
        let base = (&Variant::default(), wanted);
        let (result, failure) = run_timed(&mut pair, true, base, &tokens).await;
        failures.extend(failure);
        match result {
            Ok((mut output, millis)) => {
                // The logits stay here (moved, not copied); the page gets the rest.
                let top = output.top_at(output.seq_len - 1, TOP_OUTPUTS);
                let kept = logits_only(&mut output);
                if with_baseline {
                    let timing = (millis, engine(&pair));
                    let page = RunResult::of(&output, &tokens, (top, None), timing, maps);
                    baseline = Some(Ok(page));
                }
                *state.baseline.borrow_mut() = Some((model, tokens.clone(), kept));
            }
            Err(e) => baseline = with_baseline.then(|| Err(e.to_string())),
        }
    }
    let (current, failure) = run_timed(&mut pair, false, (&variant, Some(&maps)), &tokens).await;
    failures.extend(failure);
    let current = current.map_err(|e| e.to_string()).map(|(output, millis)| {
        let cache = state.baseline.borrow();
        let base = cache.as_ref().map(|(_, _, o)| o);
        RunResult::for_page(output, base, &tokens, (millis, engine(&pair)), maps)
    });
    return_engines(&state.session, pair);
    if let Some(e) = failures.first() {
        gpu_failed(state, e, reply);
    }
    reply(Response::Ran {
        model,
        baseline,
        current,
    });
}
