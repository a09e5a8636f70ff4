//! The backward of linear attention's feature map for the GPU trainer (`elu_backward.wgsl`).

use crate::error::Result;
use crate::ops::kernel::{elementwise_groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("elu_backward.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    scale: f32,
}

/// The `main` entry point of `elu_backward.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "elu_backward",
    "elu_backward",
    SHADER,
    "main",
    &[Access::Read, Access::Read, Access::ReadWrite],
);

/// Records `dx = dφ · φ'(scale · x) · scale` over `n` elements (`φ = elu + 1`).
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (n, scale): (usize, f32),
    (x, dphi, dx): (&Arg, &Arg, &Arg),
) -> Result<usize> {
    let params = Params { n: n as u32, scale };
    plan.push(kernel, &params, &[x, dphi, dx], elementwise_groups(n, 64))
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::elu_feature_backward;

    #[test]
    fn matches_the_cpu_twin_on_both_sides_of_zero() {
        let ctx = testing::context();
        let mut rng = Rng::new(12);
        for (n, scale) in [(1, 1.0), (1000, 0.35), (64 * 3 + 5, 1.0)] {
            let x = rng.normals(n, 3.0);
            let dphi = rng.normals(n, 1.0);
            let mut want = dphi.clone();
            elu_feature_backward(&x, scale, &mut want);
            let (x_b, dphi_b) = (testing::upload(&ctx, &x), testing::upload(&ctx, &dphi));
            let dx_b = testing::upload(&ctx, &vec![f32::NAN; n]);
            let got = testing::run(&ctx, &dx_b, |plan| {
                push(plan, &KERNEL, (n, scale), (&x_b, &dphi_b, &dx_b)).unwrap();
            });
            testing::assert_close(&format!("dx n={n} scale={scale}"), &got, &want, 1e-5);
        }
    }
}
