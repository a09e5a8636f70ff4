//! Activation steering: coefficient 0 is the unmodified model exactly; the ActAdd vector is the
//! difference of the captured residual streams; the steered stream is the stream plus the vector
//! from the chosen position on, and nothing before that position changes; analyses run steered
//! through the wrapper (generation recomputes and equals steered forwards); steering along the
//! lens direction of a token raises that token's logit.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use attn_model::engine::{now, unwatched};
use attn_model::{
    actadd_vector, generate_with, lens_direction, lens_vector, load_model, CpuEngine, Decoding,
    Engine, HookPoint, Hooks, Readback, Sampling, Steered, Steering,
};

fn engine() -> CpuEngine {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/families/llama-gqa-tied");
    CpuEngine::new(load_model(dir).unwrap()).unwrap()
}

const TOKENS: [u32; 8] = [5, 17, 42, 9, 3, 17, 42, 11];
const PLUS: [u32; 3] = [100, 7, 250];
const MINUS: [u32; 2] = [33, 64];

fn captured_stream(engine: &mut impl Engine, tokens: &[u32], layer: usize) -> Vec<f32> {
    let hooks = Hooks {
        capture: vec![HookPoint::ResidPre { layer }],
        replace: Vec::new(),
    };
    let (_, captured) = now(engine.forward_hooked(tokens, &Readback::logits(), &hooks))
        .map_err(|e| e.to_string())
        .unwrap();
    captured[0].1.clone()
}

#[test]
fn the_actadd_vector_is_the_difference_of_the_streams() {
    let mut engine = engine();
    let d = engine.model().config.d_model;
    let v = now(actadd_vector(&mut engine, &PLUS, &MINUS, 1)).unwrap();
    let plus = captured_stream(&mut engine, &PLUS, 1);
    let minus = captured_stream(&mut engine, &MINUS, 1);
    let want: Vec<f32> = plus[plus.len() - d..]
        .iter()
        .zip(&minus[minus.len() - d..])
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(v, want);
    assert!(v.iter().any(|x| *x != 0.0));
}

#[test]
fn coefficient_zero_is_the_unmodified_model_exactly() {
    let mut engine = engine();
    let plain = engine.forward(&TOKENS).unwrap();
    let vector = now(actadd_vector(&mut engine, &PLUS, &MINUS, 1)).unwrap();
    let steering = Steering {
        layer: 1,
        vector,
        coefficient: 0.0,
        from: 0,
    };
    let mut steered = Steered::new(&mut engine, steering).unwrap();
    let out = now(Engine::forward(
        &mut steered,
        &TOKENS,
        &Readback::everything(),
    ))
    .unwrap();
    assert_eq!(out.logits, plain.logits);
    assert_eq!(out.attention, plain.attention);
}

#[test]
fn the_vector_is_added_from_the_chosen_position_on() {
    let mut engine = engine();
    let d = engine.model().config.d_model;
    let plain = engine.forward(&TOKENS).unwrap();
    let before = captured_stream(&mut engine, &TOKENS, 1);
    let vector = now(actadd_vector(&mut engine, &PLUS, &MINUS, 1)).unwrap();
    let (coefficient, from) = (4.0, 5);
    let steering = Steering {
        layer: 1,
        vector: vector.clone(),
        coefficient,
        from,
    };
    let mut steered = Steered::new(&mut engine, steering).unwrap();
    let after = captured_stream(&mut steered, &TOKENS, 1);
    for (t, (a, b)) in after.chunks(d).zip(before.chunks(d)).enumerate() {
        for ((x, y), v) in a.iter().zip(b).zip(&vector) {
            let want = if t >= from { y + coefficient * v } else { *y };
            assert_eq!(*x, want, "position {t}");
        }
    }
    // Causal: the positions before `from` predict exactly as before; the later ones do not.
    let out = now(Engine::forward(
        &mut steered,
        &TOKENS,
        &Readback::everything(),
    ))
    .unwrap();
    let v = out.n_out;
    assert_eq!(out.logits[..from * v], plain.logits[..from * v]);
    assert_ne!(out.logits[from * v..], plain.logits[from * v..]);
    // The stream before layer 0 is untouched: steering before layer 1 writes nothing earlier.
    assert_eq!(
        captured_stream(&mut steered, &TOKENS, 0),
        captured_stream(&mut engine, &TOKENS, 0)
    );
}

/// `n` greedy tokens after `TOKENS` (from the cache where the engine keeps one).
fn greedy(engine: &mut impl Engine<Error = attn_model::ModelError>, n: usize) -> Vec<u32> {
    let greedy = Sampling {
        temperature: 0.0,
        ..Sampling::default()
    };
    now(generate_with(
        engine,
        &TOKENS,
        n,
        &greedy,
        Decoding::Cached,
        &mut unwatched(),
    ))
    .unwrap()
    .done()
    .unwrap()
}

#[test]
fn generation_under_steering_follows_the_steered_forwards() {
    let mut engine = engine();
    let vector = now(actadd_vector(&mut engine, &PLUS, &MINUS, 1)).unwrap();
    let plain = greedy(&mut engine, 6);
    let steering = Steering {
        layer: 1,
        vector,
        coefficient: 8.0,
        from: 0,
    };
    let mut steered = Steered::new(&mut engine, steering).unwrap();
    let generated = greedy(&mut steered, 6);
    // Each token is the argmax of a steered forward over the text so far.
    let mut text = TOKENS.to_vec();
    for &token in &generated {
        let out = now(Engine::forward(
            &mut steered,
            &text,
            &Readback::next_token(),
        ))
        .unwrap();
        assert_eq!(out.argmax_at(text.len() - 1), token);
        text.push(token);
    }
    assert_ne!(generated, plain, "a strong steer changes the continuation");
}

#[test]
fn bad_steering_is_a_clear_error() {
    let mut model = engine();
    let d = model.model().config.d_model;
    let steer = |layer, width| Steering {
        layer,
        vector: vec![1.0; width],
        coefficient: 1.0,
        from: 0,
    };
    let err = |s| Steered::new(&mut engine(), s).err().unwrap().to_string();
    assert!(err(steer(2, d)).contains("layers"));
    assert!(err(steer(1, d + 1)).contains("values"));
    let nan = Steering {
        coefficient: f32::NAN,
        ..steer(0, d)
    };
    assert!(err(nan).contains("finite"));
    let e = now(actadd_vector(&mut model, &[], &MINUS, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one token"), "{e}");
}

/// The logit difference `toward − away` at the last position of `tokens`.
fn logit_difference(
    engine: &mut impl Engine<Error = attn_model::ModelError>,
    tokens: &[u32],
    (toward, away): (u32, u32),
) -> f32 {
    let out = now(engine.forward(tokens, &Readback::logits())).unwrap();
    let row = out.logits_at(tokens.len() - 1);
    row[toward as usize] - row[away as usize]
}

#[test]
fn steering_along_the_lens_direction_moves_the_prediction_toward_its_token_at_every_layer() {
    // Trained models (the zoo's Shakespeare characters and sorter) at every layer; the family
    // fixtures — LayerNorm and RMSNorm, tied and untied unembeddings, but random weights, whose
    // blocks scramble any direction — before their last layer.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (path, trained) in [
        ("static/models/shakespeare.safetensors", true),
        ("static/models/sort.safetensors", true),
        ("tests/fixtures/families/llama-gqa-tied", false),
        ("tests/fixtures/families/llama-untied-llama3", false),
        ("tests/fixtures/families/neox-parallel", false),
        ("tests/fixtures/gpt2-tiny", false),
    ] {
        let model = load_model(root.join(path)).unwrap();
        let n_layer = model.config.n_layer;
        let layer_norm = model.config.norm == attn_model::Norm::LayerNorm;
        let tokens = TOKENS.map(|t| t % model.config.vocab_size as u32);
        let mut engine = CpuEngine::new(model).unwrap();
        let pair = (11, 3);
        let direction = lens_direction(engine.model(), pair.0, Some(pair.1)).unwrap();
        let length = direction.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (length - 1.0).abs() < 1e-5,
            "{path}: unit length, not {length}"
        );
        if layer_norm {
            let mean = direction.iter().sum::<f32>() / direction.len() as f32;
            assert!(
                mean.abs() < 1e-6,
                "{path}: LayerNorm ignores the mean, {mean}"
            );
        }
        let before = logit_difference(&mut engine, &tokens, pair);
        let first = if trained { 0 } else { n_layer - 1 };
        for layer in first..n_layer {
            let vector = now(lens_vector(
                &mut engine,
                &tokens,
                layer,
                (pair.0, Some(pair.1)),
            ))
            .unwrap();
            // Scaled to the stream's mean row length before the layer.
            let stream = captured_stream(&mut engine, &tokens, layer);
            let d = stream.len() / tokens.len();
            let mean_length = stream
                .chunks_exact(d)
                .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
                .sum::<f32>()
                / tokens.len() as f32;
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!(
                (norm - mean_length).abs() < 1e-4 * mean_length,
                "{path}: {norm} vs {mean_length}"
            );
            let steering = Steering {
                layer,
                vector,
                coefficient: 1.0,
                from: 0,
            };
            let mut steered = Steered::new(&mut engine, steering).unwrap();
            let after = logit_difference(&mut steered, &tokens, pair);
            assert!(
                after > before,
                "{path}: steering before layer {layer} toward {} moved the logit difference from {before} to {after}",
                pair.0
            );
        }
    }
}

#[test]
fn lens_directions_that_do_not_exist_are_clear_errors() {
    let engine = engine();
    let n_out = engine.model().config.n_out() as u32;
    let err = lens_direction(engine.model(), n_out, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside"), "{err}");
    let err = lens_direction(engine.model(), 3, Some(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("different"), "{err}");
}
