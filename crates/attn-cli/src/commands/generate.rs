//! `attn generate`: continue a prompt with sampled tokens (language models), decoding from the
//! KV cache (`--no-cache` recomputes the text for every token instead).

use attn_model::engine::unwatched;
use std::time::Instant;

use attn_model::{generate_with, Decoding, Engine, ModelError, Sampling};
use clap::Args;
use pollster::block_on;
use serde_json::json;

use crate::args::{engine_on, EngineArgs, InputArgs, ModelArgs, VariantArg};
use crate::failure::Failure;
use crate::report::print_json;

/// The arguments of `attn generate`.
#[derive(Args)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    variant: VariantArg,
    /// Number of tokens to generate.
    #[arg(long, short = 'n', default_value_t = 40)]
    tokens_out: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Sample among the k most probable tokens (0 = all).
    #[arg(long, default_value_t = 20)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Recompute the whole text for every token instead of decoding from the KV cache (the
    /// same tokens, slower: for comparison).
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `attn generate`.
pub(crate) fn run(args: GenerateArgs) -> Result<(), Failure> {
    let GenerateArgs {
        common: ModelArgs { model, json },
        input,
        variant,
        tokens_out,
        temperature,
        top_k,
        seed,
        no_cache,
        engine: EngineArgs { engine },
    } = args;
    let (mut engine, tokenizer, prompt) = engine_on(&model, &input, &variant, engine)?;
    let sampling = Sampling {
        temperature,
        top_k,
        seed,
    };
    let decoding = match no_cache {
        true => Decoding::Recompute,
        false => Decoding::Cached,
    };
    let start = Instant::now();
    let generated = block_on(generate_with(
        &mut engine,
        &prompt,
        tokens_out,
        &sampling,
        decoding,
        &mut unwatched(),
    ))?
    .done()
    .expect("nothing cancels an unwatched generation");
    let seconds = start.elapsed().as_secs_f64();
    // What the cache holds at the end (keys, values or state of every token so far); null when
    // nothing was cached (--no-cache, an engine without a cache, a variant that cannot decode).
    let kv_cache_bytes = engine.kv_cache_bytes();
    let text = match &tokenizer {
        Some(t) => Some(t.decode(&generated).map_err(ModelError::from)?),
        None => None,
    };
    if json {
        print_json(&json!({
            "prompt": prompt,
            "prompt_tokens": prompt.len(),
            "tokens": generated,
            "generated": generated,
            "text": text,
            "tokens_per_second": generated.len() as f64 / seconds.max(1e-9),
            "kv_cache_bytes": kv_cache_bytes,
        }));
    } else {
        match text {
            Some(text) => println!("{}{text}", input.prompt.as_deref().unwrap_or("")),
            None => println!("{generated:?}"),
        }
    }
    Ok(())
}
