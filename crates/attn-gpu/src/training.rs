//! Training on the GPU: the same computation as attn-model's CPU trainer (its oracle), built
//! from the forward's kernels (`matmul`, `embed`, `attention_probs`) and the trainer's own (in
//! `ops`, compiled on the device the first time a run trains). A batch of `B` sequences padded
//! to `T` runs as `B · T` rows through every dense layer at once, and through attention as one
//! batched product over every head of every sequence, on head-major copies of Q, K and V.
//!
//! [`loss_and_gradients`] is one batch's loss and gradient (uploads the weights, reads every
//! gradient back): the check against `training::backprop::loss_and_gradients`. [`GpuTrainer`]
//! is a run, with the weights, the gradients and AdamW's moments kept on the GPU and a step in
//! one submit. Supported: everything the page trains (LayerNorm, tanh GELU MLPs or none,
//! MHA/GQA/MQA, tied or untied heads, causal or classifier, the head penalty, learned or rotary
//! positions, softmax or linear attention). The page's worker runs it when a training run asks
//! for the GPU; healing stays on the CPU trainer, which puts the cut back after every step.

use attn_model::rope::RotaryTable;
use attn_model::training::backprop::{check_trainable, parameters_mut, zeros_like, BatchLoss};
use attn_model::training::optimizer::AdamStep;
use attn_model::training::{
    healing_start, initial_model, model_config, starting_weights, RunSteps, Sequence, StepReport,
    Task, TaskData, TrainConfig,
};
use attn_model::variant::KernelName;
use attn_model::{Activation, Model, ModelConfig, Precision, Variant};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use wgpu::util::DeviceExt;

use crate::context::GpuContext;
use crate::error::{GpuError, Result};
use crate::ops::attention::{self, Masking};
use crate::ops::heads::{self, HeadShape};
use crate::ops::matmul::{self, Layout, Matmul};
use crate::ops::{
    adamw, column_sums, cross_entropy, elu_backward, embed, embedding_backward, features,
    gelu_backward, head_norm_backward, linear_backward, norm_backward, norm_keep, rope,
    softmax_backward,
};
use crate::plan::{Arg, BufferPool, PlanBuilder};
use crate::readback::read_f32;
use crate::weights::WeightArg;

/// Where a norm's scale and shift sit among the parameters.
#[derive(Clone, Copy)]
struct NormAt {
    weight: usize,
    bias: Option<usize>,
}

/// Where a dense layer's weight and bias sit among the parameters, and its shape.
#[derive(Clone, Copy)]
struct LinearAt {
    weight: usize,
    bias: Option<usize>,
    d_in: usize,
    d_out: usize,
}

struct BlockAt {
    attn_norm: NormAt,
    q: LinearAt,
    k: LinearAt,
    v: LinearAt,
    o: LinearAt,
    /// The MLP's norm, fc and proj.
    mlp: Option<(NormAt, LinearAt, LinearAt)>,
}

/// Every parameter's place in `parameters_mut`'s order.
struct ParamsAt {
    token_embedding: usize,
    position_embedding: Option<usize>,
    blocks: Vec<BlockAt>,
    final_norm: NormAt,
    lm_head: Option<usize>,
    classifier: Option<LinearAt>,
}

impl ParamsAt {
    /// Walks `model` in `parameters_mut`'s order.
    fn of(model: &Model) -> ParamsAt {
        let mut next = 0;
        let mut take = || {
            next += 1;
            next - 1
        };
        let token_embedding = take();
        let position_embedding = model.position_embedding.as_ref().map(|_| take());
        let norm = |n: &attn_model::model::NormWeights, take: &mut dyn FnMut() -> usize| NormAt {
            weight: take(),
            bias: n.bias.as_ref().map(|_| take()),
        };
        let linear = |l: &attn_model::model::Linear, take: &mut dyn FnMut() -> usize| LinearAt {
            weight: take(),
            bias: l.bias.as_ref().map(|_| take()),
            d_in: l.d_in,
            d_out: l.d_out,
        };
        let mut blocks = Vec::new();
        for block in &model.blocks {
            let attn_norm = norm(&block.attn_norm, &mut take);
            let q = linear(&block.attn.q, &mut take);
            let k = linear(&block.attn.k, &mut take);
            let v = linear(&block.attn.v, &mut take);
            let o = linear(&block.attn.o, &mut take);
            let mlp = block.mlp.as_ref().map(|m| {
                let n = norm(&m.norm, &mut take);
                let fc = linear(&m.fc, &mut take);
                let proj = linear(&m.proj, &mut take);
                (n, fc, proj)
            });
            blocks.push(BlockAt {
                attn_norm,
                q,
                k,
                v,
                o,
                mlp,
            });
        }
        let final_norm = norm(&model.final_norm, &mut take);
        let lm_head = model.lm_head.as_ref().map(|_| take());
        let classifier = model.classifier.as_ref().map(|c| linear(c, &mut take));
        ParamsAt {
            token_embedding,
            position_embedding,
            blocks,
            final_norm,
            lm_head,
            classifier,
        }
    }
}

/// A zeroed storage buffer of `len` `f32`s (at least one, so that it can be bound).
fn zeros(ctx: &GpuContext, len: usize) -> Arg {
    let size = 4 * len.max(1) as u64;
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("training"),
        size,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    Arg::new(&buffer, size)
}

/// A storage buffer holding `data`.
fn upload<T: bytemuck::Pod>(ctx: &GpuContext, data: &[T]) -> Arg {
    let mut bytes = bytemuck::cast_slice::<T, u8>(data).to_vec();
    bytes.resize(bytes.len().max(4), 0);
    let buffer = ctx
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("training"),
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        });
    Arg::new(&buffer, bytes.len() as u64)
}

/// Buffers copied one after another into one staging buffer, to be read with a single map
/// (every read-back is a round trip to the GPU; a step makes one).
struct Staged {
    staging: wgpu::Buffer,
    lens: Vec<usize>,
}

impl Staged {
    /// Records into `encoder` the copies of the first `len` values of each `arg`.
    fn copy(
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        args: &[(&Arg, usize)],
    ) -> Staged {
        let total: usize = args.iter().map(|(_, len)| len).sum();
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("training read-back"),
            size: 4 * total.max(1) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut offset = 0u64;
        for (arg, len) in args {
            let bytes = 4 * *len as u64;
            if bytes > 0 {
                encoder.copy_buffer_to_buffer(&arg.buffer, arg.offset, &staging, offset, bytes);
            }
            offset += bytes;
        }
        Staged {
            staging,
            lens: args.iter().map(|(_, len)| *len).collect(),
        }
    }

    /// The copied values, one vector per buffer (once the copies' submit has run).
    async fn read(self, ctx: &GpuContext) -> Result<Vec<Vec<f32>>> {
        let total: usize = self.lens.iter().sum();
        let bytes = 4 * total as u64;
        let mut all = read_f32(
            ctx,
            &self.staging,
            bytes,
            std::time::Duration::from_secs(120),
        )
        .await?
        .into_iter();
        Ok(self
            .lens
            .iter()
            .map(|&len| all.by_ref().take(len).collect())
            .collect())
    }
}

/// Head-major activations `[heads, t, d_head]` as a batch of `t × d_head` matrices; batch `i`
/// reads matrix `i / div` (several query heads sharing a key/value head).
fn head_major(d_head: usize, t: usize, div: usize) -> Layout {
    Layout::rows(d_head).batched(t * d_head, div)
}

/// [`head_major`], each matrix transposed (`d_head × t`): the keys or values of `q · kᵀ` and
/// `dz · vᵀ`.
fn head_major_transposed(d_head: usize, t: usize, div: usize) -> Layout {
    Layout {
        row_stride: 1,
        col_stride: d_head as u32,
        ..head_major(d_head, t, div)
    }
}

/// A dense row-major operand `cols` wide starting `offset` elements in.
fn rows_at(cols: usize, offset: usize) -> Layout {
    Layout::rows(cols).at(offset)
}

/// The shape of one padded batch, as every launch of its forward and backward sees it.
#[derive(Clone, Copy)]
struct BatchShape {
    n_seq: usize,
    t_len: usize,
    /// Rows of every dense layer: sequences × positions.
    rows: usize,
    d: usize,
    heads: usize,
    kv_heads: usize,
    d_head: usize,
    /// Query heads per key/value head.
    group: usize,
    /// Elements of one attention map, `t_len²`.
    map: usize,
    /// The scores' scale, `1/√d_head`.
    scale: f32,
}

impl BatchShape {
    fn new(c: &ModelConfig, n_seq: usize, t_len: usize) -> BatchShape {
        let (heads, kv_heads, d_head) = (c.n_head, c.kv_heads(), c.d_head());
        BatchShape {
            n_seq,
            t_len,
            rows: n_seq * t_len,
            d: c.d_model,
            heads,
            kv_heads,
            d_head,
            group: heads / kv_heads,
            map: t_len * t_len,
            scale: 1.0 / (d_head as f32).sqrt(),
        }
    }

    /// Width of a row of queries (or head outputs): every query head.
    fn q_width(&self) -> usize {
        self.heads * self.d_head
    }

    /// Width of a row of keys or values: every key/value head.
    fn kv_width(&self) -> usize {
        self.kv_heads * self.d_head
    }

    /// Every head of every sequence: the batch of the attention products.
    fn head_maps(&self) -> usize {
        self.n_seq * self.heads
    }
}

/// A batch padded as the CPU trainer pads it (token 0 and no target), row `s · t_len + t`
/// holding position `t` of sequence `s`: the tokens, the targets and `t_len`.
fn pad_batch(c: &ModelConfig, batch: &[Sequence]) -> Result<(Vec<u32>, Vec<u32>, usize)> {
    let t_len = batch.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
    if t_len == 0 || t_len > c.n_ctx {
        return Err(attn_model::ModelError::Training(format!(
            "a batch needs sequences of 1 to {} tokens (found {t_len})",
            c.n_ctx
        ))
        .into());
    }
    let rows = batch.len() * t_len;
    let mut tokens = Vec::with_capacity(rows);
    let mut targets = Vec::with_capacity(rows);
    for sequence in batch {
        for t in 0..t_len {
            let token = sequence.tokens.get(t).copied().unwrap_or(0);
            if token as usize >= c.vocab_size {
                return Err(attn_model::ModelError::Training(format!(
                    "token {token} is outside the vocabulary of {}",
                    c.vocab_size
                ))
                .into());
            }
            tokens.push(token);
            targets.push(
                sequence
                    .targets
                    .get(t)
                    .copied()
                    .flatten()
                    .unwrap_or(cross_entropy::NO_TARGET),
            );
        }
    }
    Ok((tokens, targets, t_len))
}

/// What one block's forward keeps for its backward.
struct BlockKept {
    attn_norm: [Arg; 3],
    /// Queries, keys and values, head-major.
    qh: Arg,
    kh: Arg,
    vh: Arg,
    /// The attention weights of every head of every sequence.
    probs: Arg,
    /// Linear attention's features φ(q · scale) and φ(k), head-major, and its weights before
    /// the normalisation.
    linear: Option<(Arg, Arg, Arg)>,
    /// The heads' outputs, in rows (what the output projection reads).
    z: Arg,
    /// The MLP's norm, pre-activation and activation.
    mlp: Option<([Arg; 3], Arg, Arg)>,
}

/// Records the launches of one batch's forward and backward (see [`loss_and_gradients`]), one
/// method a stage: the embeddings, a block's attention and MLP, the output head and the loss,
/// each forward with its backward.
struct Recorder<'k> {
    plan: PlanBuilder<'k>,
    ctx: &'k GpuContext,
    params: Vec<Arg>,
    grads: Vec<Arg>,
    dummy: Arg,
    shape: BatchShape,
    eps: f32,
    causal: bool,
    /// Linear (elu + 1) attention instead of softmax.
    linear: bool,
    head_penalty: f32,
    /// A rotary model's angles for every row.
    rotary: Option<RotaryRows>,
}

impl Recorder<'_> {
    /// A zeroed buffer of `len` floats.
    fn zeros(&self, len: usize) -> Arg {
        zeros(self.ctx, len)
    }

    /// Zeroed buffers for one layer's queries, keys and values (or their gradients).
    fn qkv_zeros(&self) -> (Arg, Arg, Arg) {
        let s = self.shape;
        (
            self.zeros(s.rows * s.q_width()),
            self.zeros(s.rows * s.kv_width()),
            self.zeros(s.rows * s.kv_width()),
        )
    }

    /// `x · W (+ b)` into `y` over the rows, with `accumulate` adding to what `y` holds.
    fn dense(
        &mut self,
        x: &Arg,
        l: LinearAt,
        y: &Arg,
        activation: Option<Activation>,
        accumulate: bool,
    ) -> Result<()> {
        let mm = Matmul {
            bias_offset: l.bias.map(|_| 0),
            activation,
            accumulate,
            ..Matmul::new(self.shape.rows, l.d_out, l.d_in)
        };
        let bias = l.bias.map_or(&self.dummy, |b| &self.params[b]);
        mm.push(
            &mut self.plan,
            &matmul::KERNEL,
            x,
            &self.params[l.weight],
            bias,
            y,
        )?;
        Ok(())
    }

    /// A dense layer's backward: `dW += xᵀ·dy`, `db += Σ_rows dy`, and `dx += dy·Wᵀ` when asked.
    fn dense_backward(&mut self, x: &Arg, dy: &Arg, l: LinearAt, dx: Option<&Arg>) -> Result<()> {
        let rows = self.shape.rows;
        let dw = Matmul {
            a: Layout::transposed(l.d_in),
            accumulate: true,
            ..Matmul::new(l.d_in, l.d_out, rows)
        };
        dw.push(
            &mut self.plan,
            &matmul::KERNEL,
            x,
            dy,
            &self.dummy,
            &self.grads[l.weight],
        )?;
        if let Some(b) = l.bias {
            column_sums::push(
                &mut self.plan,
                &column_sums::KERNEL,
                (rows, l.d_out),
                (dy, &self.grads[b]),
            )?;
        }
        if let Some(dx) = dx {
            let back = Matmul {
                b: Layout::transposed(l.d_out),
                accumulate: true,
                ..Matmul::new(rows, l.d_in, l.d_out)
            };
            back.push(
                &mut self.plan,
                &matmul::KERNEL,
                dy,
                &self.params[l.weight],
                &self.dummy,
                dx,
            )?;
        }
        Ok(())
    }

    /// LayerNorm of `x`, keeping `[output, x̂, 1/σ]` for the backward.
    fn norm_forward(&mut self, x: &Arg, n: NormAt) -> Result<[Arg; 3]> {
        let BatchShape { rows, d, .. } = self.shape;
        let kept = [self.zeros(rows * d), self.zeros(rows * d), self.zeros(rows)];
        norm_keep::push(
            &mut self.plan,
            &norm_keep::KERNEL,
            (rows, d, self.eps),
            (x, &self.params[n.weight], n.bias.map(|b| &self.params[b])),
            (&kept[0], &kept[1], &kept[2]),
        )?;
        Ok(kept)
    }

    /// LayerNorm's backward from what [`Recorder::norm_forward`] kept: `dx += …`, `dγ`, `dβ`.
    fn norm_backward(&mut self, kept: &[Arg; 3], n: NormAt, dy: &Arg, dx: &Arg) -> Result<()> {
        norm_backward::push(
            &mut self.plan,
            (&norm_backward::ROWS, &norm_backward::PARAMS),
            self.shape.rows,
            self.shape.d,
            &norm_backward::NormBackward {
                dy,
                normalised: &kept[1],
                inv_std: &kept[2],
                gamma: &self.params[n.weight],
                dx,
                dgamma: &self.grads[n.weight],
                dbeta: n.bias.map(|b| &self.grads[b]),
            },
        )
    }

    /// Rows ↔ head-major copies of `heads` heads (`kernel` says which way).
    fn reorder(
        &mut self,
        kernel: &'static crate::ops::kernel::KernelSpec,
        heads: usize,
        pair: (&Arg, &Arg),
    ) -> Result<()> {
        let s = self.shape;
        let shape = HeadShape {
            seqs: s.n_seq,
            t: s.t_len,
            heads,
            d_head: s.d_head,
        };
        heads::push(&mut self.plan, kernel, shape, pair).map(|_| ())
    }

    /// Rotates `x`, `[rows, heads · d_head]`, in place by the rotary angles (or by their
    /// transpose, for a gradient); nothing for a model without rotary positions.
    fn rotate(&mut self, transpose: bool, heads: usize, x: &Arg) -> Result<()> {
        let Some(rotary) = &self.rotary else {
            return Ok(());
        };
        let s = self.shape;
        let table = if transpose {
            &rotary.transpose
        } else {
            &rotary.forward
        };
        rope::push(
            &mut self.plan,
            &rope::KERNEL,
            (s.rows, heads, s.d_head),
            (rotary.half, s.rows),
            table,
            x,
        )?;
        Ok(())
    }

    /// `out_g += mapsᵀ · rows_of_h` for every head h of key/value head g (dv from P and dz, dk
    /// from dS and q). The heads of a group add to one place, so one launch per member r of a
    /// group, over every (sequence, group) pair j: head j · group + r.
    fn per_group(&mut self, maps: &Arg, rows_of: &Arg, out: &Arg) -> Result<()> {
        let s = self.shape;
        for r in 0..s.group {
            let product = Matmul {
                batch: s.n_seq * s.kv_heads,
                a: Layout {
                    offset: (r * s.map) as u32,
                    row_stride: 1,
                    col_stride: s.t_len as u32,
                    batch_stride: (s.group * s.map) as u32,
                    batch_div: 1,
                },
                b: rows_at(s.d_head, r * s.t_len * s.d_head)
                    .batched(s.group * s.t_len * s.d_head, 1),
                c: head_major(s.d_head, s.t_len, 1),
                accumulate: true,
                ..Matmul::new(s.t_len, s.d_head, s.t_len)
            };
            product.push(
                &mut self.plan,
                &matmul::KERNEL,
                maps,
                rows_of,
                &self.dummy,
                out,
            )?;
        }
        Ok(())
    }

    /// A product over every head of every sequence between a map-shaped operand (scores,
    /// weights or their gradients, `[t, t]` per head) and a head-major one read through the
    /// head's key/value head: `P · v_g`, `dS · k_g`.
    fn maps_times_heads(&mut self, maps: &Arg, heads_of: &Arg, out: &Arg) -> Result<()> {
        let s = self.shape;
        let product = Matmul {
            batch: s.head_maps(),
            a: rows_at(s.t_len, 0).batched(s.map, 1),
            b: head_major(s.d_head, s.t_len, s.group),
            c: head_major(s.d_head, s.t_len, 1),
            ..Matmul::new(s.t_len, s.d_head, s.t_len)
        };
        product.push(
            &mut self.plan,
            &matmul::KERNEL,
            maps,
            heads_of,
            &self.dummy,
            out,
        )?;
        Ok(())
    }

    /// `alpha · a_h · b_gᵀ` into a map per head of every sequence, `a` head-major per query
    /// head and `b` per key/value head: the scores `q · kᵀ`, linear attention's `φ(q) · φ(k)ᵀ`,
    /// and `dz · vᵀ`.
    fn heads_times_heads(&mut self, alpha: f32, a: &Arg, b: &Arg, maps: &Arg) -> Result<()> {
        let s = self.shape;
        let product = Matmul {
            batch: s.head_maps(),
            a: head_major(s.d_head, s.t_len, 1),
            b: head_major_transposed(s.d_head, s.t_len, s.group),
            c: rows_at(s.t_len, 0).batched(s.map, 1),
            alpha,
            ..Matmul::new(s.t_len, s.t_len, s.d_head)
        };
        product.push(&mut self.plan, &matmul::KERNEL, a, b, &self.dummy, maps)?;
        Ok(())
    }

    /// The embeddings of `tokens` (the position table repeated once per sequence, copied in
    /// `encoder`): the residual stream the blocks add to.
    fn embed_forward(
        &mut self,
        at: &ParamsAt,
        tokens: &Arg,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Result<Arg> {
        let BatchShape {
            n_seq,
            t_len,
            rows,
            d,
            ..
        } = self.shape;
        let x = self.zeros(rows * d);
        let positions = at.position_embedding.map(|p| {
            let tiled = self.zeros(rows * d);
            for s in 0..n_seq {
                encoder.copy_buffer_to_buffer(
                    &self.params[p].buffer,
                    0,
                    &tiled.buffer,
                    4 * (s * t_len * d) as u64,
                    4 * (t_len * d) as u64,
                );
            }
            tiled
        });
        let wte = WeightArg {
            arg: self.params[at.token_embedding].clone(),
            precision: Precision::F32,
        };
        embed::push(
            &mut self.plan,
            &embed::KERNEL,
            rows,
            d,
            tokens,
            &wte,
            positions.as_ref(),
            &self.dummy,
            &x,
        )?;
        Ok(x)
    }

    /// The embeddings' backward from the stream's gradient `dx`: the token table's rows, and
    /// the position table's summed over the sequences.
    fn embed_backward(
        &mut self,
        at: &ParamsAt,
        tokens: &Arg,
        dx: &Arg,
        vocab: usize,
    ) -> Result<()> {
        let BatchShape {
            n_seq,
            t_len,
            rows,
            d,
            ..
        } = self.shape;
        embedding_backward::push(
            &mut self.plan,
            &embedding_backward::KERNEL,
            (rows, d, vocab),
            (tokens, dx, &self.grads[at.token_embedding]),
        )?;
        if let Some(p) = at.position_embedding {
            column_sums::push(
                &mut self.plan,
                &column_sums::KERNEL,
                (n_seq, t_len * d),
                (dx, &self.grads[p]),
            )?;
        }
        Ok(())
    }

    /// One block's forward, adding its attention and its MLP to the stream `x`.
    fn block_forward(&mut self, block: &BlockAt, x: &Arg) -> Result<BlockKept> {
        let mut kept = self.attention_forward(block, x)?;
        kept.mlp = match block.mlp {
            Some(mlp) => Some(self.mlp_forward(mlp, x)?),
            None => None,
        };
        Ok(kept)
    }

    /// Attention's forward: `x += z · Wo + bo` with `z` every head's weighted values.
    fn attention_forward(&mut self, block: &BlockAt, x: &Arg) -> Result<BlockKept> {
        let s = self.shape;
        let attn_norm = self.norm_forward(x, block.attn_norm)?;
        let (q, k, v) = self.qkv_zeros();
        self.dense(&attn_norm[0], block.q, &q, None, false)?;
        self.dense(&attn_norm[0], block.k, &k, None, false)?;
        self.dense(&attn_norm[0], block.v, &v, None, false)?;
        self.rotate(false, s.heads, &q)?;
        self.rotate(false, s.kv_heads, &k)?;
        // Head-major copies, so that one product covers every head of every sequence.
        let (qh, kh, vh) = self.qkv_zeros();
        self.reorder(&heads::TO_HEADS, s.heads, (&q, &qh))?;
        self.reorder(&heads::TO_HEADS, s.kv_heads, (&k, &kh))?;
        self.reorder(&heads::TO_HEADS, s.kv_heads, (&v, &vh))?;
        let probs = self.zeros(s.head_maps() * s.map);
        // Scaled scores of every head, q_h · k_gᵀ (head i uses key/value head i / group), or
        // linear attention's weights instead: w = φ(q · scale) · φ(k)ᵀ with φ = elu + 1.
        let linear = if self.linear {
            let phi_q = self.zeros(s.rows * s.q_width());
            let phi_k = self.zeros(s.rows * s.kv_width());
            let elu = &features::ELU;
            features::push_elu(
                &mut self.plan,
                elu,
                s.rows * s.q_width(),
                s.scale,
                &qh,
                &phi_q,
            )?;
            features::push_elu(&mut self.plan, elu, s.rows * s.kv_width(), 1.0, &kh, &phi_k)?;
            let w = self.zeros(s.head_maps() * s.map);
            self.heads_times_heads(1.0, &phi_q, &phi_k, &w)?;
            Some((phi_q, phi_k, w))
        } else {
            self.heads_times_heads(s.scale, &qh, &kh, &probs)?;
            None
        };
        attention::push(
            &mut self.plan,
            &attention::KERNEL,
            s.t_len,
            s.head_maps(),
            Masking {
                causal: self.causal,
                window: None,
                top_k: None,
            },
            linear.is_some(),
            &probs,
            linear.as_ref().map_or(&self.dummy, |(_, _, w)| w),
        )?;
        let zh = self.zeros(s.rows * s.q_width());
        self.maps_times_heads(&probs, &vh, &zh)?;
        let z = self.zeros(s.rows * s.q_width());
        self.reorder(&heads::FROM_HEADS, s.heads, (&zh, &z))?;
        self.dense(&z, block.o, x, None, true)?;
        Ok(BlockKept {
            attn_norm,
            qh,
            kh,
            vh,
            probs,
            linear,
            z,
            mlp: None,
        })
    }

    /// The MLP's forward: `x += gelu(norm(x) · Wfc + bfc) · Wproj + bproj`.
    fn mlp_forward(
        &mut self,
        (norm, fc, proj): (NormAt, LinearAt, LinearAt),
        x: &Arg,
    ) -> Result<([Arg; 3], Arg, Arg)> {
        let rows = self.shape.rows;
        let normed = self.norm_forward(x, norm)?;
        let (pre, act) = (self.zeros(rows * fc.d_out), self.zeros(rows * fc.d_out));
        self.dense(&normed[0], fc, &pre, None, false)?;
        self.dense(&normed[0], fc, &act, Some(Activation::GeluTanh), false)?;
        self.dense(&act, proj, x, None, true)?;
        Ok((normed, pre, act))
    }

    /// The final norm and the logits (the unembedding, tied or not, or the classifier):
    /// `(the norm's kept values, logits)`.
    fn head_forward(&mut self, at: &ParamsAt, x: &Arg, n_out: usize) -> Result<([Arg; 3], Arg)> {
        let BatchShape { rows, d, .. } = self.shape;
        let final_norm = self.norm_forward(x, at.final_norm)?;
        let logits = self.zeros(rows * n_out);
        match at.classifier {
            Some(classifier) => self.dense(&final_norm[0], classifier, &logits, None, false)?,
            None => {
                let unembed = Matmul {
                    b: Layout::transposed(d),
                    ..Matmul::new(rows, n_out, d)
                };
                let table = &self.params[at.lm_head.unwrap_or(at.token_embedding)];
                unembed.push(
                    &mut self.plan,
                    &matmul::KERNEL,
                    &final_norm[0],
                    table,
                    &self.dummy,
                    &logits,
                )?;
            }
        }
        Ok((final_norm, logits))
    }

    /// The head's backward from the logits' gradient: the unembedding's (or classifier's)
    /// gradients and the final norm's, returning the stream's gradient `dx`.
    fn head_backward(
        &mut self,
        at: &ParamsAt,
        final_norm: &[Arg; 3],
        dlogits: &Arg,
        n_out: usize,
    ) -> Result<Arg> {
        let BatchShape { rows, d, .. } = self.shape;
        let dfinal = self.zeros(rows * d);
        match at.classifier {
            Some(classifier) => {
                self.dense_backward(&final_norm[0], dlogits, classifier, Some(&dfinal))?
            }
            None => {
                let table = at.lm_head.unwrap_or(at.token_embedding);
                let dtable = Matmul {
                    a: Layout::transposed(n_out),
                    accumulate: true,
                    ..Matmul::new(n_out, d, rows)
                };
                dtable.push(
                    &mut self.plan,
                    &matmul::KERNEL,
                    dlogits,
                    &final_norm[0],
                    &self.dummy,
                    &self.grads[table],
                )?;
                let back = Matmul::new(rows, d, n_out);
                back.push(
                    &mut self.plan,
                    &matmul::KERNEL,
                    dlogits,
                    &self.params[table],
                    &self.dummy,
                    &dfinal,
                )?;
            }
        }
        let dx = self.zeros(rows * d);
        self.norm_backward(final_norm, at.final_norm, &dfinal, &dx)?;
        Ok(dx)
    }

    /// One block's backward, MLP then attention, adding to the stream's gradient `dx`.
    fn block_backward(&mut self, block: &BlockAt, kept: &BlockKept, dx: &Arg) -> Result<()> {
        if let (Some(mlp), Some(mlp_kept)) = (block.mlp, &kept.mlp) {
            self.mlp_backward(mlp, mlp_kept, dx)?;
        }
        self.attention_backward(block, kept, dx)
    }

    /// The MLP's backward (see [`Recorder::mlp_forward`]).
    fn mlp_backward(
        &mut self,
        (norm, fc, proj): (NormAt, LinearAt, LinearAt),
        (normed, pre, act): &([Arg; 3], Arg, Arg),
        dx: &Arg,
    ) -> Result<()> {
        let BatchShape { rows, d, .. } = self.shape;
        let dact = self.zeros(rows * fc.d_out);
        self.dense_backward(act, dx, proj, Some(&dact))?;
        let dpre = self.zeros(rows * fc.d_out);
        gelu_backward::push(
            &mut self.plan,
            &gelu_backward::KERNEL,
            rows * fc.d_out,
            (pre, &dact, &dpre),
        )?;
        let dnormed = self.zeros(rows * d);
        self.dense_backward(&normed[0], &dpre, fc, Some(&dnormed))?;
        self.norm_backward(normed, norm, &dnormed, dx)
    }

    /// Attention's backward (see [`Recorder::attention_forward`]), with the head penalty's
    /// gradient on the heads' outputs.
    fn attention_backward(&mut self, block: &BlockAt, kept: &BlockKept, dx: &Arg) -> Result<()> {
        let s = self.shape;
        let dz = self.zeros(s.rows * s.q_width());
        self.dense_backward(&kept.z, dx, block.o, Some(&dz))?;
        if self.head_penalty != 0.0 {
            head_norm_backward::push(
                &mut self.plan,
                &head_norm_backward::KERNEL,
                (
                    s.rows * s.heads,
                    s.d_head,
                    self.head_penalty * (1.0 / s.rows as f32),
                ),
                (&kept.z, &dz),
            )?;
        }
        let dzh = self.zeros(s.rows * s.q_width());
        self.reorder(&heads::TO_HEADS, s.heads, (&dz, &dzh))?;
        let (dp, ds) = (
            self.zeros(s.head_maps() * s.map),
            self.zeros(s.head_maps() * s.map),
        );
        let (dqh, dkh, dvh) = self.qkv_zeros();
        // dP = dz_h · v_gᵀ for every head, and dv_g = Σ Pᵀ · dz_h over its heads.
        self.heads_times_heads(1.0, &dzh, &kept.vh, &dp)?;
        self.per_group(&kept.probs, &dzh, &dvh)?;
        match &kept.linear {
            None => {
                softmax_backward::push(
                    &mut self.plan,
                    &softmax_backward::KERNEL,
                    (s.head_maps() * s.t_len, s.t_len, s.scale),
                    (&kept.probs, &dp, &ds),
                )?;
                // dq_h = dS · k_g for every head, and dk_g = Σ dSᵀ · q_h over its heads.
                self.maps_times_heads(&ds, &kept.kh, &dqh)?;
                self.per_group(&ds, &kept.qh, &dkh)?;
            }
            Some((phi_q, phi_k, w)) => {
                // dW through the normalisation, then dφ(q̃) = dW · φ(k) and dφ(k) = dWᵀ · φ(q̃),
                // then φ' and q̃'s scale.
                linear_backward::push(
                    &mut self.plan,
                    &linear_backward::KERNEL,
                    (s.head_maps() * s.t_len, s.t_len, self.causal),
                    (&kept.probs, &dp, w, &ds),
                )?;
                let (dphi_q, dphi_k, _) = self.qkv_zeros();
                self.maps_times_heads(&ds, phi_k, &dphi_q)?;
                self.per_group(&ds, phi_q, &dphi_k)?;
                let elu = &elu_backward::KERNEL;
                elu_backward::push(
                    &mut self.plan,
                    elu,
                    (s.rows * s.q_width(), s.scale),
                    (&kept.qh, &dphi_q, &dqh),
                )?;
                elu_backward::push(
                    &mut self.plan,
                    elu,
                    (s.rows * s.kv_width(), 1.0),
                    (&kept.kh, &dphi_k, &dkh),
                )?;
            }
        }
        let (dq, dk, dv) = self.qkv_zeros();
        self.reorder(&heads::FROM_HEADS, s.heads, (&dqh, &dq))?;
        self.reorder(&heads::FROM_HEADS, s.kv_heads, (&dkh, &dk))?;
        self.reorder(&heads::FROM_HEADS, s.kv_heads, (&dvh, &dv))?;
        // The rotation is orthogonal: its backward is its transpose.
        self.rotate(true, s.heads, &dq)?;
        self.rotate(true, s.kv_heads, &dk)?;
        let da = self.zeros(s.rows * s.d);
        let a = &kept.attn_norm[0];
        self.dense_backward(a, &dq, block.q, Some(&da))?;
        self.dense_backward(a, &dk, block.k, Some(&da))?;
        self.dense_backward(a, &dv, block.v, Some(&da))?;
        self.norm_backward(&kept.attn_norm, block.attn_norm, &da, dx)
    }
}

/// What a recorded batch leaves to read once it has run: each row's loss and hit, and every
/// layer's head outputs (for the head norms).
struct Recorded {
    nll: Arg,
    correct: Arg,
    z: Vec<Arg>,
    rows: usize,
    scored: usize,
}

/// Refuses what the GPU trainer does not train (what the CPU trainer does not).
fn check_supported(c: &ModelConfig) -> Result<()> {
    check_trainable(c)?;
    Ok(())
}

/// A rotary model's angles for every row of a padded batch (row `s · t_len + t` is position
/// `t`), as `rope.wgsl` reads them: the rotation, and its transpose (the sines negated) for the
/// gradients of the rotated queries and keys.
struct RotaryRows {
    half: usize,
    forward: Arg,
    transpose: Arg,
}

impl RotaryRows {
    fn new(ctx: &GpuContext, c: &ModelConfig, n_seq: usize, t_len: usize) -> Option<RotaryRows> {
        let table = RotaryTable::new(c.rope()?, t_len);
        let with_sines = |sign: f32| -> Vec<f32> {
            let mut values = table.cos.repeat(n_seq);
            values.extend(table.sin.repeat(n_seq).into_iter().map(|v| sign * v));
            values
        };
        Some(RotaryRows {
            half: table.half,
            forward: upload(ctx, &with_sines(1.0)),
            transpose: upload(ctx, &with_sines(-1.0)),
        })
    }
}

/// Records the forward and backward of `batch` under the weights `params` (in
/// `parameters_mut`'s order, placed by `at`), adding every gradient to `grads`: copies into
/// `encoder`, launches into the returned recorder's plan (to which more can be added). The
/// shape of llm.c's training step: embeddings, each block forward, the head and the loss, each
/// block backward in reverse, the embeddings' gradients.
#[allow(clippy::too_many_arguments)]
fn record_batch<'k>(
    ctx: &'k GpuContext,
    c: &ModelConfig,
    at: &ParamsAt,
    (params, grads): (&[Arg], &[Arg]),
    (batch, kernel): (&[Sequence], KernelName),
    head_penalty: f32,
    encoder: &mut wgpu::CommandEncoder,
) -> Result<(Recorder<'k>, Recorded)> {
    let (tokens, targets, t_len) = pad_batch(c, batch)?;
    let shape = BatchShape::new(c, batch.len(), t_len);
    let n_out = c.n_out();
    let scored: usize = batch.iter().map(Sequence::scored).sum();
    let tokens = upload(ctx, &tokens);
    let targets = upload(ctx, &targets);
    let mut rec = Recorder {
        plan: PlanBuilder::new(ctx),
        ctx,
        params: params.to_vec(),
        grads: grads.to_vec(),
        dummy: zeros(ctx, 1),
        shape,
        eps: c.layer_norm_eps,
        causal: c.causal,
        linear: kernel == KernelName::Linear,
        head_penalty,
        rotary: RotaryRows::new(ctx, c, shape.n_seq, t_len),
    };

    let x = rec.embed_forward(at, &tokens, encoder)?;
    let kept = at
        .blocks
        .iter()
        .map(|block| rec.block_forward(block, &x))
        .collect::<Result<Vec<_>>>()?;
    let (final_norm, logits) = rec.head_forward(at, &x, n_out)?;

    // The loss and its gradient, each row's loss and hit.
    let rows = shape.rows;
    let (dlogits, nll, correct) = (rec.zeros(rows * n_out), rec.zeros(rows), rec.zeros(rows));
    cross_entropy::push(
        &mut rec.plan,
        &cross_entropy::KERNEL,
        (rows, n_out, 1.0 / scored.max(1) as f32),
        (&logits, &targets),
        (&dlogits, &nll, &correct),
    )?;
    let dx = rec.head_backward(at, &final_norm, &dlogits, n_out)?;
    for (block, kept) in at.blocks.iter().zip(&kept).rev() {
        rec.block_backward(block, kept, &dx)?;
    }
    rec.embed_backward(at, &tokens, &dx, c.vocab_size)?;

    let recorded = Recorded {
        nll,
        correct,
        z: kept.into_iter().map(|k| k.z).collect(),
        rows,
        scored,
    };
    Ok((rec, recorded))
}

/// Encodes the recorded launches in one compute pass, after the copies already in `encoder`.
fn encode(recorder: Recorder<'_>, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
    let mut pool = BufferPool::default();
    let (program, _params) = recorder.plan.finish(&mut pool)?;
    let mut pass = encoder.begin_compute_pass(&Default::default());
    program.encode(&mut pass, |_| true);
    Ok(())
}

/// A batch's loss outputs on their way back: each row's loss and hit and every layer's head
/// outputs, copied after the step's pass.
struct PendingLoss {
    staged: Staged,
    rows: usize,
    scored: usize,
    d_head: usize,
}

impl Recorded {
    fn copy_out(
        &self,
        ctx: &GpuContext,
        c: &ModelConfig,
        encoder: &mut wgpu::CommandEncoder,
    ) -> PendingLoss {
        let z_len = self.rows * c.n_head * c.d_head();
        let mut args = vec![(&self.nll, self.rows), (&self.correct, self.rows)];
        args.extend(self.z.iter().map(|z| (z, z_len)));
        PendingLoss {
            staged: Staged::copy(ctx, encoder, &args),
            rows: self.rows,
            scored: self.scored,
            d_head: c.d_head(),
        }
    }
}

impl PendingLoss {
    /// The batch's loss, hits and head norms, as the CPU trainer's `BatchLoss` reports them.
    async fn read(self, ctx: &GpuContext) -> Result<BatchLoss> {
        let (rows, scored, d_head) = (self.rows, self.scored, self.d_head);
        let values = self.staged.read(ctx).await?;
        let (nll, correct) = (&values[0], &values[1]);
        let mut head_norms = 0.0f64;
        for z in &values[2..] {
            for piece in z.chunks_exact(d_head) {
                let squares: f32 = piece.iter().map(|v| v * v).sum();
                head_norms += (squares + 1e-8).sqrt() as f64;
            }
        }
        Ok(BatchLoss {
            loss: nll.iter().map(|&v| v as f64).sum::<f64>() / scored.max(1) as f64,
            correct: correct.iter().filter(|&&v| v > 0.5).count(),
            scored,
            head_norms: head_norms / rows as f64,
        })
    }
}

/// The GPU twin of `attn_model::training::loss_and_gradients` (see the module documentation).
pub async fn loss_and_gradients(
    ctx: &GpuContext,
    model: &Model,
    batch: &[Sequence],
    head_penalty: f32,
) -> Result<(BatchLoss, Model)> {
    loss_and_gradients_with(ctx, model, KernelName::Softmax, batch, head_penalty).await
}

/// [`loss_and_gradients`] with the attention weights of `kernel`: softmax, or linear attention
/// (the GPU twin of `attn_model::training::loss_and_gradients_with`).
pub async fn loss_and_gradients_with(
    ctx: &GpuContext,
    model: &Model,
    kernel: KernelName,
    batch: &[Sequence],
    head_penalty: f32,
) -> Result<(BatchLoss, Model)> {
    check_supported(&model.config)?;
    // Weights (f32) and zeroed gradients, in `parameters_mut`'s order.
    let mut weights_model = model.to_precision(Precision::F32);
    let at = ParamsAt::of(&weights_model);
    let params: Vec<Arg> = parameters_mut(&mut weights_model)
        .iter()
        .map(|p| upload(ctx, p))
        .collect();
    let mut grads_model = zeros_like(model)?;
    let sizes: Vec<usize> = parameters_mut(&mut grads_model)
        .iter()
        .map(|g| g.len())
        .collect();
    let grads: Vec<Arg> = sizes.iter().map(|&n| zeros(ctx, n)).collect();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    let (recorder, recorded) = record_batch(
        ctx,
        &model.config,
        &at,
        (&params, &grads),
        (batch, kernel),
        head_penalty,
        &mut encoder,
    )?;
    encode(recorder, &mut encoder)?;
    let loss = recorded.copy_out(ctx, &model.config, &mut encoder);
    let gradients: Vec<(&Arg, usize)> = grads.iter().zip(sizes.iter().copied()).collect();
    let gradients = Staged::copy(ctx, &mut encoder, &gradients);
    ctx.queue.submit([encoder.finish()]);
    let loss = loss.read(ctx).await?;
    for (grad, value) in parameters_mut(&mut grads_model)
        .into_iter()
        .zip(gradients.read(ctx).await?)
    {
        *grad = value;
    }
    ctx.check_health()?;
    Ok((loss, grads_model))
}

/// [`loss_and_gradients_with`], blocking the current thread (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn loss_and_gradients_blocking(
    ctx: &GpuContext,
    model: &Model,
    kernel: KernelName,
    batch: &[Sequence],
    head_penalty: f32,
) -> Result<(BatchLoss, Model)> {
    pollster::block_on(loss_and_gradients_with(
        ctx,
        model,
        kernel,
        batch,
        head_penalty,
    ))
}

/// A training run on the GPU: the CPU trainer's (`attn_model::training::Trainer`) run of the
/// same task, config and seed — the same initial weights, the same batches from the same
/// generator, the same schedule and AdamW — with the weights, the gradients and the optimiser's
/// moments kept on the GPU. A step is one submit: the batch's forward and backward, then AdamW
/// on every parameter; only the batch's loss comes back.
pub struct GpuTrainer {
    task: Task,
    ctx: GpuContext,
    config: TrainConfig,
    data: Box<dyn TaskData>,
    rng: ChaCha8Rng,
    /// The initial model: its shapes, config and tokenizer for [`GpuTrainer::weights`].
    template: Model,
    at: ParamsAt,
    sizes: Vec<usize>,
    params: Vec<Arg>,
    grads: Vec<Arg>,
    /// AdamW's first and second moments, in the parameters' order.
    moments: Vec<(Arg, Arg)>,
    /// One `f32` of scratch for the clipping coefficient.
    coef: Arg,
    steps: RunSteps,
    /// Byte ranges of parameters that stay zero (a healed model's ablated heads' output rows):
    /// (parameter, offset, size).
    silent: Vec<(usize, u64, u64)>,
}

impl GpuTrainer {
    /// A run of `config` on `task` (whose data is `data`) from the seed's initial weights.
    pub fn new(
        ctx: &GpuContext,
        task: Task,
        data: Box<dyn TaskData>,
        config: TrainConfig,
    ) -> Result<GpuTrainer> {
        config.validate()?;
        let model = initial_model(&model_config(&config, data.as_ref())?, config.seed)?;
        GpuTrainer::from_weights(ctx, task, data, config, model)
    }

    /// A run that starts from `model`'s weights (fine-tuning), which must fit the task (the CPU
    /// trainer's `Trainer::from_weights`).
    pub fn from_weights(
        ctx: &GpuContext,
        task: Task,
        data: Box<dyn TaskData>,
        config: TrainConfig,
        model: Model,
    ) -> Result<GpuTrainer> {
        config.validate()?;
        let model = starting_weights(task, data.as_ref(), model)?;
        check_supported(&model.config)?;
        let at = ParamsAt::of(&model);
        let mut copy = model.clone();
        let values = parameters_mut(&mut copy);
        let sizes: Vec<usize> = values.iter().map(|p| p.len()).collect();
        let params = values.iter().map(|p| upload(ctx, p)).collect();
        Ok(GpuTrainer {
            task,
            ctx: ctx.clone(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            grads: sizes.iter().map(|&n| zeros(ctx, n)).collect(),
            moments: sizes
                .iter()
                .map(|&n| (zeros(ctx, n), zeros(ctx, n)))
                .collect(),
            coef: zeros(ctx, 1),
            template: model,
            at,
            sizes,
            params,
            steps: RunSteps::new(config.steps),
            silent: Vec::new(),
            config,
            data,
        })
    }

    /// A run that fine-tunes `model` with `variant` built into its weights (the CPU trainer's
    /// `Trainer::healing`): pooled key/value heads are the model's own; zero-ablated heads'
    /// output rows are zeroed again after every step, on the GPU. A K/V rank cut, which the CPU
    /// trainer puts back with an SVD after every step, is refused
    /// ([`GpuError::Unsupported`]).
    pub fn healing(
        ctx: &GpuContext,
        task: Task,
        data: Box<dyn TaskData>,
        (config, model, variant): (TrainConfig, &Model, &Variant),
    ) -> Result<GpuTrainer> {
        let (built, constraint, config) = healing_start(model, variant, config)?;
        if constraint.kv_rank.is_some() {
            return Err(GpuError::Unsupported(
                "the GPU trainer does not keep a K/V rank cut (an SVD after every step)".into(),
            ));
        }
        let mut trainer = GpuTrainer::from_weights(ctx, task, data, config, built)?;
        let d_head = trainer.template.config.d_head();
        trainer.silent = constraint
            .ablated
            .iter()
            .map(|&[layer, head]| {
                let o = &trainer.at.blocks[layer].o;
                let row_bytes = 4 * o.d_out as u64;
                let rows = d_head as u64;
                (o.weight, head as u64 * rows * row_bytes, rows * row_bytes)
            })
            .collect();
        Ok(trainer)
    }

    /// One optimiser step on the next batch (see the type's documentation). Past the configured
    /// number of steps the schedule stays at its final learning rate.
    pub async fn step(&mut self) -> Result<StepReport> {
        self.submit_step()?.report().await
    }

    /// [`GpuTrainer::step`] in two halves: records and submits the step (the trainer moves on
    /// to the next one at once) and returns what reads its batch loss back — so a caller that
    /// shares the trainer need not hold it while the GPU works.
    pub fn submit_step(&mut self) -> Result<PendingStep> {
        let batch = self.data.batch(&mut self.rng, self.config.batch_size);
        let learning_rate = self.config.learning_rate_at(self.steps.done());
        let ctx = &self.ctx;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for grad in &self.grads {
            encoder.clear_buffer(&grad.buffer, 0, None);
        }
        let (mut recorder, recorded) = record_batch(
            ctx,
            &self.template.config,
            &self.at,
            (&self.params, &self.grads),
            (&batch, self.kernel()),
            self.config.head_penalty as f32,
            &mut encoder,
        )?;
        // AdamW, as attn_model::training::AdamW::step computes its constants.
        let time = self.steps.done() as i32 + 1;
        let decay_rate = learning_rate * self.config.weight_decay;
        let adam = AdamStep {
            learning_rate: learning_rate as f32,
            correction_1: 1.0 - 0.9f32.powi(time),
            correction_2: 1.0 - 0.99f32.powi(time),
            keep: if decay_rate == 0.0 {
                1.0
            } else {
                (1.0 - decay_rate) as f32
            },
        };
        let clip = self.config.grad_clip.map(|c| c as f32);
        for (i, (m, v)) in self.moments.iter().enumerate() {
            adamw::push(
                &mut recorder.plan,
                (&adamw::CLIP, &adamw::UPDATE),
                self.sizes[i],
                clip,
                adam,
                &adamw::AdamBuffers {
                    param: &self.params[i],
                    grad: &self.grads[i],
                    m,
                    v,
                    coef: &self.coef,
                },
            )?;
        }
        encode(recorder, &mut encoder)?;
        // What healing keeps at zero, zeroed again after the update.
        for &(param, offset, size) in &self.silent {
            let arg = &self.params[param];
            encoder.clear_buffer(&arg.buffer, arg.offset + offset, Some(size));
        }
        let loss = recorded.copy_out(ctx, &self.template.config, &mut encoder);
        ctx.queue.submit([encoder.finish()]);
        Ok(PendingStep {
            ctx: ctx.clone(),
            step: self.steps.advance(),
            learning_rate,
            loss,
        })
    }

    /// [`GpuTrainer::step`], blocking the current thread (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step_blocking(&mut self) -> Result<StepReport> {
        pollster::block_on(self.step())
    }

    /// Where the run is: steps done and the step it stops at.
    pub fn steps(&self) -> &RunSteps {
        &self.steps
    }

    /// See [`RunSteps::continue_for`].
    pub fn steps_mut(&mut self) -> &mut RunSteps {
        &mut self.steps
    }

    pub fn task(&self) -> Task {
        self.task
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The attention weights the run trains: softmax, or linear attention.
    pub fn kernel(&self) -> KernelName {
        self.config.model.kernel()
    }

    /// What the trained weights run with: the unmodified model, or the linear kernel.
    pub fn variant(&self) -> Variant {
        self.config.model.variant()
    }

    pub fn data(&self) -> &dyn TaskData {
        self.data.as_ref()
    }

    /// The architecture being trained.
    pub fn model_config(&self) -> &ModelConfig {
        &self.template.config
    }

    /// The GPU it trains on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The weights as they are now, read back from the GPU (with the task's tokenizer).
    pub async fn weights(&self) -> Result<Model> {
        self.submit_weights().model().await
    }

    /// [`GpuTrainer::weights`] in two halves, like [`GpuTrainer::submit_step`]: the copy of
    /// the weights as they are after the steps submitted so far, then its read-back.
    pub fn submit_weights(&self) -> PendingWeights {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        let params: Vec<(&Arg, usize)> =
            self.params.iter().zip(self.sizes.iter().copied()).collect();
        let staged = Staged::copy(&self.ctx, &mut encoder, &params);
        self.ctx.queue.submit([encoder.finish()]);
        PendingWeights {
            ctx: self.ctx.clone(),
            template: self.template.clone(),
            staged,
        }
    }
}

/// A submitted [`GpuTrainer`] step whose batch loss is on its way back.
pub struct PendingStep {
    ctx: GpuContext,
    step: usize,
    learning_rate: f64,
    loss: PendingLoss,
}

impl PendingStep {
    /// The step's number (steps done once it has run).
    pub fn step(&self) -> usize {
        self.step
    }

    /// The step's report once the GPU has run it (an error if the device was lost meanwhile).
    pub async fn report(self) -> Result<StepReport> {
        let batch = self.loss.read(&self.ctx).await?;
        self.ctx.check_health()?;
        Ok(StepReport {
            step: self.step,
            learning_rate: self.learning_rate,
            batch,
        })
    }
}

/// A copy of a [`GpuTrainer`]'s weights on its way back.
pub struct PendingWeights {
    ctx: GpuContext,
    template: Model,
    staged: Staged,
}

impl PendingWeights {
    /// The weights as a model (the trainer's config and tokenizer).
    pub async fn model(self) -> Result<Model> {
        let mut model = self.template;
        for (value, read) in parameters_mut(&mut model)
            .into_iter()
            .zip(self.staged.read(&self.ctx).await?)
        {
            *value = read;
        }
        self.ctx.check_health()?;
        Ok(model)
    }
}
