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

mod analyses;
mod open;
mod run;
mod training;

use crate::protocol::{Request, Response};
use crate::session::{return_engines, take_engines, SessionCell};
use analyses::{analyse, generate_text, measure, rank_heads};
use attn_gpu::{is_device_failure, EngineKind, EnginePair, GpuContext, GpuError};
use attn_model::engine::Step;
use attn_model::training::Corpus;
use attn_model::Output;
use gloo_worker::{HandlerId, Registrable, Worker, WorkerScope};
use open::open;
use run::run;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use training::TrainRun;
use wasm_bindgen_futures::spawn_local;

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
        } => training::start(state, job, &task, config.0, engine, reply).await,
        Request::Heal {
            job,
            model,
            variant,
            steps,
            engine,
        } => training::heal(state, job, model, &variant.0, (steps, engine), reply).await,
        Request::ResumeTraining { job } => training::resume(state, job, reply).await,
        Request::ResetTraining => {}
        Request::SaveTrained => training::save(state, reply).await,
        Request::Cancel { job } => {
            state.cancelled.borrow_mut().insert(job);
        }
        Request::SimulateDeviceLoss => {}
        Request::Crash => panic!("fault injection: the page asked the compute worker to crash"),
    }
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
