//! Token + position embeddings (`embed.wgsl`).

use attn_model::Precision;

use crate::error::Result;
use crate::ops::kernel::{groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};
use crate::weights::WeightArg;

pub(crate) const SHADER: &str = concat!(include_str!("embed.wgsl"), include_str!("weights.wgsl"));

const WORKGROUP: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    d: u32,
    has_positions: u32,
    wte_precision: u32,
    first: u32,
    _pad: [u32; 3],
}

/// The `main` entry point of `embed.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "embed",
    "embed",
    SHADER,
    "main",
    &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
);

/// Records `x[t] = wte[tokens[t]] (+ wpe[t])` for `t < t_len` (`x` is `[t_len, d]`); `wte` may
/// be 16-bit. Without
/// a position table, `dummy` is bound in its place.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    t_len: usize,
    d: usize,
    tokens: &Arg,
    wte: &WeightArg,
    wpe: Option<&Arg>,
    dummy: &Arg,
    x: &Arg,
) -> Result<usize> {
    push_at(plan, kernel, (t_len, d), 0, tokens, wte, wpe, dummy, x)
}

/// [`push`] for tokens at positions `first..first + t_len` (a decode step: one token at the
/// position it decodes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_at<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    (t_len, d): (usize, usize),
    first: usize,
    tokens: &Arg,
    wte: &WeightArg,
    wpe: Option<&Arg>,
    dummy: &Arg,
    x: &Arg,
) -> Result<usize> {
    let params = Params {
        t: t_len as u32,
        d: d as u32,
        has_positions: wpe.is_some() as u32,
        wte_precision: match wte.precision {
            Precision::F32 => 0,
            Precision::F16 => 1,
            Precision::Bf16 => 2,
        },
        first: first as u32,
        _pad: [0; 3],
    };
    let wte = &wte.arg;
    let wpe = wpe.unwrap_or(dummy);
    let workgroups = [groups((t_len * d) as u32, WORKGROUP), 1, 1];
    plan.push(kernel, &params, &[tokens, wte, wpe, x], workgroups)
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::Weights;

    #[test]
    fn embeddings_match_the_lookup() {
        let ctx = testing::context();
        for (t_len, d, vocab, seed, precision) in [
            (1, 1, 3, 1, Precision::F32),
            (7, 5, 301, 2, Precision::F32),
            (40, 33, 10, 3, Precision::F32),
            (7, 5, 301, 4, Precision::F16),
            (40, 33, 10, 5, Precision::Bf16),
        ] {
            let mut rng = Rng::new(seed);
            let stored = Weights::F32(rng.normals(vocab * d, 1.0)).to_precision(precision);
            let wte = stored.f32().into_owned();
            let wpe = rng.normals(t_len * d + 3 * d, 1.0);
            let tokens: Vec<u32> = (0..t_len).map(|i| ((i * 7 + 3) % vocab) as u32).collect();
            let want: Vec<f32> = (0..t_len * d)
                .map(|e| wte[tokens[e / d] as usize * d + e % d] + wpe[e])
                .collect();
            let (tok, te, pe) = (
                testing::upload_u32(&ctx, &tokens),
                WeightArg {
                    arg: match stored.packed_u32() {
                        Some(words) => testing::upload_u32(&ctx, &words),
                        None => testing::upload(&ctx, &wte),
                    },
                    precision,
                },
                testing::upload(&ctx, &wpe),
            );
            let x = testing::upload(&ctx, &vec![f32::NAN; t_len * d]);
            let got = testing::run(&ctx, &x, |plan| {
                push(plan, &KERNEL, t_len, d, &tok, &te, Some(&pe), &pe, &x).unwrap();
            });
            testing::assert_close("embed", &got, &want, 0.0);
            // A rotary model: the token rows alone (the placeholder is not read).
            let nan = testing::upload(&ctx, &[f32::NAN]);
            let got = testing::run(&ctx, &x, |plan| {
                push(plan, &KERNEL, t_len, d, &tok, &te, None, &nan, &x).unwrap();
            });
            let tokens_only: Vec<f32> = (0..t_len * d)
                .map(|e| wte[tokens[e / d] as usize * d + e % d])
                .collect();
            testing::assert_close("embed without positions", &got, &tokens_only, 0.0);
            // Tokens at positions 3.. (a decode step's row): the position table from row 3.
            let got = testing::run(&ctx, &x, |plan| {
                let wpe = Some(&pe);
                push_at(plan, &KERNEL, (t_len, d), 3, &tok, &te, wpe, &pe, &x).unwrap();
            });
            let shifted: Vec<f32> = (0..t_len * d)
                .map(|e| wte[tokens[e / d] as usize * d + e % d] + wpe[3 * d + e])
                .collect();
            testing::assert_close("embed from position 3", &got, &shifted, 0.0);
        }
    }
}
