//! `attn steer`: the model run under activation steering — a vector added to the residual
//! stream before one layer, scaled by a coefficient, from a position on; the vector is "prompt A
//! minus prompt B" (ActAdd: their residual streams before the layer, each at its last position),
//! the logit lens's direction toward one token (away from another), or read from a file. Prints what `attn run` prints, under steering.

use std::path::PathBuf;

use attn_model::{actadd_vector, lens_vector, Engine, Readback, Steered, Steering, Tokenizer};
use clap::Args;
use pollster::block_on;
use serde_json::json;

use crate::args::{engine_on, EngineArgs, InputArgs, ModelArgs, VariantArg};
use crate::failure::Failure;
use crate::report::{print_json, print_run, run_json};

/// The arguments of `attn steer`.
#[derive(Args)]
pub(crate) struct SteerArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    variant: VariantArg,
    /// The residual stream before this layer is steered.
    #[arg(long)]
    layer: usize,
    /// Prompt A of the ActAdd vector "A minus B": token ids (1,2,3) or text.
    #[arg(long, requires = "minus", conflicts_with = "vector")]
    plus: Option<String>,
    /// Prompt B of the ActAdd vector.
    #[arg(long, requires = "plus")]
    minus: Option<String>,
    /// The lens direction toward this token (an id or a text of one token): what the final norm
    /// and unembedding read as it, scaled to the stream's mean row length before the layer.
    #[arg(long, conflicts_with_all = ["plus", "vector"])]
    toward: Option<String>,
    /// With --toward: the direction toward it rather than toward this token.
    #[arg(long, requires = "toward")]
    away: Option<String>,
    /// A JSON file holding the vector: an array of d_model numbers.
    #[arg(long)]
    vector: Option<PathBuf>,
    /// The vector's scale (0 runs the unmodified model).
    #[arg(long, allow_hyphen_values = true)]
    coefficient: f32,
    /// The first position steered (default: every position).
    #[arg(long, default_value_t = 0)]
    from: usize,
    /// Include the attention matrices (`[layer][head][query][key]`) in the JSON.
    #[arg(long)]
    attention: bool,
    /// How many of the most probable next tokens to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Token ids as typed (`1,2,3`), else text through the model's tokenizer.
fn prompt_ids(text: &str, tokenizer: Option<&Tokenizer>) -> Result<Vec<u32>, Failure> {
    let ids: Result<Vec<u32>, _> = text.split(',').map(|s| s.trim().parse()).collect();
    match (ids, tokenizer) {
        (Ok(ids), _) => Ok(ids),
        (Err(_), Some(t)) => t.encode(text).map_err(|e| Failure(e.to_string())),
        (Err(_), None) => Err(Failure(format!(
            "{text:?} is not a list of token ids, and this model has no tokenizer"
        ))),
    }
}

/// The one token `text` stands for (an id, or a text the tokenizer reads as one token).
fn one_token(text: &str, tokenizer: Option<&Tokenizer>) -> Result<u32, Failure> {
    match prompt_ids(text, tokenizer)?.as_slice() {
        [id] => Ok(*id),
        ids => Err(Failure(format!(
            "the lens direction needs one token; {text:?} is {} tokens",
            ids.len()
        ))),
    }
}

/// `attn steer`.
pub(crate) fn run(args: SteerArgs) -> Result<(), Failure> {
    let SteerArgs {
        common: ModelArgs { model, json },
        input,
        variant,
        layer,
        plus,
        minus,
        toward,
        away,
        vector,
        coefficient,
        from,
        attention,
        top,
        engine: EngineArgs { engine },
    } = args;
    let (mut engine, tokenizer, tokens) = engine_on(&model, &input, &variant, engine)?;
    let vector = match (plus, minus, vector) {
        _ if toward.is_some() => {
            let toward = one_token(toward.as_deref().unwrap_or_default(), tokenizer.as_ref())?;
            let away = away
                .map(|a| one_token(&a, tokenizer.as_ref()))
                .transpose()?;
            block_on(lens_vector(&mut engine, &tokens, layer, (toward, away)))?
        }
        (Some(plus), Some(minus), None) => {
            let plus = prompt_ids(&plus, tokenizer.as_ref())?;
            let minus = prompt_ids(&minus, tokenizer.as_ref())?;
            block_on(actadd_vector(&mut engine, &plus, &minus, layer))?
        }
        (None, None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
            serde_json::from_str(&text).map_err(|e| {
                Failure(format!(
                    "{}: not a JSON array of numbers ({e})",
                    path.display()
                ))
            })?
        }
        _ => {
            return Err(Failure(
                "give the vector as --plus A --minus B, --toward TOKEN [--away TOKEN], or --vector FILE"
                    .into(),
            ))
        }
    };
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    let steering = Steering {
        layer,
        vector,
        coefficient,
        from,
    };
    let mut steered = Steered::new(&mut engine, steering)?;
    let output = block_on(Engine::forward(
        &mut steered,
        &tokens,
        &Readback::everything(),
    ))?;
    let mut report = run_json(&output, &tokens, tokenizer.as_ref(), attention, top);
    report["steering"] = json!({
        "layer": layer,
        "coefficient": coefficient,
        "from": from,
        "vector_norm": norm,
    });
    if json {
        print_json(&report);
    } else {
        println!(
            "steered before layer {layer}: {coefficient} × a vector of norm {norm:.3}, from position {from}"
        );
        print_run(&report);
    }
    Ok(())
}
