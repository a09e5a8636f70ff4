//! The token embedding's gradient for the GPU trainer (`embedding_backward.wgsl`).

use crate::error::Result;
use crate::ops::kernel::{groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("embedding_backward.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    positions: u32,
    d: u32,
    vocab: u32,
}

/// The `main` entry point of `embedding_backward.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "embedding_backward",
    "embedding_backward",
    SHADER,
    "main",
    &[Access::Read, Access::Read, Access::ReadWrite],
);

/// Records `dtable[tokens[t]] += dx[t]` for `positions` rows of width `d` into a table of
/// `vocab` rows.
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (positions, d, vocab): (usize, usize, usize),
    (tokens, dx, dtable): (&Arg, &Arg, &Arg),
) -> Result<usize> {
    let params = Params {
        positions: positions as u32,
        d: d as u32,
        vocab: vocab as u32,
    };
    plan.push(
        kernel,
        &params,
        &[tokens, dx, dtable],
        [groups(d as u32, 64), vocab as u32, 1],
    )
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::backprop::embedding_backward;

    #[test]
    fn matches_the_cpu_twin_with_repeated_tokens() {
        let ctx = testing::context();
        for (positions, d, vocab, seed) in [(1, 1, 1, 1), (12, 16, 5, 2), (40, 70, 26, 3)] {
            let mut rng = Rng::new(seed);
            // Repeats and unused rows both.
            let tokens: Vec<u32> = (0..positions).map(|t| (t * t % vocab) as u32).collect();
            let dx = rng.normals(positions * d, 1.0);
            let start = rng.normals(vocab * d, 1.0);
            let mut want = start.clone();
            embedding_backward(&tokens, &dx, &mut want);
            let (tokens_b, dx_b, table_b) = (
                testing::upload_u32(&ctx, &tokens),
                testing::upload(&ctx, &dx),
                testing::upload(&ctx, &start),
            );
            let got = testing::run(&ctx, &table_b, |plan| {
                push(
                    plan,
                    &KERNEL,
                    (positions, d, vocab),
                    (&tokens_b, &dx_b, &table_b),
                )
                .unwrap();
            });
            testing::assert_close(
                &format!("{positions} positions, {d} wide"),
                &got,
                &want,
                1e-5,
            );
        }
    }
}
