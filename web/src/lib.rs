//! Attention Playground: the single-page app, as a library so that its components can be
//! tested in a browser (`tests/components.rs`); `main.rs` mounts [`app::App`].

pub mod app;
pub mod browser;
pub mod heatmap;
pub mod manifest;
pub mod page_state;
pub mod runner;
pub mod session;
pub mod task_check;
