//! `attn heads`: every head's metrics over a corpus — self, previous-token, first-token and
//! induction scores, attention entropy, query–key distance, and where each is largest
//! (docs/ANALYSIS.md has the definitions and the JSON).

use std::path::PathBuf;

use attn_model::corpus::{corpus_heads, HeadCorpus, CORPUS_WINDOWS, WINDOW_TOKENS};
use attn_model::engine::unwatched;
use attn_model::lesson::model_task;
use attn_model::{Engine, Model, Outcome};
use clap::Args;
use pollster::block_on;

use crate::args::{load, parse_variant, EngineArgs, ModelArgs, VariantArg};
use crate::decode_bench::random_model;
use crate::failure::Failure;
use crate::gpu;
use crate::report::print_json;

/// The plays the built-in corpus is cut from.
const PLAYS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../static/train/shakespeare.json"
);

/// The arguments of `attn heads`.
#[derive(Args)]
pub(crate) struct HeadsArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    variant: VariantArg,
    /// `builtin` (the bundled plays, or a task model's held-out sequences), or a UTF-8 text file
    /// cut into windows through the model's tokenizer.
    #[arg(long, default_value = "builtin")]
    corpus: String,
    /// How many windows to measure over.
    #[arg(long, default_value_t = CORPUS_WINDOWS)]
    windows: usize,
    /// Tokens per window (cut to the model's context).
    #[arg(long, default_value_t = WINDOW_TOKENS)]
    window_tokens: usize,
    #[command(flatten)]
    engine: EngineArgs,
}

/// The corpus `name` names for `model`.
fn corpus_for(
    model: &Model,
    name: &str,
    windows: usize,
    tokens: usize,
) -> Result<HeadCorpus, Failure> {
    let tokens = tokens.min(model.config.n_ctx);
    if name == "builtin" && model.tokenizer.is_none() && model_task(model).is_none() {
        return Ok(random_ids(model, windows, tokens));
    }
    if name == "builtin" {
        if let Some(corpus) = model_task(model).and_then(|t| HeadCorpus::from_task(t, windows)) {
            return Ok(corpus);
        }
    }
    let (label, texts) = if name == "builtin" {
        let json = std::fs::read_to_string(PLAYS).map_err(|e| Failure(format!("{PLAYS}: {e}")))?;
        (
            "the bundled Shakespeare plays".to_string(),
            attn_model::training::tasks::play_texts(&json)?,
        )
    } else {
        let path = PathBuf::from(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        (path.display().to_string(), vec![text])
    };
    let tokenizer = model.build_tokenizer()?.ok_or_else(|| {
        Failure("the model has no tokenizer, so it cannot read a text corpus".into())
    })?;
    Ok(HeadCorpus::from_text(
        &label, &texts, &tokenizer, tokens, windows,
    )?)
}

/// The built-in corpus of a model with neither a tokenizer nor a task (a `random:` shape, for
/// timing): `windows` windows of `tokens` ids drawn uniformly from the vocabulary, from a fixed
/// seed.
fn random_ids(model: &Model, windows: usize, tokens: usize) -> HeadCorpus {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let vocab = model.config.vocab_size as u64;
    let windows = (0..windows)
        .map(|_| {
            (0..tokens)
                .map(|_| {
                    // xorshift64*
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as u32 % vocab as u32
                })
                .collect()
        })
        .collect();
    HeadCorpus {
        name: "random ids (the model has no tokenizer)".into(),
        windows,
    }
}

/// `attn heads`.
pub(crate) fn run(args: HeadsArgs) -> Result<(), Failure> {
    let HeadsArgs {
        common: ModelArgs { model, json },
        variant,
        corpus,
        windows,
        window_tokens,
        engine: EngineArgs { engine },
    } = args;
    let loaded = match random_model(&model)? {
        Some(random) => random,
        None => load(&model)?,
    };
    let corpus = corpus_for(&loaded, &corpus, windows, window_tokens)?;
    let mut engine = gpu::engine(engine, loaded)?;
    engine.set_variant(&parse_variant(&variant)?)?;
    let Outcome::Done(heads) = block_on(corpus_heads(&mut engine, &corpus, &mut unwatched()))?
    else {
        return Err(Failure("cancelled".into()));
    };
    if json {
        print_json(&serde_json::to_value(&heads).map_err(|e| Failure(e.to_string()))?);
        return Ok(());
    }
    println!(
        "{}: {} query positions ({} repeated); induction probe: {}",
        heads.corpus, heads.queries, heads.repeats, heads.probe
    );
    println!(
        "layer head   self  prev-token  first/sink  induction  (probe)  entropy  distance ± sd"
    );
    for h in &heads.heads {
        let induction = h.induction.map_or("-".to_string(), |v| format!("{v:.3}"));
        println!(
            "{:>5} {:>4}  {:>5.3}  {:>10.3}  {:>10.3}  {:>9}  {:>7.3}  {:>7.3}  {:>7.2} ± {:.2}",
            h.layer,
            h.head,
            h.self_attention,
            h.previous_token,
            h.first_token,
            induction,
            h.induction_probe,
            h.entropy,
            h.distance_mean,
            h.distance_std
        );
    }
    Ok(())
}
