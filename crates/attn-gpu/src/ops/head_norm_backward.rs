//! The head penalty's gradient for the GPU trainer (`head_norm_backward.wgsl`).

use crate::error::Result;
use crate::ops::kernel::{elementwise_groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("head_norm_backward.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    pieces: u32,
    d_head: u32,
    weight: f32,
    _pad: u32,
}

/// The `main` entry point of `head_norm_backward.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "head_norm_backward",
    "head_norm_backward",
    SHADER,
    "main",
    &[Access::Read, Access::ReadWrite],
);

/// Records `dz_h += weight · z_h / sqrt(‖z_h‖² + floor)` over the `pieces` `d_head`-wide pieces
/// of `z` (positions × heads).
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (pieces, d_head, weight): (usize, usize, f32),
    (z, dz): (&Arg, &Arg),
) -> Result<usize> {
    let params = Params {
        pieces: pieces as u32,
        d_head: d_head as u32,
        weight,
        _pad: 0,
    };
    plan.push(kernel, &params, &[z, dz], elementwise_groups(pieces, 64))
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::head_norm_backward;

    #[test]
    fn matches_the_cpu_twin_with_a_silent_head() {
        let ctx = testing::context();
        for (pieces, d_head, seed) in [(1, 1, 1), (12, 8, 2), (130, 16, 3)] {
            let mut rng = Rng::new(seed);
            let mut z = rng.normals(pieces * d_head, 1.0);
            // A head whose output is zero (an ablated one) keeps a finite gradient.
            z[..d_head].fill(0.0);
            let dz0 = rng.normals(pieces * d_head, 1.0);
            let mut want = dz0.clone();
            head_norm_backward(&z, d_head, 0.03, &mut want);
            let (z_b, dz_b) = (testing::upload(&ctx, &z), testing::upload(&ctx, &dz0));
            let got = testing::run(&ctx, &dz_b, |plan| {
                push(plan, &KERNEL, (pieces, d_head, 0.03), (&z_b, &dz_b)).unwrap();
            });
            testing::assert_close(&format!("{pieces} pieces of {d_head}"), &got, &want, 1e-5);
        }
    }
}
