//! Per-head activations between the row layout and the head-major one (`heads.wgsl`), for the
//! GPU trainer's attention over a whole batch.

use crate::error::Result;
use crate::ops::kernel::{elementwise_groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("heads.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    seqs: u32,
    t: u32,
    heads: u32,
    d_head: u32,
}

/// The `to_heads` entry point of `heads.wgsl`.
pub(crate) const TO_HEADS: KernelSpec = KernelSpec::new::<Params>(
    "to_heads",
    "heads",
    SHADER,
    "to_heads",
    &[Access::Read, Access::ReadWrite],
);

/// The `from_heads` entry point of `heads.wgsl`.
pub(crate) const FROM_HEADS: KernelSpec = KernelSpec::new::<Params>(
    "from_heads",
    "heads",
    SHADER,
    "from_heads",
    &[Access::Read, Access::ReadWrite],
);

/// The shape `[seqs, t, heads, d_head]` of the activations being reordered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadShape {
    pub(crate) seqs: usize,
    pub(crate) t: usize,
    pub(crate) heads: usize,
    pub(crate) d_head: usize,
}

/// Records `dst = src` reordered by `kernel` (`to_heads` or `from_heads`).
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    shape: HeadShape,
    (src, dst): (&Arg, &Arg),
) -> Result<usize> {
    let params = Params {
        seqs: shape.seqs as u32,
        t: shape.t as u32,
        heads: shape.heads as u32,
        d_head: shape.d_head as u32,
    };
    let n = shape.seqs * shape.t * shape.heads * shape.d_head;
    plan.push(kernel, &params, &[src, dst], elementwise_groups(n, 256))
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};

    #[test]
    fn rows_to_heads_and_back() {
        let ctx = testing::context();
        let shape = HeadShape {
            seqs: 3,
            t: 5,
            heads: 4,
            d_head: 6,
        };
        let n = 3 * 5 * 4 * 6;
        let rows = Rng::new(1).normals(n, 1.0);
        // The plain definition: head-major [b][h][t][e] from rows [b][t][h][e].
        let mut want = vec![0.0f32; n];
        for b in 0..3 {
            for h in 0..4 {
                for t in 0..5 {
                    for e in 0..6 {
                        want[((b * 4 + h) * 5 + t) * 6 + e] = rows[((b * 5 + t) * 4 + h) * 6 + e];
                    }
                }
            }
        }
        let (rows_b, heads_b, back_b) = (
            testing::upload(&ctx, &rows),
            testing::upload(&ctx, &vec![f32::NAN; n]),
            testing::upload(&ctx, &vec![f32::NAN; n]),
        );
        let back = testing::run(&ctx, &back_b, |plan| {
            push(plan, &TO_HEADS, shape, (&rows_b, &heads_b)).unwrap();
            push(plan, &FROM_HEADS, shape, (&heads_b, &back_b)).unwrap();
        });
        assert_eq!(testing::read(&ctx, &heads_b), want);
        assert_eq!(back, rows);
    }
}
