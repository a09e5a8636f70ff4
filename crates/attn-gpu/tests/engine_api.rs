//! The engine API (`attn_model::Engine`) on both engines: each test body runs once on the CPU
//! engine and once on the GPU engine (lavapipe natively), and the analyses built on the API —
//! head importance, generation, role scores — and the hook points give the same answers on both. Also: runtime-only
//! variant changes copy and upload no weights, and the engine pair falls back to the CPU when the
//! device is lost.
#![cfg(not(target_arch = "wasm32"))]

use crate::common;

use std::sync::{Arc, OnceLock};

use attn_gpu::{AnyEngine, EngineKind, EnginePair, GpuContext, GpuEngine, Readback};
use attn_model::engine::{unwatched, Outcome, Step};
use attn_model::{
    generate, head_importance, head_roles, AblationMode, CpuEngine, Engine, HookPoint, Hooks,
    Model, ModelConfig, Sampling, Variant,
};
use pollster::block_on;

fn ctx() -> GpuContext {
    static CONTEXT: OnceLock<GpuContext> = OnceLock::new();
    CONTEXT
        .get_or_init(|| block_on(common::new_context()))
        .clone()
}

fn model() -> Model {
    Model::random(ModelConfig::tiny(40), 5, 0.5).unwrap()
}

/// Runs one test body on each engine: `NAME::cpu` and `NAME::gpu`.
macro_rules! on_both_engines {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn cpu() {
                let mut engine = AnyEngine::cpu(model()).unwrap();
                ($body)(&mut engine);
            }

            #[test]
            fn gpu() {
                let mut engine = AnyEngine::gpu(&ctx(), model()).unwrap();
                ($body)(&mut engine);
            }
        }
    };
}

/// What the CPU engine (the oracle) answers, for the GPU runs to be compared with.
fn reference() -> CpuEngine {
    CpuEngine::new(model()).unwrap()
}

const TOKENS: [u32; 10] = [3, 17, 5, 9, 3, 17, 5, 9, 22, 1];

on_both_engines!(
    importance_ranks_like_the_cpu_engine,
    |engine: &mut AnyEngine| {
        let base = Variant::from_json(r#"{"window": 6}"#).unwrap();
        let mut steps = Vec::new();
        let mut watch = |step: Step| {
            steps.push(step);
            true
        };
        let ranking = block_on(head_importance(
            engine,
            &base,
            &TOKENS,
            AblationMode::Mean,
            &mut watch,
        ))
        .unwrap()
        .done()
        .unwrap();
        let expected = attn_model::now(head_importance(
            &mut reference(),
            &base,
            &TOKENS,
            AblationMode::Mean,
            &mut unwatched(),
        ))
        .unwrap()
        .done()
        .unwrap();
        assert_eq!(ranking.len(), 8);
        assert_eq!(steps.len(), 8);
        assert_eq!(steps.last(), Some(&Step { done: 8, total: 8 }));
        for (got, want) in ranking.iter().zip(&expected) {
            assert!(
                (got.loss_increase - want.loss_increase).abs() < 1e-3,
                "{got:?} vs {want:?}"
            );
        }
        // The engine's own variant is back.
        assert_eq!(engine.variant(), &Variant::default());
    }
);

on_both_engines!(importance_can_be_cancelled, |engine: &mut AnyEngine| {
    let own = Variant::from_json(r#"{"beta": 2.0}"#).unwrap();
    engine.set_variant(&own).unwrap();
    let mut two = |step: Step| step.done < 2;
    let outcome = block_on(head_importance(
        engine,
        &Variant::default(),
        &TOKENS,
        AblationMode::Zero,
        &mut two,
    ))
    .unwrap();
    assert_eq!(outcome, Outcome::Cancelled);
    assert_eq!(engine.variant(), &own.normalised());
});

on_both_engines!(
    greedy_generation_matches_the_cpu_engine,
    |engine: &mut AnyEngine| {
        let variant = Variant::from_json(r#"{"kv_groups": 2, "top_k": 3}"#).unwrap();
        engine.set_variant(&variant).unwrap();
        let greedy = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        };
        let got = block_on(generate(engine, &[1, 2, 3], 12, &greedy, &mut unwatched()))
            .unwrap()
            .done()
            .unwrap();
        let mut cpu = reference();
        cpu.set_variant(&variant).unwrap();
        let want = attn_model::now(generate(
            &mut cpu,
            &[1, 2, 3],
            12,
            &greedy,
            &mut unwatched(),
        ))
        .unwrap()
        .done()
        .unwrap();
        assert_eq!(got, want);
    }
);

on_both_engines!(
    role_scores_match_the_cpu_engine,
    |engine: &mut AnyEngine| {
        let got = block_on(head_roles(engine, 7)).unwrap();
        let want = attn_model::now(head_roles(&mut reference(), 7)).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g.induction - w.induction).abs() < 1e-4, "{g:?} vs {w:?}");
            assert!((g.previous_token - w.previous_token).abs() < 1e-4);
        }
    }
);

on_both_engines!(readback_selection_is_honoured, |engine: &mut AnyEngine| {
    let out = block_on(engine.forward(&TOKENS, &Readback::next_token())).unwrap();
    let n = out.n_out;
    assert!(out.logits[..(TOKENS.len() - 1) * n]
        .iter()
        .all(|v| v.is_nan()));
    assert!(out
        .logits_at(TOKENS.len() - 1)
        .iter()
        .all(|v| v.is_finite()));
    assert!(out.attention.iter().all(|v| v.is_nan()));
});

#[test]
fn runtime_only_changes_upload_no_weights_on_the_gpu() {
    let mut engine = GpuEngine::new(&ctx(), model()).unwrap();
    engine.forward_blocking(&TOKENS).unwrap();
    let first = engine.stats();
    for json in [
        r#"{"window": 3}"#,
        r#"{"window": 3, "top_k": 2, "beta": 0.5}"#,
        r#"{"heads": {"ablate": [[1, 0]], "mode": "mean"}}"#,
        r#"{"drop_attention_layers": [0], "kernel": "linear"}"#,
        r#"{}"#,
    ] {
        engine
            .set_variant(&Variant::from_json(json).unwrap())
            .unwrap();
        let gpu = engine.forward_blocking(&TOKENS).unwrap();
        let mut cpu = reference();
        cpu.set_variant(&Variant::from_json(json).unwrap()).unwrap();
        common::assert_same_output(json, &gpu, &cpu.forward(&TOKENS).unwrap());
    }
    let after = engine.stats();
    assert_eq!(
        after.weight_uploads, first.weight_uploads,
        "no weight upload"
    );
    // Window, top-k, β and ablation reuse every activation buffer too (the linear kernel needs
    // feature buffers of its own).
    let mut fresh = GpuEngine::new(&ctx(), model()).unwrap();
    fresh.forward_blocking(&TOKENS).unwrap();
    let before = fresh.stats();
    for json in [
        r#"{"window": 3, "top_k": 2, "beta": 0.5}"#,
        r#"{"heads": {"ablate": [[1, 0]]}}"#,
    ] {
        fresh
            .set_variant(&Variant::from_json(json).unwrap())
            .unwrap();
        fresh.forward_blocking(&TOKENS).unwrap();
    }
    assert_eq!(
        fresh.stats().buffers_created,
        before.buffers_created,
        "no new buffers"
    );
    // …and the same launches: the plan stays, only its parameter blocks are rewritten.
    assert_eq!(fresh.stats().plans_built, before.plans_built, "no new plan");
    assert_eq!(fresh.stats().parameter_writes, before.parameter_writes + 2);
    // The rewritten parameters give what the CPU engine gives.
    for json in [r#"{"window": 2}"#, r#"{"top_k": 1, "beta": 3.0}"#, r#"{}"#] {
        let variant = Variant::from_json(json).unwrap();
        fresh.set_variant(&variant).unwrap();
        let gpu = fresh.forward_blocking(&TOKENS).unwrap();
        let mut cpu = reference();
        cpu.set_variant(&variant).unwrap();
        common::assert_same_output(json, &gpu, &cpu.forward(&TOKENS).unwrap());
    }
    assert_eq!(fresh.stats().plans_built, before.plans_built);
    // A weight-side change does upload.
    engine
        .set_variant(&Variant::from_json(r#"{"kv_rank": 4}"#).unwrap())
        .unwrap();
    assert_eq!(engine.stats().weight_uploads, first.weight_uploads + 1);
    // And the unmodified weights are shared, never copied.
    let shared = engine.share().unwrap();
    assert!(Arc::ptr_eq(shared.base(), engine.base()));
}

#[test]
fn the_pair_falls_back_to_the_cpu_when_the_device_is_lost() {
    let own = block_on(common::new_context());
    let model = Arc::new(model());
    let mut pair = EnginePair::gpu(&own, model.clone()).unwrap();
    assert_eq!(pair.kind(), EngineKind::Gpu);
    let variant = Variant::from_json(r#"{"window": 4}"#).unwrap();
    let (first, failure) = block_on(pair.run(false, &variant, &TOKENS, &Readback::everything()));
    assert!(first.is_ok() && failure.is_none());
    own.simulate_device_loss();
    let (second, failure) = block_on(pair.run(false, &variant, &TOKENS, &Readback::everything()));
    assert!(failure.is_some(), "the device loss is reported");
    assert_eq!(pair.kind(), EngineKind::Cpu);
    let mut cpu = CpuEngine::shared(model).unwrap();
    cpu.set_variant(&variant).unwrap();
    common::assert_same_output(
        "after fallback",
        &second.unwrap(),
        &cpu.forward(&TOKENS).unwrap(),
    );
    // Bad input is the user's to fix: no fallback, the same error on any engine.
    let mut cpu_pair = EnginePair::cpu(Arc::new(
        Model::random(ModelConfig::tiny(40), 5, 0.5).unwrap(),
    ))
    .unwrap();
    let (bad, failure) = block_on(cpu_pair.run(false, &variant, &[99], &Readback::everything()));
    assert!(bad.is_err() && failure.is_none());
}

on_both_engines!(
    hooks_capture_and_replace_like_the_cpu_engine,
    |engine: &mut AnyEngine| {
        let config = model().config;
        let mut points: Vec<HookPoint> = (0..=config.n_layer)
            .map(|layer| HookPoint::ResidPre { layer })
            .collect();
        points.extend((0..config.n_head).map(|head| HookPoint::HeadOutput { layer: 1, head }));
        let capture = Hooks {
            capture: points.clone(),
            replace: Vec::new(),
        };
        let (out, got) =
            block_on(engine.forward_hooked(&TOKENS, &Readback::everything(), &capture)).unwrap();
        let mut cpu = reference();
        let (want_out, want) = attn_model::now(attn_model::Engine::forward_hooked(
            &mut cpu,
            &TOKENS,
            &Readback::everything(),
            &capture,
        ))
        .unwrap();
        common::assert_same_output("hooked forward", &out, &want_out);
        for ((point, values), (_, expected)) in got.iter().zip(&want) {
            common::assert_close(&format!("{point:?}"), values, expected);
        }
        // Patching: the residual after the last block from another input gives that input's logits;
        // zeros in place of a head's output are zero ablation.
        let other: Vec<u32> = TOKENS.iter().map(|t| (t + 11) % 40).collect();
        let last = HookPoint::ResidPre {
            layer: config.n_layer,
        };
        let grab = Hooks {
            capture: vec![last],
            replace: Vec::new(),
        };
        let (other_out, resid) =
            block_on(engine.forward_hooked(&other, &Readback::logits(), &grab)).unwrap();
        let patch = Hooks {
            capture: Vec::new(),
            replace: resid,
        };
        let (patched, _) =
            block_on(engine.forward_hooked(&TOKENS, &Readback::logits(), &patch)).unwrap();
        common::assert_close("patched logits", &patched.logits, &other_out.logits);
        let head = HookPoint::HeadOutput { layer: 0, head: 3 };
        let zeros = Hooks {
            capture: Vec::new(),
            replace: vec![(head, vec![0.0; head.len(&config, TOKENS.len())])],
        };
        let (zeroed, _) =
            block_on(engine.forward_hooked(&TOKENS, &Readback::logits(), &zeros)).unwrap();
        engine
            .set_variant(&Variant::from_json(r#"{"heads": {"ablate": [[0, 3]]}}"#).unwrap())
            .unwrap();
        let ablated = block_on(engine.forward(&TOKENS, &Readback::logits())).unwrap();
        common::assert_close("zeroed head", &zeroed.logits, &ablated.logits);
        // A dropped layer's heads capture zeros; replacing them, or a wrong length, is refused.
        engine
            .set_variant(&Variant::from_json(r#"{"drop_attention_layers": [1]}"#).unwrap())
            .unwrap();
        let dropped = HookPoint::HeadOutput { layer: 1, head: 0 };
        let grab = Hooks {
            capture: vec![dropped],
            replace: Vec::new(),
        };
        let (_, zero) =
            block_on(engine.forward_hooked(&TOKENS, &Readback::logits(), &grab)).unwrap();
        assert!(zero[0].1.iter().all(|v| *v == 0.0));
        let refused = Hooks {
            capture: Vec::new(),
            replace: vec![(dropped, vec![0.0; dropped.len(&config, TOKENS.len())])],
        };
        assert!(block_on(engine.forward_hooked(&TOKENS, &Readback::logits(), &refused)).is_err());
        let short = Hooks {
            capture: Vec::new(),
            replace: vec![(head, vec![0.0; 3])],
        };
        assert!(block_on(engine.forward_hooked(&TOKENS, &Readback::logits(), &short)).is_err());
    }
);

#[test]
fn new_replacement_values_reuse_the_gpu_plan() {
    let mut engine = GpuEngine::new(&ctx(), model()).unwrap();
    let point = HookPoint::ResidPre { layer: 1 };
    let len = point.len(&model().config, TOKENS.len());
    let with = |value: f32| Hooks {
        capture: vec![point],
        replace: vec![(point, vec![value; len])],
    };
    let (_, first) =
        block_on(engine.forward_hooked(&TOKENS, &Readback::logits(), &with(0.5))).unwrap();
    let plans = engine.stats().plans_built;
    let (_, second) =
        block_on(engine.forward_hooked(&TOKENS, &Readback::logits(), &with(-2.0))).unwrap();
    assert_eq!(engine.stats().plans_built, plans, "same points, same plan");
    assert!(first[0].1.iter().all(|v| *v == 0.5));
    assert!(second[0].1.iter().all(|v| *v == -2.0));
}
