//! Cross-entropy and its gradient for the GPU trainer (`cross_entropy.wgsl`).

use crate::error::Result;
use crate::ops::kernel::{Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("cross_entropy.wgsl");

/// The target of a position that is not scored (padding, or a position without a target).
pub(crate) const NO_TARGET: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    weight: f32,
}

/// The `main` entry point of `cross_entropy.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "cross_entropy",
    "cross_entropy",
    SHADER,
    "main",
    &[
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
);

/// Records the loss and gradient of `rows` rows of `n` logits against `targets` (one `u32`
/// per row, [`NO_TARGET`] for none), each scored row weighted by `weight`; per-row
/// negative log-likelihoods and hits go to `nll` and `correct`.
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (rows, n, weight): (usize, usize, f32),
    (logits, targets): (&Arg, &Arg),
    (dlogits, nll, correct): (&Arg, &Arg, &Arg),
) -> Result<usize> {
    let params = Params {
        n: n as u32,
        weight,
    };
    plan.push(
        kernel,
        &params,
        &[logits, targets, dlogits, nll, correct],
        [rows as u32, 1, 1],
    )
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::cross_entropy_backward;

    #[test]
    fn matches_the_cpu_twin_with_unscored_rows_and_ties() {
        let ctx = testing::context();
        for (rows, n, seed) in [(1, 1, 1), (6, 26, 2), (9, 301, 3)] {
            let mut rng = Rng::new(seed);
            let mut logits = rng.normals(rows * n, 3.0);
            // A tie for the largest logit: the first index wins, as on the CPU.
            if n > 3 {
                logits[2] = 50.0;
                logits[3] = 50.0;
            }
            let targets: Vec<u32> = (0..rows)
                .map(|r| match r % 3 {
                    1 => NO_TARGET,
                    _ => (r * 7 + 2) as u32 % n as u32,
                })
                .collect();
            let weight = 0.25;
            let mut want = vec![0.0f32; rows * n];
            let mut want_nll = vec![0.0f32; rows];
            let mut want_correct = vec![0.0f32; rows];
            for r in 0..rows {
                if targets[r] == NO_TARGET {
                    continue;
                }
                let row = r * n..(r + 1) * n;
                let (nll, right) = cross_entropy_backward(
                    &logits[row.clone()],
                    targets[r],
                    weight,
                    &mut want[row],
                );
                want_nll[r] = nll as f32;
                want_correct[r] = f32::from(u8::from(right));
            }
            let (logits_b, targets_b) = (
                testing::upload(&ctx, &logits),
                testing::upload_u32(&ctx, &targets),
            );
            let nan = |len: usize| testing::upload(&ctx, &vec![f32::NAN; len]);
            let (dlogits_b, nll_b, correct_b) = (nan(rows * n), nan(rows), nan(rows));
            let got = testing::run(&ctx, &dlogits_b, |plan| {
                push(
                    plan,
                    &KERNEL,
                    (rows, n, weight),
                    (&logits_b, &targets_b),
                    (&dlogits_b, &nll_b, &correct_b),
                )
                .unwrap();
            });
            let what = format!("{rows}×{n}");
            testing::assert_close(&format!("dlogits {what}"), &got, &want, 1e-5);
            testing::assert_close(
                &format!("nll {what}"),
                &testing::read(&ctx, &nll_b),
                &want_nll,
                1e-5,
            );
            assert_eq!(testing::read(&ctx, &correct_b), want_correct, "hits {what}");
        }
    }
}
