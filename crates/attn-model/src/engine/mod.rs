//! One engine API for every analysis: the CPU engine here and the GPU engine in `attn-gpu` both
//! implement [`Engine`], and head importance, generation and role scores take `&mut impl Engine`,
//! so they run on whichever engine the caller (the page, the CLI) holds. A forward says what to
//! read back ([`Readback`]); long loops report progress and can be cancelled ([`Progress`]).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::forward::{forward_hooked, CpuEngine, Output};
use crate::model::Model;
use crate::prepare::PreparedModel;
use crate::variant::Variant;

/// A forward-pass engine: a model, the variant applied to it, and a forward pass.
///
/// `forward` is asynchronous because the GPU engine waits for its read-back; the CPU engine's
/// future is ready at once (see [`now`]).
pub trait Engine {
    /// The engine's error; every model error (bad input, bad variant) converts into it.
    type Error: From<ModelError> + std::fmt::Display;

    /// The unmodified model.
    fn model(&self) -> &Model;

    /// The variant in use (normalised).
    fn variant(&self) -> &Variant;

    /// Switches to `variant`; on error the previous one stays in place.
    fn set_variant(&mut self, variant: &Variant) -> std::result::Result<(), Self::Error>;

    /// One forward pass under the current variant. What `readback` does not ask for is NaN.
    fn forward(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
    ) -> impl Future<Output = std::result::Result<Output, Self::Error>>;

    /// [`Engine::forward`] with hooks: the activations at `hooks.capture` come back (in that
    /// order), and those in `hooks.replace` are used in place of what the forward computed.
    fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> impl Future<Output = std::result::Result<(Output, Captured), Self::Error>>;
}

/// A point in the forward pass where an engine can capture or replace an activation. The names
/// follow TransformerLens's hook points.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum HookPoint {
    /// `blocks.{layer}.hook_resid_pre`: the residual stream entering block `layer`,
    /// `[T, d_model]`. `layer = n_layer` is the stream after the last block, before the final
    /// LayerNorm.
    ResidPre { layer: usize },
    /// `blocks.{layer}.attn.hook_z` of one head: its output before the output projection (after
    /// any ablation), `[T, d_head]`. In a layer whose attention is dropped it is zero and cannot
    /// be replaced. `head_out_norms` stay those of the head's own output.
    HeadOutput { layer: usize, head: usize },
}

impl HookPoint {
    /// Number of values at this point for a `t_len`-token input.
    pub fn len(&self, config: &ModelConfig, t_len: usize) -> usize {
        match self {
            HookPoint::ResidPre { .. } => t_len * config.d_model,
            HookPoint::HeadOutput { .. } => t_len * config.d_head(),
        }
    }

    /// Whether the point exists in a model of this shape.
    pub fn check(&self, config: &ModelConfig) -> Result<()> {
        let fits = match *self {
            HookPoint::ResidPre { layer } => layer <= config.n_layer,
            HookPoint::HeadOutput { layer, head } => layer < config.n_layer && head < config.n_head,
        };
        if fits {
            Ok(())
        } else {
            Err(ModelError::Input(format!(
                "hook point {self:?} does not exist in a model of {} layers × {} heads",
                config.n_layer, config.n_head
            )))
        }
    }
}

/// What a hooked forward captures and replaces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hooks {
    /// Points whose activations to return.
    pub capture: Vec<HookPoint>,
    /// Activations to use in place of the computed ones (each of [`HookPoint::len`] values).
    pub replace: Vec<(HookPoint, Vec<f32>)>,
}

/// The activations a hooked forward captured, in the order [`Hooks::capture`] asked for them.
pub type Captured = Vec<(HookPoint, Vec<f32>)>;

impl Hooks {
    /// No hooks.
    pub fn none() -> Self {
        Hooks::default()
    }

    /// Whether there is nothing to capture or replace.
    pub fn is_empty(&self) -> bool {
        self.capture.is_empty() && self.replace.is_empty()
    }

    /// Checks every point against the model and each replacement's length against the input;
    /// a head of a layer whose attention is dropped cannot be replaced.
    pub fn check(&self, prepared: &PreparedModel, t_len: usize) -> Result<()> {
        let c = &prepared.config;
        for point in &self.capture {
            point.check(c)?;
        }
        for (i, (point, values)) in self.replace.iter().enumerate() {
            point.check(c)?;
            if self.replace[..i].iter().any(|(p, _)| p == point) {
                return Err(ModelError::Input(format!("two replacements for {point:?}")));
            }
            if values.len() != point.len(c, t_len) {
                return Err(ModelError::Input(format!(
                    "the replacement at {point:?} has {} values; {} tokens need {}",
                    values.len(),
                    t_len,
                    point.len(c, t_len)
                )));
            }
            if let HookPoint::HeadOutput { layer, .. } = *point {
                if prepared.attention_dropped[layer] {
                    return Err(ModelError::Input(format!(
                        "layer {layer}'s attention is dropped: its heads cannot be replaced"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Engine for CpuEngine {
    type Error = ModelError;

    fn model(&self) -> &Model {
        CpuEngine::model(self)
    }

    fn variant(&self) -> &Variant {
        CpuEngine::variant(self)
    }

    fn set_variant(&mut self, variant: &Variant) -> Result<()> {
        CpuEngine::set_variant(self, variant)
    }

    async fn forward(&mut self, tokens: &[u32], readback: &Readback) -> Result<Output> {
        // On the pool in the build with threads (`crate::pool`): the work takes its own handle on
        // the model (`PreparedModel` is `Arc`s and a few flags) and its own copy of the input.
        let (prepared, tokens) = (self.prepared().clone(), tokens.to_vec());
        let mut output =
            crate::pool::run(move || crate::forward::forward(&prepared, &tokens)).await?;
        readback.mask(&mut output);
        Ok(output)
    }

    async fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> Result<(Output, Captured)> {
        let (prepared, tokens, hooks) = (self.prepared().clone(), tokens.to_vec(), hooks.clone());
        let (mut output, captured) =
            crate::pool::run(move || forward_hooked(&prepared, &tokens, &hooks)).await?;
        readback.mask(&mut output);
        Ok((output, captured))
    }
}

/// Runs a future that never waits, such as anything over the CPU engine, to completion.
///
/// # Panics
/// If the future is not ready at once (an engine that waits for a device): use an executor
/// (`pollster` natively, the browser's event loop on the web) for those.
pub fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("attn_model::engine::now: the future is waiting for something"),
    }
}

/// How far a long analysis has come: `done` of `total` steps (forward passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub done: usize,
    pub total: usize,
}

/// Told after each step of a long analysis; answers whether to go on.
pub trait Progress {
    /// `false` cancels the analysis, which then returns [`Outcome::Cancelled`].
    fn go_on(&mut self, step: Step) -> bool;
}

impl<F: FnMut(Step) -> bool> Progress for F {
    fn go_on(&mut self, step: Step) -> bool {
        self(step)
    }
}

/// Puts `previous` back as the engine's variant after a job that changed it, also when the job
/// failed or was cancelled: the job's error comes first, then the restoring's.
pub fn restore_variant<E: Engine, T>(
    engine: &mut E,
    previous: &Variant,
    outcome: std::result::Result<T, E::Error>,
) -> std::result::Result<T, E::Error> {
    let restored = engine.set_variant(previous);
    let outcome = outcome?;
    restored?;
    Ok(outcome)
}

/// Progress that nobody watches: never cancels.
pub fn unwatched() -> impl Progress {
    |_: Step| true
}

/// The end of a long analysis: its result, or cancelled by its [`Progress`].
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<T> {
    Done(T),
    Cancelled,
}

impl<T> Outcome<T> {
    /// The result, or `None` when cancelled.
    pub fn done(self) -> Option<T> {
        match self {
            Outcome::Done(value) => Some(value),
            Outcome::Cancelled => None,
        }
    }
}

/// Which positions' logits to read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LogitRows {
    /// `[T, n_out]`, every position (what the metrics need).
    #[default]
    All,
    /// Only the last position (the next-token distribution). The other rows are NaN, and the
    /// engine computes only this row of the output projection.
    Last,
    /// None: every logit is NaN.
    None,
}

/// Which attention maps to read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AttentionMaps {
    /// Every `(layer, head)` map.
    #[default]
    All,
    /// None: the attention is NaN.
    None,
    /// These `(layer, head)` maps; the others are NaN.
    Only(Vec<(usize, usize)>),
}

/// What a forward reads back (from the GPU; the CPU engine masks the rest). Everything not read is NaN in the [`Output`] (same
/// shapes as always), so a view that uses what it did not ask for sees it at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readback {
    pub logits: LogitRows,
    pub attention: AttentionMaps,
    pub head_out_norms: bool,
}

impl Default for Readback {
    fn default() -> Self {
        Readback::everything()
    }
}

impl Readback {
    /// Every output, as the CPU engine returns it.
    pub fn everything() -> Self {
        Readback {
            logits: LogitRows::All,
            attention: AttentionMaps::All,
            head_out_norms: true,
        }
    }

    /// Every position's logits and nothing else (what the loss and the KL need).
    pub fn logits() -> Self {
        Readback {
            logits: LogitRows::All,
            attention: AttentionMaps::None,
            head_out_norms: false,
        }
    }

    /// The last position's logits only (the next-token distribution).
    pub fn next_token() -> Self {
        Readback {
            logits: LogitRows::Last,
            attention: AttentionMaps::None,
            head_out_norms: false,
        }
    }

    /// Every attention map and nothing else.
    pub fn attention_maps() -> Self {
        Readback {
            logits: LogitRows::None,
            attention: AttentionMaps::All,
            head_out_norms: false,
        }
    }

    /// Replaces what this readback does not ask for by NaN (what the GPU engine leaves unread),
    /// so engines that compute everything anyway return the same thing.
    pub fn mask(&self, output: &mut Output) {
        let (t, n) = (output.seq_len, output.n_out);
        match self.logits {
            LogitRows::All => {}
            LogitRows::Last => output.logits[..(t - 1) * n].fill(f32::NAN),
            LogitRows::None => output.logits.fill(f32::NAN),
        }
        match &self.attention {
            AttentionMaps::All => {}
            AttentionMaps::None => output.attention.fill(f32::NAN),
            AttentionMaps::Only(maps) => {
                for (i, map) in output.attention.chunks_exact_mut(t * t).enumerate() {
                    let (layer, head) = (i / output.n_head, i % output.n_head);
                    if !maps.contains(&(layer, head)) {
                        map.fill(f32::NAN);
                    }
                }
            }
        }
        if !self.head_out_norms {
            output.head_out_norms.fill(f32::NAN);
        }
    }
}
