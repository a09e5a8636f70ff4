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
mod state;
mod training;

use std::cell::RefCell;
use std::rc::Rc;

use attn_gpu::{EngineKind, GpuContext};
use gloo_worker::{HandlerId, Registrable, Worker, WorkerScope};
use wasm_bindgen_futures::spawn_local;

use crate::protocol::{Request, Response, Steer};
use crate::session::{return_engines, take_engines};
use analyses::{analyse, generate_text, measure, rank_heads};
use open::open;
use run::run;
use state::State;

/// The compute worker's `main`: registers [`ComputeWorker`] to answer the page.
pub fn run_worker() {
    console_error_panic_hook::set_once();
    ComputeWorker::registrar().register();
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
            Request::SteerGeneration { job, steer } => {
                steer_generation(&self.state, job, steer);
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
            steer,
        } => {
            let wanted = (variant.0, maps, steer);
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
            step_through,
            steer,
        } => {
            if step_through {
                // The first token, then wait for the page.
                steer_generation(state, job, Steer::Step);
            }
            let asked = (&variant.0, steer.as_ref());
            let outcome =
                generate_text(state, model, job, &tokens, asked, n, &sampling, reply).await;
            state.cancelled.borrow_mut().remove(&job);
            reply(Response::Generated { job, outcome });
        }
        Request::Analyse {
            model,
            job,
            tokens,
            variant,
            tool,
            steer,
        } => {
            let asked = (&tool, steer.as_ref());
            let outcome = analyse(state, model, job, &tokens, &variant.0, asked, reply).await;
            state.cancelled.borrow_mut().remove(&job);
            reply(Response::Analysed { job, outcome });
        }
        Request::Measure {
            model,
            job,
            tokens,
            step,
        } => {
            let outcome = measure(state, model, job, &tokens, &step.0, reply).await;
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
        Request::SteerGeneration { job, steer } => steer_generation(state, job, steer),
        Request::SimulateDeviceLoss => {}
        Request::Crash => panic!("fault injection: the page asked the compute worker to crash"),
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

/// Pauses, continues or steps generation `job` (the generation's loop reads these between
/// tokens: `analyses::generate_text`).
fn steer_generation(state: &State, job: u32, steer: Steer) {
    match steer {
        Steer::Pause => {
            state.paused.borrow_mut().insert(job);
        }
        Steer::Continue => {
            state.paused.borrow_mut().remove(&job);
            state.steps.borrow_mut().remove(&job);
        }
        Steer::Step => {
            state.paused.borrow_mut().insert(job);
            *state.steps.borrow_mut().entry(job).or_default() += 1;
        }
    }
}
