//! Every variant on cases whose answer can be checked by hand.
//!
//! They need no files, so they run natively and, as wasm-bindgen tests, inside a browser on the
//! wasm build (see tests/browser.rs for the command).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use attn_model::config::ModelConfig;
use attn_model::forward::attention_probs;
use attn_model::linalg::MatRef;
use attn_test_support::max_abs_diff;
use std::sync::Arc;

use attn_model::{compare, prepare, CpuEngine, Model, Output, Variant};

const TOKENS: [u32; 10] = [3, 17, 5, 3, 17, 8, 40, 2, 5, 11];

fn model() -> Model {
    Model::random(ModelConfig::tiny(50), 11, 0.4).unwrap()
}

fn run(model: &Model, variant: &str) -> Output {
    let mut engine = CpuEngine::new(model.clone()).unwrap();
    engine
        .set_variant(&Variant::from_json(variant).unwrap())
        .unwrap();
    engine.forward(&TOKENS).unwrap()
}

fn assert_rows_are_distributions(out: &Output, causal: bool) {
    let t = out.seq_len;
    for l in 0..out.n_layer {
        for h in 0..out.n_head {
            let map = out.attention_map(l, h);
            for i in 0..t {
                let row = &map[i * t..(i + 1) * t];
                let sum: f32 = row.iter().sum();
                assert!(
                    (sum - 1.0).abs() < 1e-5,
                    "row {i} of ({l},{h}) sums to {sum}"
                );
                assert!(row.iter().all(|&p| p >= 0.0));
                if causal {
                    assert!(
                        row[i + 1..].iter().all(|&p| p == 0.0),
                        "attends to the future"
                    );
                }
            }
        }
    }
}

#[test]
fn baseline_attention_is_causal_and_normalised_and_not_uniform() {
    let out = run(&model(), "{}");
    assert_rows_are_distributions(&out, true);
    assert_eq!(out.logits.len(), TOKENS.len() * 50);
    // The last row of layer 0 head 0 must not be uniform, or the variant tests below prove little.
    let map = out.attention_map(0, 0);
    let last = &map[9 * 10..];
    assert!(max_abs_diff(last, &[0.1; 10]) > 0.05);
}

#[test]
fn window_one_attends_to_self_only() {
    let out = run(&model(), r#"{"window": 1}"#);
    for l in 0..2 {
        for h in 0..4 {
            let map = out.attention_map(l, h);
            for i in 0..10 {
                for j in 0..10 {
                    assert_eq!(map[i * 10 + j], if i == j { 1.0 } else { 0.0 });
                }
            }
        }
    }
}

#[test]
fn window_three_sees_the_last_three_positions() {
    let out = run(&model(), r#"{"window": 3}"#);
    assert_rows_are_distributions(&out, true);
    let map = out.attention_map(1, 2);
    for i in 0..10 {
        for j in 0..10 {
            let visible = j <= i && i < j + 3;
            assert_eq!(map[i * 10 + j] > 0.0, visible, "({i},{j})");
        }
    }
}

#[test]
fn top_k_one_is_the_argmax_of_the_scores() {
    let m = model();
    let base = run(&m, "{}");
    let top1 = run(&m, r#"{"top_k": 1}"#);
    // Layer 0 sees the same input in both runs, so its argmax must match the baseline's.
    for h in 0..4 {
        let (b, t) = (base.attention_map(0, h), top1.attention_map(0, h));
        for i in 0..10 {
            let row = &b[i * 10..(i + 1) * 10];
            let argmax = attn_model::forward::argmax(row) as usize;
            for j in 0..10 {
                assert_eq!(t[i * 10 + j], if j == argmax { 1.0 } else { 0.0 });
            }
        }
    }
}

#[test]
fn top_k_keeps_k_keys_renormalised() {
    let m = model();
    let base = run(&m, "{}");
    let top3 = run(&m, r#"{"top_k": 3}"#);
    let (b, t) = (base.attention_map(0, 1), top3.attention_map(0, 1));
    for i in 0..10 {
        let kept: Vec<usize> = (0..10).filter(|&j| t[i * 10 + j] > 0.0).collect();
        assert_eq!(kept.len(), (i + 1).min(3));
        // Renormalised softmax: ratios between kept keys are unchanged.
        let mass: f32 = kept.iter().map(|&j| b[i * 10 + j]).sum();
        for &j in &kept {
            assert!((t[i * 10 + j] - b[i * 10 + j] / mass).abs() < 1e-5);
        }
    }
}

#[test]
fn beta_sharpens_layer_zero_as_a_power_of_the_baseline() {
    let m = model();
    let base = run(&m, "{}");
    let sharp = run(&m, r#"{"beta": 2.5}"#);
    // softmax(β s) ∝ softmax(s)^β row by row.
    for h in 0..4 {
        let (b, s) = (base.attention_map(0, h), sharp.attention_map(0, h));
        for i in 0..10 {
            let powered: Vec<f32> = (0..=i).map(|j| b[i * 10 + j].powf(2.5)).collect();
            let total: f32 = powered.iter().sum();
            for j in 0..=i {
                assert!((s[i * 10 + j] - powered[j] / total).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn linear_kernel_matches_a_hand_computed_case() {
    // d_head = 1, two positions: q = [1, 2], k = [0.5, -1].
    let config = ModelConfig::tiny(10);
    let variant = Variant::from_json(r#"{"kernel": "linear"}"#).unwrap();
    let q = [1.0f32, 2.0];
    let k = [0.5f32, -1.0];
    let probs = attention_probs(
        &config,
        &variant,
        MatRef::new(&q, 2, 1),
        MatRef::new(&k, 2, 1),
        None,
    );
    // Row 0 sees only key 0. Row 1: φ(q̃)=3 (q̃ = 2), φ(k) = [1.5, e^-1].
    let w = [3.0 * 1.5, 3.0 * (-1.0f32).exp()];
    let expected = [1.0, 0.0, w[0] / (w[0] + w[1]), w[1] / (w[0] + w[1])];
    assert!(max_abs_diff(&probs, &expected) < 1e-6, "{probs:?}");
}

#[test]
fn linear_kernel_rows_are_distributions() {
    let out = run(&model(), r#"{"kernel": "linear", "window": 4}"#);
    assert_rows_are_distributions(&out, true);
    assert!(max_abs_diff(&out.logits, &run(&model(), "{}").logits) > 1e-3);
}

/// FAVOR+'s features: exactly orthogonal within each block of d_head, each still N(0, I) in
/// distribution (mean squared norm d, every coordinate mean 0 and variance 1).
#[test]
fn random_features_are_block_orthogonal_gaussians() {
    use rand_chacha::rand_core::SeedableRng;
    let (m, d) = (10, 4);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let w = attn_model::prepare::orthogonal_features(&mut rng, m, d);
    assert_eq!(w.len(), m * d);
    let row = |i: usize| &w[i * d..(i + 1) * d];
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for block in [0..4, 4..8, 8..10] {
        for i in block.clone() {
            for j in block.clone().filter(|&j| j != i) {
                let cos = dot(row(i), row(j)) / (dot(row(i), row(i)) * dot(row(j), row(j))).sqrt();
                assert!(cos.abs() < 1e-5, "rows {i} and {j}: cosine {cos}");
            }
        }
    }
    // Across blocks the rows are independent, not orthogonal.
    assert!(dot(row(0), row(4)).abs() > 1e-3);
    let (m, d) = (20_000, 8);
    let w = attn_model::prepare::orthogonal_features(&mut rng, m, d);
    let mean_sq_norm = w.iter().map(|x| (x * x) as f64).sum::<f64>() / m as f64;
    assert!((mean_sq_norm - d as f64).abs() < 0.15, "{mean_sq_norm}");
    for c in 0..d {
        let column: Vec<f64> = (0..m).map(|i| w[i * d + c] as f64).collect();
        let mean = column.iter().sum::<f64>() / m as f64;
        let var = column.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / m as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "column {c}: {mean} {var}"
        );
    }
}

/// `"iid": true` draws the features independently: the same model runs, with another output than
/// the orthogonal draw of the same seed, and the URL keeps the choice.
#[test]
fn independent_random_features_are_a_separate_draw() {
    let m = model();
    let orthogonal = run(&m, r#"{"kernel": {"random_features": 4, "seed": 3}}"#);
    let iid = run(
        &m,
        r#"{"kernel": {"random_features": 4, "seed": 3, "iid": true}}"#,
    );
    assert_rows_are_distributions(&iid, true);
    assert!(max_abs_diff(&orthogonal.logits, &iid.logits) > 1e-4);
    let again = run(
        &m,
        r#"{"kernel": {"random_features": 4, "seed": 3, "iid": true}}"#,
    );
    assert_eq!(iid.logits, again.logits, "seeded");
}

#[test]
fn random_features_approach_softmax_as_m_grows() {
    let m = model();
    let base = run(&m, "{}");
    let kl_to_softmax = |features: usize| -> f64 {
        // Average over a few seeds so one lucky draw cannot decide the test.
        let mut total = 0.0;
        for seed in 0..4 {
            let out = run(
                &m,
                &format!(r#"{{"kernel": {{"random_features": {features}, "seed": {seed}}}}}"#),
            );
            assert_rows_are_distributions(&out, true);
            for h in 0..4 {
                let (p, q) = (base.attention_map(0, h), out.attention_map(0, h));
                for i in 0..10 {
                    for j in 0..=i {
                        let (a, b) = (p[i * 10 + j] as f64, q[i * 10 + j].max(1e-12) as f64);
                        if a > 0.0 {
                            total += a * (a / b).ln();
                        }
                    }
                }
            }
        }
        total
    };
    // The estimator's variance grows with the scores' size, so on this random model the KL
    // falls slowly: ≈ 180, 68, 20 and 9 at m = 4, 64, 2048 and 16 384.
    let (few, some, many) = (kl_to_softmax(4), kl_to_softmax(64), kl_to_softmax(16384));
    assert!(few > some && some > many, "KL {few} {some} {many}");
    assert!(many < 0.1 * few, "KL {few} {some} {many}");
}

/// The KV meter's legend says what the bytes it counts are.
#[test]
fn the_kv_cache_contents_match_the_bytes_counted() {
    let m = model();
    let c = &m.config;
    for (json, want) in [
        ("{}", "K and V: 2 × 4 heads × 4 dims × 2 layers, f32"),
        (
            r#"{"kv_groups": 1}"#,
            "K and V: 2 × 1 heads, pooled from 4 × 4 dims × 2 layers, f32",
        ),
        (
            r#"{"kv_rank": 3, "drop_attention_layers": [0]}"#,
            "a rank-3 latent per token (K and V are rebuilt from it) × 1 of 2 layers (1 dropped), f32",
        ),
        (
            r#"{"kv_pca": 2}"#,
            "K and V: 2 × 4 heads × 2 of 4 PCA components (a fixed basis per head, fitted on \
             calibration text, rebuilds them) × 2 layers, f32",
        ),
    ] {
        let variant = Variant::from_json(json).unwrap();
        let text = attn_model::prepare::kv_cache_contents(c.n_layer, c.kv_heads(), c.d_head(), &variant);
        assert_eq!(text, want, "{json}");
        // The bytes the forward reports are what the legend states.
        assert_eq!(run(&m, json).kv_bytes_per_token, bytes(&text, &variant), "{json}");
    }
}

/// Bytes per token as the legend states them.
fn bytes(text: &str, variant: &Variant) -> usize {
    let n: Vec<usize> = text
        .split(|ch: char| !ch.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    match (variant.kv_rank, variant.kv_pca) {
        // rank, 3 → [rank, kept layers, all layers, dropped]; "f32" contributes 32.
        (Some(_), _) => n[0] * n[1] * 4,
        // [2, heads, components, d_head, layers, 32]
        (None, Some(_)) => n[0] * n[1] * n[2] * n[4] * 4,
        (None, None) => {
            let pooled = usize::from(text.contains("pooled"));
            // [2, heads, (from), dims, kept layers, …, 32]
            n[0] * n[1] * n[2 + pooled] * n[3 + pooled] * 4
        }
    }
}

#[test]
fn kv_groups_equal_to_heads_is_a_no_op() {
    let m = model();
    assert_eq!(run(&m, "{}"), run(&m, r#"{"kv_groups": 4}"#));
}

#[test]
fn kv_groups_pool_keys_and_values() {
    let m = model();
    let shared = Arc::new(m.clone());
    let prepared = prepare(&shared, &Variant::from_json(r#"{"kv_groups": 2}"#).unwrap()).unwrap();
    let (orig, pooled) = (&m.blocks[0].attn.k, prepared.key(0));
    assert_eq!(pooled.d_out, 2 * 4);
    // Group 1 = heads 2 and 3; column 1 of that group.
    let d = 16;
    for row in 0..d {
        let expected = 0.5
            * (orig.weight.f32()[row * 16 + 2 * 4 + 1] + orig.weight.f32()[row * 16 + 3 * 4 + 1]);
        assert!((pooled.weight.f32()[row * 8 + 4 + 1] - expected).abs() < 1e-6);
    }
    let mqa = run(&m, r#"{"kv_groups": 1}"#);
    let gqa = run(&m, r#"{"kv_groups": 2}"#);
    let mha = run(&m, "{}");
    assert_eq!(mha.kv_bytes_per_token, 2 * 2 * 4 * 4 * 4);
    assert_eq!(gqa.kv_bytes_per_token, 2 * 2 * 2 * 4 * 4);
    assert_eq!(mqa.kv_bytes_per_token, 2 * 2 * 4 * 4);
    assert!(max_abs_diff(&mqa.logits, &mha.logits) > 1e-3);
    // Under MQA every head of a layer shares its keys: heads differ only through their queries,
    // so this is a smoke check that it still runs and normalises.
    assert_rows_are_distributions(&mqa, true);
}

#[test]
fn kv_rank_full_is_a_no_op_and_lower_ranks_cost_less() {
    let m = model();
    let base = run(&m, "{}");
    let full = run(&m, r#"{"kv_rank": 16}"#);
    assert!(max_abs_diff(&base.logits, &full.logits) < 1e-4);
    let low = run(&m, r#"{"kv_rank": 4}"#);
    assert_eq!(low.kv_bytes_per_token, 2 * 4 * 4);
    assert!(max_abs_diff(&base.logits, &low.logits) > 1e-3);
}

#[test]
fn kv_rank_truncates_to_that_rank_and_keeps_biases() {
    let m = model();
    let shared = Arc::new(m.clone());
    let prepared = prepare(&shared, &Variant::from_json(r#"{"kv_rank": 3}"#).unwrap()).unwrap();
    let (k, v) = (prepared.key(1), prepared.value(1));
    // Stack [W_k | W_v] and check its rank numerically: the 4th singular value of a rank-3
    // matrix is ~0, so every 4×4 minor's determinant is ~0. Cheaper: rows span ≤ 3 dimensions,
    // checked by Gram-Schmidt.
    let rows: Vec<Vec<f64>> = (0..16)
        .map(|r| {
            k.weight.f32()[r * 16..(r + 1) * 16]
                .iter()
                .chain(&v.weight.f32()[r * 16..(r + 1) * 16])
                .map(|&x| x as f64)
                .collect()
        })
        .collect();
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for row in rows {
        let mut v = row.clone();
        for e in &basis {
            let dot: f64 = v.iter().zip(e).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(e).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        let scale = row.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-4 * scale.max(1e-9) {
            v.iter_mut().for_each(|a| *a /= norm);
            basis.push(v);
        }
    }
    assert_eq!(basis.len(), 3);
    // Biases are kept.
    assert_eq!(k.bias, m.blocks[1].attn.k.bias);
}

#[test]
fn zero_ablation_silences_the_head_but_keeps_its_map() {
    let m = model();
    let base = run(&m, "{}");
    let out = run(&m, r#"{"heads": {"ablate": [[1, 2]], "mode": "zero"}}"#);
    assert!(out.head_norms(1, 2).iter().all(|&n| n == 0.0));
    assert!(out.head_norms(1, 1).iter().all(|&n| n > 0.0));
    assert_eq!(out.attention_map(1, 2), base.attention_map(1, 2));
    assert!(max_abs_diff(&out.logits, &base.logits) > 1e-4);
}

#[test]
fn mean_ablation_makes_the_head_output_constant() {
    let out = run(
        &model(),
        r#"{"heads": {"ablate": [[0, 3]], "mode": "mean"}}"#,
    );
    let norms = out.head_norms(0, 3);
    assert!(norms
        .iter()
        .all(|&n| (n - norms[0]).abs() < 1e-5 && n > 0.0));
}

#[test]
fn ablating_every_head_equals_dropping_attention_when_the_output_bias_is_zero() {
    let mut m = model();
    for b in &mut m.blocks {
        b.attn.o.bias.as_mut().unwrap().fill(0.0);
    }
    let all_heads: Vec<String> = (0..2)
        .flat_map(|l| (0..4).map(move |h| format!("[{l},{h}]")))
        .collect();
    let ablated = run(
        &m,
        &format!(r#"{{"heads": {{"ablate": [{}]}}}}"#, all_heads.join(",")),
    );
    let dropped = run(&m, r#"{"drop_attention_layers": [0, 1]}"#);
    assert!(max_abs_diff(&ablated.logits, &dropped.logits) < 1e-5);
    assert!(dropped.attention.iter().all(|&a| a == 0.0));
    assert_eq!(dropped.kv_bytes_per_token, 0);
}

#[test]
fn dropping_the_last_layer_leaves_earlier_maps_alone() {
    let m = model();
    let base = run(&m, "{}");
    let out = run(&m, r#"{"drop_attention_layers": [1]}"#);
    assert_eq!(out.attention_map(0, 0), base.attention_map(0, 0));
    assert!(out.attention_map(1, 0).iter().all(|&a| a == 0.0));
    assert_eq!(out.kv_bytes_per_token, base.kv_bytes_per_token / 2);
}

#[test]
fn bidirectional_models_see_the_future_and_window_symmetrically() {
    let config = ModelConfig {
        causal: false,
        n_classes: Some(3),
        ..ModelConfig::tiny(50)
    };
    let m = Model::random(config, 5, 0.4).unwrap();
    let out = run(&m, "{}");
    assert_eq!(out.n_out, 3);
    assert_eq!(out.logits.len(), 10 * 3);
    assert_rows_are_distributions(&out, false);
    assert!(out.attention_map(0, 0)[1] > 0.0, "row 0 attends to key 1");
    let windowed = run(&m, r#"{"window": 2}"#);
    let map = windowed.attention_map(1, 1);
    for i in 0..10 {
        for j in 0..10 {
            assert_eq!(map[i * 10 + j] > 0.0, i.abs_diff(j) < 2);
        }
    }
}

#[test]
fn natively_grouped_models_run_and_pool_further() {
    let config = ModelConfig {
        n_kv_head: Some(2),
        mlp: false,
        ..ModelConfig::tiny(50)
    };
    let m = Model::random(config, 9, 0.4).unwrap();
    let base = run(&m, "{}");
    assert_eq!(base.kv_bytes_per_token, 2 * 2 * 2 * 4 * 4);
    assert_rows_are_distributions(&base, true);
    assert_eq!(run(&m, r#"{"kv_groups": 2}"#), base);
    assert_eq!(
        run(&m, r#"{"kv_groups": 1}"#).kv_bytes_per_token,
        2 * 2 * 4 * 4
    );
    assert!(Variant::from_json(r#"{"kv_groups": 4}"#)
        .unwrap()
        .validate(&m.config)
        .is_err());
}

#[test]
fn metrics_compare_outputs() {
    let m = model();
    let base = run(&m, "{}");
    let same = compare(&base, &base, &TOKENS);
    assert_eq!(same.mean_kl, 0.0);
    assert_eq!(same.top1_agreement, 1.0);
    assert_eq!(same.baseline_nll, same.variant_nll);
    let other = run(&m, r#"{"kv_groups": 1, "beta": 3.0}"#);
    let cmp = compare(&base, &other, &TOKENS);
    assert!(cmp.mean_kl > 0.0 && cmp.top1_agreement <= 1.0);
    // NLL by hand at position 0.
    let probs = attn_model::linalg::softmax(base.logits_at(0));
    let manual: f64 = (0..9)
        .map(|t| {
            let p = attn_model::linalg::softmax(base.logits_at(t));
            -(p[TOKENS[t + 1] as usize] as f64).ln()
        })
        .sum::<f64>()
        / 9.0;
    assert!(probs.iter().sum::<f32>() > 0.999);
    assert!((cmp.baseline_nll.unwrap() - manual).abs() < 1e-4);
}

#[test]
fn variant_json_round_trips_and_rejects_unknown_fields() {
    let text = r#"{"window": 8, "top_k": 4, "kernel": {"random_features": 64, "seed": 3},
        "heads": {"ablate": [[0, 1], [1, 3]], "mode": "mean"}, "drop_attention_layers": [1],
        "kv_groups": 2, "kv_rank": 6, "beta": 1.5}"#;
    let v = Variant::from_json(text).unwrap();
    let again = Variant::from_json(&serde_json::to_string(&v).unwrap()).unwrap();
    assert_eq!(v, again);
    assert!(v.validate(&ModelConfig::tiny(50)).is_ok());
    assert!(Variant::from_json(r#"{"kernel": "linear"}"#).is_ok());
    let err = Variant::from_json(r#"{"windw": 3}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("windw"), "{err}");
    assert!(Variant::from_json("{}").unwrap().is_baseline());
    assert!(Variant::from_json(r#"{"beta": 1.0, "kernel": "softmax"}"#)
        .unwrap()
        .is_baseline());
}

#[test]
fn runtime_settings_reuse_the_weights_and_give_what_a_fresh_preparation_gives() {
    let m = model();
    let mut engine = CpuEngine::new(m.clone()).unwrap();
    // Each step changes runtime settings only, then one weight-side setting, then runtime again.
    let steps = [
        (r#"{"window": 3}"#, 0),
        (r#"{"window": 3, "top_k": 2, "beta": 2.0}"#, 0),
        (r#"{"heads": {"ablate": [[0, 1]], "mode": "mean"}}"#, 0),
        (r#"{"drop_attention_layers": [1], "kernel": "linear"}"#, 0),
        (r#"{"kv_groups": 2}"#, 1),
        (r#"{"kv_groups": 2, "window": 2}"#, 1),
        (r#"{"kv_groups": 2, "kv_rank": 5}"#, 2),
        (r#"{"kv_groups": 2, "kv_rank": 5, "beta": 0.5}"#, 2),
        (r#"{"kernel": {"random_features": 8, "seed": 1}}"#, 3),
        (
            r#"{"kernel": {"random_features": 8, "seed": 1}, "top_k": 3}"#,
            3,
        ),
        (r#"{}"#, 4),
    ];
    for (json, preparations) in steps {
        let variant = Variant::from_json(json).unwrap();
        let before = engine.prepared().clone();
        engine.set_variant(&variant).unwrap();
        assert_eq!(engine.stats().weight_preparations, preparations, "{json}");
        // The unmodified weights are never copied.
        assert!(Arc::ptr_eq(engine.base(), before.base()), "{json}");
        // Reuse must not change the answer.
        assert!(engine.forward(&TOKENS).unwrap() == run(&m, json), "{json}");
    }
    assert_eq!(engine.stats().variant_changes, steps.len() as u64);
}

#[test]
fn hooks_capture_and_replace_activations() {
    use attn_model::{forward_hooked, prepare, HookPoint, Hooks};
    let m = Arc::new(model());
    let base = prepare(&m, &Variant::default()).unwrap();
    let d = m.config.d_model;
    let capture = |points: Vec<HookPoint>| Hooks {
        capture: points,
        replace: Vec::new(),
    };
    // The residual entering block 0 is the embeddings.
    let (out, captured) = forward_hooked(
        &base,
        &TOKENS,
        &capture(vec![HookPoint::ResidPre { layer: 0 }]),
    )
    .unwrap();
    let first = &captured[0].1;
    assert_eq!(first.len(), TOKENS.len() * d);
    for (t, &tok) in TOKENS.iter().enumerate() {
        for i in 0..d {
            let expected = m.token_embedding.f32()[tok as usize * d + i]
                + m.position_embedding.as_ref().unwrap()[t * d + i];
            assert!((first[t * d + i] - expected).abs() < 1e-6);
        }
    }
    // Putting a head's own output back changes nothing.
    let z = HookPoint::HeadOutput { layer: 1, head: 2 };
    let (_, own) = forward_hooked(&base, &TOKENS, &capture(vec![z])).unwrap();
    let same = Hooks {
        capture: vec![],
        replace: own.clone(),
    };
    assert!(forward_hooked(&base, &TOKENS, &same).unwrap().0 == out);
    // Zeros in place of a head's output are zero ablation (the norms stay the head's own).
    let zeros = Hooks {
        capture: vec![],
        replace: vec![(z, vec![0.0; own[0].1.len()])],
    };
    let patched = forward_hooked(&base, &TOKENS, &zeros).unwrap().0;
    let ablated = run(&m, r#"{"heads": {"ablate": [[1, 2]]}}"#);
    assert!(max_abs_diff(&patched.logits, &ablated.logits) < 1e-5);
    assert_eq!(patched.head_out_norms, out.head_out_norms);
    // Patching the final residual from another input gives that input's logits.
    let other: Vec<u32> = TOKENS.iter().map(|t| (t + 7) % 50).collect();
    let last = HookPoint::ResidPre { layer: 2 };
    let (other_out, resid) = forward_hooked(&base, &other, &capture(vec![last])).unwrap();
    let swapped = Hooks {
        capture: vec![],
        replace: resid,
    };
    let swapped = forward_hooked(&base, &TOKENS, &swapped).unwrap().0;
    assert!(max_abs_diff(&swapped.logits, &other_out.logits) < 1e-5);
    // Heads of a dropped layer capture zeros and cannot be replaced; bad points and lengths are
    // input errors.
    let dropped = prepare(
        &m,
        &Variant::from_json(r#"{"drop_attention_layers": [1]}"#).unwrap(),
    )
    .unwrap();
    let (_, zero) = forward_hooked(&dropped, &TOKENS, &capture(vec![z])).unwrap();
    assert!(zero[0].1.iter().all(|v| *v == 0.0));
    assert!(forward_hooked(&dropped, &TOKENS, &same).is_err());
    let bad_point = capture(vec![HookPoint::HeadOutput { layer: 2, head: 0 }]);
    assert!(forward_hooked(&base, &TOKENS, &bad_point).is_err());
    let short = Hooks {
        capture: vec![],
        replace: vec![(z, vec![0.0; 3])],
    };
    assert!(forward_hooked(&base, &TOKENS, &short).is_err());
}

#[test]
fn the_routing_proxy_keeps_exactly_k_heads_per_token_the_largest() {
    let m = model();
    let (n_layer, n_head) = (m.config.n_layer, m.config.n_head);
    let prepared_all = prepare(&Arc::new(m.clone()), &Variant::default()).unwrap();
    let hooks = attn_model::Hooks {
        capture: (0..n_layer)
            .flat_map(|layer| {
                (0..n_head).map(move |head| attn_model::HookPoint::HeadOutput { layer, head })
            })
            .collect(),
        replace: Vec::new(),
    };
    assert_eq!(
        run(&m, &format!(r#"{{"route_heads": {n_head}}}"#)),
        run(&m, "{}"),
        "every head kept: a no-op"
    );
    for k in 1..n_head {
        let variant = Variant::from_json(&format!(r#"{{"route_heads": {k}}}"#)).unwrap();
        let prepared = prepare(&Arc::new(m.clone()), &variant).unwrap();
        let (out, captured) = attn_model::forward_hooked(&prepared, &TOKENS, &hooks).unwrap();
        let d_head = m.config.d_head();
        for layer in 0..n_layer {
            for t in 0..TOKENS.len() {
                let kept: Vec<usize> = (0..n_head)
                    .filter(|&h| {
                        let z = &captured[layer * n_head + h].1[t * d_head..(t + 1) * d_head];
                        z.iter().any(|v| *v != 0.0)
                    })
                    .collect();
                assert_eq!(kept.len(), k, "layer {layer} position {t}");
                // The kept heads are those that write the most (the norms are reported before routing).
                let norm = |h: usize| out.head_norms(layer, h)[t];
                let smallest_kept = kept.iter().map(|&h| norm(h)).fold(f32::INFINITY, f32::min);
                assert!((0..n_head)
                    .filter(|h| !kept.contains(h))
                    .all(|h| norm(h) <= smallest_kept));
            }
        }
        assert!(compare(&forward_all(&prepared_all), &out, &TOKENS).mean_kl > 0.0);
    }
    assert!(Variant::from_json(r#"{"route_heads": 9}"#)
        .unwrap()
        .validate(&m.config)
        .is_err());
}

fn forward_all(prepared: &attn_model::PreparedModel) -> Output {
    attn_model::forward(prepared, &TOKENS).unwrap()
}
