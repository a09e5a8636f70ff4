//! `attn lens`: the logit lens: the unembedding of the residual stream before each layer and after
//! the last (`logits[layer][position][output]`; the last entry is the model's logits).

use attn_model::logit_lens;
use clap::Args;
use pollster::block_on;
use serde_json::json;

use crate::args::{engine_on, EngineArgs, InputArgs, ModelArgs, VariantArg};
use crate::failure::Failure;
use crate::report::{label, print_json};

/// The arguments of `attn lens`.
#[derive(Args)]
pub(crate) struct LensArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    variant: VariantArg,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `attn lens`.
pub(crate) fn run(args: LensArgs) -> Result<(), Failure> {
    let LensArgs {
        common: ModelArgs { model, json },
        input,
        variant,
        engine: EngineArgs { engine },
    } = args;
    let (mut engine, tokenizer, tokens) = engine_on(&model, &input, &variant, engine)?;
    let lens = block_on(logit_lens(&mut engine, &tokens))?;
    if json {
        let rows: Vec<Vec<&[f32]>> = lens
            .logits
            .iter()
            .map(|depth| depth.chunks(lens.n_out).collect())
            .collect();
        print_json(&json!({ "tokens": tokens, "logits": rows }));
    } else {
        let last = tokens.len() - 1;
        println!("depth  top-1 at the last position");
        for depth in 0..lens.logits.len() {
            let id = attn_model::forward::argmax(lens.at(depth, last));
            println!("{depth:>5}  {}", label(tokenizer.as_ref(), id));
        }
        println!("settles at depth {}", lens.settles_at(last));
    }
    Ok(())
}
