//! The model's weights on the GPU. The unmodified weights are uploaded once per model and shared
//! (an engine for the baseline and one for a variant can use the same copy); a variant adds only
//! what it changes: pooled or low-rank key/value projections, random features, the ablation table.

use wgpu::util::DeviceExt;

use attn_model::model::{Linear, NormWeights};
use attn_model::rope::RotaryTable;
use attn_model::{Model, Precision, PreparedModel, Weights};

use crate::context::GpuContext;
use crate::error::{GpuError, Result};
use crate::ops::attention::MAX_SEQ_LEN;
use crate::ops::{head_output, rope};
use crate::plan::Arg;

/// A weight matrix on the GPU in its stored precision: `f32`, or 16-bit values packed two to a
/// `u32` (`Weights::packed_u32`) that the kernels reading weights (matmul, embed) widen as they
/// load them. 16-bit checkpoints therefore take half the GPU memory on every adapter; unpacking
/// needs only core WGSL (`unpack2x16float`, a shift for bf16), not the `shader-f16` feature.
pub(crate) struct WeightArg {
    pub(crate) arg: Arg,
    pub(crate) precision: Precision,
}

/// A dense layer's weight `[d_in, d_out]` and bias `[d_out]` (if it has one).
pub(crate) struct LinearBuffers {
    pub(crate) weight: WeightArg,
    pub(crate) bias: Option<Arg>,
}

/// A norm's scale and (LayerNorm's) shift.
pub(crate) struct NormBuffers {
    pub(crate) weight: Arg,
    pub(crate) bias: Option<Arg>,
}

pub(crate) struct MlpBuffers {
    pub(crate) norm: NormBuffers,
    pub(crate) fc: LinearBuffers,
    /// The gate of a gated (SwiGLU) MLP.
    pub(crate) gate: Option<LinearBuffers>,
    pub(crate) proj: LinearBuffers,
}

pub(crate) struct BlockBuffers {
    pub(crate) attn_norm: NormBuffers,
    pub(crate) q: LinearBuffers,
    pub(crate) k: LinearBuffers,
    pub(crate) v: LinearBuffers,
    pub(crate) o: LinearBuffers,
    pub(crate) mlp: Option<MlpBuffers>,
}

/// The cosines and sines of every (position, frequency) a forward can need (see `ops::rope`).
pub(crate) struct RotaryBuffers {
    pub(crate) table: Arg,
    /// Frequencies (`rotary_dim / 2`).
    pub(crate) half: usize,
    /// Positions covered: the model's context, at most [`MAX_SEQ_LEN`].
    pub(crate) positions: usize,
}

/// The output head.
pub(crate) enum OutputHead {
    /// Logits are `x · Eᵀ` with the token embedding.
    Tied,
    /// An untied LM head `[vocab, d_model]`.
    Untied(WeightArg),
    /// A classifier `[d_model, n_classes]` with bias.
    Classifier(LinearBuffers),
}

/// Every weight of the unmodified model.
pub(crate) struct ModelBuffers {
    pub(crate) token_embedding: WeightArg,
    /// Learned positions; `None` for rotary models.
    pub(crate) position_embedding: Option<Arg>,
    /// Rotary models: the angles' table.
    pub(crate) rotary: Option<RotaryBuffers>,
    pub(crate) blocks: Vec<BlockBuffers>,
    pub(crate) final_norm: NormBuffers,
    pub(crate) head: OutputHead,
    /// Bytes uploaded.
    pub(crate) bytes: u64,
}

/// Uploads `data` as a read-only storage buffer named `what`.
pub(crate) fn upload<T: bytemuck::Pod>(ctx: &GpuContext, what: &str, data: &[T]) -> Result<Arg> {
    upload_with(ctx, what, data, wgpu::BufferUsages::STORAGE)
}

/// [`upload`] with explicit usages (`COPY_DST` for a table that is rewritten in place).
fn upload_with<T: bytemuck::Pod>(
    ctx: &GpuContext,
    what: &str,
    data: &[T],
    usage: wgpu::BufferUsages,
) -> Result<Arg> {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    let limit = ctx.max_buffer_bytes();
    if bytes.len() as u64 > limit {
        return Err(GpuError::BufferTooLarge {
            what: what.into(),
            bytes: bytes.len() as u64,
            limit,
        });
    }
    // wgpu rejects empty buffers; nothing binds an empty tensor, but keep the upload total.
    let contents = if bytes.is_empty() {
        &[0u8; 4][..]
    } else {
        bytes
    };
    let buffer = ctx
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(what),
            contents,
            usage,
        });
    Ok(Arg::new(&buffer, contents.len() as u64))
}

struct Uploader<'a> {
    ctx: &'a GpuContext,
    bytes: u64,
}

impl Uploader<'_> {
    fn tensor(&mut self, what: &str, data: &[f32]) -> Result<Arg> {
        self.bytes += 4 * data.len() as u64;
        upload(self.ctx, what, data)
    }

    fn optional(&mut self, what: &str, data: &Option<Vec<f32>>) -> Result<Option<Arg>> {
        data.as_ref().map(|d| self.tensor(what, d)).transpose()
    }

    /// A weight matrix in its stored precision (see [`WeightArg`]).
    fn weights(&mut self, what: &str, weights: &Weights) -> Result<WeightArg> {
        let arg = match weights.packed_u32() {
            Some(words) => {
                self.bytes += 4 * words.len() as u64;
                upload(self.ctx, what, &words)?
            }
            None => self.tensor(what, &weights.f32())?,
        };
        Ok(WeightArg {
            arg,
            precision: weights.precision(),
        })
    }

    fn linear(&mut self, what: &str, l: &Linear) -> Result<LinearBuffers> {
        Ok(LinearBuffers {
            weight: self.weights(&format!("{what}.weight"), &l.weight)?,
            bias: self.optional(&format!("{what}.bias"), &l.bias)?,
        })
    }

    fn norm(&mut self, what: &str, n: &NormWeights) -> Result<NormBuffers> {
        Ok(NormBuffers {
            weight: self.tensor(&format!("{what}.weight"), &n.weight)?,
            bias: self.optional(&format!("{what}.bias"), &n.bias)?,
        })
    }
}

impl ModelBuffers {
    pub(crate) fn upload(ctx: &GpuContext, model: &Model) -> Result<Self> {
        // Say before uploading anything when a tensor cannot fit one buffer of this adapter.
        let limit = ctx.max_buffer_bytes();
        if let Some((name, _, data)) = model
            .named_tensors()
            .into_iter()
            .find(|(_, _, data)| data.byte_len() as u64 > limit)
        {
            return Err(GpuError::BufferTooLarge {
                what: name,
                bytes: data.byte_len() as u64,
                limit,
            });
        }
        let mut up = Uploader { ctx, bytes: 0 };
        let mut blocks = Vec::with_capacity(model.blocks.len());
        for (i, b) in model.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            blocks.push(BlockBuffers {
                attn_norm: up.norm(&format!("{p}.attn_norm"), &b.attn_norm)?,
                q: up.linear(&format!("{p}.attn.q"), &b.attn.q)?,
                k: up.linear(&format!("{p}.attn.k"), &b.attn.k)?,
                v: up.linear(&format!("{p}.attn.v"), &b.attn.v)?,
                o: up.linear(&format!("{p}.attn.o"), &b.attn.o)?,
                mlp: match &b.mlp {
                    Some(m) => Some(MlpBuffers {
                        norm: up.norm(&format!("{p}.mlp_norm"), &m.norm)?,
                        gate: match &m.gate {
                            Some(gate) => Some(up.linear(&format!("{p}.mlp.gate"), gate)?),
                            None => None,
                        },
                        fc: up.linear(&format!("{p}.mlp.fc"), &m.fc)?,
                        proj: up.linear(&format!("{p}.mlp.proj"), &m.proj)?,
                    }),
                    None => None,
                },
            });
        }
        let head = match (&model.classifier, &model.lm_head) {
            (Some(c), _) => OutputHead::Classifier(up.linear("classifier", c)?),
            (None, Some(h)) => OutputHead::Untied(up.weights("lm_head", h)?),
            (None, None) => OutputHead::Tied,
        };
        Ok(ModelBuffers {
            token_embedding: up.weights("wte", &model.token_embedding)?,
            position_embedding: up.optional("wpe", &model.position_embedding)?,
            rotary: match model.config.rope() {
                Some(rope) => {
                    let positions = model.config.n_ctx.min(MAX_SEQ_LEN);
                    let table = RotaryTable::new(rope, positions);
                    Some(RotaryBuffers {
                        table: up.tensor("rotary table", &rope::table_values(&table))?,
                        half: table.half,
                        positions,
                    })
                }
                None => None,
            },
            blocks,
            final_norm: up.norm("ln_f", &model.final_norm)?,
            head,
            bytes: up.bytes,
        })
    }
}

/// What a variant changes in the weights.
pub(crate) struct VariantBuffers {
    /// Per layer, the key and value projections after `kv_groups` pooling, `kv_rank` or `kv_pca`
    /// truncation; `None` when the variant keeps the model's own.
    pub(crate) kv: Option<Vec<(LinearBuffers, LinearBuffers)>>,
    /// The random features `ω`, `[layer][head][feature][d_head]`.
    pub(crate) omega: Option<Arg>,
    /// `[layer][head]` codes for the head-output kernel.
    pub(crate) ablation: Arg,
    pub(crate) bytes: u64,
}

impl VariantBuffers {
    pub(crate) fn upload(ctx: &GpuContext, prepared: &PreparedModel) -> Result<Self> {
        let mut up = Uploader { ctx, bytes: 0 };
        let kv = if prepared.weight_settings().changes_kv() {
            let mut layers = Vec::with_capacity(prepared.config.n_layer);
            for i in 0..prepared.config.n_layer {
                layers.push((
                    up.linear(&format!("blocks.{i}.attn.k (variant)"), prepared.key(i))?,
                    up.linear(&format!("blocks.{i}.attn.v (variant)"), prepared.value(i))?,
                ));
            }
            Some(layers)
        } else {
            None
        };
        let omega = match &prepared.random_features {
            Some(omega) => Some(up.tensor("random features", omega)?),
            None => None,
        };
        let codes = ablation_codes(prepared);
        up.bytes += 4 * codes.len() as u64;
        let ablation = upload_with(
            ctx,
            "ablation table",
            &codes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(VariantBuffers {
            kv,
            omega,
            ablation,
            bytes: up.bytes,
        })
    }
}

impl VariantBuffers {
    /// Rewrites the ablation table in place for `prepared` (a runtime-only variant change).
    pub(crate) fn write_ablation(&self, ctx: &GpuContext, prepared: &PreparedModel) {
        let codes = ablation_codes(prepared);
        ctx.queue.write_buffer(
            &self.ablation.buffer,
            self.ablation.offset,
            bytemuck::cast_slice(&codes),
        );
    }
}

/// `[layer][head]` codes of the head-output kernel: keep, zero or mean.
fn ablation_codes(prepared: &PreparedModel) -> Vec<u32> {
    let mode = match prepared.variant.heads.as_ref().map(|h| h.mode) {
        Some(attn_model::AblationMode::Mean) => head_output::MEAN,
        _ => head_output::ZERO,
    };
    prepared
        .ablated
        .iter()
        .map(|&a| if a { mode } else { head_output::KEEP })
        .collect()
}
