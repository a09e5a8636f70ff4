//! The end-to-end tests, linked into one test binary: dist/ served on 127.0.0.1 and driven in headless Chromium. Run them one at a time (`--test-threads=1`): Chromium on SwiftShader wants both cores.
//!
//! Each module is the file of the same name beside this one; `cargo test --test e2e MODULE::`
//! runs one of them.

mod app;
mod families;
mod faults;
mod hosting;
mod lessons;
mod long_tasks;
mod text;
mod training;
