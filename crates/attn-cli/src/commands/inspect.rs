//! `attn inspect`: print a model's config, parameter count and tokenizer.

use clap::Args;

use crate::args::{load, ModelArgs};
use crate::failure::Failure;
use crate::report::{inspect_json, print_inspect, print_json};

/// The arguments of `attn inspect`.
#[derive(Args)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    common: ModelArgs,
}

/// `attn inspect`.
pub(crate) fn run(args: InspectArgs) -> Result<(), Failure> {
    let InspectArgs {
        common: ModelArgs { model, json },
    } = args;
    let model = load(&model)?;
    let report = inspect_json(&model)?;
    if json {
        print_json(&report);
    } else {
        print_inspect(&model, &report);
    }
    Ok(())
}
