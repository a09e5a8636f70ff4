//! [`GpuEngine`]: the forward pass of attn-model's transformer, every variant included, as one
//! command buffer of WGSL kernels.
//!
//! Life cycle, and what is created when (the principles are in docs/ARCHITECTURE.md):
//! - **device** ([`GpuContext`]): pipelines, compiled once;
//! - **model** ([`GpuEngine::new`]): the weights, uploaded once;
//! - **variant** ([`GpuEngine::set_variant`]): attn-model's `prepare` runs on the CPU (pooling,
//!   SVD, random features) and only the changed tensors are uploaded;
//! - **sequence length or variant change** (first forward after it): the plan
//!   (`forward_plan.rs`) — activation buffers (recycled through a pool), one uniform buffer
//!   with every launch's parameters, one bind group per launch;
//! - **every forward**: the tokens are written, one command encoder records the launches and the
//!   read-back copies, one `submit`, one `map_async`. Nothing is allocated on the GPU.
//! - **generation** ([`GpuEngine::prefill`], [`GpuEngine::decode_step`]): the KV cache is
//!   allocated once at the prefill, for the model's context (at most `MAX_SEQ_LEN` positions);
//!   a decode step runs one row against it. Its plan covers the cache's first 64, 128, 256, …
//!   positions and is rebuilt only when the text outgrows them; between steps only the
//!   position moves, one write of the parameter blocks. One submit and one read-back (the new
//!   logits and every head's new attention row) per token.

use std::sync::Arc;
use std::time::Duration;

use attn_model::engine::decode::check_decodable;
pub use attn_model::engine::{AttentionMaps, LogitRows, Readback};
use attn_model::forward::check_tokens;
use attn_model::{
    prepare, Captured, Hooks, Model, ModelError, Output, PreparedModel, StepOutput, Variant,
};

use crate::context::GpuContext;
use crate::error::{GpuError, Result};
use crate::forward_plan::{
    self, CacheInputs, HookLayout, KvCacheBuffers, LaunchShape, Plan, PlanInputs, PlanRows,
};
use crate::ops::attention::MAX_SEQ_LEN;
use crate::plan::{Arg, BufferPool};
use crate::readback::read_f32;
use crate::weights::{upload, ModelBuffers, VariantBuffers};

/// Settings of a [`GpuEngine`].
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Fill every activation and output buffer with NaN before each forward, so an element a
    /// kernel should have written but did not shows up as NaN. For tests; it costs a full upload.
    pub poison: bool,
    /// How long a native forward may wait for the GPU before failing with
    /// [`GpuError::Timeout`] (the browser has no blocking wait).
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            poison: false,
            timeout: Duration::from_secs(120),
        }
    }
}

/// What the last forward did on the GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Compute dispatches recorded.
    pub dispatches: u32,
    /// Buffer clears (the maps and norms of dropped attention layers).
    pub clears: u32,
    /// Copies into the read-back buffer.
    pub copies: u32,
    /// Queue submissions (the target is 1).
    pub submits: u32,
    /// Bytes read back.
    pub readback_bytes: u64,
    /// Floating-point operations of the matrix products executed (2 per multiply-add).
    pub flops: u64,
}

/// One kernel launch of a profiled forward ([`GpuEngine::set_profiling`]) and the GPU time
/// between the start and the end of its pass.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// The kernel's name (`matmul`, `attention_probs`, `norm`, …).
    pub kernel: &'static str,
    pub millis: f64,
}

/// The timestamp queries of profiled forwards and the buffers they are read back through.
struct Profiler {
    queries: wgpu::QuerySet,
    /// Launches the query set has room for (two timestamps each).
    launches: u32,
    resolved: wgpu::Buffer,
    read: wgpu::Buffer,
    last: Vec<KernelTime>,
}

impl Profiler {
    fn new(ctx: &GpuContext, launches: u32) -> Profiler {
        let bytes = 16 * launches as u64;
        Profiler {
            queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * launches,
            }),
            launches,
            resolved: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel timestamps (resolved)"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            read: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel timestamps (read back)"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            last: Vec::new(),
        }
    }
}

/// Counters over the engine's life, to check that the hot path allocates nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub last_forward: ForwardStats,
    /// Forward passes run.
    pub forwards: u64,
    /// Plans built (sequence-length or variant changes).
    pub plans_built: u64,
    /// Activation, parameter and read-back buffers created (the rest came from the pool).
    pub buffers_created: u64,
    /// Bytes of weights uploaded for the model (shared between engines that share it).
    pub model_bytes: u64,
    /// Bytes uploaded for the current variant.
    pub variant_bytes: u64,
    /// Variant changes that uploaded weights (K/V overlays, random features); runtime-only
    /// changes upload none.
    pub weight_uploads: u64,
    /// Variant changes served by rewriting the plan's parameter blocks (no new plan).
    pub parameter_writes: u64,
}

/// The WebGPU engine. Same input, variants and [`Output`] as attn-model's `CpuEngine`.
pub struct GpuEngine {
    ctx: GpuContext,
    weights: Arc<ModelBuffers>,
    prepared: PreparedModel,
    variant: VariantBuffers,
    plan: Option<Plan>,
    /// The plan's parameter blocks are those of an earlier variant with the same launches.
    params_stale: bool,
    pool: BufferPool,
    /// Bound where a kernel's buffer is unused (a layer with no bias, softmax's weights).
    dummy: Arg,
    options: EngineOptions,
    stats: EngineStats,
    /// Set while forwards are profiled.
    profiler: Option<Profiler>,
    /// The KV cache of the generation under way, from [`GpuEngine::prefill`].
    cache: Option<KvCacheBuffers>,
}

impl GpuEngine {
    /// Uploads `model` and prepares the unmodified variant.
    pub fn new(ctx: &GpuContext, model: Model) -> Result<Self> {
        Self::with_options(ctx, Arc::new(model), EngineOptions::default())
    }

    /// [`GpuEngine::new`] on a model shared with other engines (the host copy is not cloned).
    pub fn shared(ctx: &GpuContext, model: Arc<Model>) -> Result<Self> {
        Self::with_options(ctx, model, EngineOptions::default())
    }

    /// [`GpuEngine::shared`] with explicit options.
    pub fn with_options(
        ctx: &GpuContext,
        model: Arc<Model>,
        options: EngineOptions,
    ) -> Result<Self> {
        ctx.check_health()?;
        let prepared = prepare(&model, &Variant::default())?;
        // Shared by the engines of one device; on the web wgpu's handles are not `Send`, so
        // the `Arc` is only ever used on one thread there.
        #[allow(clippy::arc_with_non_send_sync)]
        let weights = Arc::new(ModelBuffers::upload(ctx, &model)?);
        Self::assemble(ctx, weights, prepared, options)
    }

    /// A second engine on the same device and the same uploaded weights, with its own variant
    /// (the unmodified model at first): e.g. the baseline beside the variant being explored.
    pub fn share(&self) -> Result<Self> {
        let prepared = prepare(self.prepared.base(), &Variant::default())?;
        Self::assemble(
            &self.ctx,
            self.weights.clone(),
            prepared,
            self.options.clone(),
        )
    }

    fn assemble(
        ctx: &GpuContext,
        weights: Arc<ModelBuffers>,
        prepared: PreparedModel,
        options: EngineOptions,
    ) -> Result<Self> {
        let variant = VariantBuffers::upload(ctx, &prepared)?;
        let dummy = upload(ctx, "unused binding", &[0.0f32; 4])?;
        let stats = EngineStats {
            model_bytes: weights.bytes,
            variant_bytes: variant.bytes,
            ..Default::default()
        };
        ctx.check_health()?;
        Ok(GpuEngine {
            ctx: ctx.clone(),
            weights,
            prepared,
            variant,
            plan: None,
            profiler: None,
            cache: None,
            params_stale: false,
            pool: BufferPool::default(),
            dummy,
            options,
            stats,
        })
    }

    /// Switches to `variant`. Weight-side changes (pooled or low-rank K/V, random features) are
    /// computed now on the CPU by attn-model and uploaded; a change of runtime settings only
    /// (window, top-k, β, kernel, ablation, dropped layers) reuses them and writes just the
    /// ablation table. When the launches stay the same too (window, top-k, β, zero ablation:
    /// see `forward_plan::LaunchShape`), the next forward rewrites the plan's parameter blocks
    /// instead of building a new plan. On error the previous variant stays in place.
    pub fn set_variant(&mut self, variant: &Variant) -> Result<()> {
        let prepared = self.prepared.with_variant(variant)?;
        let same_weights = prepared.shares_weights_with(&self.prepared);
        if same_weights {
            self.ctx.check_health()?;
            self.variant.write_ablation(&self.ctx, &prepared);
        } else {
            let buffers = VariantBuffers::upload(&self.ctx, &prepared)?;
            self.ctx.check_health()?;
            self.variant = buffers;
            self.stats.variant_bytes = self.variant.bytes;
            self.stats.weight_uploads += 1;
        }
        let same_launches = self
            .plan
            .as_ref()
            .is_some_and(|p| same_weights && p.shape == LaunchShape::of(&prepared));
        self.prepared = prepared;
        // The cached keys and values were the old variant's.
        self.drop_cache();
        if same_launches {
            self.params_stale = true;
        } else {
            self.drop_plan();
        }
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

    /// The model with the current variant's weight-side changes.
    pub fn prepared(&self) -> &PreparedModel {
        &self.prepared
    }

    /// The device this engine runs on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Counters: dispatches and submits of the last forward, plans and buffers created.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            buffers_created: self.pool.created,
            ..self.stats
        }
    }

    /// Times every kernel launch of the forwards that follow with GPU timestamps (one compute
    /// pass per launch), until turned off; [`GpuEngine::last_profile`] has the last forward's.
    /// Fails with [`GpuError::Unsupported`] where the device has no timestamp queries.
    pub fn set_profiling(&mut self, on: bool) -> Result<()> {
        if !on {
            self.profiler = None;
        } else if !self.ctx.has_timestamps() {
            return Err(GpuError::Unsupported(format!(
                "{} has no timestamp queries, so kernels cannot be timed",
                self.ctx.adapter().name
            )));
        } else if self.profiler.is_none() {
            self.profiler = Some(Profiler::new(&self.ctx, 64));
        }
        Ok(())
    }

    /// Every kernel launch of the last profiled forward, in order, with its GPU time (empty
    /// before one).
    pub fn last_profile(&self) -> &[KernelTime] {
        self.profiler.as_ref().map_or(&[], |p| &p.last)
    }

    /// Runs one forward pass and reads back everything (the CPU engine's [`Output`]).
    pub async fn forward(&mut self, tokens: &[u32]) -> Result<Output> {
        self.forward_with(tokens, &Readback::everything()).await
    }

    /// [`GpuEngine::forward`], blocking the current thread (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_blocking(&mut self, tokens: &[u32]) -> Result<Output> {
        pollster::block_on(self.forward(tokens))
    }

    /// [`GpuEngine::forward_with`], blocking the current thread (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_with_blocking(&mut self, tokens: &[u32], readback: &Readback) -> Result<Output> {
        pollster::block_on(self.forward_with(tokens, readback))
    }

    /// Runs one forward pass and reads back what `readback` asks for; the rest is NaN.
    pub async fn forward_with(&mut self, tokens: &[u32], readback: &Readback) -> Result<Output> {
        let (output, _) = self
            .forward_hooked(tokens, readback, &Hooks::none())
            .await?;
        Ok(output)
    }

    /// [`GpuEngine::forward_with`] with hooks (see [`attn_model::HookPoint`]): the activations
    /// at `hooks.capture` are copied out and read back with the outputs; `hooks.replace` is
    /// written to the GPU and copied in place of the computed activations. A change of hook
    /// points builds a new plan; new replacement values for the same points do not.
    pub async fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> Result<(Output, Captured)> {
        self.run(tokens, readback, hooks, None).await
    }

    /// Empties the KV cache and runs `tokens` as one forward pass that writes every layer's keys
    /// and values into it: the forward's own output, or `None` where the variant does not
    /// decode from a cache on this engine (mean ablation, linear or random-feature attention:
    /// generation then recomputes). Classifiers and bidirectional models are refused.
    pub async fn prefill(&mut self, tokens: &[u32], readback: &Readback) -> Result<Option<Output>> {
        self.drop_cache();
        match check_decodable(&self.prepared) {
            Ok(()) => {}
            Err(ModelError::Variant(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        if !self.prepared.variant.kernel().is_softmax() {
            return Ok(None);
        }
        let c = &self.prepared.config;
        check_tokens(c, tokens)?;
        let capacity = self.cache_capacity();
        if tokens.len() > capacity {
            return Err(ModelError::Input(format!(
                "a prompt of {} tokens is longer than the {capacity} positions the GPU engine                  caches",
                tokens.len()
            ))
            .into());
        }
        self.cache = Some(self.allocate_cache(capacity)?);
        let keys = tokens.len();
        let (output, _) = self
            .run(tokens, readback, &Hooks::none(), Some((0, keys)))
            .await?;
        if let Some(cache) = &mut self.cache {
            cache.len = tokens.len();
        }
        Ok(Some(output))
    }

    /// Runs `token` at the next position against the cache [`GpuEngine::prefill`] filled (what
    /// a forward over the whole prefix computes at its last position) and caches its keys and
    /// values. Reads back the new logits and every head's new attention row.
    pub async fn decode_step(&mut self, token: u32) -> Result<StepOutput> {
        let c = self.prepared.config.clone();
        let Some(cache) = &self.cache else {
            return Err(
                ModelError::Input("decoding starts with a prefill of the prompt".into()).into(),
            );
        };
        let position = cache.len;
        if position >= c.n_ctx {
            return Err(ModelError::Input(format!(
                "the text fills the model's context ({} tokens): no position is left for another                  token",
                c.n_ctx
            ))
            .into());
        }
        if position >= cache.capacity {
            return Err(GpuError::Unsupported(format!(
                "texts longer than the {} positions the GPU engine caches",
                cache.capacity
            )));
        }
        check_tokens(&c, &[token])?;
        // The keys a step's plan covers: a power of two from 64, so that a plan serves many
        // steps (the positions past the text are masked out).
        let keys = (position + 1)
            .next_power_of_two()
            .max(64)
            .min(cache.capacity);
        let readback = Readback {
            logits: LogitRows::All,
            attention: AttentionMaps::All,
            head_out_norms: false,
        };
        let (output, _) = self
            .run(&[token], &readback, &Hooks::none(), Some((position, keys)))
            .await?;
        if let Some(cache) = &mut self.cache {
            cache.len = position + 1;
        }
        let len = position + 1;
        let attention = output
            .attention
            .chunks_exact(keys)
            .flat_map(|row| &row[..len])
            .copied()
            .collect();
        Ok(StepOutput {
            position,
            logits: output.logits,
            attention,
        })
    }

    /// The bytes of keys and values the cache holds for the positions generated so far (not
    /// the capacity allocated); `None` without a cache.
    pub fn kv_cache_bytes(&self) -> Option<usize> {
        self.cache.as_ref().map(|c| c.len * c.bytes_per_position)
    }

    /// Positions the KV cache has room for: the model's context, within what the attention
    /// kernel and the rotary table cover.
    fn cache_capacity(&self) -> usize {
        let c = &self.prepared.config;
        let rotary = self
            .weights
            .rotary
            .as_ref()
            .map_or(usize::MAX, |r| r.positions);
        c.n_ctx.min(MAX_SEQ_LEN).min(rotary)
    }

    /// Keys and values for `capacity` positions in every layer that attends, zeroed (rows past
    /// the text are read by a step's plan and must be finite).
    fn allocate_cache(&mut self, capacity: usize) -> Result<KvCacheBuffers> {
        let c = &self.prepared.config;
        let kv_width = c.kv_heads() * c.d_head();
        let bytes = (4 * capacity * kv_width) as u64;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("KV cache"),
            });
        let mut layers = Vec::with_capacity(c.n_layer);
        let mut caching = 0;
        for layer in 0..c.n_layer {
            if self.prepared.attention_dropped[layer] {
                layers.push(None);
                continue;
            }
            caching += 1;
            let mut pair = Vec::with_capacity(2);
            for what in ["cached keys", "cached values"] {
                let buffer = self.pool.acquire(&self.ctx, what, bytes, usage)?;
                encoder.clear_buffer(&buffer, 0, None);
                pair.push(Arg::new(&buffer, bytes));
            }
            let values = pair.pop().expect("two buffers");
            let keys = pair.pop().expect("two buffers");
            layers.push(Some((keys, values)));
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.check_health()?;
        Ok(KvCacheBuffers {
            layers,
            capacity,
            len: 0,
            bytes_per_position: 4 * 2 * kv_width * caching,
        })
    }

    fn drop_cache(&mut self) {
        if let Some(cache) = self.cache.take() {
            let buffers = cache.layers.into_iter().flatten();
            self.pool
                .release(buffers.flat_map(|(k, v)| [k.buffer, v.buffer]));
        }
    }

    /// A forward over `tokens`; with `cached = Some((first, keys))` the rows are positions
    /// `first..` and attend over the cache's first `keys` positions, writing theirs into it.
    async fn run(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
        cached: Option<(usize, usize)>,
    ) -> Result<(Output, Captured)> {
        let c = self.prepared.config.clone();
        check_tokens(&c, tokens)?;
        let t_len = tokens.len();
        if let AttentionMaps::Only(maps) = &readback.attention {
            if let Some(&(l, h)) = maps.iter().find(|&&(l, h)| l >= c.n_layer || h >= c.n_head) {
                return Err(attn_model::ModelError::Input(format!(
                    "attention map ({l}, {h}) asked for, but the model has {} layers of {} heads",
                    c.n_layer, c.n_head
                ))
                .into());
            }
        }
        hooks.check(&self.prepared, t_len)?;
        let layout = HookLayout {
            capture: hooks.capture.clone(),
            replace: hooks.replace.iter().map(|(point, _)| *point).collect(),
        };
        self.ctx.check_health()?;
        let rows = PlanRows {
            t_len,
            cached_keys: cached.map(|(_, keys)| keys),
        };
        let first = cached.map_or(0, |(first, _)| first);
        if self.plan.as_ref().map(|p| (p.rows, &p.hooks)) != Some((rows, &layout)) {
            self.drop_plan();
            // The pool is lent to the build while the engine's other parts are read.
            let mut pool = std::mem::take(&mut self.pool);
            let plan = forward_plan::build(self.plan_inputs(t_len, &layout, cached), &mut pool);
            self.pool = pool;
            let plan = plan?;
            self.pool.trim();
            self.stats.plans_built += 1;
            self.plan = Some(plan);
            self.params_stale = false;
        }
        if self.params_stale || self.plan.as_ref().is_some_and(|p| p.first != first) {
            // Same launches, new parameters (window, top-k, β; a decode step's position): one
            // write of the uniform buffer.
            let params = forward_plan::parameters(self.plan_inputs(t_len, &layout, cached))?;
            let plan = self.plan.as_mut().expect("the plan was just built");
            self.ctx.queue.write_buffer(&plan.params, 0, &params);
            plan.first = first;
            self.params_stale = false;
            self.stats.parameter_writes += 1;
        }
        let plan = self.plan.as_ref().expect("the plan was just built");
        let ctx = &self.ctx;

        ctx.queue
            .write_buffer(&plan.tokens.buffer, 0, bytemuck::cast_slice(tokens));
        for ((_, values), buffer) in hooks.replace.iter().zip(&plan.replacements) {
            ctx.queue
                .write_buffer(&buffer.buffer, buffer.offset, bytemuck::cast_slice(values));
        }
        if self.options.poison {
            for arg in &plan.poison {
                let nan = vec![f32::NAN; (arg.size / 4) as usize];
                ctx.queue
                    .write_buffer(&arg.buffer, arg.offset, bytemuck::cast_slice(&nan));
            }
        }

        let validation = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("forward"),
            });
        for (arg, offset, size) in &plan.clears {
            encoder.clear_buffer(&arg.buffer, *offset, Some(*size));
        }
        let last_only = readback.logits == LogitRows::Last;
        let skip = if last_only {
            plan.logits_all
        } else {
            plan.logits_last
        };
        let mut timed = Vec::new();
        let dispatches = match &mut self.profiler {
            None => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("forward"),
                    timestamp_writes: None,
                });
                plan.program.encode(&mut pass, |i| i != skip)
            }
            Some(profiler) => {
                let launches = plan.program.dispatches.len() as u32;
                if profiler.launches < launches {
                    *profiler = Profiler::new(ctx, launches.next_power_of_two());
                }
                timed = plan
                    .program
                    .encode_timed(&mut encoder, &profiler.queries, |i| i != skip);
                let queries = 2 * timed.len() as u32;
                encoder.resolve_query_set(&profiler.queries, 0..queries, &profiler.resolved, 0);
                encoder.copy_buffer_to_buffer(
                    &profiler.resolved,
                    0,
                    &profiler.read,
                    0,
                    8 * queries as u64,
                );
                timed.len() as u32
            }
        };

        // Read-back copies, packed one after another into the staging buffer; `scatter` says
        // where each lands in the Output.
        let (t, n_out, heads) = (t_len, c.n_out(), c.n_head);
        let mut staged = 0u64;
        let mut scatter: Vec<(Target, usize, usize)> = Vec::new(); // (into, at, len) in f32s
        let mut copy = |encoder: &mut wgpu::CommandEncoder,
                        src: &Arg,
                        offset: usize,
                        len: usize,
                        into: Target,
                        at: usize| {
            encoder.copy_buffer_to_buffer(
                &src.buffer,
                src.offset + 4 * offset as u64,
                &plan.staging,
                staged,
                4 * len as u64,
            );
            staged += 4 * len as u64;
            scatter.push((into, at, len));
        };
        match readback.logits {
            LogitRows::All => copy(&mut encoder, &plan.logits, 0, t * n_out, Target::Logits, 0),
            LogitRows::Last => {
                let at = (t - 1) * n_out;
                copy(&mut encoder, &plan.logits, at, n_out, Target::Logits, at)
            }
            LogitRows::None => {}
        }
        let map_len = t * plan.rows.cached_keys.unwrap_or(t);
        match &readback.attention {
            AttentionMaps::All => {
                for (layer, buffer) in plan.attention.iter().enumerate() {
                    let len = heads * map_len;
                    copy(&mut encoder, buffer, 0, len, Target::Attention, layer * len);
                }
            }
            AttentionMaps::None => {}
            AttentionMaps::Only(maps) => {
                for &(layer, head) in maps {
                    let at = (layer * heads + head) * map_len;
                    copy(
                        &mut encoder,
                        &plan.attention[layer],
                        head * map_len,
                        map_len,
                        Target::Attention,
                        at,
                    );
                }
            }
        }
        if readback.head_out_norms {
            let len = c.n_layer * heads * t;
            copy(&mut encoder, &plan.norms, 0, len, Target::Norms, 0);
        }
        for (i, (point, buffer)) in hooks.capture.iter().zip(&plan.captures).enumerate() {
            let len = point.len(&c, t);
            copy(&mut encoder, buffer, 0, len, Target::Capture(i), 0);
        }
        let copies = scatter.len() as u32;
        ctx.queue.submit([encoder.finish()]);
        let memory_error = memory.pop();
        let validation_error = validation.pop();

        let values = read_f32(ctx, &plan.staging, staged, self.options.timeout).await;
        if let Some(error) = memory_error.await {
            return Err(GpuError::OutOfMemory(error.to_string()));
        }
        if let Some(error) = validation_error.await {
            return Err(GpuError::Validation(error.to_string()));
        }
        let values = match values {
            Ok(values) => values,
            Err(e) => {
                // The staging buffer may still be waiting for its map: never reuse it.
                self.plan = None;
                return Err(e);
            }
        };
        ctx.check_health()?;
        if let Some(profiler) = &mut self.profiler {
            // Timestamps are 64-bit ticks; `read_f32` hands back their 32-bit halves unchanged.
            let words = read_f32(
                ctx,
                &profiler.read,
                16 * timed.len() as u64,
                self.options.timeout,
            )
            .await?;
            let ticks: Vec<u64> = words
                .chunks_exact(2)
                .map(|w| w[0].to_bits() as u64 | (w[1].to_bits() as u64) << 32)
                .collect();
            let nanos_per_tick = ctx.queue.get_timestamp_period() as f64;
            profiler.last = timed
                .iter()
                .zip(ticks.chunks_exact(2))
                .map(|(&kernel, t)| KernelTime {
                    kernel,
                    millis: t[1].saturating_sub(t[0]) as f64 * nanos_per_tick / 1e6,
                })
                .collect();
        }

        let mut output = Output {
            seq_len: t,
            n_layer: c.n_layer,
            n_head: heads,
            n_out,
            logits: vec![f32::NAN; t * n_out],
            attention: vec![f32::NAN; c.n_layer * heads * map_len],
            head_out_norms: vec![f32::NAN; c.n_layer * heads * t],
            kv_bytes_per_token: self.prepared.kv_bytes_per_token,
        };
        let mut captured: Captured = (hooks.capture.iter())
            .map(|point| (*point, vec![f32::NAN; point.len(&c, t)]))
            .collect();
        let mut read = 0;
        for (into, at, len) in scatter {
            let dst = match into {
                Target::Logits => &mut output.logits,
                Target::Attention => &mut output.attention,
                Target::Norms => &mut output.head_out_norms,
                Target::Capture(i) => &mut captured[i].1,
            };
            dst[at..at + len].copy_from_slice(&values[read..read + len]);
            read += len;
        }

        self.stats.forwards += 1;
        self.stats.last_forward = ForwardStats {
            dispatches,
            clears: plan.clears.len() as u32,
            copies,
            submits: 1,
            readback_bytes: staged,
            flops: if last_only {
                plan.flops_last
            } else {
                plan.flops_all
            },
        };
        Ok((output, captured))
    }

    fn plan_inputs<'a>(
        &'a self,
        t_len: usize,
        hooks: &'a HookLayout,
        cached: Option<(usize, usize)>,
    ) -> PlanInputs<'a> {
        let cache = cached.and_then(|(first, keys)| {
            let cache = self.cache.as_ref()?;
            Some(CacheInputs { cache, first, keys })
        });
        PlanInputs {
            ctx: &self.ctx,
            weights: &self.weights,
            variant: &self.variant,
            prepared: &self.prepared,
            dummy: &self.dummy,
            t_len,
            hooks,
            cache,
        }
    }

    fn drop_plan(&mut self) {
        if let Some(plan) = self.plan.take() {
            self.pool.release(plan.buffers);
        }
    }
}

/// Where a read-back range goes.
#[derive(Clone, Copy)]
enum Target {
    Logits,
    Attention,
    Norms,
    /// The `i`-th captured hook point.
    Capture(usize),
}

impl std::fmt::Debug for GpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEngine")
            .field("adapter", self.ctx.adapter())
            .field("variant", &self.prepared.variant)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
