//! What one forward pass is on the GPU: the activation buffers and the list of launches, built
//! once per (sequence length, variant) and replayed by every forward until either changes.
//!
//! Reading [`build`] top to bottom gives the forward pass: embeddings; per block the norm, Q/K/V,
//! rotary positions, scores, kernel weights (linear / random features), probabilities, P·V,
//! ablation and norms, output projection into the residual, then the (gated) MLP — reading the
//! block's input when the residual is parallel; the final norm and the output projection.
//!
//! With a KV cache ([`CacheInputs`]) the same launches run `t` rows at positions `first..`:
//! each layer copies its rotated keys and its values into the cache at those rows, and the
//! scores and P·V read the cache's first `keys` rows instead. A prefill is such a forward from
//! position 0; a decode step is one row at the position it decodes, whose plan is kept while
//! only `first` moves (a parameter).

use attn_model::{
    AblationMode, HookPoint, Kernel as AttnKernel, KernelName, ModelConfig, PreparedModel,
};

use crate::context::GpuContext;
use crate::error::{GpuError, Result};
use crate::ops::attention::{self, Masking, QueryRows, MAX_SEQ_LEN};
use crate::ops::copy::{self, Block};
use crate::ops::features::{self, RandomFeatures};
use crate::ops::head_output::{self, HeadBuffers};
use crate::ops::matmul::{self, Layout, Matmul};
use crate::ops::norm::{self, NormLaunch};
use crate::ops::{embed, rope};
use crate::plan::{Arg, BufferPool, PlanBuilder, Program};
use crate::weights::{
    BlockBuffers, LinearBuffers, ModelBuffers, NormBuffers, OutputHead, RotaryBuffers,
    VariantBuffers,
};

/// Activation buffers are read and written by kernels, cleared, poisoned and read back.
const ACTIVATION: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// The hook points a plan serves: the activations it copies out, and those it takes from a
/// replacement buffer (written before each forward) instead of computing them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HookLayout {
    pub(crate) capture: Vec<HookPoint>,
    pub(crate) replace: Vec<HookPoint>,
}

/// What decides which launches a forward records and what they bind, apart from the sequence
/// length and the hook points: the kernel, the dropped layers and the layers with mean-ablated
/// heads. Window, top-k, β and which heads are zero-ablated only change parameter blocks (and
/// the ablation table), so a variant change that keeps this rewrites the parameters of the
/// existing plan instead of building a new one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LaunchShape {
    kernel: AttnKernel,
    attention_dropped: Vec<bool>,
    mean_ablated: Vec<bool>,
    /// Whether the routing proxy's launch is recorded (its `k` is a parameter).
    routed: bool,
}

impl LaunchShape {
    pub(crate) fn of(prepared: &PreparedModel) -> LaunchShape {
        let c = &prepared.config;
        LaunchShape {
            kernel: prepared.variant.kernel(),
            attention_dropped: prepared.attention_dropped.clone(),
            mean_ablated: (0..c.n_layer)
                .map(|layer| mean_ablated(prepared, layer, c.n_head))
                .collect(),
            routed: prepared.variant.route_heads.is_some(),
        }
    }
}

/// Whether any head of `layer` is replaced by its mean output (a launch of its own).
fn mean_ablated(prepared: &PreparedModel, layer: usize, heads: usize) -> bool {
    prepared.variant.heads.as_ref().map(|a| a.mode) == Some(AblationMode::Mean)
        && (0..heads).any(|h| prepared.is_ablated(layer, h))
}

/// A hook layout with its buffers, while the plan is recorded.
struct HookBuffers<'a> {
    layout: &'a HookLayout,
    captures: Vec<Arg>,
    replacements: Vec<Arg>,
}

impl HookBuffers<'_> {
    /// Records the hooks at `point`, whose activation is the `rows × cols` block `at` of
    /// `target`: the replacement is copied in first, then the captures copy it out.
    fn record<'k>(
        &self,
        rec: &mut Recorder<'k>,
        point: HookPoint,
        target: &Arg,
        at: Block,
        (rows, cols): (usize, usize),
    ) -> Result<()> {
        let kernel = &copy::KERNEL;
        let dense = Block::dense(cols);
        for (_, buffer) in self
            .layout
            .replace
            .iter()
            .zip(&self.replacements)
            .filter(|(p, _)| **p == point)
        {
            copy::push(&mut rec.plan, kernel, rows, cols, buffer, dense, target, at)?;
        }
        for (_, buffer) in self
            .layout
            .capture
            .iter()
            .zip(&self.captures)
            .filter(|(p, _)| **p == point)
        {
            copy::push(&mut rec.plan, kernel, rows, cols, target, at, buffer, dense)?;
        }
        Ok(())
    }
}

/// The GPU engine's KV cache: per layer the rotated keys and the values of positions
/// `0..capacity`, each row `kv_heads · d_head` wide (`None` for a dropped attention layer, which
/// caches nothing).
pub(crate) struct KvCacheBuffers {
    pub(crate) layers: Vec<Option<(Arg, Arg)>>,
    /// Positions the buffers have room for.
    pub(crate) capacity: usize,
    /// Positions written so far: the next token's position.
    pub(crate) len: usize,
    /// Bytes of one position in every caching layer (keys and values).
    pub(crate) bytes_per_position: usize,
}

/// A plan that reads and writes a KV cache: its `t` rows hold positions `first..first + t` and
/// attend over the cache's positions `0..keys`.
#[derive(Clone, Copy)]
pub(crate) struct CacheInputs<'a> {
    pub(crate) cache: &'a KvCacheBuffers,
    pub(crate) first: usize,
    pub(crate) keys: usize,
}

/// What a plan's launches depend on besides the variant and the hooks: its rows, and, with a
/// cache, the keys they attend over (`first` is only a parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlanRows {
    pub(crate) t_len: usize,
    /// `Some(keys)` for a plan over the KV cache.
    pub(crate) cached_keys: Option<usize>,
}

/// Everything a forward at one sequence length under one variant needs.
pub(crate) struct Plan {
    pub(crate) rows: PlanRows,
    /// The position of row 0 its parameters were written for (0 without a cache).
    pub(crate) first: usize,
    /// The hook points it serves, their capture buffers and their replacement buffers (in the
    /// layout's orders).
    pub(crate) hooks: HookLayout,
    pub(crate) captures: Vec<Arg>,
    pub(crate) replacements: Vec<Arg>,
    /// What the launch list depends on besides the length and the hooks.
    pub(crate) shape: LaunchShape,
    /// The uniform buffer with every launch's parameter block.
    pub(crate) params: wgpu::Buffer,
    pub(crate) program: Program,
    /// Pooled buffers, given back when the plan is replaced.
    pub(crate) buffers: Vec<wgpu::Buffer>,
    pub(crate) tokens: Arg,
    /// Per layer, the `[heads, T, keys]` attention maps (`keys = T` without a cache).
    pub(crate) attention: Vec<Arg>,
    /// `[layers, heads, T]`.
    pub(crate) norms: Arg,
    /// `[T, n_out]`.
    pub(crate) logits: Arg,
    /// Read-back buffer, large enough for every output.
    pub(crate) staging: wgpu::Buffer,
    /// Ranges zeroed before the launches: (buffer, offset, bytes).
    pub(crate) clears: Vec<(Arg, u64, u64)>,
    /// Launch indices of the two alternative output projections (all rows / last row).
    pub(crate) logits_all: usize,
    pub(crate) logits_last: usize,
    /// Matmul FLOPs with every logit row / with only the last row.
    pub(crate) flops_all: u64,
    pub(crate) flops_last: u64,
    /// Buffers to fill with NaN in poison mode (every activation but the tokens).
    pub(crate) poison: Vec<Arg>,
}

/// Sizes every launch needs.
#[derive(Clone, Copy)]
struct Dims {
    t: usize,
    /// The position of row 0, and the keys every row attends over (0 and `t` without a cache).
    first: usize,
    keys: usize,
    d: usize,
    heads: usize,
    d_head: usize,
    /// Query heads per key/value head.
    group: usize,
    /// Row widths of the query and key/value activations.
    q_width: usize,
    kv_width: usize,
    /// Random features per head (0 unless the kernel uses them).
    m: usize,
}

/// The activations of one forward.
struct Activations {
    tokens: Arg,
    /// The residual stream `[T, d]`.
    x: Arg,
    /// Norm output `[T, d]`.
    xn: Arg,
    /// The MLP's norm of the block's input, for parallel-residual blocks `[T, d]`.
    xn_mlp: Option<Arg>,
    q: Arg,
    k: Arg,
    v: Arg,
    /// Head outputs before the output projection `[T, heads·d_head]`.
    z: Arg,
    hidden: Option<Arg>,
    attention: Vec<Arg>,
    /// Unnormalised weights of linear / random-feature attention `[heads, T, T]`.
    kernel_weights: Option<Arg>,
    /// φ(q̃), φ(k) of linear attention.
    linear_features: Option<(Arg, Arg)>,
    /// Query and key random features `[heads, T, m]`.
    random_features: Option<(Arg, Arg)>,
    norms: Arg,
    /// Column means of mean-ablated heads `[heads, d_head]`.
    head_means: Arg,
    logits: Arg,
}

/// Takes activation buffers from the pool and remembers them.
struct Allocator<'a, 'p> {
    ctx: &'a GpuContext,
    pool: &'p mut BufferPool,
    buffers: Vec<wgpu::Buffer>,
    /// When recording only the parameters: every activation is this placeholder.
    placeholder: Option<&'a Arg>,
}

impl Allocator<'_, '_> {
    fn take(&mut self, what: &str, floats: usize) -> Result<Arg> {
        if let Some(placeholder) = self.placeholder {
            return Ok(placeholder.clone());
        }
        let bytes = 4 * floats.max(1) as u64;
        let buffer = self.pool.acquire(self.ctx, what, bytes, ACTIVATION)?;
        let arg = Arg::new(&buffer, bytes);
        self.buffers.push(buffer);
        Ok(arg)
    }
}

impl Activations {
    fn allocate(alloc: &mut Allocator, prepared: &PreparedModel, n: Dims) -> Result<Self> {
        let c = &prepared.config;
        let t = n.t;
        let kernel = prepared.variant.kernel();
        Ok(Activations {
            tokens: alloc.take("tokens", t)?,
            x: alloc.take("residual", t * n.d)?,
            xn: alloc.take("normed", t * n.d)?,
            xn_mlp: match c.parallel_residual && c.mlp {
                true => Some(alloc.take("normed for the mlp", t * n.d)?),
                false => None,
            },
            q: alloc.take("queries", t * n.q_width)?,
            k: alloc.take("keys", t * n.kv_width)?,
            v: alloc.take("values", t * n.kv_width)?,
            z: alloc.take("head outputs", t * n.q_width)?,
            hidden: match c.mlp {
                true => Some(alloc.take("mlp hidden", t * c.mlp_width())?),
                false => None,
            },
            attention: (0..c.n_layer)
                .map(|l| alloc.take(&format!("attention layer {l}"), n.heads * t * n.keys))
                .collect::<Result<_>>()?,
            kernel_weights: match kernel.is_softmax() {
                true => None,
                false => Some(alloc.take("kernel weights", n.heads * t * t)?),
            },
            linear_features: match kernel {
                AttnKernel::Named(KernelName::Linear) => Some((
                    alloc.take("query features", t * n.q_width)?,
                    alloc.take("key features", t * n.kv_width)?,
                )),
                _ => None,
            },
            random_features: match kernel {
                AttnKernel::RandomFeatures { .. } => Some((
                    alloc.take("query random features", n.heads * t * n.m)?,
                    alloc.take("key random features", n.heads * t * n.m)?,
                )),
                _ => None,
            },
            norms: alloc.take("head output norms", c.n_layer * n.heads * t)?,
            head_means: alloc.take("head means", n.heads * n.d_head)?,
            logits: alloc.take("logits", t * c.n_out())?,
        })
    }

    /// Every buffer except the tokens (u32 ids, always written).
    fn poisonable(&self) -> Vec<Arg> {
        let mut all = vec![&self.x, &self.xn, &self.q, &self.k, &self.v, &self.z];
        all.extend(&self.xn_mlp);
        all.extend(&self.hidden);
        all.extend(&self.attention);
        all.extend(&self.kernel_weights);
        for (a, b) in self.linear_features.iter().chain(&self.random_features) {
            all.extend([a, b]);
        }
        all.extend([&self.norms, &self.head_means, &self.logits]);
        all.into_iter().cloned().collect()
    }
}

/// Records launches and adds up their FLOPs.
struct Recorder<'k> {
    plan: PlanBuilder<'k>,
    /// Bound where a kernel's buffer is unused.
    dummy: &'k Arg,
    flops: u64,
}

impl<'k> Recorder<'k> {
    fn matmul(
        &mut self,
        mm: &Matmul,
        a: &Arg,
        b: &Arg,
        bias: Option<&Arg>,
        c: &Arg,
    ) -> Result<usize> {
        self.flops += mm.flops();
        mm.push(
            &mut self.plan,
            &matmul::KERNEL,
            a,
            b,
            bias.unwrap_or(self.dummy),
            c,
        )
    }

    /// `out = xn · W (+ b)` for `t` rows.
    fn linear(
        &mut self,
        n: Dims,
        xn: &Arg,
        w: &LinearBuffers,
        width: usize,
        out: &Arg,
    ) -> Result<()> {
        self.linear_with(Matmul::new(n.t, width, n.d), xn, w, out)
    }

    /// `mm` (with its epilogue) through the dense layer `w`, adding its bias if it has one.
    fn linear_with(&mut self, mut mm: Matmul, a: &Arg, w: &LinearBuffers, out: &Arg) -> Result<()> {
        mm.bias_offset = w.bias.as_ref().map(|_| 0);
        mm.b_precision = w.weight.precision;
        self.matmul(&mm, a, &w.weight.arg, w.bias.as_ref(), out)?;
        Ok(())
    }

    /// `out = norm(x)` over `t` rows of the model's kind of norm.
    fn norm(
        &mut self,
        n: Dims,
        c: &ModelConfig,
        x: &Arg,
        w: &NormBuffers,
        out: &Arg,
    ) -> Result<()> {
        let launch = NormLaunch {
            rows: n.t,
            d: n.d,
            kind: c.norm,
            eps: c.layer_norm_eps,
        };
        let inputs = (x, &w.weight, w.bias.as_ref());
        norm::push(
            &mut self.plan,
            &norm::KERNEL,
            launch,
            inputs,
            self.dummy,
            out,
        )?;
        Ok(())
    }

    /// Rotates every head of `x` (`heads` heads of `n.d_head`) by its positions.
    fn rotate(&mut self, n: Dims, rotary: &RotaryBuffers, heads: usize, x: &Arg) -> Result<()> {
        let shape = (n.t, heads, n.d_head);
        let table = (rotary.half, rotary.positions);
        rope::push_at(
            &mut self.plan,
            &rope::KERNEL,
            shape,
            table,
            n.first,
            &rotary.table,
            x,
        )?;
        Ok(())
    }
}

/// Builds the plan of a forward over `t_len` tokens of `prepared`.
/// What a forward's plan is made from.
#[derive(Clone, Copy)]
pub(crate) struct PlanInputs<'a> {
    pub(crate) ctx: &'a GpuContext,
    pub(crate) weights: &'a ModelBuffers,
    pub(crate) variant: &'a VariantBuffers,
    pub(crate) prepared: &'a PreparedModel,
    /// Bound where a kernel's buffer is unused.
    pub(crate) dummy: &'a Arg,
    pub(crate) t_len: usize,
    pub(crate) hooks: &'a HookLayout,
    /// The KV cache the plan reads and writes, if any.
    pub(crate) cache: Option<CacheInputs<'a>>,
}

/// The parameter blocks a plan would record, without creating anything: for a plan of the same
/// [`LaunchShape`], length and hooks, whose uniform buffer takes them as is.
pub(crate) fn parameters(inputs: PlanInputs) -> Result<Vec<u8>> {
    let mut pool = BufferPool::default();
    let alloc = Allocator {
        ctx: inputs.ctx,
        pool: &mut pool,
        buffers: Vec::new(),
        placeholder: Some(inputs.dummy),
    };
    let (rec, _) = record(alloc, inputs)?;
    Ok(rec.plan.into_params())
}

/// Builds the plan of a forward at `t_len` tokens under `prepared` with these hook points.
pub(crate) fn build(inputs: PlanInputs, pool: &mut BufferPool) -> Result<Plan> {
    let PlanInputs {
        ctx,
        prepared,
        t_len,
        hooks: hook_layout,
        ..
    } = inputs;
    let alloc = Allocator {
        ctx,
        pool,
        buffers: Vec::new(),
        placeholder: None,
    };
    let rows = PlanRows {
        t_len,
        cached_keys: inputs.cache.map(|c| c.keys),
    };
    let keys = rows.cached_keys.unwrap_or(t_len);
    let (rec, recorded) = record(alloc, inputs)?;
    let Recorded {
        act,
        captures,
        replacements,
        clears,
        mut buffers,
        logits_all,
        logits_last,
        flops_all,
        flops_last,
    } = recorded;
    let c = &prepared.config;
    let (t, n_out) = (t_len, c.n_out());
    let (program, params) = rec.plan.finish(pool)?;
    buffers.push(params.clone());
    let captured: usize = hook_layout.capture.iter().map(|p| p.len(c, t)).sum();
    let staging_bytes = 4 * (t * n_out + c.n_layer * c.n_head * (t * keys + t) + captured) as u64;
    let staging = pool.acquire(
        ctx,
        "read-back",
        staging_bytes,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    )?;
    buffers.push(staging.clone());
    ctx.check_health()?;
    Ok(Plan {
        rows,
        first: inputs.cache.map_or(0, |c| c.first),
        hooks: hook_layout.clone(),
        captures,
        replacements,
        shape: LaunchShape::of(prepared),
        params,
        program,
        buffers,
        poison: act.poisonable(),
        tokens: act.tokens,
        attention: act.attention,
        norms: act.norms,
        logits: act.logits,
        staging,
        clears,
        logits_all,
        logits_last,
        flops_all,
        flops_last,
    })
}

/// What [`record`] leaves besides the launches.
struct Recorded {
    act: Activations,
    captures: Vec<Arg>,
    replacements: Vec<Arg>,
    clears: Vec<(Arg, u64, u64)>,
    buffers: Vec<wgpu::Buffer>,
    logits_all: usize,
    logits_last: usize,
    flops_all: u64,
    flops_last: u64,
}

/// Records every launch of the forward, taking activation buffers from `alloc`.
fn record<'k>(
    mut alloc: Allocator<'k, '_>,
    inputs: PlanInputs<'k>,
) -> Result<(Recorder<'k>, Recorded)> {
    let PlanInputs {
        ctx,
        weights,
        variant,
        prepared,
        dummy,
        t_len,
        hooks: hook_layout,
        cache,
    } = inputs;
    let (first, keys) = cache.map_or((0, t_len), |c| (c.first, c.keys));
    if cache.is_some() && !prepared.variant.kernel().is_softmax() {
        return Err(GpuError::Unsupported(
            "a KV cache with linear or random-feature attention (the text is recomputed)".into(),
        ));
    }
    if t_len > MAX_SEQ_LEN || keys > MAX_SEQ_LEN {
        return Err(GpuError::Unsupported(format!(
            "sequences longer than {MAX_SEQ_LEN} tokens (got {t_len})"
        )));
    }
    let c = &prepared.config;
    let (heads, d_head) = (c.n_head, c.d_head());
    let n = Dims {
        t: t_len,
        first,
        keys,
        d: c.d_model,
        heads,
        d_head,
        group: heads / c.kv_heads(),
        q_width: heads * d_head,
        kv_width: c.kv_heads() * d_head,
        m: prepared.n_random_features(),
    };
    let act = Activations::allocate(&mut alloc, prepared, n)?;
    let hook_len = |point: &HookPoint| point.len(c, n.t);
    let hooks = HookBuffers {
        layout: hook_layout,
        captures: (hook_layout.capture.iter())
            .map(|p| alloc.take("hook capture", hook_len(p)))
            .collect::<Result<_>>()?,
        replacements: (hook_layout.replace.iter())
            .map(|p| alloc.take("hook replacement", hook_len(p)))
            .collect::<Result<_>>()?,
    };
    let buffers = alloc.buffers;

    let mut rec = Recorder {
        plan: PlanBuilder::new(ctx),
        dummy,
        flops: 0,
    };
    let mut clears = Vec::new();

    embed::push_at(
        &mut rec.plan,
        &embed::KERNEL,
        (n.t, n.d),
        n.first,
        &act.tokens,
        &weights.token_embedding,
        weights.position_embedding.as_ref(),
        dummy,
        &act.x,
    )?;
    let residual = (n.t, n.d);
    for (layer, block) in weights.blocks.iter().enumerate() {
        let resid_pre = HookPoint::ResidPre { layer };
        hooks.record(&mut rec, resid_pre, &act.x, Block::dense(n.d), residual)?;
        // A parallel block's MLP reads the block's input, before attention adds to it.
        if let (Some(mlp), Some(xn_mlp)) = (&block.mlp, &act.xn_mlp) {
            rec.norm(n, c, &act.x, &mlp.norm, xn_mlp)?;
        }
        if prepared.attention_dropped[layer] {
            // Nothing runs; the maps, norms and captured head outputs are reported as zeros.
            let map = &act.attention[layer];
            clears.push((map.clone(), 0, map.size));
            let norms_at = (4 * layer * n.heads * n.t) as u64;
            clears.push((act.norms.clone(), norms_at, (4 * n.heads * n.t) as u64));
            for (point, buffer) in hook_layout.capture.iter().zip(&hooks.captures) {
                if matches!(point, HookPoint::HeadOutput { layer: l, .. } if *l == layer) {
                    clears.push((buffer.clone(), 0, buffer.size));
                }
            }
        } else {
            let kv = match &variant.kv {
                Some(kv) => (&kv[layer].0, &kv[layer].1),
                None => (&block.k, &block.v),
            };
            let rotary = weights.rotary.as_ref();
            let cached = cache.and_then(|c| c.cache.layers[layer].as_ref());
            attention_block(
                &mut rec, n, prepared, variant, &act, &hooks, layer, block, kv, rotary, cached,
            )?;
        }
        if let (Some(mlp), Some(hidden)) = (&block.mlp, &act.hidden) {
            let normed = match &act.xn_mlp {
                Some(xn_mlp) => xn_mlp,
                None => {
                    rec.norm(n, c, &act.x, &mlp.norm, &act.xn)?;
                    &act.xn
                }
            };
            // hidden = act(xn·W_fc + b), or act(xn·W_gate + b) · (xn·W_fc + b) when gated;
            // then x += hidden·W_proj + b.
            let width = c.mlp_width();
            let mut fc = Matmul::new(n.t, width, n.d);
            match &mlp.gate {
                Some(gate) => {
                    rec.linear_with(fc, normed, &mlp.fc, hidden)?;
                    let mut gated = fc;
                    gated.activation = Some(c.activation);
                    gated.multiply = true;
                    rec.linear_with(gated, normed, gate, hidden)?;
                }
                None => {
                    fc.activation = Some(c.activation);
                    rec.linear_with(fc, normed, &mlp.fc, hidden)?;
                }
            }
            let mut proj = Matmul::new(n.t, n.d, width);
            proj.accumulate = true;
            rec.linear_with(proj, hidden, &mlp.proj, &act.x)?;
        }
    }

    let last = HookPoint::ResidPre { layer: c.n_layer };
    hooks.record(&mut rec, last, &act.x, Block::dense(n.d), residual)?;
    rec.norm(n, c, &act.x, &weights.final_norm, &act.xn)?;
    // The output projection, twice: over every row, and over the last row only (for views that
    // show just the next-token distribution). A forward runs one of the two.
    let n_out = c.n_out();
    let (head_weight, head_bias, head_layout) = match &weights.head {
        OutputHead::Classifier(cls) => (&cls.weight, cls.bias.as_ref(), Layout::rows(n_out)),
        OutputHead::Untied(w) => (w, None, Layout::transposed(n.d)),
        OutputHead::Tied => (&weights.token_embedding, None, Layout::transposed(n.d)),
    };
    let mut all = Matmul::new(n.t, n_out, n.d);
    all.b = head_layout;
    all.b_precision = head_weight.precision;
    all.bias_offset = head_bias.map(|_| 0);
    let mut last = all;
    last.m = 1;
    last.a = last.a.at((n.t - 1) * n.d);
    last.c = last.c.at((n.t - 1) * n_out);
    let flops = rec.flops;
    let head_weight = &head_weight.arg;
    let logits_all = rec.matmul(&all, &act.xn, head_weight, head_bias, &act.logits)?;
    let logits_last = rec.matmul(&last, &act.xn, head_weight, head_bias, &act.logits)?;

    Ok((
        rec,
        Recorded {
            act,
            captures: hooks.captures,
            replacements: hooks.replacements,
            clears,
            buffers,
            logits_all,
            logits_last,
            flops_all: flops + all.flops(),
            flops_last: flops + last.flops(),
        },
    ))
}

/// The attention sub-layer of one block: `x += W_o · heads(N₁(x))`, with rotary positions on
/// the queries and keys when the model has them. With the layer's cache (`cached`: keys,
/// values), the rows' keys and values are written into it and the heads attend over it.
#[allow(clippy::too_many_arguments)]
fn attention_block(
    rec: &mut Recorder,
    n: Dims,
    prepared: &PreparedModel,
    variant: &VariantBuffers,
    act: &Activations,
    hooks: &HookBuffers,
    layer: usize,
    block: &BlockBuffers,
    (k_weights, v_weights): (&LinearBuffers, &LinearBuffers),
    rotary: Option<&RotaryBuffers>,
    cached: Option<&(Arg, Arg)>,
) -> Result<()> {
    let c = &prepared.config;
    rec.norm(n, c, &act.x, &block.attn_norm, &act.xn)?;
    rec.linear(n, &act.xn, &block.q, n.q_width, &act.q)?;
    rec.linear(n, &act.xn, k_weights, n.kv_width, &act.k)?;
    rec.linear(n, &act.xn, v_weights, n.kv_width, &act.v)?;
    if let Some(rotary) = rotary {
        rec.rotate(n, rotary, n.heads, &act.q)?;
        rec.rotate(n, rotary, n.kv_width / n.d_head, &act.k)?;
    }
    let (keys, values) = match cached {
        Some((keys, values)) => {
            let rows = Block {
                start: n.first * n.kv_width,
                stride: n.kv_width,
            };
            let dense = Block::dense(n.kv_width);
            for (src, dst) in [(&act.k, keys), (&act.v, values)] {
                copy::push(
                    &mut rec.plan,
                    &copy::KERNEL,
                    n.t,
                    n.kv_width,
                    src,
                    dense,
                    dst,
                    rows,
                )?;
            }
            (keys, values)
        }
        None => (&act.k, &act.v),
    };

    // Scores s = β·q·kᵀ/√d of every head, straight into the layer's maps. Query head h reads
    // key head h / group.
    let map = &act.attention[layer];
    let scale = prepared.variant.beta() / (n.d_head as f32).sqrt();
    let mut scores = Matmul::new(n.t, n.keys, n.d_head);
    scores.batch = n.heads;
    scores.a = Layout::rows(n.q_width).batched(n.d_head, 1);
    scores.b = Layout::transposed(n.kv_width).batched(n.d_head, n.group);
    scores.c = Layout::rows(n.keys).batched(n.t * n.keys, 1);
    scores.alpha = scale;
    rec.matmul(&scores, &act.q, keys, None, map)?;

    if let Some(weights_out) = &act.kernel_weights {
        kernel_weights(rec, n, variant, act, layer, scores, scale, weights_out)?;
    }
    let masking = Masking {
        causal: c.causal,
        window: prepared.variant.window,
        top_k: prepared.variant.top_k,
    };
    let rows = QueryRows {
        rows: n.t,
        first: n.first,
        keys: n.keys,
    };
    attention::push_rows(
        &mut rec.plan,
        &attention::KERNEL,
        rows,
        n.heads,
        masking,
        act.kernel_weights.is_some(),
        map,
        act.kernel_weights.as_ref().unwrap_or(rec.dummy),
    )?;

    // z = P·V per head, into the head's columns of z.
    let mut pv = Matmul::new(n.t, n.d_head, n.keys);
    pv.batch = n.heads;
    pv.a = Layout::rows(n.keys).batched(n.t * n.keys, 1);
    pv.b = Layout::rows(n.kv_width).batched(n.d_head, n.group);
    pv.c = Layout::rows(n.q_width).batched(n.d_head, 1);
    rec.matmul(&pv, map, values, None, &act.z)?;

    let mean_ablated = mean_ablated(prepared, layer, n.heads);
    let buffers = HeadBuffers {
        z: &act.z,
        norms: &act.norms,
        ablation: &variant.ablation,
        means: &act.head_means,
    };
    head_output::push(
        &mut rec.plan,
        n.t,
        n.heads,
        n.d_head,
        layer,
        mean_ablated,
        prepared.variant.route_heads,
        &buffers,
    )?;

    // x += z·W_o + b_o
    let mut o = Matmul::new(n.t, n.d, n.q_width);
    o.accumulate = true;
    // Each head's output `[T, d_head]` is its columns of `z` (`[T, heads·d_head]`).
    for head in 0..n.heads {
        let point = HookPoint::HeadOutput { layer, head };
        let columns = Block::columns(head * n.d_head, n.heads * n.d_head);
        hooks.record(rec, point, &act.z, columns, (n.t, n.d_head))?;
    }
    rec.linear_with(o, &act.z, &block.o, &act.x)?;
    Ok(())
}

/// The unnormalised weights `w_ij` of linear or random-feature attention, `[heads, T, T]`.
/// `scores` is the launch that computed the scores (same batching over heads and groups).
#[allow(clippy::too_many_arguments)]
fn kernel_weights(
    rec: &mut Recorder,
    n: Dims,
    variant: &VariantBuffers,
    act: &Activations,
    layer: usize,
    scores: Matmul,
    scale: f32,
    out: &Arg,
) -> Result<()> {
    if let Some((phi_q, phi_k)) = &act.linear_features {
        // w = φ(q·β/√d) · φ(k)ᵀ with φ = elu + 1.
        features::push_elu(
            &mut rec.plan,
            &features::ELU,
            n.t * n.q_width,
            scale,
            &act.q,
            phi_q,
        )?;
        features::push_elu(
            &mut rec.plan,
            &features::ELU,
            n.t * n.kv_width,
            1.0,
            &act.k,
            phi_k,
        )?;
        let mut w = scores;
        w.alpha = 1.0;
        rec.matmul(&w, phi_q, phi_k, None, out)?;
    }
    if let Some((proj_q, proj_k)) = &act.random_features {
        // FAVOR+: proj = c·x·ωᵀ per head (ω of (layer, head) is [m, d_head]), then the
        // features in place, then w = φ(q')·φ(k')ᵀ.
        let omega = variant
            .omega
            .as_ref()
            .expect("random features are uploaded");
        let c = scale.sqrt();
        let omega_at = layer * n.heads * n.m * n.d_head;
        for (src, src_width, src_group, proj) in [
            (&act.q, n.q_width, 1, proj_q),
            (&act.k, n.kv_width, n.group, proj_k),
        ] {
            let mut mm = Matmul::new(n.t, n.m, n.d_head);
            mm.batch = n.heads;
            mm.a = Layout::rows(src_width).batched(n.d_head, src_group);
            mm.b = Layout::transposed(n.d_head)
                .at(omega_at)
                .batched(n.m * n.d_head, 1);
            mm.c = Layout::rows(n.m).batched(n.t * n.m, 1);
            mm.alpha = c;
            rec.matmul(&mm, src, omega, None, proj)?;
        }
        let query = RandomFeatures {
            t_len: n.t,
            heads: n.heads,
            features: n.m,
            d_head: n.d_head,
            src_stride: n.q_width,
            group_size: 1,
            c,
        };
        query.push_query(&mut rec.plan, &features::RANDOM_QUERY, &act.q, proj_q)?;
        let key = RandomFeatures {
            src_stride: n.kv_width,
            group_size: n.group,
            ..query
        };
        key.push_key(&mut rec.plan, &features::RANDOM_KEY, &act.k, proj_k)?;
        let mut w = Matmul::new(n.t, n.t, n.m);
        w.batch = n.heads;
        w.a = Layout::rows(n.m).batched(n.t * n.m, 1);
        w.b = Layout::transposed(n.m).batched(n.t * n.m, 1);
        w.c = Layout::rows(n.t).batched(n.t * n.t, 1);
        rec.matmul(&w, proj_q, proj_k, None, out)?;
    }
    Ok(())
}
