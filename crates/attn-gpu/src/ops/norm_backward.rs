//! LayerNorm's backward for the GPU trainer (`norm_backward.wgsl`): the input's gradient row by
//! row, and the scale's and shift's summed over the rows.

use crate::error::Result;
use crate::ops::kernel::{groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = concat!(
    include_str!("norm_backward.wgsl"),
    include_str!("reduce.wgsl")
);

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    d: u32,
    has_bias: u32,
    _pad: u32,
}

const ACCESS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];

/// The `rows` entry point of `norm_backward.wgsl`.
pub(crate) const ROWS: KernelSpec = KernelSpec::new::<Params>(
    "norm_backward_rows",
    "norm_backward",
    SHADER,
    "rows",
    ACCESS,
);

/// The `params` entry point of `norm_backward.wgsl`.
pub(crate) const PARAMS: KernelSpec = KernelSpec::new::<Params>(
    "norm_backward_params",
    "norm_backward",
    SHADER,
    "params",
    ACCESS,
);

/// The buffers of one LayerNorm's backward: what its forward kept (`normalised`, `inv_std`),
/// its scale, the output's gradient, and the gradients it adds to.
pub(crate) struct NormBackward<'a> {
    pub(crate) dy: &'a Arg,
    pub(crate) normalised: &'a Arg,
    pub(crate) inv_std: &'a Arg,
    pub(crate) gamma: &'a Arg,
    pub(crate) dx: &'a Arg,
    pub(crate) dgamma: &'a Arg,
    /// `None` for a norm without a shift (`dgamma` is bound in its place, untouched).
    pub(crate) dbeta: Option<&'a Arg>,
}

/// Records both launches for `rows` rows of width `d`: `dx += …`, `dγ += …`, `dβ += …`.
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    (rows_kernel, params_kernel): (&'static KernelSpec, &'static KernelSpec),
    rows: usize,
    d: usize,
    b: &NormBackward<'_>,
) -> Result<()> {
    let params = Params {
        rows: rows as u32,
        d: d as u32,
        has_bias: b.dbeta.is_some() as u32,
        _pad: 0,
    };
    let args = [
        b.dy,
        b.normalised,
        b.inv_std,
        b.gamma,
        b.dx,
        b.dgamma,
        b.dbeta.unwrap_or(b.dgamma),
    ];
    plan.push(rows_kernel, &params, &args, [rows as u32, 1, 1])?;
    plan.push(params_kernel, &params, &args, [groups(d as u32, 64), 1, 1])?;
    Ok(())
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::layer_norm_backward;

    #[test]
    fn matches_the_cpu_twin_on_random_shapes() {
        let ctx = testing::context();
        for (rows, d, with_bias, seed) in [
            (1, 1, true, 1),
            (5, 16, true, 2),
            (17, 100, false, 3),
            (3, 257, true, 4),
        ] {
            let mut rng = Rng::new(seed);
            let dy = rng.normals(rows * d, 1.0);
            let normalised = rng.normals(rows * d, 1.0);
            let inv_std: Vec<f32> = rng
                .normals(rows, 0.5)
                .iter()
                .map(|x| 1.0 + x.abs())
                .collect();
            let gamma = rng.normals(d, 0.5);
            let (dx0, dgamma0, dbeta0) = (
                rng.normals(rows * d, 1.0),
                rng.normals(d, 1.0),
                rng.normals(d, 1.0),
            );
            let (mut dx, mut dgamma, mut dbeta) = (dx0.clone(), dgamma0.clone(), dbeta0.clone());
            layer_norm_backward(
                &dy,
                &normalised,
                &inv_std,
                &gamma,
                &mut dgamma,
                with_bias.then_some(dbeta.as_mut_slice()),
                &mut dx,
            );

            let up = |v: &[f32]| testing::upload(&ctx, v);
            let (dy_b, n_b, inv_b, gamma_b) = (up(&dy), up(&normalised), up(&inv_std), up(&gamma));
            let (dx_b, dgamma_b, dbeta_b) = (up(&dx0), up(&dgamma0), up(&dbeta0));
            let backward = NormBackward {
                dy: &dy_b,
                normalised: &n_b,
                inv_std: &inv_b,
                gamma: &gamma_b,
                dx: &dx_b,
                dgamma: &dgamma_b,
                dbeta: with_bias.then_some(&dbeta_b),
            };
            let got_dx = testing::run(&ctx, &dx_b, |plan| {
                push(plan, (&ROWS, &PARAMS), rows, d, &backward).unwrap();
            });
            let name = format!("{rows}×{d}");
            testing::assert_close(&format!("dx {name}"), &got_dx, &dx, 1e-5);
            testing::assert_close(
                &format!("dγ {name}"),
                &testing::read(&ctx, &dgamma_b),
                &dgamma,
                1e-5,
            );
            let want_dbeta = if with_bias { dbeta } else { dbeta0 };
            testing::assert_close(
                &format!("dβ {name}"),
                &testing::read(&ctx, &dbeta_b),
                &want_dbeta,
                1e-5,
            );
        }
    }
}
