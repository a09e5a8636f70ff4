//! `attn importance`: rank heads by how much ablating each one alone raises the loss on an input.

use attn_model::engine::unwatched;
use attn_model::{head_importance, AblationMode};
use clap::Args;
use pollster::block_on;
use serde_json::json;

use crate::args::{
    input_tokens, load, parse_variant, EngineArgs, InputArgs, ModelArgs, VariantArg,
};
use crate::failure::Failure;
use crate::gpu;
use crate::report::print_json;

/// The arguments of `attn importance`.
#[derive(Args)]
pub(crate) struct ImportanceArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    variant: VariantArg,
    /// Ablate with the head's mean output instead of zeros.
    #[arg(long)]
    mean: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `attn importance`.
pub(crate) fn run(args: ImportanceArgs) -> Result<(), Failure> {
    let ImportanceArgs {
        common: ModelArgs { model, json },
        input,
        variant,
        mean,
        engine: EngineArgs { engine },
    } = args;
    let model = load(&model)?;
    let tokenizer = model.build_tokenizer()?;
    let tokens = input_tokens(&input, tokenizer.as_ref())?;
    let mut engine = gpu::engine(engine, model)?;
    let mode = if mean {
        AblationMode::Mean
    } else {
        AblationMode::Zero
    };
    let base = parse_variant(&variant)?;
    let ranking = block_on(head_importance(
        &mut engine,
        &base,
        &tokens,
        mode,
        &mut unwatched(),
    ))?
    .done()
    .expect("nothing cancels an unwatched ranking");
    if json {
        print_json(&json!({ "tokens": tokens, "heads": ranking }));
    } else {
        println!("rank layer head  loss increase  mean KL");
        for (rank, h) in ranking.iter().enumerate() {
            println!(
                "{:>4} {:>5} {:>4}  {:>13.4}  {:.4}",
                rank + 1,
                h.layer,
                h.head,
                h.loss_increase,
                h.mean_kl
            );
        }
    }
    Ok(())
}
