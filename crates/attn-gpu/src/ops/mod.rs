//! The WGSL kernels, one module per op family, each an `.rs` + `.wgsl` pair: the Rust side holds
//! the kernel's parameter block (a `#[repr(C)]` twin of the WGSL `Params` struct), the workgroup
//! arithmetic, and the parity test against its CPU twin.
//!
//! Every kernel has the same binding shape: binding 0 is its parameter block, read from the
//! engine's one uniform buffer at a dynamic offset; bindings 1.. are storage buffers.

use std::num::NonZeroU64;

pub(crate) mod attention;
pub(crate) mod copy;
pub(crate) mod embed;
pub(crate) mod features;
pub(crate) mod head_output;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod rope;

// The GPU trainer's kernels (see [`TrainKernels`]).
pub(crate) mod adamw;
pub(crate) mod column_sums;
pub(crate) mod cross_entropy;
pub(crate) mod elu_backward;
pub(crate) mod embedding_backward;
pub(crate) mod gelu_backward;
pub(crate) mod head_norm_backward;
pub(crate) mod heads;
pub(crate) mod linear_backward;
pub(crate) mod norm_backward;
pub(crate) mod norm_keep;
pub(crate) mod softmax_backward;

/// How a kernel uses one of its storage bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

/// One compiled entry point with its bind-group layout.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub(crate) name: &'static str,
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    /// Size of the parameter block in bytes.
    pub(crate) params_size: u64,
    /// The storage bindings 1.. in order.
    pub(crate) storage: &'static [Access],
}

impl Kernel {
    /// Compiles `entry` of `module`; `P` is the parameter block.
    pub(crate) fn new<P: bytemuck::Pod>(
        device: &wgpu::Device,
        module: &wgpu::ShaderModule,
        name: &'static str,
        entry: &str,
        storage: &'static [Access],
    ) -> Kernel {
        let params_size = std::mem::size_of::<P>() as u64;
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: NonZeroU64::new(params_size),
            },
            count: None,
        }];
        for (i, access) in storage.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        Kernel {
            name,
            pipeline,
            layout,
            params_size,
            storage,
        }
    }
}

/// Every pipeline the engine uses, compiled once per device.
#[derive(Debug)]
pub(crate) struct Kernels {
    pub(crate) embed: Kernel,
    pub(crate) norm: Kernel,
    pub(crate) rope: Kernel,
    pub(crate) matmul: Kernel,
    pub(crate) attention_probs: Kernel,
    pub(crate) elu_feature: Kernel,
    pub(crate) random_feature_query: Kernel,
    pub(crate) random_feature_key: Kernel,
    pub(crate) head_output: Kernel,
    pub(crate) head_means: Kernel,
    pub(crate) head_route: Kernel,
    pub(crate) copy: Kernel,
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Kernels {
        let module = |label: &str, source: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        };
        let features = module("features", features::SHADER);
        let head_module = module("head_output", head_output::SHADER);
        Kernels {
            embed: embed::kernel(device, &module("embed", embed::SHADER)),
            norm: norm::kernel(device, &module("norm", norm::SHADER)),
            rope: rope::kernel(device, &module("rope", rope::SHADER)),
            matmul: matmul::kernel(device, &module("matmul", matmul::SHADER)),
            attention_probs: attention::kernel(
                device,
                &module("attention_probs", attention::SHADER),
            ),
            elu_feature: features::elu_kernel(device, &features),
            random_feature_query: features::random_query_kernel(device, &features),
            random_feature_key: features::random_key_kernel(device, &features),
            head_output: head_output::kernel(device, &head_module),
            head_means: head_output::means_kernel(device, &head_module),
            head_route: head_output::route_kernel(device, &head_module),
            copy: copy::kernel(device, &module("copy", copy::SHADER)),
        }
    }
}

/// The GPU trainer's own kernels: LayerNorm's forward keeping its statistics, the steps of the
/// backward pass that are not matrix products (those reuse [`Kernels::matmul`], whose strides
/// give the transposes and whose accumulate flag sums the gradients) and AdamW. Compiled apart
/// from [`Kernels`], when training on the GPU starts, so that opening a model never waits for
/// them. Each matches its CPU twin in attn-model's trainer (`layer_norm_keep`,
/// `layer_norm_backward`, `softmax_backward`, `linear_weights_backward`, `elu_feature_backward`,
/// `gelu_tanh_grad`, `cross_entropy_backward`, `embedding_backward`, `column_sums_add`,
/// `head_norm_backward`, `clip_coefficient` + `adamw_update`) on random shapes.
/// [`crate::training`] runs them as a batch's forward and backward and AdamW's update.
#[derive(Debug)]
pub(crate) struct TrainKernels {
    pub(crate) norm_backward_rows: Kernel,
    pub(crate) norm_backward_params: Kernel,
    pub(crate) softmax_backward: Kernel,
    pub(crate) gelu_backward: Kernel,
    pub(crate) adamw_clip: Kernel,
    pub(crate) adamw_update: Kernel,
    pub(crate) cross_entropy: Kernel,
    pub(crate) embedding_backward: Kernel,
    pub(crate) column_sums: Kernel,
    pub(crate) norm_keep: Kernel,
    pub(crate) head_norm_backward: Kernel,
    pub(crate) to_heads: Kernel,
    pub(crate) from_heads: Kernel,
    pub(crate) linear_backward: Kernel,
    pub(crate) elu_backward: Kernel,
}

impl TrainKernels {
    pub(crate) fn new(device: &wgpu::Device) -> TrainKernels {
        let module = |label: &str, source: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        };
        let (norm_backward_rows, norm_backward_params) =
            norm_backward::kernels(device, &module("norm_backward", norm_backward::SHADER));
        let (adamw_clip, adamw_update) = adamw::kernels(device, &module("adamw", adamw::SHADER));
        let (to_heads, from_heads) = heads::kernels(device, &module("heads", heads::SHADER));
        TrainKernels {
            norm_backward_rows,
            norm_backward_params,
            softmax_backward: softmax_backward::kernel(
                device,
                &module("softmax_backward", softmax_backward::SHADER),
            ),
            gelu_backward: gelu_backward::kernel(
                device,
                &module("gelu_backward", gelu_backward::SHADER),
            ),
            adamw_clip,
            adamw_update,
            cross_entropy: cross_entropy::kernel(
                device,
                &module("cross_entropy", cross_entropy::SHADER),
            ),
            embedding_backward: embedding_backward::kernel(
                device,
                &module("embedding_backward", embedding_backward::SHADER),
            ),
            column_sums: column_sums::kernel(device, &module("column_sums", column_sums::SHADER)),
            norm_keep: norm_keep::kernel(device, &module("norm_keep", norm_keep::SHADER)),
            head_norm_backward: head_norm_backward::kernel(
                device,
                &module("head_norm_backward", head_norm_backward::SHADER),
            ),
            to_heads,
            from_heads,
            linear_backward: linear_backward::kernel(
                device,
                &module("linear_backward", linear_backward::SHADER),
            ),
            elu_backward: elu_backward::kernel(
                device,
                &module("elu_backward", elu_backward::SHADER),
            ),
        }
    }
}

/// Number of workgroups of `size` needed to cover `n` items.
pub(crate) fn groups(n: u32, size: u32) -> u32 {
    n.div_ceil(size)
}

/// Workgroups covering `n` elements, `per_group` each: along x up to 65 535, then along y (the
/// trainer's elementwise kernels read their index as `x + y · 65 535 · per_group`).
pub(crate) fn elementwise_groups(n: usize, per_group: usize) -> [u32; 3] {
    let groups = n.div_ceil(per_group) as u32;
    [groups.min(65_535), groups.div_ceil(65_535), 1]
}

/// One workgroup per row of `rows`: along x up to 65 535, then along y (the row kernels read
/// their row as `x + y · 65 535`, so rows past 65 535 must fill whole columns).
pub(crate) fn row_groups(rows: usize) -> [u32; 3] {
    let rows = rows as u32;
    assert!(
        rows <= 65_535 || rows % 65_535 == 0,
        "rows past 65 535 must fill whole columns of workgroups"
    );
    [rows.min(65_535), rows.div_ceil(65_535), 1]
}
