//! The CPU engine: a model with a variant prepared for it (the overlay of `prepare`), run by
//! the reference forward (`forward`), and its implementation of the [`Engine`] API.

use std::sync::Arc;

use crate::engine::api::{Engine, Readback};
use crate::engine::forward::{forward, forward_hooked};
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

    async fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> Result<(Output, Captured)> {
        // On the pool in the build with threads (`crate::pool`): the work takes its own handle on
        // the model (`PreparedModel` is `Arc`s and a few flags) and its own copy of the input.
        let (prepared, tokens, hooks) = (self.prepared().clone(), tokens.to_vec(), hooks.clone());
        let (mut output, captured) =
            crate::engine::pool::run(move || forward_hooked(&prepared, &tokens, &hooks)).await?;
        readback.mask(&mut output);
        Ok((output, captured))
    }
}
