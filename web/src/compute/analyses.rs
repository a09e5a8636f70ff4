//! The long jobs on the variant engine, each with progress and `Cancel`: head importance, the
//! interpretability tools, lesson measurements and generation.

use super::state::{falls_back, gpu_failed, progress, take_current, State};
use crate::browser::now_ms;
use crate::browser::{fetch_bytes, next_tick};
use crate::protocol::{
    Analysis, AnalysisTool, AsJson, GeneratedToken, GenerationReport, JobOutcome, LessonMeasured,
    Response, SteerIds,
};
use crate::session::{check_cache_fits, return_engines, steered, Yielding};
use attn_gpu::{AnyEngine, EnginePair, GpuError};
use attn_model::corpus::{corpus_heads, HeadCorpus, CORPUS_WINDOWS, WINDOW_TOKENS};
use attn_model::engine::backward::check_differentiable;
use attn_model::engine::{Outcome, Progress, Step};
use attn_model::lesson::{
    model_task, reads_held_out_text, run_sampled, sample_for, summarise, untrained_twin,
    uptraining, SampleKind, SAMPLE_SEED,
};
use attn_model::{
    activation_patching, attribution_patching, direct_logit_attribution, head_importance,
    layer_similarity, logit_lens, qk_attribution, AblationMode, Decoding, Engine, Generation,
    HeadImportance, LessonStep, Readback, Sampling, Steered, Steering, Variant,
};

/// Head importance on the variant engine, reporting progress; `None` when cancelled.
pub(super) async fn rank_heads(
    state: &State,
    model: u32,
    job: u32,
    base: &Variant,
    tokens: &[u32],
    mode: AblationMode,
    reply: &dyn Fn(Response),
) -> JobOutcome<Vec<HeadImportance>> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let mut watch = progress(state, job, reply);
    let mut engine = Yielding(&mut pair.variant);
    let mut result = head_importance(&mut engine, base, tokens, mode, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            let mut engine = Yielding(&mut pair.variant);
            result = head_importance(&mut engine, base, tokens, mode, &mut watch).await;
        }
    }
    return_engines(&state.session, pair);
    result.map(Outcome::done).map_err(|e| e.to_string())
}

/// One interpretability tool on the variant engine; `None` when stopped.
#[allow(clippy::too_many_arguments)]
pub(super) async fn analyse(
    state: &State,
    model: u32,
    job: u32,
    tokens: &[u32],
    variant: &Variant,
    (tool, steer): (&AnalysisTool, Option<&SteerIds>),
    reply: &dyn Fn(Response),
) -> JobOutcome<Analysis> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let corpus = match tool {
        AnalysisTool::Heads { text } => {
            match head_corpus(pair.variant.model(), text.as_deref()).await {
                Ok(corpus) => Some(corpus),
                Err(e) => {
                    return_engines(&state.session, pair);
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    let mut watch = progress(state, job, reply);
    let on = (tokens, variant, tool, corpus.as_ref());
    let mut result = analyse_on(&mut pair, on, steer, &mut watch).await;
    if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
        gpu_failed(state, e, reply);
        if pair.fall_back_to_cpu().is_ok() {
            result = analyse_on(&mut pair, on, steer, &mut watch).await;
        }
    }
    return_engines(&state.session, pair);
    result.map(Outcome::done).map_err(|e| e.to_string())
}

/// The corpus head metrics run over: windows of `text`, or the built-in one — a task model's
/// held-out sequences, else the bundled plays through the model's tokenizer.
async fn head_corpus(model: &attn_model::Model, text: Option<&str>) -> Result<HeadCorpus, String> {
    let tokens = WINDOW_TOKENS.min(model.config.n_ctx);
    if text.is_none() {
        if let Some(corpus) =
            model_task(model).and_then(|t| HeadCorpus::from_task(t, CORPUS_WINDOWS))
        {
            return Ok(corpus);
        }
    }
    let tokenizer = model
        .build_tokenizer()
        .map_err(|e| e.to_string())?
        .ok_or("This model has no tokenizer, so it cannot read a text corpus.")?;
    let (name, texts) = match text {
        Some(t) => ("your text".to_string(), vec![t.to_string()]),
        None => {
            let bytes = fetch_bytes(HELD_OUT_TEXT)
                .await
                .map_err(|e| format!("Could not load the bundled plays: {e}"))?;
            let json =
                String::from_utf8(bytes).map_err(|_| format!("{HELD_OUT_TEXT} is not UTF-8"))?;
            let plays =
                attn_model::training::tasks::play_texts(&json).map_err(|e| e.to_string())?;
            ("the bundled Shakespeare plays".to_string(), plays)
        }
    };
    HeadCorpus::from_text(&name, &texts, &tokenizer, tokens, CORPUS_WINDOWS)
        .map_err(|e| format!("{e} (the corpus needs at least one window of {tokens} tokens)"))
}

async fn analyse_on(
    pair: &mut EnginePair,
    (tokens, variant, tool, corpus): (&[u32], &Variant, &AnalysisTool, Option<&HeadCorpus>),
    steer: Option<&SteerIds>,
    watch: &mut impl Progress,
) -> Result<Outcome<Analysis>, GpuError> {
    let mut engine = Yielding(&mut pair.variant);
    engine.set_variant(variant)?;
    let on = (tokens, tool, corpus);
    match steer {
        None => analyse_with(&mut engine, on, watch).await,
        // The tool on the steered engine, as the page's run is steered.
        Some(steer) => {
            let mut steered = steered(&mut engine, variant, steer, tokens).await?;
            analyse_with(&mut steered, on, watch).await
        }
    }
}

/// One tool on `engine` (the variant engine, steered or not).
async fn analyse_with<E: Engine<Error = GpuError>>(
    engine: &mut E,
    (tokens, tool, corpus): (&[u32], &AnalysisTool, Option<&HeadCorpus>),
    watch: &mut impl Progress,
) -> Result<Outcome<Analysis>, GpuError> {
    let last = tokens.len().saturating_sub(1);
    Ok(match tool {
        AnalysisTool::Lens => {
            let lens = logit_lens(engine, tokens).await?;
            let top = (0..lens.logits.len())
                .map(|depth| attn_model::forward::top_k(lens.at(depth, last), 3))
                .collect();
            Outcome::Done(Analysis::Lens {
                top,
                settles_at: lens.settles_at(last),
            })
        }
        AnalysisTool::Attribute { target } => {
            let target = match target {
                Some(t) => *t,
                None => predicted(engine, tokens).await?,
            };
            let attribution = direct_logit_attribution(engine, tokens, target, None).await?;
            Outcome::Done(Analysis::Attribution(attribution))
        }
        AnalysisTool::Patch { corrupt, exact } => {
            let target = predicted(engine, tokens).await?;
            let output = engine.forward(corrupt, &Readback::next_token()).await?;
            let ranked = output.top_at(output.seq_len - 1, 2);
            let contrast = match ranked.as_slice() {
                [(first, _), (second, _), ..] if *first == target => *second,
                [(first, _), ..] => *first,
                [] => target,
            };
            let pair = (target, contrast);
            // The estimate first (two forwards and a backward), then the exact fractions.
            let attribution = match check_differentiable(engine.prepared()) {
                Err(refused) if !*exact => return Err(refused.into()),
                Err(refused) => Err(refused.to_string()),
                Ok(()) => match attribution_patching(engine, tokens, corrupt, pair, watch).await? {
                    Outcome::Done(estimate) => Ok(estimate),
                    Outcome::Cancelled => return Ok(Outcome::Cancelled),
                },
            };
            let exact = match exact {
                false => None,
                true => match activation_patching(engine, tokens, corrupt, pair, watch).await? {
                    Outcome::Done(exact) => Some(exact),
                    Outcome::Cancelled => return Ok(Outcome::Cancelled),
                },
            };
            Outcome::Done(Analysis::Patching {
                exact,
                attribution,
                target,
                contrast,
            })
        }
        AnalysisTool::KvTradeoff => {
            match attn_model::kv_cache_tradeoff(engine, tokens, watch).await? {
                Outcome::Done(points) => Outcome::Done(Analysis::KvTradeoff(AsJson(points))),
                Outcome::Cancelled => Outcome::Cancelled,
            }
        }
        AnalysisTool::Heads { .. } => {
            let Some(corpus) = corpus else {
                return Ok(Outcome::Cancelled);
            };
            match corpus_heads(engine, corpus, watch).await? {
                Outcome::Done(heads) => Outcome::Done(Analysis::Heads(heads)),
                Outcome::Cancelled => Outcome::Cancelled,
            }
        }
        &AnalysisTool::Qk {
            layer,
            head,
            query,
            key,
        } => Outcome::Done(Analysis::Qk(
            qk_attribution(engine, tokens, layer, head, query, key).await?,
        )),
        AnalysisTool::LayerDrop => {
            Outcome::Done(Analysis::LayerDrop(layer_similarity(engine, tokens).await?))
        }
        AnalysisTool::Circuits => {
            Outcome::Done(Analysis::Circuits(attn_model::circuits(engine.model())))
        }
    })
}

/// The held-out text lessons score language models on (fetched once).
async fn held_out_text(state: &State) -> Result<Vec<String>, String> {
    if let Some(text) = state.held_out_text.borrow().clone() {
        return Ok(text);
    }
    let bytes = fetch_bytes(HELD_OUT_TEXT)
        .await
        .map_err(|e| format!("Could not load the held-out text: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{HELD_OUT_TEXT} is not UTF-8"))?;
    let texts = attn_model::training::tasks::held_out_text(&text).map_err(|e| e.to_string())?;
    *state.held_out_text.borrow_mut() = Some(texts.clone());
    Ok(texts)
}

/// The plays the held-out text comes from, relative to the page.
const HELD_OUT_TEXT: &str = "train/shakespeare.json";

/// A lesson step's measurement over its sample (and on `tokens`, the input on screen) on the
/// variant engine — or, for a control on untrained weights, on a CPU engine of the untrained
/// twin — with the step's numbers summarised; `None` when cancelled.
pub(super) async fn measure(
    state: &State,
    model: u32,
    job: u32,
    tokens: &[u32],
    step: &LessonStep,
    reply: &dyn Fn(Response),
) -> JobOutcome<LessonMeasured> {
    let Some(measurement) = &step.measure else {
        return Err("this step measures nothing".into());
    };
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let prepared = async {
        measurement
            .check(&pair.variant.model().config, tokens)
            .map_err(|e| e.to_string())?;
        let text = if step.sample == SampleKind::Model && reads_held_out_text(pair.variant.model())
        {
            held_out_text(state).await?
        } else {
            Vec::new()
        };
        let sample = sample_for(pair.variant.model(), step.sample, &text)?;
        // A control on untrained weights, or the model converted and uptrained: measured on a
        // CPU engine of its own.
        let twin = if step.untrained {
            let twin = untrained_twin(pair.variant.model()).map_err(|e| e.to_string())?;
            Some((
                AnyEngine::cpu(twin).map_err(|e| e.to_string())?,
                "the CPU engine (untrained weights)".to_string(),
            ))
        } else if let Some(uptrain) = &step.uptrain {
            let mut run = uptraining(pair.variant.model(), uptrain)?;
            let total = run.steps().run_length();
            let mut watch = progress(state, job, reply);
            while !run.steps().finished() {
                next_tick().await;
                run.step().map_err(|e| e.to_string())?;
                let done = run.steps().done();
                if !watch(Step { done, total }) {
                    return Ok(None);
                }
            }
            Some((
                AnyEngine::cpu(run.weights().clone()).map_err(|e| e.to_string())?,
                format!("the CPU engine (converted and uptrained for {total} steps)"),
            ))
        } else {
            None
        };
        Ok::<_, String>(Some((sample, twin)))
    }
    .await;
    let (sample, mut twin) = match prepared {
        Ok(Some(p)) => p,
        Ok(None) => {
            return_engines(&state.session, pair);
            return Ok(None);
        }
        Err(e) => {
            return_engines(&state.session, pair);
            return Err(e);
        }
    };
    let mut watch = progress(state, job, reply);
    let result = if let Some((twin, name)) = twin.as_mut() {
        let mut engine = Yielding(twin);
        let outcome =
            run_sampled(&mut engine, measurement, &sample, Some(tokens), &mut watch).await;
        outcome.map(|o| (o, name.clone()))
    } else {
        let mut engine = Yielding(&mut pair.variant);
        let mut result =
            run_sampled(&mut engine, measurement, &sample, Some(tokens), &mut watch).await;
        if let Some(e) = result.as_ref().err().filter(|e| falls_back(&pair, e)) {
            gpu_failed(state, e, reply);
            if pair.fall_back_to_cpu().is_ok() {
                let mut engine = Yielding(&mut pair.variant);
                result =
                    run_sampled(&mut engine, measurement, &sample, Some(tokens), &mut watch).await;
            }
        }
        let name = match pair.kind() {
            attn_gpu::EngineKind::Cpu => "the CPU engine",
            attn_gpu::EngineKind::Gpu => "the GPU engine",
        }
        .to_string();
        result.map(|o| (o, name))
    };
    return_engines(&state.session, pair);
    let (outcome, engine) = result.map_err(|e| e.to_string())?;
    let Outcome::Done(measured) = outcome else {
        return Ok(None);
    };
    let results = summarise(
        &measured,
        &step.results,
        step.reported.as_deref(),
        SAMPLE_SEED,
    )?;
    Ok(Some(LessonMeasured {
        measured,
        results,
        engine,
    }))
}

/// The most probable next output after `tokens`.
async fn predicted(
    engine: &mut impl Engine<Error = GpuError>,
    tokens: &[u32],
) -> Result<u32, GpuError> {
    let output = engine.forward(tokens, &Readback::next_token()).await?;
    Ok(output.argmax_at(output.seq_len - 1))
}

/// The generation's next token on `engine`, steered when `steering` is set.
async fn next_token(
    generation: &mut Generation,
    engine: &mut AnyEngine,
    steering: Option<&Steering>,
) -> Result<attn_model::NextToken, GpuError> {
    let mut yielding = Yielding(engine);
    match steering {
        None => generation.next(&mut yielding, true).await,
        Some(steering) => {
            let mut steered = Steered {
                engine: &mut yielding,
                steering: steering.clone(),
            };
            generation.next(&mut steered, true).await
        }
    }
}

/// Generates `n` tokens after `tokens` under `variant`, one decode step at a time, sending each
/// token as it is picked (`Response::GeneratedToken`, with the attention rows of the positions
/// run). The page can pause it (the engines go back to the session meanwhile, so the page's
/// other requests run), step it one token at a time, continue or cancel it. A GPU failure moves
/// the engines to the CPU, and the generation goes on there (its cache filled again). Under
/// steering every step recomputes the text, steered (no cache).
#[allow(clippy::too_many_arguments)]
pub(super) async fn generate_text(
    state: &State,
    model: u32,
    job: u32,
    tokens: &[u32],
    (variant, steer): (&Variant, Option<&SteerIds>),
    n: usize,
    sampling: &Sampling,
    reply: &dyn Fn(Response),
) -> JobOutcome<GenerationReport> {
    let mut pair = take_current(state, model)
        .await
        .ok_or("the model changed")?;
    let mut generation = match pair.variant.set_variant(variant) {
        Ok(()) => check_cache_fits(
            pair.variant.prepared(),
            (tokens.len() + n).min(pair.model().config.n_ctx),
        )
        .and_then(|()| {
            Generation::new(&pair.variant, tokens, sampling, Decoding::Cached)
                .map_err(|e| e.to_string())
        }),
        Err(e) => Err(e.to_string()),
    };
    let generation = match generation.as_mut() {
        Ok(generation) => generation,
        Err(_) => {
            return_engines(&state.session, pair);
            return Err(generation.err().unwrap_or_default());
        }
    };
    let steering = match steer {
        None => None,
        Some(steer) => match steered(&mut pair.variant, variant, steer, tokens).await {
            Ok(steered) => Some(steered.steering),
            Err(e) => {
                return_engines(&state.session, pair);
                return Err(e.to_string());
            }
        },
    };
    let mut busy_ms = 0.0;
    let mut outcome = Ok(());
    for done in 0..n {
        if state.cancelled.borrow().contains(&job) {
            break;
        }
        if state.paused.borrow().contains(&job) && !take_step(state, job) {
            // Paused: the engines go back while the page waits, and come back for the next token.
            return_engines(&state.session, pair);
            if !wait_while_paused(state, job).await {
                state.paused.borrow_mut().remove(&job);
                state.steps.borrow_mut().remove(&job);
                return Ok(None);
            }
            pair = take_current(state, model)
                .await
                .ok_or("the model changed while the generation was paused")?;
            if pair.variant.variant() != &variant.normalised() {
                // Another request switched the engine: back to this generation's variant (its
                // cache is gone; the next step fills it again from the text so far).
                if let Err(e) = pair.variant.set_variant(variant) {
                    outcome = Err(e.to_string());
                    break;
                }
            }
        }
        let start = now_ms();
        let mut next = next_token(generation, &mut pair.variant, steering.as_ref()).await;
        if let Some(e) = next.as_ref().err().filter(|e| falls_back(&pair, e)) {
            gpu_failed(state, e, reply);
            if pair.fall_back_to_cpu().is_ok() {
                next = next_token(generation, &mut pair.variant, steering.as_ref()).await;
            }
        }
        busy_ms += now_ms() - start;
        let next = match next {
            Ok(next) => next,
            Err(e) => {
                outcome = Err(e.to_string());
                break;
            }
        };
        // Tokens as the chips show them (whitespace made visible, `␣`, `⏎`).
        let (piece, prompt) = {
            let session = state.session.borrow();
            let label = |id: u32| {
                session
                    .as_ref()
                    .map_or_else(|| id.to_string(), |s| s.text.label(id))
            };
            let prompt = match done {
                0 => tokens.iter().map(|&t| label(t)).collect(),
                _ => Vec::new(),
            };
            (label(next.token), prompt)
        };
        // The model's end-of-text token ends the generation early.
        let end = next.end;
        let step = Step {
            done: done + 1,
            total: if end { done + 1 } else { n },
        };
        reply(Response::GeneratedToken {
            job,
            token: GeneratedToken {
                piece,
                position: tokens.len() + done,
                prompt,
                rows: next.rows,
                step,
                kv_cache_bytes: pair.variant.kv_cache_bytes().filter(|_| steering.is_none()),
                // The cache holds the prompt and every token before this one.
                variant_cache_bytes: attn_model::kv_cache_bytes(
                    pair.variant.prepared(),
                    (tokens.len() + done).min(pair.model().config.n_ctx),
                ),
                tokens_per_second: (done + 1) as f64 / (busy_ms / 1000.0).max(1e-9),
            },
        });
        if end {
            break;
        }
    }
    let kv_cache_bytes = pair.variant.kv_cache_bytes().filter(|_| steering.is_none());
    return_engines(&state.session, pair);
    state.paused.borrow_mut().remove(&job);
    state.steps.borrow_mut().remove(&job);
    outcome?;
    if state.cancelled.borrow().contains(&job) {
        return Ok(None);
    }
    let ids = generation.generated().to_vec();
    let session = state.session.borrow();
    let text = session.as_ref().and_then(|s| s.text.decode(&ids));
    Ok(Some(GenerationReport {
        text: text.unwrap_or_else(|| format!("{ids:?}")),
        tokens: ids.len(),
        millis: busy_ms,
        kv_cache_bytes,
        cached_positions: (tokens.len() + ids.len())
            .saturating_sub(1)
            .min(n_ctx_of(state)),
    }))
}

/// The loaded model's context.
fn n_ctx_of(state: &State) -> usize {
    state
        .session
        .borrow()
        .as_ref()
        .map_or(usize::MAX, |s| s.info.n_ctx)
}

/// Takes one pending single step of `job`, if the page asked for one.
fn take_step(state: &State, job: u32) -> bool {
    let mut steps = state.steps.borrow_mut();
    match steps.get_mut(&job) {
        Some(pending) if *pending > 0 => {
            *pending -= 1;
            true
        }
        _ => false,
    }
}

/// Waits while `job` is paused with no step asked for; `false` if it was cancelled meanwhile.
async fn wait_while_paused(state: &State, job: u32) -> bool {
    loop {
        if state.cancelled.borrow().contains(&job) {
            return false;
        }
        if !state.paused.borrow().contains(&job) || take_step(state, job) {
            return true;
        }
        gloo_timers::future::TimeoutFuture::new(40).await;
    }
}
