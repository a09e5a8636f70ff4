//! What the commands share: the model, input, variant and engine arguments, and turning them
//! into a model, tokens and an engine.

use std::path::{Path, PathBuf};

use attn_gpu::AnyEngine;
use attn_model::{load_model, Engine, Model, Tokenizer, Variant};
use clap::Args;

use crate::failure::Failure;
use crate::gpu;

#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct InputArgs {
    /// Text to tokenise with the model's tokenizer.
    #[arg(long)]
    pub(crate) prompt: Option<String>,
    /// Token ids, comma-separated (e.g. 1,2,3).
    #[arg(long, value_delimiter = ',')]
    pub(crate) tokens: Option<Vec<u32>>,
}

/// The model a command reads and how it answers: every command over a model takes these.
#[derive(Args)]
pub(crate) struct ModelArgs {
    /// A project `.safetensors` file or a Hugging Face directory of a supported family.
    pub(crate) model: PathBuf,
    /// Print JSON instead of a readable report.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The engine that runs a command's forward passes.
#[derive(Args)]
pub(crate) struct EngineArgs {
    /// Which engine runs the forward passes.
    #[arg(long, value_enum, default_value = "cpu")]
    pub(crate) engine: gpu::EngineArg,
}

#[derive(Args)]
pub(crate) struct VariantArg {
    /// The variant as JSON (e.g. '{"kv_groups": 1}') or the path of a JSON file.
    #[arg(long)]
    pub(crate) variant: Option<String>,
}

pub(crate) fn load(path: &Path) -> Result<Model, Failure> {
    load_model(path).map_err(|e| Failure(format!("cannot load {}: {e}", path.display())))
}

pub(crate) fn parse_variant(arg: &VariantArg) -> Result<Variant, Failure> {
    let Some(text) = &arg.variant else {
        return Ok(Variant::default());
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return Ok(Variant::from_json(text)?);
    }
    let contents = std::fs::read_to_string(text).map_err(|e| {
        Failure(format!(
            "--variant is neither JSON (it does not start with '{{') nor a readable file: {text}: {e}"
        ))
    })?;
    Ok(Variant::from_json(&contents)?)
}

/// The engine (with the variant applied), the model's tokenizer and the input's tokens: what
/// the commands that analyse one input start from.
pub(crate) fn engine_on(
    model: &Path,
    input: &InputArgs,
    variant: &VariantArg,
    kind: gpu::EngineArg,
) -> Result<(AnyEngine, Option<Tokenizer>, Vec<u32>), Failure> {
    let model = load(model)?;
    let tokenizer = model.build_tokenizer()?;
    let tokens = input_tokens(input, tokenizer.as_ref())?;
    let mut engine = gpu::engine(kind, model)?;
    engine.set_variant(&parse_variant(variant)?)?;
    Ok((engine, tokenizer, tokens))
}

pub(crate) fn input_tokens(
    input: &InputArgs,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<u32>, Failure> {
    match (&input.tokens, &input.prompt) {
        (Some(tokens), _) => Ok(tokens.clone()),
        (None, Some(prompt)) => match tokenizer {
            Some(t) => t.encode(prompt).map_err(|e| Failure(e.to_string())),
            None => Err(Failure(
                "this model has no tokenizer; pass --tokens instead of --prompt".into(),
            )),
        },
        (None, None) => Err(Failure("give --prompt or --tokens".into())),
    }
}
