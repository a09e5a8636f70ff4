//! `attn eval`: score a trained model on its task's fixed held-out set: accuracy for the tasks,
//! validation loss (nats per character) for the language model.

use clap::Args;
use serde_json::json;

use crate::args::{load, parse_variant, ModelArgs, VariantArg};
use crate::failure::Failure;
use crate::report::print_json;

/// The arguments of `attn eval`.
#[derive(Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    variant: VariantArg,
}

/// `attn eval`.
pub(crate) fn run(args: EvalArgs) -> Result<(), Failure> {
    let EvalArgs {
        common: ModelArgs { model, json },
        variant,
    } = args;
    let model = load(&model)?;
    let report = attn_train::evaluate(&model, &parse_variant(&variant)?)?;
    if json {
        print_json(&json!(report));
    } else {
        print!(
            "{} {:.4} on {} held-out positions",
            report.metric, report.value, report.n
        );
        match report.bits_per_char() {
            Some(bpc) => println!(" ({bpc:.4} bits per character)"),
            None => println!(),
        }
    }
    Ok(())
}
