//! Head metrics over a corpus (`attn_model::corpus`): on the induction model, over its task's
//! held-out sequences, the heads the task needs are found where they are — the induction head in
//! layer 1 by the corpus's repeats and by the random probe alike, a previous-token head in layer
//! 0 — and on one window the scores are `roles_on_input`'s.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use attn_model::corpus::{corpus_heads, HeadCorpus, HeadMetric, TOP};
use attn_model::engine::unwatched;
use attn_model::training::tasks::{play_texts, Task};
use attn_model::{load_model, now, roles_on_input, CpuEngine, Engine, Outcome, Readback};

fn model(id: &str) -> attn_model::Model {
    load_model(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../static/models/{id}.safetensors")),
    )
    .unwrap()
}

fn measured(engine: &mut CpuEngine, corpus: &HeadCorpus) -> attn_model::corpus::CorpusHeads {
    match now(corpus_heads(engine, corpus, &mut unwatched())).unwrap() {
        Outcome::Done(h) => h,
        Outcome::Cancelled => panic!("cancelled"),
    }
}

#[test]
fn the_induction_models_circuit_is_found_over_its_corpus() {
    let mut engine = CpuEngine::new(model("induction")).unwrap();
    let corpus = HeadCorpus::from_task(Task::Induction, 200).unwrap();
    assert_eq!(corpus.windows.len(), 200);
    let heads = measured(&mut engine, &corpus);
    assert_eq!(heads.heads.len(), 4);
    assert!(heads.repeats > 0 && heads.queries > heads.repeats);
    let best = |score: &dyn Fn(&attn_model::corpus::HeadStats) -> f64| {
        heads
            .heads
            .iter()
            .max_by(|a, b| score(a).total_cmp(&score(b)))
            .unwrap()
    };
    let by_corpus = best(&|h| h.induction.unwrap_or(0.0));
    let by_probe = best(&|h| h.induction_probe);
    println!("{:#?}", heads.heads);
    assert_eq!(by_corpus.layer, 1, "the induction head is in layer 1");
    assert_eq!(
        (by_corpus.layer, by_corpus.head),
        (by_probe.layer, by_probe.head),
        "corpus and probe agree"
    );
    assert!(by_corpus.induction.unwrap() > 0.5, "{by_corpus:?}");
    assert_eq!(best(&|h| h.previous_token).layer, 0);
    for h in &heads.heads {
        for v in [h.self_attention, h.previous_token, h.first_token, h.entropy] {
            assert!((0.0..=1.0 + 1e-9).contains(&v), "{h:?}");
        }
        assert!(h.distance_mean >= 0.0 && h.distance_std >= 0.0);
        for metric in HeadMetric::ALL {
            let top: Vec<_> = h.top_of(metric.key()).collect();
            assert!(!top.is_empty() && top.len() <= TOP, "{metric:?}");
            assert!(top.windows(2).all(|w| w[0].value >= w[1].value));
            assert!(top[0].window < 200);
            assert!(top
                .iter()
                .all(|t| t.position >= attn_model::corpus::TOP_FROM));
        }
        // The largest single query is at least the mean.
        assert!(h.top_of("previous_token").next().unwrap().value + 1e-12 >= h.previous_token);
    }
}

#[test]
fn on_one_window_the_scores_are_the_roles_on_that_input() {
    let m = model("shakespeare");
    let tokenizer = m.build_tokenizer().unwrap().unwrap();
    let mut engine = CpuEngine::new(m).unwrap();
    let json = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../static/train/shakespeare.json"),
    )
    .unwrap();
    let corpus =
        HeadCorpus::from_text("the plays", &play_texts(&json).unwrap(), &tokenizer, 96, 1).unwrap();
    assert_eq!(corpus.windows.len(), 1);
    let tokens = corpus.windows[0].clone();
    assert_eq!(tokens.len(), 96);
    let heads = measured(&mut engine, &corpus);
    let output = now(Engine::forward(
        &mut engine,
        &tokens,
        &Readback::attention_maps(),
    ))
    .unwrap();
    let roles = roles_on_input(&output, &tokens).unwrap();
    assert_eq!(heads.queries, 95);
    for (h, r) in heads.heads.iter().zip(&roles) {
        let close = |a: f64, b: f32| (a - b as f64).abs() < 1e-5;
        assert!(close(h.previous_token, r.previous_token), "{h:?} {r:?}");
        assert!(close(h.first_token, r.first_token));
        assert!(close(h.self_attention, r.self_attention));
        assert!(close(h.induction.unwrap(), r.induction));
    }
    // 200 windows of 128 characters from the whole plays.
    let corpus = HeadCorpus::from_text(
        "the plays",
        &play_texts(&json).unwrap(),
        &tokenizer,
        128,
        200,
    )
    .unwrap();
    assert_eq!(corpus.windows.len(), 200);
    assert!(corpus.windows.iter().all(|w| w.len() == 128));
    assert!(corpus.name.starts_with("200 windows of 128 tokens"));
}
