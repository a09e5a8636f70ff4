//! LayerNorm or RMSNorm over rows (`norm.wgsl`).

use attn_model::Norm;

use crate::error::Result;
use crate::ops::kernel::{Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = concat!(include_str!("norm.wgsl"), include_str!("reduce.wgsl"));

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    d: u32,
    eps: f32,
    rms: u32,
    has_bias: u32,
}

/// The `main` entry point of `norm.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "norm",
    "norm",
    SHADER,
    "main",
    &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
);

/// One norm's launch settings: `rows` rows of width `d`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormLaunch {
    pub(crate) rows: usize,
    pub(crate) d: usize,
    pub(crate) kind: Norm,
    pub(crate) eps: f32,
}

/// Records `y = norm(x) · weight (+ bias)`. Without a bias, `dummy` is bound in its place.
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    launch: NormLaunch,
    (x, weight, bias): (&Arg, &Arg, Option<&Arg>),
    dummy: &Arg,
    y: &Arg,
) -> Result<usize> {
    let params = Params {
        d: launch.d as u32,
        eps: launch.eps,
        rms: (launch.kind == Norm::RmsNorm) as u32,
        has_bias: bias.is_some() as u32,
    };
    let bias = bias.unwrap_or(dummy);
    plan.push(
        kernel,
        &params,
        &[x, weight, bias, y],
        [launch.rows as u32, 1, 1],
    )
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::linalg::norm;
    use attn_model::model::NormWeights;

    #[test]
    fn both_norms_match_the_reference() {
        let ctx = testing::context();
        let cases = [(1, 1, 1), (1, 16, 2), (15, 32, 3), (9, 130, 4), (3, 777, 5)];
        for ((rows, d, seed), kind) in cases
            .into_iter()
            .flat_map(|c| [(c, Norm::LayerNorm), (c, Norm::RmsNorm)])
        {
            let mut rng = Rng::new(seed);
            // An offset mean, as in a residual stream.
            let x: Vec<f32> = rng.normals(rows * d, 2.0).iter().map(|v| v + 3.0).collect();
            let weights = NormWeights {
                weight: rng.normals(d, 0.5).iter().map(|v| v + 1.0).collect(),
                bias: (kind == Norm::LayerNorm).then(|| rng.normals(d, 0.5)),
            };
            let want = norm(&x, &weights, kind, 1e-5);
            let (xb, wb) = (
                testing::upload(&ctx, &x),
                testing::upload(&ctx, &weights.weight),
            );
            let bb = weights.bias.as_ref().map(|b| testing::upload(&ctx, b));
            // A NaN dummy: an RMSNorm that read it would show.
            let dummy = testing::upload(&ctx, &vec![f32::NAN; d]);
            let y = testing::upload(&ctx, &vec![f32::NAN; rows * d]);
            let launch = NormLaunch {
                rows,
                d,
                kind,
                eps: 1e-5,
            };
            let got = testing::run(&ctx, &y, |plan| {
                let inputs = (&xb, &wb, bb.as_ref());
                push(plan, &KERNEL, launch, inputs, &dummy, &y).unwrap();
            });
            testing::assert_close(&format!("{kind:?} {rows}x{d}"), &got, &want, 1e-5);
        }
    }
}
