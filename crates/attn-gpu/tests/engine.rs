//! The engine's contract beyond the numbers: one submit per forward, nothing allocated on the
//! hot path, partial read-back, the shared engine API, and clear errors instead of panics.
#![cfg(not(target_arch = "wasm32"))]

use crate::common;

use std::sync::OnceLock;

use attn_gpu::{
    AnyEngine, AttentionMaps, GpuContext, GpuEngine, GpuError, LogitRows, Readback, MAX_SEQ_LEN,
};
use attn_model::{CpuEngine, Engine, Model, ModelConfig, Variant};

fn ctx() -> GpuContext {
    static CONTEXT: OnceLock<GpuContext> = OnceLock::new();
    CONTEXT
        .get_or_init(|| pollster::block_on(common::new_context()))
        .clone()
}

fn model() -> Model {
    Model::random(ModelConfig::tiny(50), 3, 0.4).unwrap()
}

/// Kernels come from the device's cache: opening a device compiles none, a forward compiles
/// what it launches once, and the next forwards and engines on the device compile nothing more.
#[test]
fn kernels_are_compiled_once_per_device_when_first_launched() {
    let ctx = pollster::block_on(common::new_context());
    assert_eq!(
        ctx.compiled_kernels(),
        0,
        "opening a device compiles nothing"
    );
    let mut engine = GpuEngine::new(&ctx, model()).unwrap();
    engine.forward_blocking(&[1, 2, 3]).unwrap();
    let compiled = ctx.compiled_kernels();
    // embed, norm, matmul, attention probabilities, head output (tiny() has no rotary table).
    assert!((4..=8).contains(&compiled), "{compiled} kernels");
    engine.forward_blocking(&[3, 2, 1, 4]).unwrap();
    let mut other = GpuEngine::new(&ctx, model()).unwrap();
    other.forward_blocking(&[1, 2]).unwrap();
    assert_eq!(
        ctx.compiled_kernels(),
        compiled,
        "the same kernels come from the cache"
    );
}

#[test]
fn one_submit_and_no_allocation_on_the_hot_path() {
    let mut engine = GpuEngine::new(&ctx(), model()).unwrap();
    engine.forward_blocking(&[1, 2, 3, 4]).unwrap();
    let after_first = engine.stats();
    assert_eq!(after_first.plans_built, 1);
    for _ in 0..3 {
        engine.forward_blocking(&[4, 3, 2, 1]).unwrap();
    }
    let stats = engine.stats();
    assert_eq!(stats.plans_built, 1, "same length, same variant: same plan");
    assert_eq!(stats.buffers_created, after_first.buffers_created);
    assert_eq!(stats.last_forward.submits, 1);
    // tiny(): 2 layers × (LN, Q, K, V, scores, probs, P·V, head output, O, LN, fc, proj)
    // + embed + final LN + output projection.
    assert_eq!(stats.last_forward.dispatches, 2 * 12 + 3);
    let prepared = engine.prepared().clone();
    assert_eq!(
        stats.last_forward.flops,
        attn_gpu::forward_flops(&prepared, 4)
    );

    // A new length builds a new plan from recycled buffers where the sizes allow.
    engine.forward_blocking(&[1, 2, 3, 4, 5]).unwrap();
    assert_eq!(engine.stats().plans_built, 2);
    // Dropping a layer replaces its launches by two clears.
    engine
        .set_variant(&Variant::from_json(r#"{"drop_attention_layers": [0]}"#).unwrap())
        .unwrap();
    engine.forward_blocking(&[1, 2, 3, 4, 5]).unwrap();
    let last = engine.stats().last_forward;
    // Layer 0 keeps its MLP (LN, fc, proj).
    assert_eq!((last.dispatches, last.clears), (3 + 12 + 3, 2));
}

#[test]
fn a_profiled_forward_times_every_launch_and_gives_the_same_output() {
    let mut engine = GpuEngine::new(&ctx(), model()).unwrap();
    let tokens = [1, 2, 3, 4, 5, 6];
    let plain = engine.forward_blocking(&tokens).unwrap();
    if !ctx().has_timestamps() {
        // Where the device cannot time kernels, asking is a clear error and nothing changes.
        assert!(matches!(
            engine.set_profiling(true),
            Err(GpuError::Unsupported(_))
        ));
        return;
    }
    engine.set_profiling(true).unwrap();
    let profiled = engine.forward_blocking(&tokens).unwrap();
    assert_eq!(profiled.logits, plain.logits);
    assert_eq!(profiled.attention, plain.attention);
    let profile = engine.last_profile();
    let dispatches = engine.stats().last_forward.dispatches as usize;
    assert_eq!(profile.len(), dispatches, "one time per launch");
    // tiny(): 2 layers of Q, K, V, scores, P·V, O, fc, proj, and the output projection.
    let matmuls = profile.iter().filter(|k| k.kernel == "matmul").count();
    assert_eq!(matmuls, 2 * 8 + 1);
    assert_eq!(profile[0].kernel, "embed");
    assert!(
        profile
            .iter()
            .all(|k| k.millis.is_finite() && k.millis >= 0.0),
        "{profile:?}"
    );
    assert!(profile.iter().any(|k| k.millis > 0.0), "{profile:?}");
    engine.set_profiling(false).unwrap();
    engine.forward_blocking(&tokens).unwrap();
    assert_eq!(engine.stats().last_forward.dispatches as usize, dispatches);
}

#[test]
fn flop_count_matches_the_launches_for_every_kernel() {
    let mut engine = GpuEngine::new(&ctx(), model()).unwrap();
    for json in [
        r#"{"kernel": "linear"}"#,
        r#"{"kernel": {"random_features": 5}}"#,
        r#"{"kv_groups": 1, "drop_attention_layers": [1]}"#,
    ] {
        engine
            .set_variant(&Variant::from_json(json).unwrap())
            .unwrap();
        engine.forward_blocking(&[1, 2, 3]).unwrap();
        let prepared = engine.prepared().clone();
        assert_eq!(
            engine.stats().last_forward.flops,
            attn_gpu::forward_flops(&prepared, 3),
            "{json}"
        );
    }
}

#[test]
fn partial_readback_returns_what_was_asked_and_nan_elsewhere() {
    let tokens = [5, 6, 7, 8, 9];
    let mut engine = GpuEngine::new(&ctx(), model()).unwrap();
    let full = engine.forward_blocking(&tokens).unwrap();
    let readback = Readback {
        logits: LogitRows::Last,
        attention: AttentionMaps::Only(vec![(1, 2), (0, 0)]),
        head_out_norms: false,
    };
    let part = engine.forward_with_blocking(&tokens, &readback).unwrap();
    assert!(engine.stats().last_forward.readback_bytes < 4 * (full.logits.len() as u64));
    let n = full.n_out;
    assert_eq!(part.logits_at(4), full.logits_at(4));
    assert!(part.logits[..4 * n].iter().all(|v| v.is_nan()));
    assert_eq!(part.attention_map(1, 2), full.attention_map(1, 2));
    assert_eq!(part.attention_map(0, 0), full.attention_map(0, 0));
    assert!(part.attention_map(0, 1).iter().all(|v| v.is_nan()));
    assert!(part.head_out_norms.iter().all(|v| v.is_nan()));
    // The same request through the shared API on the CPU engine masks the same way.
    let mut cpu = AnyEngine::cpu(model()).unwrap();
    let cpu_part = cpu.forward_blocking(&tokens, &readback).unwrap();
    common::assert_close("last logits", part.logits_at(4), cpu_part.logits_at(4));
    assert!(cpu_part.attention_map(0, 1).iter().all(|v| v.is_nan()));
    // Asking for a map that does not exist is an input error.
    let bad = Readback {
        attention: AttentionMaps::Only(vec![(2, 0)]),
        ..Readback::everything()
    };
    assert!(matches!(
        engine.forward_with_blocking(&tokens, &bad),
        Err(GpuError::Model(_))
    ));
}

#[test]
fn both_engines_behind_one_api_agree() {
    let variant = Variant::from_json(r#"{"window": 2, "kv_groups": 2}"#).unwrap();
    let mut engines = [
        AnyEngine::cpu(model()).unwrap(),
        AnyEngine::gpu(&ctx(), model()).unwrap(),
    ];
    let outputs: Vec<_> = engines
        .iter_mut()
        .map(|e| {
            e.set_variant(&variant).unwrap();
            e.forward_blocking(&[1, 2, 3], &Readback::everything())
                .unwrap()
        })
        .collect();
    common::assert_same_output("engine enum", &outputs[1], &outputs[0]);
    assert!(engines[1].describe().starts_with("gpu ("));
}

#[test]
fn shared_engines_keep_their_own_variants() {
    let mut baseline = GpuEngine::new(&ctx(), model()).unwrap();
    let mut variant = baseline.share().unwrap();
    variant
        .set_variant(&Variant::from_json(r#"{"top_k": 1}"#).unwrap())
        .unwrap();
    let a = baseline.forward_blocking(&[1, 2, 3]).unwrap();
    let b = variant.forward_blocking(&[1, 2, 3]).unwrap();
    assert_ne!(a.attention, b.attention);
    assert_eq!(variant.stats().model_bytes, baseline.stats().model_bytes);
    let cpu = CpuEngine::new(model()).unwrap();
    common::assert_same_output("shared baseline", &a, &cpu.forward(&[1, 2, 3]).unwrap());
}

#[test]
fn bad_input_and_variants_are_errors_and_the_engine_keeps_working() {
    let mut engine = GpuEngine::new(&ctx(), model()).unwrap();
    assert!(matches!(
        engine.forward_blocking(&[]),
        Err(GpuError::Model(_))
    ));
    assert!(matches!(
        engine.forward_blocking(&[50]),
        Err(GpuError::Model(_))
    ));
    assert!(matches!(
        engine.forward_blocking(&[1; 17]),
        Err(GpuError::Model(_))
    ));
    let bad = Variant::from_json(r#"{"kv_groups": 3}"#).unwrap();
    assert!(matches!(engine.set_variant(&bad), Err(GpuError::Model(_))));
    assert!(engine.variant().is_baseline());
    engine.forward_blocking(&[1, 2]).unwrap();
}

#[test]
fn sequences_beyond_the_kernel_limit_are_unsupported() {
    let config = ModelConfig {
        n_ctx: MAX_SEQ_LEN + 1,
        d_model: 4,
        n_head: 1,
        n_layer: 1,
        ..ModelConfig::tiny(5)
    };
    let mut engine = GpuEngine::new(&ctx(), Model::random(config, 1, 0.3).unwrap()).unwrap();
    let tokens = vec![1; MAX_SEQ_LEN + 1];
    let err = engine.forward_blocking(&tokens).unwrap_err();
    assert!(matches!(err, GpuError::Unsupported(_)), "{err}");
}

#[test]
fn buffers_beyond_the_device_limit_are_a_clear_error() {
    // Weights, checked before anything is uploaded: the first over the limit in the schema's
    // order is tiny(50)'s token embedding, 50 × 16 × 4 = 3200 bytes.
    let err = GpuEngine::new(&ctx().with_buffer_limit(3000), model()).unwrap_err();
    match &err {
        GpuError::BufferTooLarge { what, bytes, limit } => assert_eq!(
            (what.as_str(), *bytes, *limit),
            ("wte", 3200, 3000),
            "{err}"
        ),
        other => panic!("expected BufferTooLarge, got {other}"),
    }
    // Activations: 4 heads × T × T attention floats are 4096 bytes at T = 16, 16384 at T = 32.
    let config = ModelConfig {
        n_ctx: 64,
        d_model: 8,
        n_head: 4,
        mlp: false,
        ..ModelConfig::tiny(10)
    };
    let model = Model::random(config, 2, 0.4).unwrap();
    let mut engine = GpuEngine::new(&ctx().with_buffer_limit(8192), model).unwrap();
    engine.forward_blocking(&[1; 16]).unwrap();
    let err = engine.forward_blocking(&[1; 32]).unwrap_err();
    assert!(
        matches!(&err, GpuError::BufferTooLarge { what, .. } if what == "attention layer 0"),
        "{err}"
    );
    // The engine still works at a length that fits.
    engine.forward_blocking(&[1; 16]).unwrap();
}

#[test]
fn no_adapter_is_an_error_not_a_panic() {
    let err = pollster::block_on(GpuContext::with_backends(wgpu::Backends::empty())).unwrap_err();
    assert!(matches!(err, GpuError::NoAdapter(_)), "{err}");
}

#[test]
fn a_lost_device_is_an_error_not_a_hang() {
    // Its own device: destroying the shared one would break the other tests.
    let ctx = pollster::block_on(common::new_context());
    let mut engine = GpuEngine::new(&ctx, model()).unwrap();
    engine.forward_blocking(&[1, 2]).unwrap();
    ctx.simulate_device_loss();
    let err = engine.forward_blocking(&[1, 2]).unwrap_err();
    assert!(matches!(err, GpuError::DeviceLost(_)), "{err}");
    assert!(matches!(
        GpuEngine::new(&ctx, model()),
        Err(GpuError::DeviceLost(_))
    ));
}

#[test]
fn adapter_is_described() {
    let ctx = ctx();
    let adapter = ctx.adapter();
    assert!(!adapter.name.is_empty());
    eprintln!("adapter: {adapter:?}");
}
