//! `attn roles`: score every head's role: previous-token, first-token (sink), self, induction.

use attn_model::{copying_scores, head_roles, role_probe, Engine};
use clap::Args;
use pollster::block_on;
use serde_json::json;

use crate::args::{load, parse_variant, EngineArgs, ModelArgs, VariantArg};
use crate::failure::Failure;
use crate::gpu;
use crate::report::{print_json, print_roles};

/// The arguments of `attn roles`.
#[derive(Args)]
pub(crate) struct RolesArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    variant: VariantArg,
    /// Seed of the repeated random sequence the scores are measured on.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `attn roles`.
pub(crate) fn run(args: RolesArgs) -> Result<(), Failure> {
    let RolesArgs {
        common: ModelArgs { model, json },
        variant,
        seed,
        engine: EngineArgs { engine },
    } = args;
    let mut engine = gpu::engine(engine, load(&model)?)?;
    engine.set_variant(&parse_variant(&variant)?)?;
    let mut roles = block_on(head_roles(&mut engine, seed))?;
    let model = engine.model();
    for (r, copying) in roles.iter_mut().zip(copying_scores(model)) {
        r.copying = copying;
    }
    let c = &model.config;
    let probe = role_probe(c.vocab_size, c.n_ctx, seed);
    if json {
        print_json(&json!({ "seed": seed, "probe": probe, "heads": roles }));
    } else {
        println!(
            "{} sequences of {} distinct random tokens, each repeated (seed {seed}):",
            probe.len(),
            probe[0].len() / 2
        );
        print_roles(&roles);
    }
    Ok(())
}
