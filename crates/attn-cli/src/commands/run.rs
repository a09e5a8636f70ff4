//! `attn run`: run the model on an input and print the logits, next-token predictions and
//! attention.

use clap::Args;

use crate::args::{
    input_tokens, load, parse_variant, EngineArgs, InputArgs, ModelArgs, VariantArg,
};
use crate::failure::Failure;
use crate::gpu;
use crate::report::{print_json, print_run, run_json};

/// The arguments of `attn run`.
#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    variant: VariantArg,
    /// Include the attention matrices (`[layer][head][query][key]`) in the JSON.
    #[arg(long)]
    attention: bool,
    /// How many of the most probable next tokens to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `attn run`.
pub(crate) fn run(args: RunArgs) -> Result<(), Failure> {
    let RunArgs {
        common: ModelArgs { model, json },
        input,
        variant,
        attention,
        top,
        engine: EngineArgs { engine },
    } = args;
    let model = load(&model)?;
    let tokenizer = model.build_tokenizer()?;
    let tokens = input_tokens(&input, tokenizer.as_ref())?;
    let output = gpu::forward(engine, model, &parse_variant(&variant)?, &tokens)?;
    let report = run_json(&output, &tokens, tokenizer.as_ref(), attention, top);
    if json {
        print_json(&report);
    } else {
        print_run(&report);
    }
    Ok(())
}
