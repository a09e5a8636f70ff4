//! What the worker holds between requests — the session, the WebGPU devices, the jobs the page
//! cancelled, the baseline's last output, the training run — and the helpers every task uses
//! to take the engines, report progress and fall back from a failed GPU.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use attn_gpu::training::GpuTrainer;
use attn_gpu::{is_device_failure, EngineKind, EnginePair, GpuContext, GpuError};
use attn_model::engine::Step;
use attn_model::training::{Corpus, RunSteps, Task, TaskData, TrainConfig, Trainer};
use attn_model::{Output, Variant};

use crate::protocol::Response;
use crate::session::{return_engines, take_engines, SessionCell};

/// The worker's state, shared by its running tasks.
#[derive(Default)]
pub(super) struct State {
    pub(super) session: SessionCell,
    /// The page's number of the model in `session`.
    pub(super) model: Cell<u32>,
    /// The WebGPU device, once the page asked for it and it opened; gone after a GPU failure.
    pub(super) gpu: RefCell<Option<GpuContext>>,
    /// The device a training run opened for itself when the page runs on the CPU engine.
    pub(super) train_gpu: RefCell<Option<GpuContext>>,
    /// Jobs the page cancelled.
    pub(super) cancelled: RefCell<HashSet<u32>>,
    /// Generations the page paused, and the single steps it asked of them.
    pub(super) paused: RefCell<HashSet<u32>>,
    pub(super) steps: RefCell<HashMap<u32, usize>>,
    /// The unmodified model's last output with its logits, (model, tokens, output): what the
    /// variant's results are compared with.
    pub(super) baseline: RefCell<Option<(u32, Vec<u32>, Output)>>,
    /// The training run, running or paused.
    pub(super) training: RefCell<Option<TrainRun>>,
    /// The character model's text, once fetched.
    pub(super) corpus: RefCell<Option<Corpus>>,
    /// The plays' held-out tails, once fetched: what lessons score language models on.
    pub(super) held_out_text: RefCell<Option<Vec<String>>>,
}

/// Whether `error` on `pair` is the GPU's fault, so the pair should move to the CPU engine.
pub(super) fn falls_back(pair: &EnginePair, error: &GpuError) -> bool {
    pair.kind() == EngineKind::Gpu && is_device_failure(error)
}

/// The GPU failed: later models start on the CPU engine, and the page says so.
pub(super) fn gpu_failed(state: &State, error: &GpuError, reply: &dyn Fn(Response)) {
    *state.gpu.borrow_mut() = None;
    reply(Response::GpuFailed {
        why: error.to_string(),
    });
}

/// Reports each step of job `job` and stops it once the page cancelled it.
pub(super) fn progress<'a>(
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
pub(super) async fn take_current(state: &State, model: u32) -> Option<EnginePair> {
    let pair = take_engines(&state.session).await?;
    if state.model.get() == model {
        Some(pair)
    } else {
        return_engines(&state.session, pair);
        None
    }
}

/// A training run in the worker.
pub(super) struct TrainRun {
    /// The page's job number of the loop that steps it; an older loop stops when it sees a
    /// newer number (the run was restarted or resumed meanwhile).
    pub(super) job: u32,
    pub(super) trainer: RunTrainer,
    /// Milliseconds spent stepping (for the saved file's `train_seconds`).
    pub(super) millis: f64,
    /// Where it trains, as the panel says it.
    pub(super) engine: String,
}

/// The trainer of a run: attn-model's on the CPU, or attn-gpu's on a WebGPU device (the same
/// run for the same seed: the same initial weights, batches and updates).
#[allow(clippy::large_enum_variant)] // The worker holds one run at a time.
pub(super) enum RunTrainer {
    Cpu(Trainer),
    Gpu(GpuTrainer),
}

impl RunTrainer {
    pub(super) fn steps(&self) -> &RunSteps {
        match self {
            RunTrainer::Cpu(t) => t.steps(),
            RunTrainer::Gpu(t) => t.steps(),
        }
    }

    pub(super) fn steps_mut(&mut self) -> &mut RunSteps {
        match self {
            RunTrainer::Cpu(t) => t.steps_mut(),
            RunTrainer::Gpu(t) => t.steps_mut(),
        }
    }

    pub(super) fn task(&self) -> Task {
        match self {
            RunTrainer::Cpu(t) => t.task(),
            RunTrainer::Gpu(t) => t.task(),
        }
    }

    pub(super) fn config(&self) -> &TrainConfig {
        match self {
            RunTrainer::Cpu(t) => t.config(),
            RunTrainer::Gpu(t) => t.config(),
        }
    }

    pub(super) fn data(&self) -> &dyn TaskData {
        match self {
            RunTrainer::Cpu(t) => t.data(),
            RunTrainer::Gpu(t) => t.data(),
        }
    }

    pub(super) fn model_config(&self) -> &attn_model::ModelConfig {
        match self {
            RunTrainer::Cpu(t) => t.model_config(),
            RunTrainer::Gpu(t) => t.model_config(),
        }
    }

    /// What the weights run with: the unmodified model, or the linear kernel they train with.
    pub(super) fn variant(&self) -> Variant {
        match self {
            RunTrainer::Cpu(t) => t.variant(),
            RunTrainer::Gpu(t) => t.variant(),
        }
    }
}
