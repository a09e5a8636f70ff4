//! Helpers for the kernels' parity tests: one shared device, uploads, a single-launch runner,
//! seeded random data and a relative-tolerance comparison.

use std::sync::OnceLock;
use std::time::Duration;

use wgpu::util::DeviceExt;

use crate::context::GpuContext;
use crate::plan::{Arg, BufferPool, PlanBuilder};

/// The device every unit test shares. Panics — loudly, never skipping — when there is none.
pub(crate) fn context() -> GpuContext {
    static CONTEXT: OnceLock<GpuContext> = OnceLock::new();
    CONTEXT
        .get_or_init(|| {
            GpuContext::new_blocking().unwrap_or_else(|e| {
                panic!(
                    "\n\n*** attn-gpu tests need a GPU adapter and found none: {e}\n\
                     *** On Debian install `mesa-vulkan-drivers` (lavapipe, a Vulkan CPU driver).\n\n"
                )
            })
        })
        .clone()
}

/// A storage buffer holding `data`.
pub(crate) fn upload(ctx: &GpuContext, data: &[f32]) -> Arg {
    upload_bytes(ctx, bytemuck::cast_slice(data))
}

/// A storage buffer holding `data`.
pub(crate) fn upload_u32(ctx: &GpuContext, data: &[u32]) -> Arg {
    upload_bytes(ctx, bytemuck::cast_slice(data))
}

fn upload_bytes(ctx: &GpuContext, bytes: &[u8]) -> Arg {
    let mut padded = bytes.to_vec();
    padded.resize(bytes.len().max(4), 0);
    let buffer = ctx
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("test data"),
            contents: &padded,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        });
    Arg::new(&buffer, padded.len() as u64)
}

/// Records the launches `record` adds, runs them in one submit, and returns `out`'s contents.
pub(crate) fn run<'k>(
    ctx: &'k GpuContext,
    out: &Arg,
    record: impl FnOnce(&mut PlanBuilder<'k>),
) -> Vec<f32> {
    let mut pool = BufferPool::default();
    let mut plan = PlanBuilder::new(ctx);
    record(&mut plan);
    let (program, _params) = plan.finish(&mut pool).expect("plan");
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        program.encode(&mut pass, |_| true);
    }
    ctx.queue.submit([encoder.finish()]);
    read(ctx, out)
}

/// The contents of `arg`.
pub(crate) fn read(ctx: &GpuContext, arg: &Arg) -> Vec<f32> {
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test staging"),
        size: arg.size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&arg.buffer, arg.offset, &staging, 0, arg.size);
    ctx.queue.submit([encoder.finish()]);
    let values = pollster::block_on(crate::readback::read_f32(
        ctx,
        &staging,
        arg.size,
        Duration::from_secs(120),
    ))
    .expect("readback");
    ctx.check_health().expect("no GPU errors");
    values
}

/// A small seeded generator (xorshift64*), so the tests need no extra dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        bits as f32 / (1u64 << 24) as f32
    }

    /// `n` Gaussian values with standard deviation `std` (Box–Muller).
    pub(crate) fn normals(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1 = self.uniform().max(1e-7);
                let u2 = self.uniform();
                std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect()
    }
}

/// Fails unless `|got − want| ≤ rel · max(1, |want|)` everywhere (NaN never passes): the
/// workspace's shared check (attn-test-support) with this crate's argument order.
pub(crate) fn assert_close(name: &str, got: &[f32], want: &[f32], rel: f32) {
    attn_test_support::assert_close_within(name, got, want, f64::from(rel));
}
