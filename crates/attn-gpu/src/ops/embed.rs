//! Token + position embeddings (`embed.wgsl`).

use crate::error::Result;
use crate::ops::{groups, Access, Kernel};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("embed.wgsl");

const WORKGROUP: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    d: u32,
    has_positions: u32,
    _pad: u32,
}

pub(crate) fn kernel(device: &wgpu::Device, module: &wgpu::ShaderModule) -> Kernel {
    Kernel::new::<Params>(
        device,
        module,
        "embed",
        "main",
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    )
}

/// Records `x[t] = wte[tokens[t]] (+ wpe[t])` for `t < t_len` (`x` is `[t_len, d]`). Without
/// a position table, `dummy` is bound in its place.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'k Kernel,
    t_len: usize,
    d: usize,
    tokens: &Arg,
    wte: &Arg,
    wpe: Option<&Arg>,
    dummy: &Arg,
    x: &Arg,
) -> Result<usize> {
    let params = Params {
        t: t_len as u32,
        d: d as u32,
        has_positions: wpe.is_some() as u32,
        _pad: 0,
    };
    let wpe = wpe.unwrap_or(dummy);
    let workgroups = [groups((t_len * d) as u32, WORKGROUP), 1, 1];
    plan.push(kernel, &params, &[tokens, wte, wpe, x], workgroups)
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};

    #[test]
    fn embeddings_match_the_lookup() {
        let ctx = testing::context();
        for (t_len, d, vocab, seed) in [(1, 1, 3, 1), (7, 5, 301, 2), (40, 33, 10, 3)] {
            let mut rng = Rng::new(seed);
            let wte = rng.normals(vocab * d, 1.0);
            let wpe = rng.normals(t_len * d + 3 * d, 1.0);
            let tokens: Vec<u32> = (0..t_len).map(|i| ((i * 7 + 3) % vocab) as u32).collect();
            let want: Vec<f32> = (0..t_len * d)
                .map(|e| wte[tokens[e / d] as usize * d + e % d] + wpe[e])
                .collect();
            let (tok, te, pe) = (
                testing::upload_u32(&ctx, &tokens),
                testing::upload(&ctx, &wte),
                testing::upload(&ctx, &wpe),
            );
            let x = testing::upload(&ctx, &vec![f32::NAN; t_len * d]);
            let got = testing::run(&ctx, &x, |plan| {
                push(
                    plan,
                    &ctx.kernels.embed,
                    t_len,
                    d,
                    &tok,
                    &te,
                    Some(&pe),
                    &pe,
                    &x,
                )
                .unwrap();
            });
            testing::assert_close("embed", &got, &want, 0.0);
            // A rotary model: the token rows alone (the placeholder is not read).
            let nan = testing::upload(&ctx, &[f32::NAN]);
            let got = testing::run(&ctx, &x, |plan| {
                push(
                    plan,
                    &ctx.kernels.embed,
                    t_len,
                    d,
                    &tok,
                    &te,
                    None,
                    &nan,
                    &x,
                )
                .unwrap();
            });
            let tokens_only: Vec<f32> = (0..t_len * d)
                .map(|e| wte[tokens[e / d] as usize * d + e % d])
                .collect();
            testing::assert_close("embed without positions", &got, &tokens_only, 0.0);
        }
    }
}
