//! `attn generate`: continue a prompt with sampled tokens (language models).

use attn_model::engine::unwatched;
use attn_model::{generate, ModelError, Sampling};
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
        engine: EngineArgs { engine },
    } = args;
    let (mut engine, tokenizer, prompt) = engine_on(&model, &input, &variant, engine)?;
    let sampling = Sampling {
        temperature,
        top_k,
        seed,
    };
    let generated = block_on(generate(
        &mut engine,
        &prompt,
        tokens_out,
        &sampling,
        &mut unwatched(),
    ))?
    .done()
    .expect("nothing cancels an unwatched generation");
    let text = match &tokenizer {
        Some(t) => Some(t.decode(&generated).map_err(ModelError::from)?),
        None => None,
    };
    if json {
        print_json(&json!({ "prompt": prompt, "generated": generated, "text": text }));
    } else {
        match text {
            Some(text) => println!("{}{text}", input.prompt.as_deref().unwrap_or("")),
            None => println!("{generated:?}"),
        }
    }
    Ok(())
}
