//! The CPU engine: a model with a variant prepared for it (the overlay of `prepare`), run by
//! the reference forward (`forward`), and its implementation of the [`Engine`] API.

use std::sync::Arc;

use crate::engine::api::{Engine, LogitRows, Readback};
use crate::engine::decode::{Decoder, StepOutput};
use crate::engine::forward::{forward, forward_unembedding};
use crate::engine::hooks::{Captured, Hooks};
use crate::engine::output::Output;
use crate::engine::prepare::prepare;
use crate::engine::prepared::PreparedModel;
use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::variant::Variant;

/// What a [`CpuEngine`] did, to check that runtime-only variant changes copy nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuEngineStats {
    /// Variant changes.
    pub variant_changes: u64,
    /// Variant changes that computed weights (pooling, SVD, random features) rather than
    /// reusing the previous preparation's.
    pub weight_preparations: u64,
}

/// The CPU engine: a model plus the variant currently applied to it.
#[derive(Clone, Debug)]
pub struct CpuEngine {
    prepared: PreparedModel,
    stats: CpuEngineStats,
    /// The decoding under way (its KV cache), from the last prefill.
    decoder: Option<Decoder>,
}

impl CpuEngine {
    /// An engine running the unmodified model.
    pub fn new(model: Model) -> Result<Self> {
        Self::shared(Arc::new(model))
    }

    /// An engine on a model shared with other engines (no copy of the weights).
    pub fn shared(model: Arc<Model>) -> Result<Self> {
        let prepared = prepare(&model, &Variant::default())?;
        Ok(CpuEngine {
            prepared,
            stats: CpuEngineStats::default(),
            decoder: None,
        })
    }

    /// Switches to `variant`. Weight-side changes are computed now, once; a change of runtime
    /// settings only (window, top-k, β, kernel, ablation, dropped layers) reuses them. On error
    /// the previous variant stays in place.
    pub fn set_variant(&mut self, variant: &Variant) -> Result<()> {
        let next = self.prepared.with_variant(variant)?;
        self.stats.variant_changes += 1;
        if !next.shares_weights_with(&self.prepared) {
            self.stats.weight_preparations += 1;
        }
        self.prepared = next;
        // A cache belongs to the variant that filled it.
        self.decoder = None;
        Ok(())
    }

    /// The unmodified model.
    pub fn model(&self) -> &Model {
        self.prepared.model()
    }

    /// The unmodified model, shared.
    pub fn base(&self) -> &Arc<Model> {
        self.prepared.base()
    }

    /// The variant in use.
    pub fn variant(&self) -> &Variant {
        &self.prepared.variant
    }

    /// The model with the current variant applied.
    pub fn prepared(&self) -> &PreparedModel {
        &self.prepared
    }

    /// Counters over the engine's life.
    pub fn stats(&self) -> CpuEngineStats {
        self.stats
    }

    /// Runs one forward pass under the current variant.
    pub fn forward(&self, tokens: &[u32]) -> Result<Output> {
        forward(&self.prepared, tokens)
    }

    /// The decoding under way, if a prefill started one (its cache: [`Decoder::cache`]).
    pub fn decoder(&self) -> Option<&Decoder> {
        self.decoder.as_ref()
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

    fn prepared(&self) -> &PreparedModel {
        CpuEngine::prepared(self)
    }

    fn set_variant(&mut self, variant: &Variant) -> Result<()> {
        CpuEngine::set_variant(self, variant)
    }

    async fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> Result<(Output, Captured)> {
        // On the pool in the build with threads (`crate::pool`): the work takes its own handle on
        // the model (`PreparedModel` is `Arc`s and a few flags) and its own copy of the input.
        // Only the logits read back are computed (the output projection is the forward's
        // largest product for a large vocabulary).
        let t_len = tokens.len();
        let rows = match readback.logits {
            LogitRows::All => 0..t_len,
            LogitRows::Last => t_len.saturating_sub(1)..t_len,
            LogitRows::None => t_len..t_len,
        };
        let (prepared, tokens, hooks) = (self.prepared().clone(), tokens.to_vec(), hooks.clone());
        let (mut output, captured) =
            crate::engine::pool::run(move || forward_unembedding(&prepared, &tokens, &hooks, rows))
                .await?;
        readback.mask(&mut output);
        Ok((output, captured))
    }

    /// A cache on the CPU: see `engine::decode`. A variant that cannot be decoded (mean
    /// ablation) answers `None`, and the caller recomputes.
    async fn prefill(&mut self, tokens: &[u32], readback: &Readback) -> Result<Option<Output>> {
        self.decoder = None;
        let mut decoder = match Decoder::new(&self.prepared) {
            Ok(decoder) => decoder,
            Err(ModelError::Variant(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let tokens = tokens.to_vec();
        let (decoder, output) = crate::engine::pool::run(move || {
            let output = decoder.prefill(&tokens);
            (decoder, output)
        })
        .await;
        let mut output = output?;
        readback.mask(&mut output);
        self.decoder = Some(decoder);
        Ok(Some(output))
    }

    async fn decode_step(&mut self, token: u32) -> Result<StepOutput> {
        let Some(mut decoder) = self.decoder.take() else {
            return Err(ModelError::Input(
                "decoding starts with a prefill of the prompt".into(),
            ));
        };
        let (decoder, step) = crate::engine::pool::run(move || {
            let step = decoder.step(token);
            (decoder, step)
        })
        .await;
        self.decoder = Some(decoder);
        step
    }

    fn kv_cache_bytes(&self) -> Option<usize> {
        self.decoder.as_ref().map(|d| d.cache().bytes())
    }
}
