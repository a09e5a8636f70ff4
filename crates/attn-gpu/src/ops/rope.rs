//! Rotary position embeddings on queries or keys, in place (`rope.wgsl`). The CPU twin is
//! attn-model's `RotaryTable::apply`, whose table this kernel reads.

use attn_model::rope::RotaryTable;

use crate::error::Result;
use crate::ops::kernel::{groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("rope.wgsl");

const WORKGROUP: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    heads: u32,
    d_head: u32,
    half: u32,
    sin_offset: u32,
    first: u32,
    _pad: [u32; 2],
}

/// The `main` entry point of `rope.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "rope",
    "rope",
    SHADER,
    "main",
    &[Access::Read, Access::ReadWrite],
);

/// The table the kernel reads: every cosine, then every sine (`[positions, half]` each).
pub(crate) fn table_values(table: &RotaryTable) -> Vec<f32> {
    table.cos.iter().chain(&table.sin).copied().collect()
}

/// Records the rotation of `x` (`[t_len, heads · d_head]`) by the angles of `table`, whose
/// `half` frequencies and `positions` rows it was built with.
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    shape: (usize, usize, usize),
    table_shape: (usize, usize),
    table: &Arg,
    x: &Arg,
) -> Result<usize> {
    push_at(plan, kernel, shape, table_shape, 0, table, x)
}

/// [`push`] for rows that hold positions `first..first + t_len` (a decode step: one row at
/// the position it decodes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_at<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (t_len, heads, d_head): (usize, usize, usize),
    (half, positions): (usize, usize),
    first: usize,
    table: &Arg,
    x: &Arg,
) -> Result<usize> {
    assert!(first + t_len <= positions && 2 * half <= d_head);
    let params = Params {
        t: t_len as u32,
        heads: heads as u32,
        d_head: d_head as u32,
        half: half as u32,
        sin_offset: (positions * half) as u32,
        first: first as u32,
        _pad: [0; 2],
    };
    let workgroups = [groups((t_len * heads * half) as u32, WORKGROUP), 1, 1];
    plan.push(kernel, &params, &[table, x], workgroups)
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::{Rope, RopeScaling};

    #[test]
    fn rotation_matches_the_reference() {
        let ctx = testing::context();
        // (positions in the table, rows, heads, d_head, rotary dims, seed): full and partial
        // rotary, one row, odd sizes.
        for (positions, t, heads, d_head, rotary_dim, seed) in [
            (1, 1, 1, 2, 2, 1),
            (16, 11, 6, 8, 8, 2),
            (64, 40, 4, 16, 4, 3),
            (50, 50, 3, 10, 6, 4),
        ] {
            let rope = Rope {
                theta: 500.0,
                rotary_dim,
                scaling: RopeScaling::None,
            };
            let table = RotaryTable::new(&rope, positions);
            let x = Rng::new(seed).normals(t * heads * d_head, 1.0);
            let mut want = x.clone();
            table.apply(&mut want, t, d_head);
            let (table_buf, x_buf) = (
                testing::upload(&ctx, &table_values(&table)),
                testing::upload(&ctx, &x),
            );
            let got = testing::run(&ctx, &x_buf, |plan| {
                let shape = (t, heads, d_head);
                let rows = (rotary_dim / 2, positions);
                push(plan, &KERNEL, shape, rows, &table_buf, &x_buf).unwrap();
            });
            testing::assert_close(&format!("rope {t}x{heads}x{d_head}"), &got, &want, 1e-6);
        }
    }

    /// Rows that start at a later position (a decode step's one row): the angles of positions
    /// `first..`, as attn-model's table for those positions has them.
    #[test]
    fn rows_from_a_later_position() {
        let ctx = testing::context();
        let rope = Rope {
            theta: 10_000.0,
            rotary_dim: 6,
            scaling: RopeScaling::None,
        };
        let (positions, heads, d_head) = (40, 3, 8);
        let table = RotaryTable::new(&rope, positions);
        let table_buf = testing::upload(&ctx, &table_values(&table));
        for (first, t) in [(0, 1), (7, 1), (39, 1), (30, 10)] {
            let x = Rng::new(first as u64).normals(t * heads * d_head, 1.0);
            let mut want = x.clone();
            RotaryTable::for_positions(&rope, first..first + t).apply(&mut want, t, d_head);
            let x_buf = testing::upload(&ctx, &x);
            let got = testing::run(&ctx, &x_buf, |plan| {
                let shape = (t, heads, d_head);
                let rows = (table.half, positions);
                push_at(plan, &KERNEL, shape, rows, first, &table_buf, &x_buf).unwrap();
            });
            testing::assert_close(&format!("rope from {first}"), &got, &want, 1e-6);
        }
    }
}
