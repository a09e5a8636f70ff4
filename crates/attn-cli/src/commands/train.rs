//! `attn train`: train a built-in task model (induction, sort, reverse, recall, brackets,
//! shakespeare) and save it in the project's format, with tokenizer and training metadata.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::failure::Failure;
use crate::report::print_json;

/// The arguments of `attn train`.
#[derive(Args)]
pub(crate) struct TrainArgs {
    /// The task: induction, sort, reverse, recall, brackets or shakespeare.
    task: String,
    /// Overrides of the task's default training config, as JSON
    /// (e.g. '{"model": {"n_head": 1}}') or the path of a JSON file.
    #[arg(long)]
    config: Option<String>,
    /// Number of optimiser steps (overrides the config).
    #[arg(long)]
    steps: Option<usize>,
    /// Seed of the initial weights and the training data (overrides the config).
    #[arg(long)]
    seed: Option<u64>,
    /// Where to write the model (.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Print the final metric as JSON.
    #[arg(long)]
    json: bool,
}

/// `attn train`.
pub(crate) fn run(args: TrainArgs) -> Result<(), Failure> {
    let TrainArgs {
        task,
        config,
        steps,
        seed,
        out,
        json,
    } = args;
    let request = attn_train::command::TrainRequest {
        task: &task,
        config: config.as_deref(),
        steps,
        seed,
        out: &out,
    };
    let outcome = attn_train::command::train_to_file(&request, &mut std::io::stderr())?;
    if json {
        print_json(&json!(outcome.report));
    } else {
        println!(
            "wrote {} ({} parameters) after {:.0} s: {} {:.4} on {} held-out positions",
            out.display(),
            outcome.model.parameter_count(),
            outcome.seconds,
            outcome.report.metric,
            outcome.report.value,
            outcome.report.n
        );
    }
    Ok(())
}
