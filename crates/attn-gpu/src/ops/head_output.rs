//! Head ablation (zero / mean), per-head output norms and the routing proxy
//! (`head_output.wgsl`).

use crate::error::Result;
use crate::ops::kernel::{groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("head_output.wgsl");

/// Codes of the ablation table the kernel reads (`[layer · heads + head]`).
pub(crate) const KEEP: u32 = 0;
pub(crate) const ZERO: u32 = 1;
pub(crate) const MEAN: u32 = 2;

const THREADS: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    heads: u32,
    d_head: u32,
    layer: u32,
    route_k: u32,
    _pad: [u32; 3],
}

const STORAGE: &[Access] = &[
    Access::ReadWrite,
    Access::ReadWrite,
    Access::Read,
    Access::ReadWrite,
];

/// The `main` entry point of `head_output.wgsl`.
pub(crate) const OUTPUT: KernelSpec =
    KernelSpec::new::<Params>("head_output", "head_output", SHADER, "main", STORAGE);

/// The `column_means` entry point of `head_output.wgsl`.
pub(crate) const MEANS: KernelSpec =
    KernelSpec::new::<Params>("head_means", "head_output", SHADER, "column_means", STORAGE);

/// The `route` entry point of `head_output.wgsl`.
pub(crate) const ROUTE: KernelSpec =
    KernelSpec::new::<Params>("head_route", "head_output", SHADER, "route", STORAGE);

/// The buffers of one layer's head post-processing: `z` is `[t, heads · d_head]`, `norms` is
/// `[layers, heads, t]`, `ablation` is `[layers, heads]`, `means` is `[heads, d_head]` scratch.
pub(crate) struct HeadBuffers<'a> {
    pub(crate) z: &'a Arg,
    pub(crate) norms: &'a Arg,
    pub(crate) ablation: &'a Arg,
    pub(crate) means: &'a Arg,
}

/// Records ablation and norms for every head of `layer`; `mean_ablated` says whether any head
/// of the layer is replaced by its mean (which adds the column-means launch); `route` keeps only
/// that many heads per position, those with the largest norms (one more launch).
#[allow(clippy::too_many_arguments)]
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    t_len: usize,
    heads: usize,
    d_head: usize,
    layer: usize,
    mean_ablated: bool,
    route: Option<usize>,
    b: &HeadBuffers,
) -> Result<()> {
    let params = Params {
        t: t_len as u32,
        heads: heads as u32,
        d_head: d_head as u32,
        layer: layer as u32,
        route_k: route.unwrap_or(heads) as u32,
        _pad: [0; 3],
    };
    let args = [b.z, b.norms, b.ablation, b.means];
    if mean_ablated {
        let n = (heads * d_head) as u32;
        plan.push(&MEANS, &params, &args, [groups(n, THREADS), 1, 1])?;
    }
    let n = (heads * t_len) as u32;
    plan.push(&OUTPUT, &params, &args, [groups(n, THREADS), 1, 1])?;
    if route.is_some() {
        plan.push(&ROUTE, &params, &args, [groups(n, THREADS), 1, 1])?;
    }
    Ok(())
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};

    /// The CPU twin, written from attn-model's forward: zero or mean the head's rows, then the
    /// norm of every row.
    fn reference(
        z: &mut [f32],
        norms: &mut [f32],
        modes: &[u32],
        t: usize,
        heads: usize,
        d: usize,
        layer: usize,
    ) {
        let width = heads * d;
        for h in 0..heads {
            let col = |t: usize, c: usize| t * width + h * d + c;
            match modes[layer * heads + h] {
                ZERO => (0..t).for_each(|r| (0..d).for_each(|c| z[col(r, c)] = 0.0)),
                MEAN => {
                    let mut mean = vec![0.0f32; d];
                    for r in 0..t {
                        (0..d).for_each(|c| mean[c] += z[col(r, c)]);
                    }
                    mean.iter_mut().for_each(|m| *m /= t as f32);
                    (0..t).for_each(|r| (0..d).for_each(|c| z[col(r, c)] = mean[c]));
                }
                _ => {}
            }
            for r in 0..t {
                let sq: f32 = (0..d).map(|c| z[col(r, c)] * z[col(r, c)]).sum();
                norms[(layer * heads + h) * t + r] = sq.sqrt();
            }
        }
    }

    /// The kernel's buffers: `z`, the norms, the ablation codes and `means` scratch (NaN).
    fn upload(
        ctx: &crate::GpuContext,
        z: &[f32],
        norms: &[f32],
        modes: &[u32],
        means: usize,
    ) -> (Arg, Arg, Arg, Arg) {
        (
            testing::upload(ctx, z),
            testing::upload(ctx, norms),
            testing::upload_u32(ctx, modes),
            testing::upload(ctx, &vec![f32::NAN; means]),
        )
    }

    /// The kernel's view of the uploaded buffers.
    fn bound(args: &(Arg, Arg, Arg, Arg)) -> HeadBuffers<'_> {
        HeadBuffers {
            z: &args.0,
            norms: &args.1,
            ablation: &args.2,
            means: &args.3,
        }
    }

    #[test]
    fn ablation_and_norms() {
        let ctx = testing::context();
        for (t, heads, d, seed) in [(1, 1, 1, 1), (7, 4, 3, 2), (65, 3, 1, 3), (20, 2, 70, 4)] {
            let layers = 2;
            let mut rng = Rng::new(seed);
            let z0 = rng.normals(t * heads * d, 1.0);
            let modes: Vec<u32> = (0..layers * heads).map(|i| (i % 3) as u32).collect();
            let layer = 1;
            // Only this layer's norms are written; the rest stay NaN on both sides.
            let norms0 = vec![f32::NAN; layers * heads * t];
            let (mut z_want, mut n_want) = (z0.clone(), norms0.clone());
            reference(&mut z_want, &mut n_want, &modes, t, heads, d, layer);
            let args = upload(&ctx, &z0, &norms0, &modes, heads * d);
            let (buffers, z, norms) = (bound(&args), &args.0, &args.1);
            let z_got = testing::run(&ctx, z, |plan| {
                push(plan, t, heads, d, layer, true, None, &buffers).unwrap();
            });
            testing::assert_close("ablated z", &z_got, &z_want, 1e-6);
            let n_got = testing::read(&ctx, norms);
            let range = layer * heads * t..(layer + 1) * heads * t;
            testing::assert_close("norms", &n_got[range.clone()], &n_want[range], 1e-6);
            assert!(n_got[..layer * heads * t].iter().all(|v| v.is_nan()));
        }
    }

    #[test]
    fn routing_keeps_the_k_heads_that_write_most_at_each_position() {
        let ctx = testing::context();
        for (t, heads, d, k, seed) in [
            (1, 1, 1, 1, 5),
            (9, 4, 3, 2, 6),
            (33, 6, 5, 1, 7),
            (5, 3, 8, 3, 8),
        ] {
            let layers = 2;
            let layer = 1;
            let mut rng = Rng::new(seed);
            let z0 = rng.normals(t * heads * d, 1.0);
            let modes = vec![KEEP; layers * heads];
            let (mut z_want, mut n_want) = (z0.clone(), vec![f32::NAN; layers * heads * t]);
            reference(&mut z_want, &mut n_want, &modes, t, heads, d, layer);
            // attn-model's rule, on the norms written before routing.
            let layer_norms = &n_want[layer * heads * t..(layer + 1) * heads * t];
            for r in 0..t {
                for h in 0..heads {
                    if attn_model::forward::routing_rank(layer_norms, heads, t, h, r) >= k {
                        let row = r * heads * d + h * d;
                        z_want[row..row + d].fill(0.0);
                    }
                }
            }
            let norms0 = vec![f32::NAN; layers * heads * t];
            let args = upload(&ctx, &z0, &norms0, &modes, heads * d);
            let (buffers, z) = (bound(&args), &args.0);
            let z_got = testing::run(&ctx, z, |plan| {
                push(plan, t, heads, d, layer, false, Some(k), &buffers).unwrap();
            });
            testing::assert_close("routed z", &z_got, &z_want, 1e-6);
            // Exactly k heads write at each position.
            for r in 0..t {
                let writing = (0..heads)
                    .filter(|h| {
                        z_got[r * heads * d + h * d..][..d]
                            .iter()
                            .any(|v| *v != 0.0)
                    })
                    .count();
                assert_eq!(writing, k.min(heads), "t={t} heads={heads} k={k} row {r}");
            }
        }
    }
}
