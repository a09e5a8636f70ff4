//! Strided block copies between activation buffers (`copy.wgsl`), for the hook points: capture an
//! activation (a residual stream, one head's columns of the head outputs) into a buffer of its
//! own, or put a replacement in its place.

use crate::error::Result;
use crate::ops::kernel::{groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("copy.wgsl");

const WORKGROUP: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    src_start: u32,
    src_stride: u32,
    dst_start: u32,
    dst_stride: u32,
    _pad: [u32; 2],
}

/// The `main` entry point of `copy.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "copy",
    "copy",
    SHADER,
    "main",
    &[Access::Read, Access::ReadWrite],
);

/// A `rows × cols` block of a row-major matrix: where it starts and the matrix's row length
/// (all in f32s).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    pub(crate) start: usize,
    pub(crate) stride: usize,
}

impl Block {
    /// A whole matrix of rows `cols` wide.
    pub(crate) fn dense(cols: usize) -> Block {
        Block {
            start: 0,
            stride: cols,
        }
    }

    /// Columns `first..` of a matrix of rows `stride` wide.
    pub(crate) fn columns(first: usize, stride: usize) -> Block {
        Block {
            start: first,
            stride,
        }
    }
}

/// Records `dst[block] = src[block]` for a `rows × cols` block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    rows: usize,
    cols: usize,
    src: &Arg,
    from: Block,
    dst: &Arg,
    to: Block,
) -> Result<usize> {
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        src_start: from.start as u32,
        src_stride: from.stride as u32,
        dst_start: to.start as u32,
        dst_stride: to.stride as u32,
        _pad: [0; 2],
    };
    let workgroups = [groups((rows * cols) as u32, WORKGROUP), 1, 1];
    plan.push(kernel, &params, &[src, dst], workgroups)
}

/// The CPU twin: what [`push`] records, on slices.
#[cfg(all(test, not(target_arch = "wasm32")))]
fn copy_cpu(rows: usize, cols: usize, src: &[f32], from: Block, dst: &mut [f32], to: Block) {
    for r in 0..rows {
        for c in 0..cols {
            dst[to.start + r * to.stride + c] = src[from.start + r * from.stride + c];
        }
    }
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};

    #[test]
    fn block_copies_match_the_reference() {
        let ctx = testing::context();
        // (rows, cols, source row length, first source column, destination row length, first
        // destination column)
        for (rows, cols, s_stride, s_col, d_stride, d_col, seed) in [
            (1, 1, 1, 0, 1, 0, 1),
            (7, 16, 64, 16, 16, 0, 2),
            (33, 5, 5, 0, 20, 15, 3),
            (300, 12, 48, 36, 12, 0, 4),
        ] {
            let mut rng = Rng::new(seed);
            let src = rng.normals(rows * s_stride, 1.0);
            let initial = rng.normals(rows * d_stride, 1.0);
            let (from, to) = (
                Block::columns(s_col, s_stride),
                Block::columns(d_col, d_stride),
            );
            let mut want = initial.clone();
            copy_cpu(rows, cols, &src, from, &mut want, to);
            let src_buffer = testing::upload(&ctx, &src);
            let dst = testing::upload(&ctx, &initial);
            let got = testing::run(&ctx, &dst, |plan| {
                push(plan, &KERNEL, rows, cols, &src_buffer, from, &dst, to).unwrap();
            });
            assert_eq!(got, want, "{rows}×{cols}");
        }
    }
}
