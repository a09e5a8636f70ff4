//! Scores → probabilities (`attention.wgsl`): causal/bidirectional mask, sliding window, top-k,
//! and the normalisation of softmax, linear or random-feature weights. The probabilities are
//! written out, in place of the scores, because the heatmaps are the product.

use crate::error::Result;
use crate::ops::kernel::{Access, KernelSpec};
use crate::plan::{Arg, PlanBuilder};

pub(crate) const SHADER: &str = include_str!("attention.wgsl");

/// Longest sequence the kernel handles: one row of scores is staged in workgroup memory
/// (8 KiB), and the kept-key bitmask is sized for it.
pub const MAX_SEQ_LEN: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    causal: u32,
    window: u32,
    top_k: u32,
    use_weights: u32,
    first: u32,
    keys: u32,
    _pad: u32,
}

/// The `main` entry point of `attention.wgsl`.
pub(crate) const KERNEL: KernelSpec = KernelSpec::new::<Params>(
    "attention_probs",
    "attention",
    SHADER,
    "main",
    &[Access::ReadWrite, Access::Read],
);

/// The runtime attention settings of one forward.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Masking {
    pub(crate) causal: bool,
    pub(crate) window: Option<usize>,
    pub(crate) top_k: Option<usize>,
}

/// Which query rows and keys a launch covers: `rows` queries at positions `first..`, each over
/// keys `0..keys`. A forward's are `t` rows from 0 over `t` keys ([`QueryRows::square`]); a
/// decode step's one row at the position it decodes, over the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueryRows {
    pub(crate) rows: usize,
    pub(crate) first: usize,
    pub(crate) keys: usize,
}

impl QueryRows {
    /// Every position of a `t`-token forward.
    pub(crate) fn square(t: usize) -> QueryRows {
        QueryRows {
            rows: t,
            first: 0,
            keys: t,
        }
    }
}

/// Records the probabilities of `heads` maps `[heads, t, t]` in `attn` (scores on entry).
/// `weights` (same shape) holds the kernel weights when `use_weights`, else it is not read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    t_len: usize,
    heads: usize,
    masking: Masking,
    use_weights: bool,
    attn: &Arg,
    weights: &Arg,
) -> Result<usize> {
    let rows = QueryRows::square(t_len);
    push_rows(
        plan,
        kernel,
        rows,
        heads,
        masking,
        use_weights,
        attn,
        weights,
    )
}

/// [`push`] over maps `[heads, rows.rows, rows.keys]` whose rows start at position `rows.first`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_rows<'k>(
    plan: &mut PlanBuilder<'k>,
    kernel: &'static KernelSpec,
    rows: QueryRows,
    heads: usize,
    masking: Masking,
    use_weights: bool,
    attn: &Arg,
    weights: &Arg,
) -> Result<usize> {
    assert!(rows.keys <= MAX_SEQ_LEN && rows.keys > 0);
    let t_len = rows.rows;
    let params = Params {
        t: t_len as u32,
        causal: masking.causal as u32,
        window: masking.window.unwrap_or(0) as u32,
        top_k: masking.top_k.unwrap_or(0) as u32,
        use_weights: use_weights as u32,
        first: rows.first as u32,
        keys: rows.keys as u32,
        _pad: 0,
    };
    plan.push(
        kernel,
        &params,
        &[attn, weights],
        [t_len as u32, heads as u32, 1],
    )
}

// Native only: these run on lavapipe through `crate::testing`; the browser runs tests/browser.rs.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, Rng};
    use attn_model::forward::attention_probs;
    use attn_model::linalg::{elu_plus_one, matmul, MatRef};
    use attn_model::{Kernel as AttnKernel, KernelName, ModelConfig, Variant};

    /// Runs the kernel on the CPU's own scaled scores (and weights) of `heads` random heads and
    /// compares with attn-model's `attention_probs`.
    fn check(
        t_len: usize,
        d_head: usize,
        heads: usize,
        causal: bool,
        variant: &Variant,
        seed: u64,
    ) {
        let ctx = testing::context();
        let mut rng = Rng::new(seed);
        let mut config = ModelConfig::tiny(10);
        config.causal = causal;
        let scale = variant.beta() / (d_head as f32).sqrt();
        let linear = variant.kernel() == AttnKernel::Named(KernelName::Linear);
        let (mut scores, mut weights, mut want) = (vec![], vec![], vec![]);
        for _ in 0..heads {
            let q = rng.normals(t_len * d_head, 1.5);
            let k = rng.normals(t_len * d_head, 1.5);
            let (qm, km) = (
                MatRef::new(&q, t_len, d_head),
                MatRef::new(&k, t_len, d_head),
            );
            let mut s = matmul(qm, km.t());
            s.iter_mut().for_each(|v| *v *= scale);
            scores.extend(s);
            if linear {
                let phi_q: Vec<f32> = q.iter().map(|v| elu_plus_one(v * scale)).collect();
                let phi_k: Vec<f32> = k.iter().map(|&v| elu_plus_one(v)).collect();
                weights.extend(matmul(
                    MatRef::new(&phi_q, t_len, d_head),
                    MatRef::new(&phi_k, t_len, d_head).t(),
                ));
            }
            want.extend(attention_probs(&config, variant, qm, km, None));
        }
        if weights.is_empty() {
            weights.push(f32::NAN);
        }
        let attn = testing::upload(&ctx, &scores);
        let w = testing::upload(&ctx, &weights);
        let masking = Masking {
            causal,
            window: variant.window,
            top_k: variant.top_k,
        };
        let got = testing::run(&ctx, &attn, |plan| {
            push(plan, &KERNEL, t_len, heads, masking, linear, &attn, &w).unwrap();
        });
        let name = format!("probs T={t_len} causal={causal} {variant:?}");
        testing::assert_close(&name, &got, &want, 1e-5);
    }

    fn variant(json: &str) -> Variant {
        Variant::from_json(json).unwrap()
    }

    #[test]
    fn softmax_with_masks_windows_and_top_k() {
        let cases = [
            "{}",
            r#"{"window": 1}"#,
            r#"{"window": 3}"#,
            r#"{"top_k": 1}"#,
            r#"{"top_k": 3}"#,
            r#"{"top_k": 100}"#,
            r#"{"window": 5, "top_k": 2, "beta": 2.5}"#,
            r#"{"beta": 0.3}"#,
        ];
        for (n, json) in cases.iter().enumerate() {
            for causal in [true, false] {
                for (t_len, d_head) in [(1, 1), (5, 3), (37, 8), (70, 1)] {
                    check(
                        t_len,
                        d_head,
                        3,
                        causal,
                        &variant(json),
                        n as u64 * 100 + t_len as u64,
                    );
                }
            }
        }
    }

    #[test]
    fn linear_kernel_weights_are_normalised_over_kept_keys() {
        for json in [
            r#"{"kernel": "linear"}"#,
            r#"{"kernel": "linear", "window": 4, "beta": 0.7}"#,
            r#"{"kernel": "linear", "top_k": 2}"#,
        ] {
            for causal in [true, false] {
                check(33, 4, 2, causal, &variant(json), 7);
                check(1, 1, 1, causal, &variant(json), 8);
            }
        }
    }

    /// A decode step's row: one query at position `first`, over `keys` columns of which those
    /// past `first` hold anything (here: huge scores) — the forward's row `first` exactly.
    #[test]
    fn a_row_at_a_later_position_over_padded_keys_is_the_forwards_row() {
        let ctx = testing::context();
        let mut rng = Rng::new(11);
        for json in ["{}", r#"{"window": 3}"#, r#"{"top_k": 2, "beta": 1.5}"#] {
            let v = variant(json);
            let masking = Masking {
                causal: true,
                window: v.window,
                top_k: v.top_k,
            };
            let (t_len, heads, keys) = (9, 2, 16);
            let square = rng.normals(heads * t_len * t_len, 2.0);
            let attn = testing::upload(&ctx, &square);
            let w = testing::upload(&ctx, &[0.0]);
            let want = testing::run(&ctx, &attn, |plan| {
                push(plan, &KERNEL, t_len, heads, masking, false, &attn, &w).unwrap();
            });
            for first in [0, 4, t_len - 1] {
                let mut row = vec![1e30f32; heads * keys];
                for h in 0..heads {
                    let from = &square[(h * t_len + first) * t_len..][..first + 1];
                    row[h * keys..h * keys + first + 1].copy_from_slice(from);
                }
                let attn = testing::upload(&ctx, &row);
                let rows = QueryRows {
                    rows: 1,
                    first,
                    keys,
                };
                let got = testing::run(&ctx, &attn, |plan| {
                    push_rows(plan, &KERNEL, rows, heads, masking, false, &attn, &w).unwrap();
                });
                for h in 0..heads {
                    let name = format!("{json}: row {first} of head {h}");
                    let want_row = &want[(h * t_len + first) * t_len..][..t_len];
                    let mut padded = want_row.to_vec();
                    padded.resize(keys, 0.0);
                    testing::assert_close(&name, &got[h * keys..(h + 1) * keys], &padded, 0.0);
                }
            }
        }
    }

    #[test]
    fn ties_go_to_the_earlier_key_and_long_rows_fit() {
        // Equal scores everywhere: top-2 keeps the two earliest allowed keys.
        let ctx = testing::context();
        let t_len = 6;
        let attn = testing::upload(&ctx, &vec![0.5; t_len * t_len]);
        let w = testing::upload(&ctx, &[0.0]);
        let masking = Masking {
            causal: true,
            window: None,
            top_k: Some(2),
        };
        let got = testing::run(&ctx, &attn, |plan| {
            push(plan, &KERNEL, t_len, 1, masking, false, &attn, &w).unwrap();
        });
        for i in 0..t_len {
            for j in 0..t_len {
                let want = match i {
                    0 => [1.0, 0.0][j.min(1)],
                    _ if j < 2 => 0.5,
                    _ => 0.0,
                };
                assert_eq!(got[i * t_len + j], want, "row {i} key {j}");
            }
        }
        // The longest supported row.
        check(MAX_SEQ_LEN, 2, 1, true, &variant(r#"{"window": 300}"#), 9);
    }

    #[test]
    fn all_zero_weights_spread_evenly_over_kept_keys() {
        let ctx = testing::context();
        let t_len = 5;
        let attn = testing::upload(&ctx, &vec![0.0; t_len * t_len]);
        let w = testing::upload(&ctx, &vec![0.0; t_len * t_len]);
        let masking = Masking {
            causal: true,
            window: Some(2),
            top_k: None,
        };
        let got = testing::run(&ctx, &attn, |plan| {
            push(plan, &KERNEL, t_len, 1, masking, true, &attn, &w).unwrap();
        });
        for i in 0..t_len {
            for j in 0..t_len {
                let want = if j == i || (i > 0 && j == i - 1) {
                    if i == 0 {
                        1.0
                    } else {
                        0.5
                    }
                } else {
                    0.0
                };
                assert_eq!(got[i * t_len + j], want, "row {i} key {j}");
            }
        }
    }
}
