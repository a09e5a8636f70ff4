//! Attention Playground: the single-page app, as a library so that its components can be
//! tested in a browser (`tests/components.rs`). Two entry points use it: `main.rs` mounts
//! [`app::App`] on the page, and `bin/attn-worker.rs` registers the compute worker
//! ([`compute::ComputeWorker`]) that loads models and runs every forward off the main thread.
//!
//! Imports run one way, from the composition down to what crosses the thread boundary
//! (`layering.rs` checks it: no circle, nothing imports `app`, no panel imports another):
//!
//! - `app`: composes the panels and wires the page's effects; nothing imports it.
//! - `panels/*`: the views, one per panel; each reads the state and calls the controller.
//! - `controller`: the page's side of the worker (requests out, answers into the state).
//! - `state`: every signal of the page (`Ui`) and its transitions (`Ui::install`, …).
//! - `page_state` (the URL), `train_state` (a training run as the page holds it),
//!   `generation_state` (a generation as its tokens arrive),
//!   `worker_build` (which worker build runs), `plot` and `heatmap` (drawing).
//! - `compute` and `session`: the worker's side — its event loop and a loaded model.
//! - `protocol`: the messages and everything they carry across the thread boundary.
//! - `browser`, `manifest`, `runner`, `task_check`: small helpers with no page state.

pub mod app;
pub mod browser;
pub mod compute;
pub mod controller;
pub mod generation_state;
pub mod heatmap;
#[cfg(test)]
mod layering;
pub mod manifest;
pub mod page_state;
pub mod panels;
pub mod plot;
pub mod protocol;
pub mod qk_view;
pub mod runner;
pub mod session;
pub mod state;
pub mod task_check;
pub mod train_state;
pub mod worker_build;
