//! QK and OV circuits of every head and the composition scores between heads of different
//! layers, from the weights alone (as in "A Mathematical Framework for Transformer Circuits" and
//! TransformerLens):
//!
//! - `W_QK = W_Q^h W_K^hᵀ` (`d_model × d_model`: the bilinear form of the attention scores) and
//!   `W_OV = W_V^h W_O^h` (what the head writes for what it reads), reported by their largest
//!   singular values;
//! - `composition(W_A, W_B) = ‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)` of an earlier head A's `W_OV` with a
//!   later head B's `W_QK` (Q-composition: A writes into B's queries), `W_QKᵀ` (K-composition:
//!   into B's keys) and `W_OV` (V-composition).
//!
//! Biases and rotary positions are left out, as in those definitions. Every `d_model × d_model`
//! product is of rank at most `d_head` and is never formed: with thin QR factors `X = Q_X R_X`,
//! `‖X M Yᵀ‖_F = ‖R_X M R_Yᵀ‖_F`, and `X Yᵀ` has the singular values of `R_X R_Yᵀ`.

use faer::Mat;
use serde::{Deserialize, Serialize};

use crate::model::Model;

/// How many singular values of each circuit are reported.
pub const SINGULAR_VALUES: usize = 5;

/// The circuits of one head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadCircuit {
    pub layer: usize,
    pub head: usize,
    /// The largest singular values of `W_QK`, largest first.
    pub qk_singular_values: Vec<f32>,
    /// The largest singular values of `W_OV`, largest first.
    pub ov_singular_values: Vec<f32>,
}

/// Every head's circuits and the composition scores. `q[a][b]`, `k[a][b]`, `v[a][b]` are indexed
/// by `layer · n_head + head` of the earlier head `a` and the later head `b`; 0 where `b` is not
/// in a later layer than `a`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Circuits {
    pub heads: Vec<HeadCircuit>,
    pub q: Vec<Vec<f32>>,
    pub k: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

/// One head's factors: `W_Q`, `W_K`, `W_V` (`d_model × d_head`), `W_O` (`d_head × d_model`), and
/// the `R` factors of `W_Q`, `W_K`, `W_V` and `W_Oᵀ`.
struct Factors {
    q: Mat<f64>,
    k: Mat<f64>,
    v: Mat<f64>,
    o: Mat<f64>,
    r_q: Mat<f64>,
    r_k: Mat<f64>,
    r_v: Mat<f64>,
    r_ot: Mat<f64>,
}

fn r_factor(m: &Mat<f64>) -> Mat<f64> {
    m.qr().thin_R().to_owned()
}

fn factors(model: &Model, layer: usize, head: usize) -> Factors {
    let c = &model.config;
    let (d, dh) = (c.d_model, c.d_head());
    let group = head / (c.n_head / c.kv_heads());
    let attn = &model.blocks[layer].attn;
    let columns = |w: &[f32], width: usize, block: usize| {
        Mat::<f64>::from_fn(d, dh, |r, col| w[r * width + block * dh + col] as f64)
    };
    let q = columns(&attn.q.weight.f32(), attn.q.d_out, head);
    let k = columns(&attn.k.weight.f32(), attn.k.d_out, group);
    let v = columns(&attn.v.weight.f32(), attn.v.d_out, group);
    let o_weight = attn.o.weight.f32();
    let o = Mat::<f64>::from_fn(dh, d, |r, col| o_weight[(head * dh + r) * d + col] as f64);
    let (r_q, r_k, r_v) = (r_factor(&q), r_factor(&k), r_factor(&v));
    let r_ot = r_factor(&o.transpose().to_owned());
    Factors {
        q,
        k,
        v,
        o,
        r_q,
        r_k,
        r_v,
        r_ot,
    }
}

/// `‖·‖_F` of a small matrix.
fn frobenius(m: &Mat<f64>) -> f64 {
    let mut sum = 0.0;
    for r in 0..m.nrows() {
        for c in 0..m.ncols() {
            sum += m[(r, c)] * m[(r, c)];
        }
    }
    sum.sqrt()
}

fn top_singular_values(m: &Mat<f64>) -> Vec<f32> {
    let mut values: Vec<f64> = m.singular_values().unwrap_or_default();
    values.sort_by(|a, b| b.total_cmp(a));
    values
        .into_iter()
        .take(SINGULAR_VALUES)
        .map(|v| v as f32)
        .collect()
}

/// The circuits of every head of `model` and the composition scores between them.
pub fn circuits(model: &Model) -> Circuits {
    let c = &model.config;
    let all: Vec<(usize, usize, Factors)> = (0..c.n_layer)
        .flat_map(|layer| (0..c.n_head).map(move |head| (layer, head)))
        .map(|(layer, head)| (layer, head, factors(model, layer, head)))
        .collect();
    let heads = all
        .iter()
        .map(|(layer, head, f)| HeadCircuit {
            layer: *layer,
            head: *head,
            qk_singular_values: top_singular_values(&(&f.r_q * f.r_k.transpose())),
            ov_singular_values: top_singular_values(&(&f.r_v * f.r_ot.transpose())),
        })
        .collect();
    let norm_qk: Vec<f64> = all
        .iter()
        .map(|(_, _, f)| frobenius(&(&f.r_q * f.r_k.transpose())))
        .collect();
    let norm_ov: Vec<f64> = all
        .iter()
        .map(|(_, _, f)| frobenius(&(&f.r_v * f.r_ot.transpose())))
        .collect();
    let n = all.len();
    let (mut q, mut k, mut v) = (
        vec![vec![0.0; n]; n],
        vec![vec![0.0; n]; n],
        vec![vec![0.0; n]; n],
    );
    let ratio = |num: f64, den: f64| if den > 0.0 { (num / den) as f32 } else { 0.0 };
    for (a, (layer_a, _, fa)) in all.iter().enumerate() {
        for (b, (layer_b, _, fb)) in all.iter().enumerate() {
            if layer_b <= layer_a {
                continue;
            }
            // OV_A · QK_B = V_A (O_A Q_B) K_Bᵀ; OV_A · QK_Bᵀ = V_A (O_A K_B) Q_Bᵀ;
            // OV_A · OV_B = V_A (O_A V_B) O_B.
            let q_comp = &fa.r_v * (&fa.o * &fb.q) * fb.r_k.transpose();
            let k_comp = &fa.r_v * (&fa.o * &fb.k) * fb.r_q.transpose();
            let v_comp = &fa.r_v * (&fa.o * &fb.v) * fb.r_ot.transpose();
            q[a][b] = ratio(frobenius(&q_comp), norm_ov[a] * norm_qk[b]);
            k[a][b] = ratio(frobenius(&k_comp), norm_ov[a] * norm_qk[b]);
            v[a][b] = ratio(frobenius(&v_comp), norm_ov[a] * norm_ov[b]);
        }
    }
    Circuits { heads, q, k, v }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;

    /// The dense `d_model × d_model` circuits of head `(layer, head)`: `(W_QK, W_OV)`.
    fn dense(model: &Model, layer: usize, head: usize) -> (Mat<f64>, Mat<f64>) {
        let f = factors(model, layer, head);
        (&f.q * f.k.transpose(), &f.v * &f.o)
    }

    #[test]
    fn factored_scores_equal_the_dense_definitions() {
        let model = Model::random(
            ModelConfig {
                n_layer: 3,
                n_kv_head: Some(2),
                ..ModelConfig::tiny(20)
            },
            9,
            0.4,
        )
        .unwrap();
        let c = &model.config;
        let got = circuits(&model);
        let index = |l: usize, h: usize| l * c.n_head + h;
        for la in 0..c.n_layer {
            for ha in 0..c.n_head {
                let (qk_a, ov_a) = dense(&model, la, ha);
                // Singular values of the dense circuits.
                let mut want: Vec<f64> = qk_a.singular_values().unwrap();
                want.sort_by(|a, b| b.total_cmp(a));
                let head = &got.heads[index(la, ha)];
                for (g, w) in head.qk_singular_values.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() < 1e-4 * w.max(1.0), "QK {g} vs {w}");
                }
                let mut want: Vec<f64> = ov_a.singular_values().unwrap();
                want.sort_by(|a, b| b.total_cmp(a));
                for (g, w) in head.ov_singular_values.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() < 1e-4 * w.max(1.0), "OV {g} vs {w}");
                }
                for lb in 0..c.n_layer {
                    for hb in 0..c.n_head {
                        let (a, b) = (index(la, ha), index(lb, hb));
                        if lb <= la {
                            assert_eq!(got.q[a][b], 0.0);
                            continue;
                        }
                        let (qk_b, ov_b) = dense(&model, lb, hb);
                        let score = |x: &Mat<f64>, y: &Mat<f64>| {
                            frobenius(&(x * y)) / (frobenius(x) * frobenius(y))
                        };
                        let close =
                            |g: f32, w: f64| assert!((g as f64 - w).abs() < 1e-5, "{g} vs {w}");
                        close(got.q[a][b], score(&ov_a, &qk_b));
                        close(got.k[a][b], score(&ov_a, &qk_b.transpose().to_owned()));
                        close(got.v[a][b], score(&ov_a, &ov_b));
                    }
                }
            }
        }
    }

    #[test]
    fn aligned_subspaces_compose_and_orthogonal_ones_do_not() {
        // Head (0, 0) writes into the first d_head coordinates. Head (1, 0) reads its values
        // from the same coordinates: the score of two equal rank-d_head projections P is
        // ‖P·P‖ / ‖P‖² = 1/√d_head. Head (1, 1) reads from the next d_head coordinates: 0.
        let mut model = Model::random(ModelConfig::tiny(20), 3, 0.4).unwrap();
        let (d, dh, heads) = (
            model.config.d_model,
            model.config.d_head(),
            model.config.n_head,
        );
        let mut project = |layer: usize, head: usize, offset: usize| {
            let attn = &mut model.blocks[layer].attn;
            let v_width = attn.v.d_out;
            for r in 0..d {
                for col in 0..dh {
                    let one = (r == col + offset) as u8 as f32;
                    attn.v.weight.make_f32()[r * v_width + head * dh + col] = one;
                    attn.o.weight.make_f32()[(head * dh + col) * d + r] = one;
                }
            }
        };
        project(0, 0, 0);
        project(1, 0, 0);
        project(1, 1, dh);
        let got = circuits(&model);
        let expected = 1.0 / (dh as f32).sqrt();
        assert!(
            (got.v[0][heads] - expected).abs() < 1e-6,
            "{}",
            got.v[0][heads]
        );
        assert!(got.v[0][heads + 1].abs() < 1e-6, "{}", got.v[0][heads + 1]);
        assert_eq!(
            got.heads[0].ov_singular_values,
            vec![1.0; SINGULAR_VALUES.min(dh)]
        );
    }
}
