//! One engine API over both engines, so the app and the CLI hold "an engine" and let the user
//! (or the adapter, DESIGN.md §4) pick which.

use attn_model::{CpuEngine, Model, Output, PreparedModel, Variant};

use crate::engine::{GpuEngine, Readback};
use crate::error::Result;

/// Which engine runs the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// attn-model's reference forward pass on the CPU.
    Cpu,
    /// The WebGPU engine.
    Gpu,
}

/// The CPU engine or the GPU engine, behind one API. (Boxed: both hold a whole model.)
#[derive(Debug)]
pub enum Engine {
    Cpu(Box<CpuEngine>),
    Gpu(Box<GpuEngine>),
}

impl Engine {
    /// The CPU engine on `model`.
    pub fn cpu(model: Model) -> Result<Self> {
        Ok(Engine::Cpu(Box::new(CpuEngine::new(model)?)))
    }

    /// The GPU engine on `model`, on the device of `ctx`.
    pub fn gpu(ctx: &crate::GpuContext, model: Model) -> Result<Self> {
        Ok(Engine::Gpu(Box::new(GpuEngine::new(ctx, model)?)))
    }
}

impl Engine {
    /// Which engine this is.
    pub fn kind(&self) -> EngineKind {
        match self {
            Engine::Cpu(_) => EngineKind::Cpu,
            Engine::Gpu(_) => EngineKind::Gpu,
        }
    }

    /// A short description for the UI: `cpu`, or `gpu (adapter name)`.
    pub fn describe(&self) -> String {
        match self {
            Engine::Cpu(_) => "cpu".into(),
            Engine::Gpu(g) => format!("gpu ({})", g.context().adapter().name),
        }
    }

    /// Switches both engines' variant the same way (weight-side work happens now).
    pub fn set_variant(&mut self, variant: &Variant) -> Result<()> {
        match self {
            Engine::Cpu(e) => Ok(e.set_variant(variant)?),
            Engine::Gpu(e) => e.set_variant(variant),
        }
    }

    /// The unmodified model.
    pub fn model(&self) -> &Model {
        match self {
            Engine::Cpu(e) => e.model(),
            Engine::Gpu(e) => e.model(),
        }
    }

    /// The model with the current variant's weight-side changes.
    pub fn prepared(&self) -> &PreparedModel {
        match self {
            Engine::Cpu(e) => e.prepared(),
            Engine::Gpu(e) => e.prepared(),
        }
    }

    /// One forward pass; what `readback` does not ask for is NaN, whichever the engine.
    pub async fn forward(&mut self, tokens: &[u32], readback: &Readback) -> Result<Output> {
        match self {
            Engine::Cpu(e) => {
                let mut output = e.forward(tokens)?;
                readback.mask(&mut output);
                Ok(output)
            }
            Engine::Gpu(e) => e.forward_with(tokens, readback).await,
        }
    }

    /// [`Engine::forward`], blocking the current thread (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_blocking(&mut self, tokens: &[u32], readback: &Readback) -> Result<Output> {
        pollster::block_on(self.forward(tokens, readback))
    }
}
