//! Training in plain Rust: the tasks and their seeded data, the training config, the initial
//! weights, the backward pass of the CPU forward and AdamW — what the page's trainer runs in
//! its worker, and the same data and config the offline trainer (attn-train, with burn's
//! autodiff) uses, so that the two agree batch for batch.

pub mod config;
pub mod init;
pub mod tasks;

pub use config::{ArchConfig, TrainConfig};
pub use init::{initial_model, INIT_STREAM};
pub use tasks::{Corpus, MetricKind, Sequence, ShakespeareTask, Task, TaskData};
