//! What `attn train` does, so that the CLI stays a thin layer of argument parsing: resolve the
//! task and config, fail early on an unwritable output path, train with progress on a log,
//! keep a checkpoint beside the output during the run, and save the result.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::parse_config_arg;
use crate::error::Result;
use crate::tasks::task_from_name;
use crate::train::{check_writable, save_model, Event, TrainOutcome, Trainer};

/// The arguments of `attn train`.
#[derive(Clone, Debug)]
pub struct TrainRequest<'a> {
    /// Task name.
    pub task: &'a str,
    /// `--config`: JSON overrides, inline or a file path.
    pub config: Option<&'a str>,
    /// `--steps`, overriding the config.
    pub steps: Option<usize>,
    /// `--seed`, overriding the config.
    pub seed: Option<u64>,
    /// `--out`: where the model goes.
    pub out: &'a Path,
}

/// Where checkpoints of a run writing `out` go: `out` + `.partial`.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

/// Trains as `request` says, writing progress lines to `log`, and saves the model.
pub fn train_to_file(request: &TrainRequest<'_>, log: &mut dyn Write) -> Result<TrainOutcome> {
    let task = task_from_name(request.task)?;
    let overrides = request.config.map(parse_config_arg).transpose()?;
    let config =
        task.default_config()
            .with_overrides(overrides.as_ref(), request.steps, request.seed)?;
    check_writable(request.out)?;
    let trainer = Trainer::new(task, config.clone())?;
    let c = trainer.model_config();
    let _ = writeln!(
        log,
        "training {}: {} layers × {} heads ({} key/value), d_model {}, {}{}, context {}, \
         {} steps × {} sequences, seed {}",
        task.name(),
        c.n_layer,
        c.n_head,
        c.kv_heads(),
        c.d_model,
        if c.causal { "causal" } else { "bidirectional" },
        if c.mlp {
            " with MLPs"
        } else {
            " attention-only"
        },
        c.n_ctx,
        config.steps,
        config.batch_size,
        config.seed
    );
    let checkpoint = checkpoint_path(request.out);
    let mut checkpoint_error = None;
    let outcome = trainer.run(&mut |event| match event {
        Event::Progress(p) => {
            let held_out = p
                .held_out
                .map(|(loss, acc)| format!("  held-out loss {loss:.4} acc {acc:.4}"))
                .unwrap_or_default();
            let _ = writeln!(
                log,
                "step {:>6}/{}  lr {:.2e}  loss {:.4}{held_out}  ({:.0} s)",
                p.step, p.steps, p.learning_rate, p.train_loss, p.seconds
            );
        }
        Event::Checkpoint(model) => {
            if let Err(e) = save_model(model, &checkpoint) {
                checkpoint_error.get_or_insert(e);
            }
        }
    })?;
    if let Some(e) = checkpoint_error {
        return Err(e);
    }
    save_model(&outcome.model, request.out)?;
    let _ = std::fs::remove_file(&checkpoint);
    Ok(outcome)
}
