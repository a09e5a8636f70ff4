//! AdamW for the GPU trainer (`adamw.wgsl`): a parameter tensor's clipping coefficient, then
//! its update, on the GPU where the weights, the gradient and the moments live.

use attn_model::training::optimizer::AdamStep;

use crate::error::Result;
use crate::ops::kernel::{elementwise_groups, Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("adamw.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    clip: u32,
    threshold: f32,
    learning_rate: f32,
    correction_1: f32,
    correction_2: f32,
    keep: f32,
    _pad: u32,
}

const ACCESS: &[Access] = &[
    Access::ReadWrite,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];

/// The `clip` entry point of `adamw.wgsl`.
pub(crate) const CLIP: KernelSpec =
    KernelSpec::new::<Params>("adamw_clip", "adamw", SHADER, "clip", ACCESS);

/// The `update` entry point of `adamw.wgsl`.
pub(crate) const UPDATE: KernelSpec =
    KernelSpec::new::<Params>("adamw_update", "adamw", SHADER, "update", ACCESS);

/// One parameter tensor's buffers: the weights, the gradient, the two moments, and one `f32`
/// of scratch for the clipping coefficient.
pub(crate) struct AdamBuffers<'a> {
    pub(crate) param: &'a Arg,
    pub(crate) grad: &'a Arg,
    pub(crate) m: &'a Arg,
    pub(crate) v: &'a Arg,
    pub(crate) coef: &'a Arg,
}

/// Records one AdamW step of an `n`-element tensor: the clipping coefficient (to `clip`'s L2
/// norm, or none), then the update with `step`'s constants.
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    (clip_kernel, update_kernel): (&'static KernelSpec, &'static KernelSpec),
    n: usize,
    clip: Option<f32>,
    step: AdamStep,
    b: &AdamBuffers<'_>,
) -> Result<()> {
    let params = Params {
        n: n as u32,
        clip: clip.is_some() as u32,
        threshold: clip.unwrap_or(0.0),
        learning_rate: step.learning_rate,
        correction_1: step.correction_1,
        correction_2: step.correction_2,
        keep: step.keep,
        _pad: 0,
    };
    let args = [b.param, b.grad, b.m, b.v, b.coef];
    plan.push(clip_kernel, &params, &args, [1, 1, 1])?;
    plan.push(update_kernel, &params, &args, elementwise_groups(n, 256))?;
    Ok(())
}

// Native only: these run on lavapipe through `crate::testing`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::training::optimizer::{adamw_update, clip_coefficient};

    #[test]
    fn three_steps_match_the_cpu_twin() {
        let ctx = testing::context();
        for (n, clip, keep, seed) in [
            (1, None, 1.0, 1),
            (300, Some(0.5), 1.0, 2),
            (1000, Some(100.0), 0.999, 3),
        ] {
            let mut rng = Rng::new(seed);
            let mut param = rng.normals(n, 1.0);
            let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
            let up = |x: &[f32]| testing::upload(&ctx, x);
            let (param_b, m_b, v_b, coef_b) = (up(&param), up(&m), up(&v), up(&[f32::NAN]));
            for t in 1..=3 {
                let grad = rng.normals(n, 0.3);
                let step = AdamStep {
                    learning_rate: 0.01,
                    correction_1: 1.0 - 0.9f32.powi(t),
                    correction_2: 1.0 - 0.99f32.powi(t),
                    keep,
                };
                let coef = clip_coefficient(&grad, clip);
                adamw_update(&mut param, &grad, coef, &mut m, &mut v, step);
                let grad_b = up(&grad);
                let buffers = AdamBuffers {
                    param: &param_b,
                    grad: &grad_b,
                    m: &m_b,
                    v: &v_b,
                    coef: &coef_b,
                };
                let got = testing::run(&ctx, &param_b, |plan| {
                    push(plan, (&CLIP, &UPDATE), n, clip, step, &buffers).unwrap();
                });
                let what = format!("n {n}, clip {clip:?}, step {t}");
                testing::assert_close(
                    &format!("coefficient, {what}"),
                    &testing::read(&ctx, &coef_b),
                    &[coef],
                    1e-5,
                );
                testing::assert_close(&format!("weights, {what}"), &got, &param, 1e-5);
                testing::assert_close(
                    &format!("first moment, {what}"),
                    &testing::read(&ctx, &m_b),
                    &m,
                    1e-5,
                );
                testing::assert_close(
                    &format!("second moment, {what}"),
                    &testing::read(&ctx, &v_b),
                    &v,
                    1e-5,
                );
            }
        }
    }
}
