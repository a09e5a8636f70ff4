//! What a kernel is to the engine: its description ([`KernelSpec`]: a `const` in the op's own
//! file — name, WGSL source, entry point, storage bindings, parameter block size), the compiled
//! pipeline ([`Kernel`]), and the per-device cache that compiles each kernel the first time a
//! plan launches it ([`KernelCache`], held by the `GpuContext`). Adding a kernel touches its own
//! `.rs` + `.wgsl` pair and nothing else. Also the workgroup arithmetic every op shares.
//!
//! Every kernel has the same binding shape: binding 0 is its parameter block, read from the
//! engine's one uniform buffer at a dynamic offset; bindings 1.. are storage buffers.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;

/// How a kernel uses one of its storage bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

/// A kernel as its op declares it; compiled per device by [`KernelCache::get`].
#[derive(Debug)]
pub(crate) struct KernelSpec {
    /// The kernel's name: its label in profiles and errors, and its key in the cache.
    pub(crate) name: &'static str,
    /// The WGSL module (with any shared snippets appended) and the module's name, under which
    /// the cache compiles it once for all its entry points.
    pub(crate) module: &'static str,
    pub(crate) source: &'static str,
    pub(crate) entry: &'static str,
    /// The storage bindings 1.. in order.
    pub(crate) storage: &'static [Access],
    /// Size of the parameter block `P` in bytes.
    pub(crate) params_size: u64,
}

impl KernelSpec {
    /// Entry point `entry` of module `module` (`source`), with parameter block `P`.
    pub(crate) const fn new<P>(
        name: &'static str,
        module: &'static str,
        source: &'static str,
        entry: &'static str,
        storage: &'static [Access],
    ) -> KernelSpec {
        KernelSpec {
            name,
            module,
            source,
            entry,
            storage,
            params_size: std::mem::size_of::<P>() as u64,
        }
    }
}

/// One compiled entry point with its bind-group layout. Cheap to clone (wgpu handles).
#[derive(Clone, Debug)]
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
    /// Compiles `spec`'s entry point of `module`.
    fn compile(device: &wgpu::Device, module: &wgpu::ShaderModule, spec: &KernelSpec) -> Kernel {
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: NonZeroU64::new(spec.params_size),
            },
            count: None,
        }];
        for (i, access) in spec.storage.iter().enumerate() {
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
            label: Some(spec.name),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(spec.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.name),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(spec.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        Kernel {
            name: spec.name,
            pipeline,
            layout,
            params_size: spec.params_size,
            storage: spec.storage,
        }
    }
}

/// The kernels compiled on one device, by name, and their shader modules: a kernel is compiled
/// the first time a plan launches it, so opening a device compiles nothing and the trainer's
/// kernels are compiled only when a run trains on the GPU. A WGSL error is a bug; wgpu reports
/// it through the device's error callback (`GpuContext::check_health`).
#[derive(Default)]
pub(crate) struct KernelCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    kernels: Mutex<HashMap<&'static str, Kernel>>,
}

impl KernelCache {
    /// `spec` compiled on `device` (from the cache after the first time).
    pub(crate) fn get(&self, device: &wgpu::Device, spec: &KernelSpec) -> Kernel {
        let mut kernels = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kernel) = kernels.get(spec.name) {
            return kernel.clone();
        }
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        let module = modules.entry(spec.module).or_insert_with(|| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(spec.module),
                source: wgpu::ShaderSource::Wgsl(spec.source.into()),
            })
        });
        let kernel = Kernel::compile(device, module, spec);
        kernels.insert(spec.name, kernel.clone());
        kernel
    }

    /// How many kernels are compiled (for the tests).
    pub(crate) fn len(&self) -> usize {
        self.kernels.lock().map_or(0, |k| k.len())
    }
}

impl std::fmt::Debug for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KernelCache({} kernels)", self.len())
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
