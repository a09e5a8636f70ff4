//! The tanh GELU's backward for the GPU trainer (`gelu_backward.wgsl`).

use crate::error::Result;
use crate::ops::kernel::{elementwise_groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("gelu_backward.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

/// The `main` entry point of `gelu_backward.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "gelu_backward",
    "gelu_backward",
    SHADER,
    "main",
    &[Access::Read, Access::Read, Access::ReadWrite],
);

/// Records `dpre = dact · gelu'(pre)` over `n` elements.
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    n: usize,
    (pre, dact, dpre): (&Arg, &Arg, &Arg),
) -> Result<usize> {
    let params = Params { n: n as u32 };
    plan.push(
        kernel,
        &params,
        &[pre, dact, dpre],
        elementwise_groups(n, 64),
    )
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::gelu_tanh_grad;

    #[test]
    fn matches_the_cpu_twin_over_the_activation_range() {
        let ctx = testing::context();
        let mut rng = Rng::new(9);
        // Wide pre-activations, the tails included, and an awkward length.
        let pre: Vec<f32> = rng.normals(1000, 4.0);
        let dact = rng.normals(1000, 1.0);
        let want: Vec<f32> = pre
            .iter()
            .zip(&dact)
            .map(|(&x, g)| g * gelu_tanh_grad(x))
            .collect();
        let (pre_b, dact_b) = (testing::upload(&ctx, &pre), testing::upload(&ctx, &dact));
        let out = testing::upload(&ctx, &vec![f32::NAN; 1000]);
        let got = testing::run(&ctx, &out, |plan| {
            push(plan, &KERNEL, 1000, (&pre_b, &dact_b, &out)).unwrap();
        });
        testing::assert_close("dpre", &got, &want, 2e-5);
    }
}
