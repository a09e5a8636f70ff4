//! Activation steering: coefficient 0 is the unmodified model exactly; the ActAdd vector is the
//! difference of the captured residual streams; the steered stream is the stream plus the vector
//! from the chosen position on, and nothing before that position changes; analyses run steered
//! through the wrapper (generation recomputes and equals steered forwards).
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use attn_model::engine::{now, unwatched};
use attn_model::{
    actadd_vector, generate_with, load_model, CpuEngine, Decoding, Engine, HookPoint, Hooks,
    Readback, Sampling, Steered, Steering,
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
