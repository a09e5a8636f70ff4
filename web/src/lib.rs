//! Attention Playground: the single-page app, as a library so that its components can be
//! tested in a browser (`tests/components.rs`). Two entry points use it: `main.rs` mounts
//! [`app::App`] on the page, and `bin/attn-worker.rs` registers the compute worker
//! ([`compute::ComputeWorker`]) that loads models and runs every forward off the main thread.

pub mod app;
pub mod browser;
pub mod compute;
pub mod controller;
pub mod heatmap;
pub mod manifest;
pub mod page_state;
pub mod panels;
pub mod protocol;
pub mod runner;
pub mod session;
pub mod state;
pub mod task_check;
