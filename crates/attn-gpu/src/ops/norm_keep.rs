//! LayerNorm's forward for the GPU trainer, keeping its statistics (`norm_keep.wgsl`).

use crate::error::Result;
use crate::ops::kernel::{Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str =
    concat!(include_str!("norm_keep.wgsl"), include_str!("reduce.wgsl"));

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    d: u32,
    eps: f32,
    has_bias: u32,
    _pad: u32,
}

/// The `main` entry point of `norm_keep.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "norm_keep",
    "norm_keep",
    SHADER,
    "main",
    &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
);

/// Records `y = LayerNorm(x)` over `rows` rows of width `d`, keeping `normalised` and
/// `inv_std`. Without a shift, `gamma` is bound in its place (unread).
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (rows, d, eps): (usize, usize, f32),
    (x, gamma, beta): (&Arg, &Arg, Option<&Arg>),
    (y, normalised, inv_std): (&Arg, &Arg, &Arg),
) -> Result<usize> {
    let params = Params {
        d: d as u32,
        eps,
        has_bias: beta.is_some() as u32,
        _pad: 0,
    };
    plan.push(
        kernel,
        &params,
        &[x, gamma, beta.unwrap_or(gamma), y, normalised, inv_std],
        [rows as u32, 1, 1],
    )
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::layer_norm_keep;

    #[test]
    fn matches_the_cpu_twin_on_random_shapes() {
        let ctx = testing::context();
        for (rows, d, with_bias, seed) in [(1, 1, true, 1), (9, 32, true, 2), (4, 130, false, 3)] {
            let mut rng = Rng::new(seed);
            // An offset mean, as in a residual stream.
            let x: Vec<f32> = rng.normals(rows * d, 2.0).iter().map(|v| v + 3.0).collect();
            let gamma = rng.normals(d, 1.0);
            let beta = rng.normals(d, 1.0);
            let eps = 1e-5;
            let (mut y, mut n, mut inv) =
                (vec![0.0; rows * d], vec![0.0; rows * d], vec![0.0; rows]);
            layer_norm_keep(
                &x,
                &gamma,
                with_bias.then_some(beta.as_slice()),
                eps,
                &mut y,
                &mut n,
                &mut inv,
            );
            let up = |v: &[f32]| testing::upload(&ctx, v);
            let (x_b, gamma_b, beta_b) = (up(&x), up(&gamma), up(&beta));
            let (y_b, n_b, inv_b) = (
                up(&vec![f32::NAN; rows * d]),
                up(&vec![f32::NAN; rows * d]),
                up(&vec![f32::NAN; rows]),
            );
            let got = testing::run(&ctx, &y_b, |plan| {
                push(
                    plan,
                    &KERNEL,
                    (rows, d, eps),
                    (&x_b, &gamma_b, with_bias.then_some(&beta_b)),
                    (&y_b, &n_b, &inv_b),
                )
                .unwrap();
            });
            let what = format!("{rows}×{d}");
            testing::assert_close(&format!("y {what}"), &got, &y, 1e-5);
            testing::assert_close(&format!("x̂ {what}"), &testing::read(&ctx, &n_b), &n, 1e-5);
            testing::assert_close(
                &format!("1/σ {what}"),
                &testing::read(&ctx, &inv_b),
                &inv,
                1e-5,
            );
        }
    }
}
