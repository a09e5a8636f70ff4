//! The CPU engine or the GPU engine behind one type, and the pair of engines the page and the CLI
//! hold: the unmodified model (the baseline every comparison is against) and the variant being
//! explored, over one copy of the weights, falling back from the GPU to the CPU when the device
//! fails. Software adapters run the CPU engine (see `docs/ARCHITECTURE.md`, "Choosing the engine").

use std::sync::Arc;

use attn_model::{
    Captured, CpuEngine, Engine, Hooks, Model, Output, PreparedModel, StepOutput, Variant,
};

use crate::engine::{GpuEngine, Readback};
use crate::error::{GpuError, Result};

/// Which engine runs the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EngineKind {
    /// attn-model's reference forward pass on the CPU.
    Cpu,
    /// The WebGPU engine.
    Gpu,
}

/// The CPU engine or the GPU engine, behind one API: [`attn_model::Engine`], so every analysis
/// (head importance, generation, role scores) runs on either. (Boxed: both hold a whole model.)
#[derive(Debug)]
pub enum AnyEngine {
    Cpu(Box<CpuEngine>),
    Gpu(Box<GpuEngine>),
}

impl AnyEngine {
    /// The CPU engine on `model`.
    pub fn cpu(model: Model) -> Result<Self> {
        Self::cpu_shared(Arc::new(model))
    }

    /// The CPU engine on a shared model.
    pub fn cpu_shared(model: Arc<Model>) -> Result<Self> {
        Ok(AnyEngine::Cpu(Box::new(CpuEngine::shared(model)?)))
    }

    /// The GPU engine on `model`, on the device of `ctx`.
    pub fn gpu(ctx: &crate::GpuContext, model: Model) -> Result<Self> {
        Ok(AnyEngine::Gpu(Box::new(GpuEngine::new(ctx, model)?)))
    }

    /// Which engine this is.
    pub fn kind(&self) -> EngineKind {
        match self {
            AnyEngine::Cpu(_) => EngineKind::Cpu,
            AnyEngine::Gpu(_) => EngineKind::Gpu,
        }
    }

    /// A short description for the UI: `cpu`, or `gpu (adapter name)`.
    pub fn describe(&self) -> String {
        match self {
            AnyEngine::Cpu(_) => "cpu".into(),
            AnyEngine::Gpu(g) => format!("gpu ({})", g.context().adapter().name),
        }
    }

    /// The unmodified model, shared.
    pub fn base(&self) -> &Arc<Model> {
        match self {
            AnyEngine::Cpu(e) => e.base(),
            AnyEngine::Gpu(e) => e.base(),
        }
    }

    /// The model with the current variant applied.
    pub fn prepared(&self) -> &PreparedModel {
        match self {
            AnyEngine::Cpu(e) => e.prepared(),
            AnyEngine::Gpu(e) => e.prepared(),
        }
    }

    /// [`Engine::forward`], blocking the current thread (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_blocking(&mut self, tokens: &[u32], readback: &Readback) -> Result<Output> {
        pollster::block_on(Engine::forward(self, tokens, readback))
    }

    /// The CPU engine on the same model with the same variant (what a GPU failure falls back to).
    pub fn to_cpu(&self) -> Result<AnyEngine> {
        let mut cpu = CpuEngine::shared(self.base().clone())?;
        cpu.set_variant(self.variant())?;
        Ok(AnyEngine::Cpu(Box::new(cpu)))
    }
}

/// What a forward does does not depend on the engine: the CPU engine or the GPU engine
/// answers, and what `readback` does not ask for is NaN whichever it is.
impl Engine for AnyEngine {
    type Error = GpuError;

    fn model(&self) -> &Model {
        match self {
            AnyEngine::Cpu(e) => e.model(),
            AnyEngine::Gpu(e) => e.model(),
        }
    }

    fn variant(&self) -> &Variant {
        &self.prepared().variant
    }

    fn prepared(&self) -> &PreparedModel {
        AnyEngine::prepared(self)
    }

    /// Weight-side work happens now, and only when the variant changed.
    fn set_variant(&mut self, variant: &Variant) -> Result<()> {
        match self {
            AnyEngine::Cpu(e) => Ok(e.set_variant(variant)?),
            AnyEngine::Gpu(e) => e.set_variant(variant),
        }
    }

    async fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> Result<(Output, Captured)> {
        match self {
            AnyEngine::Cpu(e) => {
                Ok(Engine::forward_hooked(e.as_mut(), tokens, readback, hooks).await?)
            }
            AnyEngine::Gpu(e) => e.forward_hooked(tokens, readback, hooks).await,
        }
    }

    /// The engine's KV cache (`None` where the variant is not decoded from one: the caller
    /// recomputes).
    async fn prefill(&mut self, tokens: &[u32], readback: &Readback) -> Result<Option<Output>> {
        match self {
            AnyEngine::Cpu(e) => Ok(Engine::prefill(e.as_mut(), tokens, readback).await?),
            AnyEngine::Gpu(e) => Engine::prefill(e.as_mut(), tokens, readback).await,
        }
    }

    async fn decode_step(&mut self, token: u32) -> Result<StepOutput> {
        match self {
            AnyEngine::Cpu(e) => Ok(Engine::decode_step(e.as_mut(), token).await?),
            AnyEngine::Gpu(e) => Engine::decode_step(e.as_mut(), token).await,
        }
    }

    fn kv_cache_bytes(&self) -> Option<usize> {
        match self {
            AnyEngine::Cpu(e) => e.kv_cache_bytes(),
            AnyEngine::Gpu(e) => e.kv_cache_bytes(),
        }
    }
}

impl Engine for GpuEngine {
    type Error = GpuError;

    fn model(&self) -> &Model {
        GpuEngine::model(self)
    }

    fn variant(&self) -> &Variant {
        GpuEngine::variant(self)
    }

    fn prepared(&self) -> &PreparedModel {
        GpuEngine::prepared(self)
    }

    fn set_variant(&mut self, variant: &Variant) -> Result<()> {
        GpuEngine::set_variant(self, variant)
    }

    async fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> Result<(Output, Captured)> {
        GpuEngine::forward_hooked(self, tokens, readback, hooks).await
    }

    async fn prefill(&mut self, tokens: &[u32], readback: &Readback) -> Result<Option<Output>> {
        GpuEngine::prefill(self, tokens, readback).await
    }

    async fn decode_step(&mut self, token: u32) -> Result<StepOutput> {
        GpuEngine::decode_step(self, token).await
    }

    fn kv_cache_bytes(&self) -> Option<usize> {
        GpuEngine::kv_cache_bytes(self)
    }
}

/// Whether `error` is the device's fault (lost, out of memory, a timeout, a rejected command):
/// the GPU cannot be trusted any more and the CPU engine should take over. Bad input and bad
/// variants are the user's to fix, and the CPU engine would refuse them too.
pub fn is_device_failure(error: &GpuError) -> bool {
    !matches!(error, GpuError::Model(_))
}

/// Two engines over one copy of the weights (one upload on the GPU): the unmodified model and the
/// variant being explored, so changing a control never re-prepares the baseline.
#[derive(Debug)]
pub struct EnginePair {
    pub baseline: AnyEngine,
    pub variant: AnyEngine,
}

impl EnginePair {
    /// Both on the CPU engine.
    pub fn cpu(model: Arc<Model>) -> Result<Self> {
        Ok(EnginePair {
            baseline: AnyEngine::cpu_shared(model.clone())?,
            variant: AnyEngine::cpu_shared(model)?,
        })
    }

    /// Both on the GPU engine of `ctx`, sharing one upload of the weights.
    pub fn gpu(ctx: &crate::GpuContext, model: Arc<Model>) -> Result<Self> {
        let baseline = GpuEngine::shared(ctx, model)?;
        let variant = baseline.share()?;
        Ok(EnginePair {
            baseline: AnyEngine::Gpu(Box::new(baseline)),
            variant: AnyEngine::Gpu(Box::new(variant)),
        })
    }

    /// Which engine the pair runs on.
    pub fn kind(&self) -> EngineKind {
        self.variant.kind()
    }

    /// The unmodified model.
    pub fn model(&self) -> &Model {
        self.baseline.model()
    }

    /// Moves both engines to the CPU, keeping the variant: the answer to a device failure.
    pub fn fall_back_to_cpu(&mut self) -> Result<()> {
        let baseline = self.baseline.to_cpu()?;
        let variant = self.variant.to_cpu()?;
        *self = EnginePair { baseline, variant };
        Ok(())
    }

    /// Runs the unmodified model (`baseline`) or the variant on `tokens`, switching the variant
    /// engine to `variant` first when it differs. A device failure moves the pair to the CPU
    /// engine and runs there; the error is returned beside the output so the caller can say so.
    pub async fn run(
        &mut self,
        baseline: bool,
        variant: &Variant,
        tokens: &[u32],
        readback: &Readback,
    ) -> (Result<Output>, Option<GpuError>) {
        let first = self.run_once(baseline, variant, tokens, readback).await;
        match first {
            Err(e) if self.kind() == EngineKind::Gpu && is_device_failure(&e) => {
                if let Err(cpu_error) = self.fall_back_to_cpu() {
                    return (Err(cpu_error), Some(e));
                }
                let second = self.run_once(baseline, variant, tokens, readback).await;
                (second, Some(e))
            }
            other => (other, None),
        }
    }

    async fn run_once(
        &mut self,
        baseline: bool,
        variant: &Variant,
        tokens: &[u32],
        readback: &Readback,
    ) -> Result<Output> {
        let engine = if baseline {
            &mut self.baseline
        } else {
            if self.variant.variant() != &variant.normalised() {
                self.variant.set_variant(variant)?;
            }
            &mut self.variant
        };
        engine.forward(tokens, readback).await
    }
}
