//! LayerNorm over rows (`layer_norm.wgsl`).

use crate::error::Result;
use crate::ops::{Access, Kernel};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("layer_norm.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    d: u32,
    eps: f32,
    _pad: [u32; 2],
}

pub(crate) fn kernel(device: &wgpu::Device, module: &wgpu::ShaderModule) -> Kernel {
    Kernel::new::<Params>(
        device,
        module,
        "layer_norm",
        "main",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    )
}

/// Records `y = LayerNorm(x)` for `rows` rows of width `d`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'k Kernel,
    rows: usize,
    d: usize,
    eps: f32,
    x: &Arg,
    weight: &Arg,
    bias: &Arg,
    y: &Arg,
) -> Result<usize> {
    let params = Params {
        d: d as u32,
        eps,
        _pad: [0; 2],
    };
    plan.push(kernel, &params, &[x, weight, bias, y], [rows as u32, 1, 1])
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::linalg::layer_norm;
    use attn_model::model::LayerNorm;

    #[test]
    fn layer_norm_matches_the_reference() {
        let ctx = testing::context();
        for (rows, d, seed) in [(1, 1, 1), (1, 16, 2), (15, 32, 3), (9, 130, 4), (3, 777, 5)] {
            let mut rng = Rng::new(seed);
            // An offset mean, as in a residual stream.
            let x: Vec<f32> = rng.normals(rows * d, 2.0).iter().map(|v| v + 3.0).collect();
            let norm = LayerNorm {
                weight: rng.normals(d, 0.5).iter().map(|v| v + 1.0).collect(),
                bias: rng.normals(d, 0.5),
            };
            let want = layer_norm(&x, &norm, 1e-5);
            let (xb, wb, bb) = (
                testing::upload(&ctx, &x),
                testing::upload(&ctx, &norm.weight),
                testing::upload(&ctx, &norm.bias),
            );
            let y = testing::upload(&ctx, &vec![f32::NAN; rows * d]);
            let got = testing::run(&ctx, &y, |plan| {
                push(
                    plan,
                    &ctx.kernels.layer_norm,
                    rows,
                    d,
                    1e-5,
                    &xb,
                    &wb,
                    &bb,
                    &y,
                )
                .unwrap();
            });
            testing::assert_close(&format!("layer_norm {rows}x{d}"), &got, &want, 1e-5);
        }
    }
}
