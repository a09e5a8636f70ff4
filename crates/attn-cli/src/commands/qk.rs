//! `attn qk`: QK attribution — one head's pre-softmax score of a query on a key, split into
//! (query-side part, key-side part) contributions of the residual stream: the embeddings, each
//! earlier head, each earlier MLP and the biases, through the layer's input norm with its scale
//! frozen.

use attn_model::qk_attribution;
use clap::Args;
use pollster::block_on;
use serde_json::json;

use crate::args::{engine_on, EngineArgs, InputArgs, ModelArgs, VariantArg};
use crate::failure::Failure;
use crate::report::print_json;

/// The arguments of `attn qk`.
#[derive(Args)]
pub(crate) struct QkArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    variant: VariantArg,
    /// The head's layer.
    #[arg(long)]
    layer: usize,
    /// The head within its layer.
    #[arg(long)]
    head: usize,
    /// The query position (the row of the head's map).
    #[arg(long)]
    query: usize,
    /// The key position (the column).
    #[arg(long)]
    key: usize,
    /// How many of the largest parts the readable report lists.
    #[arg(long, default_value_t = 12)]
    top: usize,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `attn qk`.
pub(crate) fn run(args: QkArgs) -> Result<(), Failure> {
    let QkArgs {
        common: ModelArgs { model, json },
        input,
        variant,
        layer,
        head,
        query,
        key,
        top,
        engine: EngineArgs { engine },
    } = args;
    let (mut engine, _, tokens) = engine_on(&model, &input, &variant, engine)?;
    let a = block_on(qk_attribution(
        &mut engine,
        &tokens,
        layer,
        head,
        query,
        key,
    ))?;
    let name = |index: usize| a.components[index].as_str();
    if json {
        // Every pair, largest magnitude first; the values sum to `score`.
        let parts: Vec<_> = a
            .ranked()
            .into_iter()
            .map(
                |(q, k, value)| json!({"query_side": name(q), "key_side": name(k), "value": value}),
            )
            .collect();
        print_json(&json!({
            "tokens": tokens,
            "layer": a.layer,
            "head": a.head,
            "query": a.query,
            "key": a.key,
            "score": a.score,
            "components": a.components,
            "query_totals": a.query_totals(),
            "key_totals": a.key_totals(),
            "parts": parts,
        }));
    } else {
        println!(
            "L{layer}H{head}, query {query} on key {key}: score {:.4} (parts sum to {:.4})",
            a.score,
            a.total()
        );
        println!("largest parts (query side × key side):");
        for (q, k, value) in a.ranked().into_iter().take(top) {
            println!("  {value:+10.4}  {} × {}", name(q), name(k));
        }
    }
    Ok(())
}
