//! `attn patch`: activation patching: the fraction of the logit difference (target − contrast, last
//! position) that each head's clean output, and the clean residual stream at each layer and
//! position, restores in the corrupted run — measured by a forward per patch (`--method exact`,
//! the default) or estimated to first order from one backward (`--method attribution`).

use attn_model::engine::unwatched;
use attn_model::Engine;
use attn_model::{activation_patching, attribution_patching};
use clap::{Args, ValueEnum};
use pollster::block_on;
use serde_json::json;

use crate::args::{
    input_tokens, load, parse_variant, EngineArgs, InputArgs, ModelArgs, VariantArg,
};
use crate::failure::Failure;
use crate::gpu;
use crate::report::print_json;

/// The arguments of `attn patch`.
#[derive(Args)]
pub(crate) struct PatchArgs {
    #[command(flatten)]
    common: ModelArgs,
    /// The clean input as text (or --clean-tokens).
    #[arg(long)]
    clean: Option<String>,
    #[arg(long, value_delimiter = ',')]
    clean_tokens: Option<Vec<u32>>,
    /// The corrupted input as text (or --corrupt-tokens), as long as the clean one.
    #[arg(long)]
    corrupt: Option<String>,
    #[arg(long, value_delimiter = ',')]
    corrupt_tokens: Option<Vec<u32>>,
    #[arg(long)]
    target: u32,
    #[arg(long)]
    contrast: u32,
    /// How each fraction is found: a forward with the activation patched (exact), or the
    /// metric's gradient times the activation's change (attribution patching).
    #[arg(long, value_enum, default_value_t = Method::Exact)]
    method: Method,
    #[command(flatten)]
    variant: VariantArg,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `--method`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    Exact,
    Attribution,
}

/// `attn patch`.
pub(crate) fn run(args: PatchArgs) -> Result<(), Failure> {
    let PatchArgs {
        common: ModelArgs { model, json },
        clean,
        clean_tokens,
        corrupt,
        corrupt_tokens,
        target,
        contrast,
        method,
        variant,
        engine: EngineArgs { engine },
    } = args;
    let model = load(&model)?;
    let tokenizer = model.build_tokenizer()?;
    let clean = input_tokens(
        &InputArgs {
            prompt: clean,
            tokens: clean_tokens,
        },
        tokenizer.as_ref(),
    )?;
    let corrupt = input_tokens(
        &InputArgs {
            prompt: corrupt,
            tokens: corrupt_tokens,
        },
        tokenizer.as_ref(),
    )?;
    let mut engine = gpu::engine(engine, model)?;
    engine.set_variant(&parse_variant(&variant)?)?;
    let pair = (target, contrast);
    let outcome = match method {
        Method::Exact => block_on(activation_patching(
            &mut engine,
            &clean,
            &corrupt,
            pair,
            &mut unwatched(),
        )),
        Method::Attribution => block_on(attribution_patching(
            &mut engine,
            &clean,
            &corrupt,
            pair,
            &mut unwatched(),
        )),
    };
    let p = outcome?
        .done()
        .expect("nothing cancels an unwatched patching");
    if json {
        print_json(&json!({
            "method": match method {
                Method::Exact => "exact",
                Method::Attribution => "attribution",
            },
            "clean_tokens": clean,
            "corrupt_tokens": corrupt,
            "heads": p.heads,
            "resid": p.resid,
            "clean": p.clean,
            "corrupted": p.corrupted,
        }));
    } else {
        println!(
            "logit difference: clean {:.4}, corrupted {:.4}",
            p.clean, p.corrupted
        );
        for (layer, heads) in p.heads.iter().enumerate() {
            let heads: Vec<String> = heads.iter().map(|h| format!("{h:.2}")).collect();
            println!("  layer {layer}: heads {}", heads.join(" "));
        }
    }
    Ok(())
}
