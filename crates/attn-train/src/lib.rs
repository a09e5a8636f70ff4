//! Offline trainer for the built-in models (native only).
//!
//! - [`tasks`]: the tasks (induction, sort, reverse, recall, brackets, and the Shakespeare
//!   character model); their seeded generators, held-out sets, the training config and the
//!   initial weights are attn-model's (`attn_model::training`), shared with the page.
//! - [`net`]: the trainable transformer in burn, the same architecture as attn-model's CPU
//!   forward; weights move in and out through [`attn_model::Model`].
//! - [`mod@train`]: the training loop (AdamW, warm-up + cosine schedule) and the export to the
//!   project's own `.safetensors` format with tokenizer and training metadata.
//! - [`command`]: `attn train` end to end (config resolution, checkpoints, saving).
//! - [`eval`]: a task's metric on its held-out set, computed with attn-model's CPU engine so
//!   that any attention variant can be scored.

pub mod command;
pub mod config;
pub mod error;
pub mod eval;
pub mod net;
pub mod tasks;
pub mod train;

pub use config::{parse_config_arg, ArchConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use eval::{evaluate, EvalReport};
pub use tasks::{task_from_name, MetricKind, Sequence, Task, TaskData};
pub use train::{train, TrainOutcome};
