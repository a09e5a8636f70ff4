//! The page's side of the compute worker: it spawns the worker, sends it what the page wants
//! (load a model, run a forward, rank heads, generate), and turns its answers into page state.
//! The main thread keeps only what rendering needs: the model's text side ([`ModelText`]) to
//! show tokens and labels, and the results.
//!
//! Forwards are coalesced: one is in flight at a time and a newer request replaces the waiting
//! one (`runner.rs`), so a slider drag never queues work. Every request names the model it is
//! for; answers about a model the page has since replaced are dropped.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use attn_model::engine::Step;
use attn_model::{AblationMode, HeadImportance, Variant};
use gloo_file::ObjectUrl;
use gloo_worker::{Spawnable, WorkerBridge};
use leptos::prelude::*;

use crate::browser;
use crate::compute::ComputeWorker;
use crate::generation_state::GenerationView;
use crate::manifest::{ModelEntry, MODELS_BASE};
use crate::page_state::SteerSpec;
use crate::protocol::{
    AnalysisTool, AsJson, JobOutcome, MapsWanted, ModelSource, Request, Response, Steer, SteerIds,
    TrainState,
};
use crate::runner::Coalescer;
use crate::session::ModelText;
use crate::state::Ui;
use crate::train_state::{Checkpoint, HealScores, TrainSettings, TrainView};
use crate::worker_build::WorkerBuild;
use attn_model::training::Task;

/// A forward the page wants: the input, the variant, the maps it shows and the steering.
pub struct Job {
    pub tokens: Vec<u32>,
    pub variant: Variant,
    pub maps: MapsWanted,
    pub steer: Option<SteerIds>,
}

/// A handle to the controller; `Copy`, so every panel can hold one.
#[derive(Clone, Copy)]
pub struct Controller {
    inner: StoredValue<Option<Rc<Inner>>, LocalStorage>,
}

struct Inner {
    /// The worker's connection; replaced when the worker crashes.
    bridge: RefCell<WorkerBridge<ComputeWorker>>,
    /// Whether the page asked for the GPU (a restarted worker is asked again).
    gpu_requested: Cell<bool>,
    /// The page state the answers go to.
    ui: Ui,
    /// The installed model's text side.
    text: RefCell<Option<ModelText>>,
    /// The page's number of the installed model, and the last number handed out.
    installed: Cell<u32>,
    last_model: Cell<u32>,
    runner: Coalescer<Job>,
    last_job: Cell<u32>,
    /// The running importance ranking and generation, by job number.
    ranking: Cell<Option<u32>>,
    generating: Cell<Option<u32>>,
    /// What the running generation was asked: its prompt and number of tokens.
    generation_asked: RefCell<Option<(Vec<u32>, usize)>>,
    analysing: Cell<Option<u32>>,
    measuring: Cell<Option<u32>>,
    /// Whether the worker has answered anything yet (it did start).
    heard: Cell<bool>,
    /// Object URLs of files being opened, kept alive until the worker has read them.
    reading: RefCell<Vec<ObjectUrl>>,
    /// The files of the last model opened from disk and its title, to open it again when a
    /// lesson step runs on it after another model was shown.
    your_files: RefCell<Option<(Vec<web_sys::File>, String)>>,
}

/// How long the page waits for the worker's first answer before saying it did not start.
const WORKER_START: Duration = Duration::from_secs(20);

impl Controller {
    /// Spawns the worker; its answers update `ui`.
    pub fn new(ui: Ui) -> Controller {
        let ctl = Controller {
            inner: StoredValue::new_local(None),
        };
        let bridge = Self::spawn(ctl, ui);
        ctl.inner.set_value(Some(Rc::new(Inner {
            bridge: RefCell::new(bridge),
            gpu_requested: Cell::new(false),
            ui,
            text: RefCell::new(None),
            installed: Cell::new(0),
            last_model: Cell::new(0),
            runner: Coalescer::default(),
            last_job: Cell::new(0),
            ranking: Cell::new(None),
            generating: Cell::new(None),
            generation_asked: RefCell::new(None),
            analysing: Cell::new(None),
            measuring: Cell::new(None),
            heard: Cell::new(false),
            reading: RefCell::new(Vec::new()),
            your_files: RefCell::new(None),
        })));
        ctl
    }

    /// Starts a compute worker whose answers go to `ui`: the fastest build this browser and
    /// host allow ([`WorkerBuild::pick`]).
    fn spawn(ctl: Controller, ui: Ui) -> WorkerBridge<ComputeWorker> {
        let build = WorkerBuild::pick(ui.plain_simd, ui.one_thread);
        ui.worker_build.set(build);
        ComputeWorker::spawner()
            .callback(move |response| ctl.receive(response))
            .with_loader(true)
            .as_module(matches!(build, WorkerBuild::Threads(_)))
            .spawn(&build.script())
    }

    /// Replaces a crashed worker by a new one and puts the page's state back: the engine it
    /// asked for and the built-in model it shows (the input, variant and view are the page's and
    /// stay). Running jobs are forgotten; a model from disk must be picked again.
    fn restart(&self, why: &str) {
        let Some(inner) = self.inner() else { return };
        let ui = inner.ui;
        // Dropping the old connection asks the old worker to close, if it still can.
        *inner.bridge.borrow_mut() = Self::spawn(*self, ui);
        inner.runner.reset();
        for job in [
            &inner.ranking,
            &inner.generating,
            &inner.analysing,
            &inner.measuring,
        ] {
            job.set(None);
        }
        ui.ranking.set(None);
        ui.generating.set(None);
        ui.analysing.set(None);
        ui.measuring.set(None);
        ui.training.update(|t| {
            if t.state.is_some() {
                t.state = None;
                t.error = Some("The training run was lost with the worker: start it again.".into());
            }
        });
        if inner.gpu_requested.get() {
            self.send(Request::UseGpu);
        }
        ui.notices.update(|n| {
            n.push(format!(
                "The compute worker stopped ({why}) and was restarted; the page keeps its state."
            ))
        });
        let entry = ui.model_id.get_untracked().and_then(|id| {
            ui.manifest
                .with_untracked(|m| m.iter().find(|e| e.id == id).cloned())
        });
        match entry {
            Some(entry) => self.load_builtin(entry),
            None => ui.error.set(Some(
                "The model loaded from disk was lost with the worker: pick its files again.".into(),
            )),
        }
    }

    /// Fault injection for the recovery tests: destroys the worker's WebGPU device.
    pub fn simulate_device_loss(&self) {
        self.send(Request::SimulateDeviceLoss);
    }

    /// Fault injection for the recovery tests: makes the worker panic.
    pub fn crash_worker(&self) {
        self.send(Request::Crash);
    }

    fn inner(&self) -> Option<Rc<Inner>> {
        self.inner.get_value()
    }

    /// The page state the answers go to (`None` only while the controller is being built).
    fn ui(&self) -> Option<Ui> {
        self.inner().map(|inner| inner.ui)
    }

    fn send(&self, request: Request) {
        if let Some(inner) = self.inner() {
            inner.bridge.borrow().send(request);
        }
    }

    /// The page's steering with its prompts through the model's tokenizer: `None` when it is
    /// off (or no model is open), an error when a prompt cannot be read.
    pub fn steer_ids(&self, spec: Option<&SteerSpec>) -> Result<Option<SteerIds>, String> {
        let Some(spec) = spec else { return Ok(None) };
        // An empty prompt is no tokens (the lens direction's B may be empty).
        let ids = |text: &str| match text.is_empty() {
            true => Ok(Vec::new()),
            false => self
                .with_text(|t| t.tokenize(text))
                .unwrap_or_else(|| Err("no model is open".into())),
        };
        let (plus, minus) = (ids(&spec.plus)?, ids(&spec.minus)?);
        if spec.lens {
            for (text, ids) in [(&spec.plus, &plus), (&spec.minus, &minus)] {
                if ids.len() > 1 || (ids.is_empty() && text == &spec.plus) {
                    return Err(format!(
                        "The lens direction needs one token: “{text}” is {} tokens.",
                        ids.len()
                    ));
                }
            }
        } else if plus.is_empty() || minus.is_empty() {
            return Err("Steering needs both prompts: type a text in each.".into());
        }
        Ok(Some(SteerIds {
            layer: spec.layer,
            coefficient: spec.coefficient,
            from: spec.from,
            plus,
            minus,
            lens: spec.lens,
        }))
    }

    /// Reads the installed model's text side (`None` before the first model).
    pub fn with_text<T>(&self, f: impl FnOnce(&ModelText) -> T) -> Option<T> {
        let inner = self.inner()?;
        let text = inner.text.borrow();
        text.as_ref().map(f)
    }

    /// Asks the worker to run on the WebGPU device from now on.
    pub fn use_gpu(&self) {
        if let Some(inner) = self.inner() {
            inner.gpu_requested.set(true);
        }
        self.send(Request::UseGpu);
    }

    /// Loads a model in the worker; it replaces the current one once it is ready.
    pub fn open(
        &self,
        source: ModelSource,
        title: String,
        description: String,
        examples: Vec<String>,
    ) {
        let Some(inner) = self.inner() else { return };
        let model = inner.last_model.get() + 1;
        inner.last_model.set(model);
        inner.ui.opening_files.set_value(match &source {
            ModelSource::Files(_) => Some(title.clone()),
            _ => None,
        });
        inner.bridge.borrow().send(Request::Open {
            model,
            source,
            title,
            description,
            examples,
        });
        if !inner.heard.get() {
            // A worker script that is missing, blocked or broken answers nothing: say so.
            let ctl = *self;
            set_timeout(
                move || {
                    if let Some(inner) = ctl.inner().filter(|i| !i.heard.get()) {
                        inner.ui.loading.set(None);
                        inner.ui.error.set(Some(format!(
                            "The compute worker did not start ({} did not answer). Reload \
                                 the page; if this persists, the site may block workers{}.",
                            inner
                                .ui
                                .worker_build
                                .get_untracked()
                                .script()
                                .trim_start_matches("./"),
                            if matches!(
                                inner.ui.worker_build.get_untracked(),
                                WorkerBuild::Threads(_)
                            ) {
                                ", or add threads=1 to the address for the worker without threads"
                            } else {
                                ""
                            }
                        )));
                    }
                },
                WORKER_START,
            );
        }
    }

    /// Starts loading a built-in model in the worker; [`Ui::install`] finishes when it is ready.
    pub fn load_builtin(&self, entry: ModelEntry) {
        let Some(ui) = self.ui() else { return };
        ui.loading.set(Some(format!("Loading {}…", entry.title)));
        ui.opening.set_value(Some(entry.clone()));
        self.open(
            ModelSource::Url(format!("{MODELS_BASE}{}", entry.file)),
            entry.title,
            entry.description,
            entry.examples,
        );
    }

    /// Loads files the user picked: the worker reads them through object URLs.
    pub fn open_files(&self, files: Vec<web_sys::File>, title: String) {
        let Some(inner) = self.inner() else { return };
        let urls: Vec<ObjectUrl> = files
            .iter()
            .map(|f| ObjectUrl::from(gloo_file::File::from(f.clone())))
            .collect();
        let named = files
            .iter()
            .zip(&urls)
            .map(|(f, url)| (f.name(), url.to_string()))
            .collect();
        inner.reading.borrow_mut().extend(urls);
        *inner.your_files.borrow_mut() = Some((files, title.clone()));
        self.open(ModelSource::Files(named), title, String::new(), Vec::new());
    }

    /// Opens the last model opened from disk again (a lesson step runs on it); `false` when
    /// there is none.
    pub fn reopen_yours(&self) -> bool {
        let Some((files, title)) = self.inner().and_then(|i| i.your_files.borrow().clone()) else {
            return false;
        };
        if let Some(ui) = self.ui() {
            ui.loading.set(Some(format!("Opening {title} again…")));
        }
        self.open_files(files, title);
        true
    }

    /// Starts a training run of `settings` in the worker (replacing any run there).
    pub fn train_start(&self, settings: TrainSettings) {
        let Some(inner) = self.inner() else { return };
        let ui = inner.ui;
        let job = Self::next_job(&inner);
        ui.training.set(TrainView {
            job: Some(job),
            state: Some(TrainState::Running),
            steps: settings.steps,
            title: settings.title(),
            task: Some(settings.task),
            seed: Some(settings.seed),
            ..TrainView::default()
        });
        self.send(Request::Train {
            job,
            task: settings.task.name().to_string(),
            config: AsJson(settings.to_config()),
            engine: settings.engine,
        });
    }

    /// Heals the model on screen: fine-tunes it on its task for `steps` steps with the page's
    /// variant built in.
    pub fn heal_start(&self, steps: usize) {
        let Some(inner) = self.inner() else { return };
        let ui = inner.ui;
        let Some(info) = ui.info.get_untracked() else {
            return;
        };
        let job = Self::next_job(&inner);
        ui.training.set(TrainView {
            job: Some(job),
            state: Some(TrainState::Running),
            steps,
            title: format!("Healed: {}", info.title),
            task: info.task.as_deref().and_then(Task::from_name),
            ..TrainView::default()
        });
        // On the engine the training panel's settings name (the panel holds them while open).
        let engine = ui.train.with_untracked(|s| s.as_ref().map(|s| s.engine));
        self.send(Request::Heal {
            job,
            model: inner.installed.get(),
            variant: AsJson(ui.variant.get_untracked()),
            steps,
            engine: engine.unwrap_or_default(),
        });
    }

    /// Pauses the running training run (the worker keeps it).
    pub fn train_pause(&self) {
        if let Some(inner) = self.inner() {
            if let Some(job) = inner.ui.training.with_untracked(|t| t.job) {
                self.send(Request::Cancel { job });
            }
        }
    }

    /// Continues the paused (or finished) run.
    pub fn train_resume(&self) {
        let Some(inner) = self.inner() else { return };
        let ui = inner.ui;
        let job = Self::next_job(&inner);
        ui.training.update(|t| {
            t.job = Some(job);
            t.state = Some(TrainState::Running);
            t.error = None;
        });
        self.send(Request::ResumeTraining { job });
    }

    /// Forgets the run, in the worker and on the page.
    pub fn train_reset(&self) {
        let Some(ui) = self.ui() else { return };
        self.train_pause();
        self.send(Request::ResetTraining);
        ui.training.set(TrainView::default());
    }

    /// Asks the worker for the run's weights as a file (downloaded when it answers).
    pub fn train_save(&self) {
        self.send(Request::SaveTrained);
    }

    /// Opens the run's weights as they are now as the page's model.
    pub fn train_open(&self) {
        let Some(ui) = self.ui() else { return };
        let (title, task, seed, step) = ui
            .training
            .with_untracked(|t| (t.title.clone(), t.task, t.seed, t.step));
        if title.is_empty() {
            return;
        }
        let examples = task.map(Task::example_inputs).unwrap_or_default();
        ui.loading.set(Some(format!("Opening {title}…")));
        ui.opening.set_value(None);
        ui.pending_prompt.set_value(examples.first().cloned());

        let how = match seed {
            Some(seed) => format!("Trained in this page for {step} steps (seed {seed})"),
            None => format!("Fine-tuned in this page for {step} steps with the changes built in"),
        };
        self.open(
            ModelSource::Trained,
            title,
            format!("{how}; every tool of the page works on it."),
            examples,
        );
    }

    /// Asks for a forward of `job`; while one runs, the newest request waits in its place.
    pub fn run(&self, job: Job) {
        let Some(inner) = self.inner() else { return };
        if inner.runner.offer(job) {
            self.send_next_run(&inner);
        }
    }

    fn send_next_run(&self, inner: &Inner) {
        let ui = inner.ui;
        let Some(Job {
            tokens,
            variant,
            maps,
            steer,
        }) = inner.runner.next()
        else {
            return;
        };
        // The baseline again when the input changed, or when the grid shows maps it lacks.
        let with_baseline = ui.baseline.with_untracked(|b| {
            b.as_ref()
                .is_none_or(|r| r.tokens != tokens || !r.maps.covers(&maps))
        });
        inner.bridge.borrow().send(Request::Run {
            model: inner.installed.get(),
            tokens,
            variant: AsJson(variant),
            with_baseline,
            maps,
            steer,
        });
    }

    fn next_job(inner: &Inner) -> u32 {
        let job = inner.last_job.get() + 1;
        inner.last_job.set(job);
        job
    }

    /// Ranks heads on top of `base`; progress and the result arrive in `ui`.
    pub fn rank_heads(&self, base: Variant, tokens: Vec<u32>, mode: AblationMode) {
        let Some(inner) = self.inner() else { return };
        let ui = inner.ui;
        let total = ui
            .info
            .with_untracked(|i| i.as_ref().map_or(0, |i| i.n_layer * i.n_head));
        let job = Self::next_job(&inner);
        inner.ranking.set(Some(job));
        ui.ranking.set(Some(Step { done: 0, total }));
        ui.rank_status.set(None);
        inner.bridge.borrow().send(Request::Importance {
            model: inner.installed.get(),
            job,
            base: AsJson(base),
            tokens,
            mode,
        });
    }

    /// Stops the running ranking.
    pub fn cancel_ranking(&self) {
        if let Some(job) = self.inner().and_then(|i| i.ranking.get()) {
            self.send(Request::Cancel { job });
        }
    }

    /// Runs an interpretability tool on the current input and variant; progress and the result
    /// arrive in `ui`.
    pub fn analyse(&self, tool: AnalysisTool) {
        let Some(inner) = self.inner() else { return };
        let ui = inner.ui;
        let job = Self::next_job(&inner);
        inner.analysing.set(Some(job));
        ui.analysing.set(Some(Step { done: 0, total: 0 }));
        let steer = match self.steer_ids(ui.steer.get_untracked().as_ref()) {
            Ok(steer) => steer,
            Err(e) => {
                ui.error.set(Some(e));
                None
            }
        };
        inner.bridge.borrow().send(Request::Analyse {
            model: inner.installed.get(),
            job,
            tokens: ui.tokens.get_untracked(),
            variant: AsJson(ui.variant.get_untracked()),
            tool,
            steer,
        });
    }

    /// Runs a lesson step's measurement over its sample and on the current input; progress and
    /// the result arrive in `ui`.
    pub fn measure(&self, step: attn_model::LessonStep) {
        let Some(inner) = self.inner() else { return };
        let ui = inner.ui;
        let job = Self::next_job(&inner);
        inner.measuring.set(Some(job));
        ui.measured.set(None);
        ui.measuring.set(Some(Step { done: 0, total: 0 }));
        inner.bridge.borrow().send(Request::Measure {
            model: inner.installed.get(),
            job,
            tokens: ui.tokens.get_untracked(),
            step: Box::new(AsJson(step)),
        });
    }

    /// Stops the running measurement, or forgets it when the lesson moved on.
    pub fn cancel_measurement(&self) {
        let Some(ui) = self.ui() else { return };
        if let Some(job) = self.inner().and_then(|i| i.measuring.take()) {
            self.send(Request::Cancel { job });
        }
        ui.measuring.set(None);
    }

    pub fn cancel_analysis(&self) {
        if let Some(job) = self.inner().and_then(|i| i.analysing.get()) {
            self.send(Request::Cancel { job });
        }
    }

    /// Continues `tokens` by `n` tokens under `variant`.
    pub fn generate(&self, tokens: Vec<u32>, variant: Variant, n: usize) {
        self.start_generation(tokens, variant, n, false);
    }

    /// [`Controller::generate`], pausing after the first token (then *Step* or *Continue*).
    pub fn step_through(&self, tokens: Vec<u32>, variant: Variant, n: usize) {
        self.start_generation(tokens, variant, n, true);
    }

    fn start_generation(&self, tokens: Vec<u32>, variant: Variant, n: usize, step_through: bool) {
        let Some(inner) = self.inner() else { return };
        let ui = inner.ui;
        let job = Self::next_job(&inner);
        inner.generating.set(Some(job));
        *inner.generation_asked.borrow_mut() = Some((tokens.clone(), n));
        ui.generating.set(Some(Step { done: 0, total: n }));
        ui.generated.set(None);
        ui.generation_summary.set(None);
        ui.generation.set(GenerationView::default());
        let steer = match self.steer_ids(ui.steer.get_untracked().as_ref()) {
            Ok(steer) => steer,
            Err(e) => {
                ui.error.set(Some(e));
                None
            }
        };
        inner.bridge.borrow().send(Request::Generate {
            model: inner.installed.get(),
            job,
            tokens,
            variant: AsJson(variant),
            n,
            sampling: ui.sampling.get_untracked(),
            step_through,
            steer,
        });
        ui.generation.update(|g| g.paused = step_through);
    }

    /// Stops the running generation.
    pub fn stop_generating(&self) {
        if let Some(job) = self.inner().and_then(|i| i.generating.get()) {
            self.send(Request::Cancel { job });
        }
    }

    /// The variant changed while a generation ran or was paused: it starts again from its
    /// prompt with `variant` (the old one's cache belongs to the old variant), and says so.
    pub fn restart_generation(&self, variant: Variant) {
        let Some(inner) = self.inner() else { return };
        let Some(job) = inner.generating.get() else {
            return;
        };
        let Some((tokens, n)) = inner.generation_asked.borrow().clone() else {
            return;
        };
        self.send(Request::Cancel { job });
        self.generate(tokens, variant, n);
        inner.ui.generation.update(|g| g.restarted = true);
    }

    /// Pauses, continues or steps the running generation.
    pub fn steer_generation(&self, steer: Steer) {
        let Some(inner) = self.inner() else { return };
        if let Some(job) = inner.generating.get() {
            inner
                .ui
                .generation
                .update(|g| g.paused = steer != Steer::Continue);
            self.send(Request::SteerGeneration { job, steer });
        }
    }

    /// One answer from the worker.
    fn receive(&self, response: Response) {
        let Some(inner) = self.inner() else { return };
        let ui = inner.ui;
        inner.heard.set(true);
        let current = |model: u32| model == inner.installed.get();
        match response {
            Response::GpuReady { adapter } => {
                ui.engine_badge.set(format!(
                    "WebGPU adapter: {adapter} · GPU engine{}",
                    if ui.engine_choice.get_untracked() == crate::protocol::EngineChoice::Gpu {
                        " (chosen in the URL)"
                    } else {
                        ""
                    }
                ));
                // Run the current model again, now on the GPU.
                ui.baseline.set(None);
                ui.current.set(None);
                ui.model_version.update(|v| *v += 1);
            }
            Response::Crashed { why } => self.restart(&why),
            Response::Training { job, update } => ui.training.update(|t| {
                if t.job != Some(job) {
                    return;
                }
                t.step = update.step;
                t.steps = update.steps;
                t.losses.extend(update.losses);
                t.steps_per_second = update.steps_per_second;
                t.engine = update.engine;
                if let Some(probe) = update.probe {
                    let (loss, accuracy) = update.held_out.unwrap_or((f64::NAN, f64::NAN));
                    t.checkpoints.retain(|c| c.step != update.step);
                    t.checkpoints.push(Checkpoint {
                        step: update.step,
                        loss,
                        accuracy,
                        roles: probe.0.roles.clone(),
                    });
                    t.probe = Some(probe.0);
                }
                t.state = Some(update.state);
            }),
            Response::HealStarted { job, before, cut } => ui.training.update(|t| {
                if t.job == Some(job) {
                    t.heal = Some(HealScores { before, cut });
                }
            }),
            Response::TrainFailed { job, message } => ui.training.update(|t| {
                if job == 0 || t.job == Some(job) {
                    if job != 0 {
                        t.state = None;
                    }
                    t.error = Some(message);
                }
            }),
            Response::TrainedFile { name, bytes } => {
                if let Err(e) = browser::download(&name, &bytes, "application/octet-stream") {
                    ui.training
                        .update(|t| t.error = Some(format!("Could not save: {e}")));
                }
            }
            Response::GpuFailed { why } => ui.leave_gpu(&format!("the GPU engine failed ({why})")),
            Response::GpuUnavailable { why } => ui
                .engine_badge
                .set(format!("CPU fallback — WebGPU could not start: {why}")),
            Response::Loading { model, what } => {
                if model == inner.last_model.get() {
                    ui.loading.set(Some(what));
                }
            }
            Response::Opened {
                model,
                info,
                config,
                tokenizer,
                classes,
                gpu_refused,
            } => {
                if model != inner.last_model.get() {
                    return; // A newer model was asked for meanwhile.
                }
                inner.reading.borrow_mut().clear();
                // Long jobs on the old model stop; their answers are dropped.
                self.cancel_ranking();
                self.stop_generating();
                inner.ranking.set(None);
                inner.generating.set(None);
                ui.ranking.set(None);
                ui.generating.set(None);
                match ModelText::from_parts(tokenizer.0, classes, config.clone()) {
                    Ok(text) => {
                        *inner.text.borrow_mut() = Some(text);
                        inner.installed.set(model);
                        if let Some(why) = gpu_refused {
                            ui.notices.update(|n| {
                                n.push(format!("{} runs on the CPU engine: {why}", info.title))
                            });
                        }
                        ui.install(info, &config);
                    }
                    Err(e) => ui.error.set(Some(format!("{}: {e}", info.title))),
                }
                ui.loading.set(None);
            }
            Response::OpenFailed { model, message } => {
                if model == inner.last_model.get() {
                    inner.reading.borrow_mut().clear();
                    ui.error.set(Some(message));
                    ui.loading.set(None);
                }
            }
            Response::Roles { model, roles } => {
                if current(model) {
                    ui.roles.set(roles);
                }
            }
            Response::Ran {
                model,
                baseline,
                current: result,
            } => {
                if current(model) {
                    match (baseline, result) {
                        (Some(Err(e)), _) | (_, Err(e)) => ui.error.set(Some(e)),
                        (baseline, Ok(r)) => {
                            if let Some(Ok(b)) = baseline {
                                ui.baseline.set(Some(b));
                            }
                            ui.engine_used.set(Some(r.engine));
                            ui.current.set(Some(r));
                            ui.results_shown.update(|n| *n += 1);
                            ui.error.set(None);
                        }
                    }
                }
                self.send_next_run(&inner);
            }
            Response::Progress { job, step } => {
                if inner.ranking.get() == Some(job) {
                    ui.ranking.set(Some(step));
                } else if inner.generating.get() == Some(job) {
                    ui.generating.set(Some(step));
                } else if inner.analysing.get() == Some(job) {
                    ui.analysing.set(Some(step));
                } else if inner.measuring.get() == Some(job) {
                    ui.measuring.set(Some(step));
                }
            }
            Response::Ranked { job, outcome } => {
                if inner.ranking.get() != Some(job) {
                    return;
                }
                inner.ranking.set(None);
                let last = ui.ranking.get_untracked();
                ui.ranking.set(None);
                ranked(ui, outcome, last);
            }
            Response::Analysed { job, outcome } => {
                if inner.analysing.get() != Some(job) {
                    return;
                }
                inner.analysing.set(None);
                ui.analysing.set(None);
                match outcome {
                    Ok(Some(analysis)) => ui.analysis.set(Some(analysis)),
                    Ok(None) => {}
                    Err(e) => ui.error.set(Some(e)),
                }
            }
            Response::Measured { job, outcome } => {
                if inner.measuring.get() != Some(job) {
                    return;
                }
                inner.measuring.set(None);
                ui.measuring.set(None);
                match outcome {
                    Ok(Some(measured)) => ui.measured.set(Some(Ok(measured))),
                    Ok(None) => {}
                    Err(e) => ui.measured.set(Some(Err(e))),
                }
            }
            Response::GeneratedToken { job, token } => {
                if inner.generating.get() != Some(job) {
                    return;
                }
                ui.generating.set(Some(token.step));
                ui.generation.update(|g| g.add(token));
            }
            Response::Generated { job, outcome } => {
                if inner.generating.get() != Some(job) {
                    return;
                }
                inner.generating.set(None);
                ui.generating.set(None);
                ui.generation.update(|g| g.paused = false);
                match outcome {
                    Ok(Some(generation)) => {
                        ui.generation_summary.set(Some(generation.summary()));
                        ui.generated.set(Some(generation.text));
                    }
                    Ok(None) => {
                        ui.generation_summary.set(None);
                        ui.generated.set(Some("(stopped)".into()));
                    }
                    Err(e) => ui.error.set(Some(e)),
                }
            }
        }
    }
}

/// Shows a ranking's end: the ranking, where it stopped, or why it failed.
fn ranked(ui: Ui, outcome: JobOutcome<Vec<HeadImportance>>, last: Option<Step>) {
    match outcome {
        Ok(Some(ranking)) => {
            ui.rank_status
                .set(Some(format!("Ranked {} heads.", ranking.len())));
            ui.importance.set(ranking);
        }
        Ok(None) => ui.rank_status.set(Some(match last {
            Some(step) => format!("Cancelled after {} of {} heads.", step.done, step.total),
            None => "Cancelled.".into(),
        })),
        Err(e) => ui.error.set(Some(e)),
    }
}
