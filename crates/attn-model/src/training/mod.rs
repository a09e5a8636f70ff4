//! Training in plain Rust: the tasks and their seeded data, the training config, the initial
//! weights, the backward pass of the CPU forward and AdamW — what the page's trainer runs in
//! its worker, and the same data and config the offline trainer (attn-train, with burn's
//! autodiff) uses, so that the two agree batch for batch.

pub mod backprop;
pub mod config;
pub mod heal;
pub mod init;
pub mod optimizer;
pub mod tasks;
pub mod trainer;

pub use backprop::{check_trainable, loss_and_gradients, loss_and_gradients_with, BatchLoss};
pub use config::{ArchConfig, TrainConfig};
pub use heal::{build_in, Constraint};
pub use init::{initial_model, INIT_STREAM};
pub use optimizer::AdamW;
pub use tasks::{Corpus, MetricKind, Sequence, ShakespeareTask, Task, TaskData};
pub use trainer::{
    healing_config, healing_start, model_config, probe, run_metadata, score, score_with,
    starting_weights, Probe, RunSteps, StepReport, Trainer,
};
