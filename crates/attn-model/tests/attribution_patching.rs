//! Attribution patching (`attn_model::attribution_patching`): each estimate is the derivative of
//! the metric along the clean-minus-corrupted direction of that activation, which finite
//! differences of the engine's own hooked forward measure independently — on every shape of
//! model and under the variants that change the attention; and on the induction model it ranks
//! heads and positions as exact activation patching does.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use attn_model::engine::unwatched;
use attn_model::patching::correlation;
use attn_model::training::tasks::{Sequence, Task};
use attn_model::{
    activation_patching, attribution_patching, load_model, now, CpuEngine, Engine, HookPoint,
    Hooks, Model, ModelConfig, Outcome, Patching, Readback, Variant,
};

fn done(outcome: Outcome<Patching>) -> Patching {
    match outcome {
        Outcome::Done(p) => p,
        Outcome::Cancelled => panic!("nothing cancels an unwatched run"),
    }
}

/// The metric with the activation at `point` set to `values`.
fn metric_with(
    engine: &mut CpuEngine,
    tokens: &[u32],
    point: HookPoint,
    values: Vec<f32>,
    (target, contrast): (u32, u32),
) -> f64 {
    let hooks = Hooks {
        capture: Vec::new(),
        replace: vec![(point, values)],
    };
    let (out, _) = now(engine.forward_hooked(tokens, &Readback::logits(), &hooks)).unwrap();
    let row = out.logits_at(tokens.len() - 1);
    row[target as usize] as f64 - row[contrast as usize] as f64
}

fn captured(engine: &mut CpuEngine, tokens: &[u32], point: HookPoint) -> Vec<f32> {
    let hooks = Hooks {
        capture: vec![point],
        replace: Vec::new(),
    };
    let (_, acts) = now(engine.forward_hooked(tokens, &Readback::logits(), &hooks)).unwrap();
    acts.into_iter().next().unwrap().1
}

/// Checks every estimate against the central difference of the metric along
/// `clean − corrupt` (restricted to one position for the residual stream), times
/// `clean − corrupted` as the estimates are divided by it.
fn check_against_finite_differences(engine: &mut CpuEngine, what: &str) {
    let c = engine.model().config.clone();
    let (clean, corrupt) = ([3u32, 1, 4, 1, 5, 9, 2], [3u32, 7, 4, 1, 8, 9, 2]);
    // Two outputs every model has (a classifier's three classes too).
    let pair = (c.n_out() as u32 - 1, 0);
    let p = done(
        now(attribution_patching(
            engine,
            &clean,
            &corrupt,
            pair,
            &mut unwatched(),
        ))
        .unwrap(),
    );
    let difference = p.clean - p.corrupted;
    let eps = 1e-2f32;
    let dropped = engine.prepared().attention_dropped.clone();
    let mut check = |point: HookPoint, rows: std::ops::Range<usize>, width: usize, got: f64| {
        let (a, b) = (
            captured(engine, &clean, point),
            captured(engine, &corrupt, point),
        );
        let shifted = |step: f32| -> Vec<f32> {
            let mut v = b.clone();
            for i in rows.start * width..rows.end * width {
                v[i] += step * (a[i] - b[i]);
            }
            v
        };
        // Central differences at ε and ε/2, extrapolated (Richardson) so that the ε² term of
        // a strongly curved metric cancels; ε stays large enough for f32 rounding not to matter.
        let mut central = |step: f32| -> f64 {
            let plus = metric_with(engine, &corrupt, point, shifted(step), pair);
            let minus = metric_with(engine, &corrupt, point, shifted(-step), pair);
            (plus - minus) / (2.0 * step as f64)
        };
        let want = (4.0 * central(eps / 2.0) - central(eps)) / 3.0;
        let got = got * difference;
        assert!(
            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
            "{what}: {point:?} rows {rows:?}: attribution {got} vs finite differences {want}"
        );
    };
    let t_len = clean.len();
    for (layer, &dropped) in dropped.iter().enumerate() {
        for head in 0..c.n_head {
            let got = p.heads[layer][head];
            if dropped {
                // A dropped layer's heads write nothing, clean or corrupted.
                assert_eq!(got, 0.0, "{what}: L{layer}H{head}");
                continue;
            }
            check(
                HookPoint::HeadOutput { layer, head },
                0..t_len,
                c.d_head(),
                got,
            );
        }
        for t in 0..t_len {
            let got = p.resid[layer][t];
            check(HookPoint::ResidPre { layer }, t..t + 1, c.d_model, got);
        }
    }
}

#[test]
fn attribution_is_the_derivative_along_clean_minus_corrupted_on_every_shape() {
    // LayerNorm with biases (GPT-2), RMSNorm, gated SiLU MLP and grouped keys (Llama), partial
    // rotary with a parallel residual and exact GELU (GPT-NeoX), a bidirectional classifier.
    for config in [
        ModelConfig::tiny(12),
        ModelConfig::tiny_llama(12),
        ModelConfig::tiny_neox(12),
        ModelConfig {
            n_classes: Some(3),
            causal: false,
            ..ModelConfig::tiny(12)
        },
    ] {
        let mut engine = CpuEngine::new(Model::random(config.clone(), 7, 0.3).unwrap()).unwrap();
        check_against_finite_differences(&mut engine, &format!("{:?}", config.family));
    }
}

#[test]
fn attribution_follows_every_variant_that_changes_the_attention() {
    let variants = [
        r#"{"window": 3}"#,
        r#"{"beta": 2.0}"#,
        r#"{"kv_groups": 1}"#,
        r#"{"kv_rank": 5}"#,
        r#"{"window": 3, "beta": 2.0}"#,
        r#"{"top_k": 2}"#,
        r#"{"heads": {"ablate": [[0, 1]], "mode": "mean"}, "drop_attention_layers": [1]}"#,
        r#"{"route_heads": 2}"#,
    ];
    for json in variants {
        for config in [ModelConfig::tiny(12), ModelConfig::tiny_llama(12)] {
            let mut engine = CpuEngine::new(Model::random(config, 11, 0.3).unwrap()).unwrap();
            engine
                .set_variant(&Variant::from_json(json).unwrap())
                .unwrap();
            check_against_finite_differences(&mut engine, json);
        }
    }
}

#[test]
fn both_patchings_run_with_a_dropped_layer_whose_heads_recover_nothing() {
    let mut engine =
        CpuEngine::new(Model::random(ModelConfig::tiny_llama(12), 3, 0.3).unwrap()).unwrap();
    engine
        .set_variant(&Variant::from_json(r#"{"drop_attention_layers": [0]}"#).unwrap())
        .unwrap();
    let (clean, corrupt) = ([1u32, 2, 3, 4], [1u32, 5, 3, 4]);
    let exact = done(
        now(activation_patching(
            &mut engine,
            &clean,
            &corrupt,
            (1, 2),
            &mut unwatched(),
        ))
        .unwrap(),
    );
    let approx = done(
        now(attribution_patching(
            &mut engine,
            &clean,
            &corrupt,
            (1, 2),
            &mut unwatched(),
        ))
        .unwrap(),
    );
    assert!(
        exact.heads[0].iter().all(|h| *h == 0.0),
        "{:?}",
        exact.heads
    );
    assert!(
        approx.heads[0].iter().all(|h| *h == 0.0),
        "{:?}",
        approx.heads
    );
    assert!(exact.heads[1].iter().any(|h| *h != 0.0));
}

#[test]
fn kernels_without_a_softmax_are_refused_with_the_reason() {
    let mut engine = CpuEngine::new(Model::random(ModelConfig::tiny(12), 7, 0.3).unwrap()).unwrap();
    engine
        .set_variant(&Variant::from_json(r#"{"kernel": "linear"}"#).unwrap())
        .unwrap();
    let err = now(attribution_patching(
        &mut engine,
        &[1, 2, 3],
        &[1, 4, 3],
        (1, 2),
        &mut unwatched(),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("softmax"), "{err}");
}

/// A clean/corrupted pair from a held-out induction sequence: cut after its last scored
/// position, whose next letter is determined by the earlier copies; corrupted, every earlier
/// copy of that letter (after an occurrence of the current one) becomes a letter the sequence
/// does not use, which the copies then predict instead. `(clean, corrupt, (target, contrast))`.
fn induction_pair(s: &Sequence) -> (Vec<u32>, Vec<u32>, (u32, u32)) {
    let t = s.targets.iter().rposition(Option::is_some).unwrap();
    let target = s.targets[t].unwrap();
    let clean = s.tokens[..=t].to_vec();
    let unused = (0..26u32).find(|l| !s.tokens.contains(l)).unwrap();
    let mut corrupt = clean.clone();
    for k in 1..=t {
        if clean[k] == target && clean[k - 1] == clean[t] {
            corrupt[k] = unused;
        }
    }
    (clean, corrupt, (target, unused))
}

#[test]
fn on_the_induction_model_attribution_ranks_what_activation_patching_measures() {
    let model = load_model(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../static/models/induction.safetensors"),
    )
    .unwrap();
    let mut engine = CpuEngine::new(model).unwrap();
    let held_out = Task::Induction.synthetic_data().unwrap().held_out();
    let mut correlations: Vec<f64> = held_out
        .iter()
        .take(40)
        .map(|s| {
            let (clean, corrupt, pair) = induction_pair(s);
            let exact = now(activation_patching(
                &mut engine,
                &clean,
                &corrupt,
                pair,
                &mut unwatched(),
            ));
            let approx = now(attribution_patching(
                &mut engine,
                &clean,
                &corrupt,
                pair,
                &mut unwatched(),
            ));
            let (exact, approx) = (done(exact.unwrap()), done(approx.unwrap()));
            assert_eq!(
                (approx.clean, approx.corrupted),
                (exact.clean, exact.corrupted)
            );
            correlation(&approx, &exact)
        })
        .collect();
    correlations.sort_by(f64::total_cmp);
    let median = correlations[correlations.len() / 2];
    // Over the first 40 held-out sequences: median 0.974, lowest 0.786 (docs/ANALYSIS.md).
    assert!(
        median >= 0.9,
        "median correlation {median} over {correlations:?}"
    );
}
