//! The logit lens, direct logit attribution and activation patching against transformers
//! (`tests/fixtures/generate_analysis_fixtures.py` writes `tests/fixtures/gpt2-tiny/analysis.safetensors`
//! from `GPT2LMHeadModel` in float64 with hooks), and their invariants on every family: the lens's
//! last entry is the model's logits, the attribution's parts sum to the logit, patching the whole
//! residual stream before layer 0 recovers everything.
// Reads its fixtures from disk, so it runs natively; tests/browser.rs runs the fixture parity,
// family, tokenizer and bad-input checks inside a browser.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use attn_model::engine::{unwatched, Outcome};
use attn_model::{
    activation_patching, attribution_patching, direct_logit_attribution, load_model, logit_lens,
    now, CpuEngine, Engine, HookPoint, Hooks, LoadedTensors, Model, ModelConfig, Readback,
};
use attn_test_support::assert_close;

struct Fixture(LoadedTensors);

impl Fixture {
    fn load() -> Fixture {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt2-tiny");
        let bytes = std::fs::read(dir.join("analysis.safetensors")).unwrap();
        Fixture(LoadedTensors::from_bytes(&bytes).unwrap())
    }

    fn tensor(&self, name: &str) -> Vec<f32> {
        self.0.values(name).unwrap().into_owned()
    }

    fn ids(&self, key: &str) -> Vec<u32> {
        serde_json::from_str(&self.0.metadata()[key]).unwrap()
    }

    fn id(&self, key: &str) -> u32 {
        serde_json::from_str(&self.0.metadata()[key]).unwrap()
    }
}

fn model() -> Model {
    load_model(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt2-tiny"))
        .unwrap()
}

#[test]
fn the_lens_matches_transformers() {
    let f = Fixture::load();
    let mut engine = CpuEngine::new(model()).unwrap();
    let lens = now(logit_lens(&mut engine, &f.ids("tokens"))).unwrap();
    let got: Vec<f64> = lens.logits.iter().flatten().map(|&v| v as f64).collect();
    assert_close("lens", &got, &f.tensor("lens"));
    // Its last entry is the model's output.
    let output = engine.forward(&f.ids("tokens")).unwrap();
    assert_eq!(lens.logits.last().unwrap(), &output.logits);
    // The depth the final top-1 settles at, read off transformers' lens.
    let (t, last) = (f.ids("tokens").len(), f.ids("tokens").len() - 1);
    let want = f.tensor("lens");
    let v = want.len() / (lens.logits.len() * t);
    let top1 = |depth: usize| {
        let start = (depth * t + last) * v;
        attn_model::forward::argmax(&want[start..start + v])
    };
    let depths = lens.logits.len();
    let settles = (0..depths)
        .find(|&d| (d..depths).all(|e| top1(e) == top1(depths - 1)))
        .unwrap();
    assert_eq!(lens.settles_at(last), settles);
}

#[test]
fn the_attribution_matches_transformers_and_sums_to_the_logit() {
    let f = Fixture::load();
    let mut engine = CpuEngine::new(model()).unwrap();
    let a = now(direct_logit_attribution(
        &mut engine,
        &f.ids("tokens"),
        f.id("target"),
        None,
    ))
    .unwrap();
    let heads: Vec<f64> = a.heads.iter().flatten().copied().collect();
    assert_close("heads", &heads, &f.tensor("attribution.heads"));
    assert_close("mlps", &a.mlps, &f.tensor("attribution.mlps"));
    assert_close(
        "embeddings, biases, logit",
        &[a.embeddings, a.biases, a.logit],
        &f.tensor("attribution.parts"),
    );
    assert!(
        (a.total() - a.logit).abs() < 1e-4,
        "{} vs {}",
        a.total(),
        a.logit
    );
}

#[test]
fn patching_matches_transformers() {
    let f = Fixture::load();
    let mut engine = CpuEngine::new(model()).unwrap();
    let outcome = now(activation_patching(
        &mut engine,
        &f.ids("clean"),
        &f.ids("corrupt"),
        (f.id("patch_target"), f.id("patch_contrast")),
        &mut unwatched(),
    ))
    .unwrap();
    let Outcome::Done(p) = outcome else {
        panic!("nothing cancels an unwatched run")
    };
    let heads: Vec<f64> = p.heads.iter().flatten().copied().collect();
    assert_close("patched heads", &heads, &f.tensor("patching.heads"));
    let resid: Vec<f64> = p.resid.iter().flatten().copied().collect();
    assert_close("patched residual", &resid, &f.tensor("patching.resid"));
    assert_close(
        "metric",
        &[p.clean, p.corrupted],
        &f.tensor("patching.metric"),
    );
}

#[test]
fn attribution_patching_matches_pytorchs_autograd() {
    let f = Fixture::load();
    let mut engine = CpuEngine::new(model()).unwrap();
    let outcome = now(attribution_patching(
        &mut engine,
        &f.ids("clean"),
        &f.ids("corrupt"),
        (f.id("patch_target"), f.id("patch_contrast")),
        &mut unwatched(),
    ))
    .unwrap();
    let Outcome::Done(p) = outcome else {
        panic!("nothing cancels an unwatched run")
    };
    let heads: Vec<f64> = p.heads.iter().flatten().copied().collect();
    assert_close("heads", &heads, &f.tensor("attribution_patching.heads"));
    let resid: Vec<f64> = p.resid.iter().flatten().copied().collect();
    assert_close("residual", &resid, &f.tensor("attribution_patching.resid"));
}

#[test]
fn patching_every_position_before_layer_0_recovers_everything() {
    let f = Fixture::load();
    let mut engine = CpuEngine::new(model()).unwrap();
    let (clean, corrupt) = (f.ids("clean"), f.ids("corrupt"));
    let point = HookPoint::ResidPre { layer: 0 };
    let capture = Hooks {
        capture: vec![point],
        replace: Vec::new(),
    };
    let (clean_out, clean_resid) =
        now(engine.forward_hooked(&clean, &Readback::logits(), &capture)).unwrap();
    let patch = Hooks {
        capture: Vec::new(),
        replace: vec![(point, clean_resid[0].1.clone())],
    };
    let (patched, _) = now(engine.forward_hooked(&corrupt, &Readback::logits(), &patch)).unwrap();
    assert_eq!(patched.logits, clean_out.logits, "recovered exactly: 1.0");
}

#[test]
fn every_family_attributes_its_logit_exactly() {
    for config in [
        ModelConfig::tiny(30),
        ModelConfig::tiny_llama(30),
        ModelConfig::tiny_neox(30),
        ModelConfig {
            n_classes: Some(3),
            causal: false,
            ..ModelConfig::tiny(30)
        },
    ] {
        let mut engine = CpuEngine::new(Model::random(config.clone(), 4, 0.3).unwrap()).unwrap();
        // Under a variant too: an ablated head writes nothing, a dropped layer neither.
        engine
            .set_variant(
                &attn_model::Variant::from_json(
                    r#"{"heads": {"ablate": [[1, 2]]}, "drop_attention_layers": [0]}"#,
                )
                .unwrap(),
            )
            .unwrap();
        let tokens = [1, 5, 2, 7, 3];
        let a = now(direct_logit_attribution(&mut engine, &tokens, 2, Some(3))).unwrap();
        assert!(
            (a.total() - a.logit).abs() < 1e-4 * a.logit.abs().max(1.0),
            "{config:?}: {} vs {}",
            a.total(),
            a.logit
        );
        assert_eq!(a.heads[1][2], 0.0);
        assert!(a.heads[0].iter().all(|h| *h == 0.0));
        let lens = now(logit_lens(&mut engine, &tokens)).unwrap();
        assert_eq!(lens.logits.len(), config.n_layer + 1);
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let mut engine = CpuEngine::new(model()).unwrap();
    let err = now(direct_logit_attribution(&mut engine, &[1, 2], 5000, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("target 5000"), "{err}");
    let err = now(activation_patching(
        &mut engine,
        &[1, 2, 3],
        &[1, 2],
        (1, 2),
        &mut unwatched(),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("same length"), "{err}");
}

#[test]
fn a_forward_read_for_fewer_logits_computes_the_same_ones() {
    // The CPU engine unembeds only the rows a readback asks for; those are the full forward's
    // (to rounding: one row is a dot product per vocabulary entry, as in a decode step, where the
    // full forward runs a matrix product), and the maps do not change.
    for config in [ModelConfig::tiny(30), ModelConfig::tiny_llama(30)] {
        let mut engine = CpuEngine::new(Model::random(config, 4, 0.3).unwrap()).unwrap();
        let tokens = [1, 5, 2, 7, 3, 9];
        let full = now(Engine::forward(
            &mut engine,
            &tokens,
            &Readback::everything(),
        ))
        .unwrap();
        let last = now(Engine::forward(
            &mut engine,
            &tokens,
            &Readback::next_token(),
        ))
        .unwrap();
        assert_close("the last row", last.logits_at(5), full.logits_at(5));
        assert!(last.logits_at(4).iter().all(|v| v.is_nan()));
        let maps = now(Engine::forward(
            &mut engine,
            &tokens,
            &Readback::attention_maps(),
        ))
        .unwrap();
        assert!(maps.logits.iter().all(|v| v.is_nan()));
        assert_eq!(maps.attention, full.attention);
    }
}
