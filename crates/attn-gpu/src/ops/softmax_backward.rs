//! Softmax's backward for the GPU trainer (`softmax_backward.wgsl`): every row of every head's
//! map at once.

use crate::error::Result;
use crate::ops::kernel::{row_groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = concat!(
    include_str!("softmax_backward.wgsl"),
    include_str!("reduce.wgsl")
);

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    width: u32,
    scale: f32,
}

/// The `main` entry point of `softmax_backward.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "softmax_backward",
    "softmax_backward",
    SHADER,
    "main",
    &[Access::Read, Access::Read, Access::ReadWrite],
);

/// Records `ds = p ⊙ (dp − Σ_row dp ⊙ p) · scale` over `rows` rows of `width`.
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (rows, width, scale): (usize, usize, f32),
    (probs, dp, ds): (&Arg, &Arg, &Arg),
) -> Result<usize> {
    let params = Params {
        width: width as u32,
        scale,
    };
    plan.push(kernel, &params, &[probs, dp, ds], row_groups(rows))
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::softmax_backward;

    #[test]
    fn matches_the_cpu_twin_on_random_shapes() {
        let ctx = testing::context();
        for (rows, width, seed) in [(1, 1, 1), (7, 7, 2), (2 * 33, 33, 3), (4 * 130, 130, 4)] {
            let mut rng = Rng::new(seed);
            // Probability rows with a causal mask's zeros.
            let mut probs = vec![0.0f32; rows * width];
            for (r, row) in probs.chunks_exact_mut(width).enumerate() {
                let keys = r % width + 1;
                let raw: Vec<f32> = (0..keys).map(|_| rng.uniform() + 0.01).collect();
                let sum: f32 = raw.iter().sum();
                row[..keys]
                    .iter_mut()
                    .zip(&raw)
                    .for_each(|(p, x)| *p = x / sum);
            }
            let dp = rng.normals(rows * width, 1.0);
            let scale = 0.35;
            let mut want = vec![0.0f32; rows * width];
            softmax_backward(&probs, &dp, width, scale, &mut want);
            let (p_b, dp_b) = (testing::upload(&ctx, &probs), testing::upload(&ctx, &dp));
            let ds_b = testing::upload(&ctx, &vec![f32::NAN; rows * width]);
            let got = testing::run(&ctx, &ds_b, |plan| {
                push(plan, &KERNEL, (rows, width, scale), (&p_b, &dp_b, &ds_b)).unwrap();
            });
            testing::assert_close(&format!("ds {rows}×{width}"), &got, &want, 1e-5);
        }
    }
}
