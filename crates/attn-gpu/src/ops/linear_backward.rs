//! Linear attention's backward through its normalisation, for the GPU trainer
//! (`linear_backward.wgsl`): every row of every head's map at once.

use crate::error::Result;
use crate::ops::kernel::{row_groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = concat!(
    include_str!("linear_backward.wgsl"),
    include_str!("reduce.wgsl")
);

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    width: u32,
    causal: u32,
}

/// The `main` entry point of `linear_backward.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "linear_backward",
    "linear_backward",
    SHADER,
    "main",
    &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
);

/// Records `dw = (dp − Σ_row dp ⊙ p) / Σ_row w` over the keys each of `rows` rows of `width`
/// may see (row `r` is query `r % width`).
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (rows, width, causal): (usize, usize, bool),
    (probs, dp, w, dw): (&Arg, &Arg, &Arg, &Arg),
) -> Result<usize> {
    let params = Params {
        width: width as u32,
        causal: causal as u32,
    };
    plan.push(kernel, &params, &[probs, dp, w, dw], row_groups(rows))
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::linear_weights_backward;

    #[test]
    fn matches_the_cpu_twin_on_random_shapes() {
        let ctx = testing::context();
        // (maps, width, causal, seed): one key, odd widths, wider than a workgroup.
        for (maps, width, causal, seed) in [
            (1, 1, true, 1),
            (3, 7, true, 2),
            (2, 33, false, 3),
            (4, 130, true, 4),
        ] {
            let mut rng = Rng::new(seed);
            let rows = maps * width;
            // Positive weights (φ(q)·φ(k) > 0) and their normalisation over the allowed keys.
            let w: Vec<f32> = (0..rows * width).map(|_| rng.uniform() + 0.05).collect();
            let mut probs = vec![0.0f32; rows * width];
            for (r, row) in probs.chunks_exact_mut(width).enumerate() {
                let keys = if causal { r % width + 1 } else { width };
                let sum: f32 = w[r * width..r * width + keys].iter().sum();
                for (j, p) in row[..keys].iter_mut().enumerate() {
                    *p = w[r * width + j] / sum;
                }
            }
            let dp = rng.normals(rows * width, 1.0);
            let mut want = vec![0.0f32; rows * width];
            linear_weights_backward(&probs, &dp, &w, width, causal, &mut want);
            let up = |v: &[f32]| testing::upload(&ctx, v);
            let (p_b, dp_b, w_b) = (up(&probs), up(&dp), up(&w));
            let dw_b = up(&vec![f32::NAN; rows * width]);
            let got = testing::run(&ctx, &dw_b, |plan| {
                push(
                    plan,
                    &KERNEL,
                    (rows, width, causal),
                    (&p_b, &dp_b, &w_b, &dw_b),
                )
                .unwrap();
            });
            testing::assert_close(&format!("dw {maps}×{width}"), &got, &want, 1e-5);
        }
    }
}
