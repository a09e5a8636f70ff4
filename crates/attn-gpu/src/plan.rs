//! Turning a list of kernel launches into something that can be replayed every forward with no
//! allocation: [`PlanBuilder`] collects launches and their parameter blocks, then creates the one
//! uniform buffer that holds every block (at 256-byte aligned dynamic offsets) and one bind group
//! per launch. The resulting [`Program`] only sets pipelines, binds and dispatches.

use std::collections::HashMap;
use std::num::NonZeroU64;

use crate::context::GpuContext;
use crate::error::{GpuError, Result};
use crate::ops::kernel::{Kernel, KernelSpec};

/// A region of a buffer bound to a kernel (`offset` and `size` in bytes).
#[derive(Clone, Debug)]
pub(crate) struct Arg {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

impl Arg {
    /// The first `size` bytes of `buffer`.
    pub(crate) fn new(buffer: &wgpu::Buffer, size: u64) -> Arg {
        Arg {
            buffer: buffer.clone(),
            offset: 0,
            size,
        }
    }

    fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: NonZeroU64::new(self.size),
        })
    }
}

/// One recorded kernel launch.
#[derive(Debug)]
pub(crate) struct Dispatch {
    /// The kernel's name, for profiles.
    pub(crate) name: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    params_offset: u32,
    pub(crate) workgroups: [u32; 3],
}

/// Launches ready to replay, and the uniform buffer their parameters live in.
#[derive(Debug)]
pub(crate) struct Program {
    pub(crate) dispatches: Vec<Dispatch>,
    /// Kept alive here: the bind groups point into it.
    _params: wgpu::Buffer,
}

impl Program {
    /// Records the launches whose index `include` accepts into `pass`; returns how many.
    pub(crate) fn encode(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        include: impl Fn(usize) -> bool,
    ) -> u32 {
        let mut count = 0;
        for (i, d) in self.dispatches.iter().enumerate() {
            if !include(i) {
                continue;
            }
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[d.params_offset]);
            let [x, y, z] = d.workgroups;
            pass.dispatch_workgroups(x, y, z);
            count += 1;
        }
        count
    }

    /// [`Program::encode`] with each launch in a compute pass of its own whose start and end
    /// write GPU timestamps: queries `2i` and `2i + 1` for the `i`-th launch recorded. Returns
    /// the recorded launches' kernel names, in order. (Passes of one launch each are slower
    /// than one pass of all: a profile shows where the time goes, not the forward's time.)
    pub(crate) fn encode_timed(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        queries: &wgpu::QuerySet,
        include: impl Fn(usize) -> bool,
    ) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (i, d) in self.dispatches.iter().enumerate() {
            if !include(i) {
                continue;
            }
            let slot = 2 * names.len() as u32;
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(d.name),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: queries,
                    beginning_of_pass_write_index: Some(slot),
                    end_of_pass_write_index: Some(slot + 1),
                }),
            });
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[d.params_offset]);
            let [x, y, z] = d.workgroups;
            pass.dispatch_workgroups(x, y, z);
            names.push(d.name);
        }
        names
    }
}

struct Pending {
    kernel: Kernel,
    args: Vec<Arg>,
    params_offset: u64,
    workgroups: [u32; 3],
}

/// Collects kernel launches (see the module doc).
pub(crate) struct PlanBuilder<'k> {
    ctx: &'k GpuContext,
    pending: Vec<Pending>,
    params: Vec<u8>,
    alignment: u64,
    max_workgroups: u32,
}

impl<'k> PlanBuilder<'k> {
    pub(crate) fn new(ctx: &'k GpuContext) -> Self {
        let limits = ctx.device.limits();
        PlanBuilder {
            ctx,
            pending: Vec::new(),
            params: Vec::new(),
            alignment: limits.min_uniform_buffer_offset_alignment as u64,
            max_workgroups: limits.max_compute_workgroups_per_dimension,
        }
    }

    /// Adds a launch of `spec` (compiled on the device the first time, `GpuContext::kernel`) with
    /// parameter block `params` over `args` (its storage bindings in order); returns the
    /// launch's index in the program.
    pub(crate) fn push<P: bytemuck::Pod>(
        &mut self,
        spec: &KernelSpec,
        params: &P,
        args: &[&Arg],
        workgroups: [u32; 3],
    ) -> Result<usize> {
        let kernel = self.ctx.kernel(spec);
        assert_eq!(
            args.len(),
            kernel.storage.len(),
            "kernel {} takes {} storage buffers",
            kernel.name,
            kernel.storage.len()
        );
        assert_eq!(std::mem::size_of::<P>() as u64, kernel.params_size);
        if let Some(&count) = workgroups.iter().find(|&&n| n > self.max_workgroups) {
            return Err(GpuError::TooManyWorkgroups {
                what: kernel.name.into(),
                count: count as u64,
                limit: self.max_workgroups,
            });
        }
        let params_offset = self.params.len() as u64;
        self.params.extend_from_slice(bytemuck::bytes_of(params));
        let padded = self.params.len().next_multiple_of(self.alignment as usize);
        self.params.resize(padded, 0);
        self.pending.push(Pending {
            kernel,
            args: args.iter().map(|&a| a.clone()).collect(),
            params_offset,
            workgroups,
        });
        Ok(self.pending.len() - 1)
    }

    /// The parameter blocks recorded so far, as the uniform buffer holds them: what a plan with
    /// the same launches rewrites when only parameters changed.
    pub(crate) fn into_params(self) -> Vec<u8> {
        self.params
    }

    /// Creates the uniform buffer (from `pool`) and the bind groups.
    pub(crate) fn finish(self, pool: &mut BufferPool) -> Result<(Program, wgpu::Buffer)> {
        let device = &self.ctx.device;
        let size = (self.params.len() as u64).max(self.alignment);
        let params = pool.acquire(
            self.ctx,
            "parameters",
            size,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        self.ctx.queue.write_buffer(&params, 0, &self.params);
        let dispatches = self
            .pending
            .into_iter()
            .map(|p| {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &params,
                        offset: 0,
                        size: NonZeroU64::new(p.kernel.params_size),
                    }),
                }];
                for (i, arg) in p.args.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: i as u32 + 1,
                        resource: arg.binding(),
                    });
                }
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(p.kernel.name),
                    layout: &p.kernel.layout,
                    entries: &entries,
                });
                Dispatch {
                    name: p.kernel.name,
                    pipeline: p.kernel.pipeline.clone(),
                    bind_group,
                    params_offset: p.params_offset as u32,
                    workgroups: p.workgroups,
                }
            })
            .collect();
        Ok((
            Program {
                dispatches,
                _params: params.clone(),
            },
            params,
        ))
    }
}

/// Buffers recycled between plans, keyed by (size class, usage). A plan takes what it needs when
/// the sequence length or the variant changes; [`BufferPool::trim`] then drops what it did not
/// take, so the pool never holds more than one plan's worth of spare memory.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<(u64, u32), Vec<wgpu::Buffer>>,
    /// Buffers created over the pool's life (the rest were reused).
    pub(crate) created: u64,
}

impl BufferPool {
    /// Sizes are rounded up to one of 8 steps per power of two (at most 12.5% waste), so nearby
    /// sequence lengths share buffers.
    fn size_class(bytes: u64) -> u64 {
        if bytes <= 256 {
            return 256;
        }
        let step = (bytes.next_power_of_two() / 8).max(256);
        bytes.next_multiple_of(step)
    }

    /// A buffer of at least `bytes` bytes with `usage`. Storage buffers are held to the
    /// storage-binding limit, others (uniform, read-back) to the plain buffer-size limit.
    pub(crate) fn acquire(
        &mut self,
        ctx: &GpuContext,
        what: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        let limit = if usage.contains(wgpu::BufferUsages::STORAGE) {
            ctx.max_buffer_bytes()
        } else {
            ctx.device.limits().max_buffer_size
        };
        if bytes > limit {
            return Err(GpuError::BufferTooLarge {
                what: what.into(),
                bytes,
                limit,
            });
        }
        let class = Self::size_class(bytes).min(limit).max(bytes);
        if let Some(buffer) = self.free.get_mut(&(class, usage.bits())).and_then(Vec::pop) {
            return Ok(buffer);
        }
        self.created += 1;
        Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: class,
            usage,
            mapped_at_creation: false,
        }))
    }

    /// Gives buffers back for the next plan.
    pub(crate) fn release(&mut self, buffers: impl IntoIterator<Item = wgpu::Buffer>) {
        for buffer in buffers {
            self.free
                .entry((buffer.size(), buffer.usage().bits()))
                .or_default()
                .push(buffer);
        }
    }

    /// Drops every spare buffer.
    pub(crate) fn trim(&mut self) {
        self.free.clear();
    }
}
