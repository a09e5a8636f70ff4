//! A dense layer's bias gradient for the GPU trainer (`column_sums.wgsl`).

use crate::error::Result;
use crate::ops::kernel::{groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("column_sums.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    d: u32,
}

/// The `main` entry point of `column_sums.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "column_sums",
    "column_sums",
    SHADER,
    "main",
    &[Access::Read, Access::ReadWrite],
);

/// Records `sums[c] += Σ_r dy[r, c]` over `rows` rows of width `d`.
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (rows, d): (usize, usize),
    (dy, sums): (&Arg, &Arg),
) -> Result<usize> {
    let params = Params {
        rows: rows as u32,
        d: d as u32,
    };
    plan.push(kernel, &params, &[dy, sums], [groups(d as u32, 64), 1, 1])
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::column_sums_add;

    #[test]
    fn matches_the_cpu_twin_on_random_shapes() {
        let ctx = testing::context();
        for (rows, d, seed) in [(1, 1, 1), (64, 33, 2), (7, 300, 3)] {
            let mut rng = Rng::new(seed);
            let dy = rng.normals(rows * d, 1.0);
            let start = rng.normals(d, 1.0);
            let mut want = start.clone();
            column_sums_add(&dy, &mut want);
            let (dy_b, sums_b) = (testing::upload(&ctx, &dy), testing::upload(&ctx, &start));
            let got = testing::run(&ctx, &sums_b, |plan| {
                push(plan, &KERNEL, (rows, d), (&dy_b, &sums_b)).unwrap();
            });
            testing::assert_close(&format!("{rows}×{d}"), &got, &want, 1e-5);
        }
    }
}
