//! `attn attribute`: direct logit attribution: what each head, each MLP, the embeddings and the
//! biases write into one logit, through the final norm with its scale frozen.

use attn_model::direct_logit_attribution;
use clap::Args;
use pollster::block_on;
use serde_json::json;

use crate::args::{engine_on, EngineArgs, InputArgs, ModelArgs, VariantArg};
use crate::failure::Failure;
use crate::report::print_json;

/// The arguments of `attn attribute`.
#[derive(Args)]
pub(crate) struct AttributeArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    variant: VariantArg,
    /// The output id whose logit is attributed.
    #[arg(long)]
    target: u32,
    /// The position (default: the last).
    #[arg(long)]
    position: Option<usize>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `attn attribute`.
pub(crate) fn run(args: AttributeArgs) -> Result<(), Failure> {
    let AttributeArgs {
        common: ModelArgs { model, json },
        input,
        variant,
        target,
        position,
        engine: EngineArgs { engine },
    } = args;
    let (mut engine, _, tokens) = engine_on(&model, &input, &variant, engine)?;
    let a = block_on(direct_logit_attribution(
        &mut engine,
        &tokens,
        target,
        position,
    ))?;
    if json {
        print_json(&json!({
            "tokens": tokens,
            "target": a.target,
            "position": a.position,
            "heads": a.heads,
            "mlps": a.mlps,
            "embeddings": a.embeddings,
            "biases": a.biases,
            "logit": a.logit,
        }));
    } else {
        println!(
            "logit {:.4} = embeddings {:.4} + biases {:.4} + heads and MLPs:",
            a.logit, a.embeddings, a.biases
        );
        for (layer, heads) in a.heads.iter().enumerate() {
            let heads: Vec<String> = heads.iter().map(|h| format!("{h:+.3}")).collect();
            println!(
                "  layer {layer}: heads {}  mlp {:+.3}",
                heads.join(" "),
                a.mlps[layer]
            );
        }
    }
    Ok(())
}
