//! The engine API: the [`Engine`] trait every analysis takes, what a forward reads back
//! ([`Readback`]), and how long analyses report progress and stop ([`Progress`], [`Outcome`]).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::engine::decode::StepOutput;
use crate::engine::hooks::{Captured, Hooks};
use crate::engine::output::Output;
use crate::engine::prepared::PreparedModel;
use crate::error::ModelError;
use crate::model::Model;
use crate::variant::Variant;

/// A forward-pass engine: a model, the variant applied to it, and a forward pass. An engine
/// implements four methods (the model, the variant, switching it, the hooked forward); the
/// plain forward comes with the trait.
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

    /// The model with the variant applied: the projections the forward runs (pooled or
    /// compressed keys and values), which analyses of the weights read.
    fn prepared(&self) -> &PreparedModel;

    /// Switches to `variant`; on error the previous one stays in place.
    fn set_variant(&mut self, variant: &Variant) -> std::result::Result<(), Self::Error>;

    /// One forward pass under the current variant. What `readback` does not ask for is NaN.
    /// (Every engine's forward is its hooked forward with no hooks, which costs nothing extra.)
    fn forward(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
    ) -> impl Future<Output = std::result::Result<Output, Self::Error>> {
        async move {
            let (output, _) = self
                .forward_hooked(tokens, readback, &Hooks::none())
                .await?;
            Ok(output)
        }
    }

    /// [`Engine::forward`] with hooks: the activations at `hooks.capture` come back (in that
    /// order), and those in `hooks.replace` are used in place of what the forward computed.
    fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> impl Future<Output = std::result::Result<(Output, Captured), Self::Error>>;

    /// Starts incremental decoding: runs `tokens` (the prompt) as one forward and keeps every
    /// layer's keys and values — a KV cache shaped by the variant (see `engine::decode`) — for
    /// [`Engine::decode_step`]. `None` when this engine keeps no cache, or the variant cannot
    /// be decoded from one: the caller recomputes with [`Engine::forward`] instead.
    fn prefill(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
    ) -> impl Future<Output = std::result::Result<Option<Output>, Self::Error>> {
        let _ = (tokens, readback);
        async { Ok(None) }
    }

    /// Runs `token` at the next position against the cache [`Engine::prefill`] started (equal
    /// to a forward over the whole prefix at its last position), and caches its keys and
    /// values.
    fn decode_step(
        &mut self,
        token: u32,
    ) -> impl Future<Output = std::result::Result<StepOutput, Self::Error>> {
        let _ = token;
        async {
            Err(ModelError::Input(
                "this engine keeps no KV cache: decode after a prefill that returned an output"
                    .into(),
            )
            .into())
        }
    }

    /// The bytes the KV cache holds now (keys, values or recurrent state, not what was
    /// allocated ahead); `None` while no decoding is under way.
    fn kv_cache_bytes(&self) -> Option<usize> {
        None
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
