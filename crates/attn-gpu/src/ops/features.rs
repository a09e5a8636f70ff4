//! Feature maps of linear (`elu + 1`) and random-feature (FAVOR+) attention
//! (`features.wgsl`). The products of the features (`φ(q)·φ(k)ᵀ`, `c·q·ωᵀ`) run on the matmul
//! kernel; these kernels are the elementwise and per-row parts in between.

use crate::error::Result;
use crate::ops::kernel::{groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("features.wgsl");

const THREADS: u32 = 64;
/// `elu_feature` spreads its workgroups over x and y to stay under the per-dimension limit.
const MAX_X: u32 = 65535;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    t: u32,
    m: u32,
    d_head: u32,
    src_stride: u32,
    group_size: u32,
    heads: u32,
    scale: f32,
}

const STORAGE: &[Access] = &[Access::Read, Access::ReadWrite];

/// The `elu_feature` entry point of `features.wgsl`.
pub(crate) const ELU: KernelSpec =
    KernelSpec::new::<Params>("elu_feature", "features", SHADER, "elu_feature", STORAGE);

/// The `random_feature_query` entry point of `features.wgsl`.
pub(crate) const RANDOM_QUERY: KernelSpec = KernelSpec::new::<Params>(
    "random_feature_query",
    "features",
    SHADER,
    "random_feature_query",
    STORAGE,
);

/// The `random_feature_key` entry point of `features.wgsl`.
pub(crate) const RANDOM_KEY: KernelSpec = KernelSpec::new::<Params>(
    "random_feature_key",
    "features",
    SHADER,
    "random_feature_key",
    STORAGE,
);

/// Records `dst[i] = elu(scale · src[i]) + 1` for `i < n`.
pub(crate) fn push_elu<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    n: usize,
    scale: f32,
    src: &Arg,
    dst: &Arg,
) -> Result<usize> {
    let params = Params {
        n: n as u32,
        scale,
        ..Default::default()
    };
    let total = groups(n as u32, THREADS);
    let workgroups = [total.min(MAX_X), groups(total, MAX_X), 1];
    plan.push(kernel, &params, &[src, dst], workgroups)
}

/// Shapes shared by the two random-feature kernels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RandomFeatures {
    pub(crate) t_len: usize,
    pub(crate) heads: usize,
    pub(crate) features: usize,
    pub(crate) d_head: usize,
    /// Row stride of the source activations (`heads · d_head` or `kv_heads · d_head`).
    pub(crate) src_stride: usize,
    /// Query heads per source head (1 for queries).
    pub(crate) group_size: usize,
    /// `c = sqrt(β / √d)`.
    pub(crate) c: f32,
}

impl RandomFeatures {
    fn params(&self) -> Params {
        Params {
            n: 0,
            t: self.t_len as u32,
            m: self.features as u32,
            d_head: self.d_head as u32,
            src_stride: self.src_stride as u32,
            group_size: self.group_size as u32,
            heads: self.heads as u32,
            scale: self.c,
        }
    }

    /// Records the query features, in place on `proj` (`[heads, T, m]`, holding `c·q·ωᵀ`).
    pub(crate) fn push_query<'k>(
        &self,
        plan: &mut PlanBuilder<'k>,
        kernel: &'static KernelSpec,
        q: &Arg,
        proj: &Arg,
    ) -> Result<usize> {
        let rows = (self.t_len * self.heads) as u32;
        plan.push(
            kernel,
            &self.params(),
            &[q, proj],
            [groups(rows, THREADS), 1, 1],
        )
    }

    /// Records the key features, in place on `proj` (`[heads, T, m]`, holding `c·k·ωᵀ`).
    pub(crate) fn push_key<'k>(
        &self,
        plan: &mut PlanBuilder<'k>,
        kernel: &'static KernelSpec,
        k: &Arg,
        proj: &Arg,
    ) -> Result<usize> {
        plan.push(
            kernel,
            &self.params(),
            &[k, proj],
            [self.heads as u32, 1, 1],
        )
    }
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::linalg::elu_plus_one;

    #[test]
    fn elu_feature_map() {
        let ctx = testing::context();
        for (n, scale) in [(1, 1.0), (37, 0.35), (1000, 2.0)] {
            let src = Rng::new(n as u64).normals(n, 2.0);
            let want: Vec<f32> = src.iter().map(|v| elu_plus_one(v * scale)).collect();
            let (s, d) = (
                testing::upload(&ctx, &src),
                testing::upload(&ctx, &vec![f32::NAN; n]),
            );
            let got = testing::run(&ctx, &d, |plan| {
                push_elu(plan, &ELU, n, scale, &s, &d).unwrap();
            });
            testing::assert_close("elu + 1", &got, &want, 1e-6);
        }
    }

    /// The CPU twin of both kernels (as attn-model's `random_feature_weights` computes them):
    /// `proj` holds `c·x·ωᵀ` per (head, row); subtract `|c·x|²/2`, then the row maximum
    /// (queries) or the head maximum (keys), then exp.
    fn reference(rf: &RandomFeatures, src: &[f32], proj: &[f32], per_row: bool) -> Vec<f32> {
        let (t, m) = (rf.t_len, rf.features);
        let mut out = proj.to_vec();
        for head in 0..rf.heads {
            let source = head / rf.group_size;
            let block = &mut out[head * t * m..(head + 1) * t * m];
            for (row, values) in block.chunks_exact_mut(m).enumerate() {
                let x = &src[row * rf.src_stride + source * rf.d_head..][..rf.d_head];
                let half = 0.5 * x.iter().map(|v| (v * rf.c) * (v * rf.c)).sum::<f32>();
                values.iter_mut().for_each(|v| *v -= half);
            }
            let exp_minus_max = |values: &mut [f32]| {
                let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                values.iter_mut().for_each(|v| *v = (*v - max).exp());
            };
            if per_row {
                block.chunks_exact_mut(m).for_each(exp_minus_max);
            } else {
                exp_minus_max(block);
            }
        }
        out
    }

    #[test]
    fn random_features_of_queries_and_grouped_keys() {
        let ctx = testing::context();
        for (t_len, heads, kv_heads, d_head, m) in
            [(1, 1, 1, 1, 1), (9, 4, 2, 3, 16), (70, 2, 1, 8, 5)]
        {
            let mut rng = Rng::new((t_len * m) as u64);
            let rf = RandomFeatures {
                t_len,
                heads,
                features: m,
                d_head,
                src_stride: kv_heads * d_head,
                group_size: heads / kv_heads,
                c: 0.6,
            };
            let src = rng.normals(t_len * kv_heads * d_head, 1.5);
            let proj = rng.normals(heads * t_len * m, 3.0);
            let s = testing::upload(&ctx, &src);
            for per_row in [true, false] {
                let want = reference(&rf, &src, &proj, per_row);
                let p = testing::upload(&ctx, &proj);
                let got = testing::run(&ctx, &p, |plan| {
                    if per_row {
                        rf.push_query(plan, &RANDOM_QUERY, &s, &p)
                    } else {
                        rf.push_key(plan, &RANDOM_KEY, &s, &p)
                    }
                    .unwrap();
                });
                testing::assert_close("random features", &got, &want, 1e-5);
            }
        }
    }
}
