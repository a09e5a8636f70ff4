//! The `attn` binary's tests, linked into one test binary.
//!
//! Each module is the file of the same name beside this one; `cargo test --test cli MODULE::`
//! runs one of them.

mod cli;
mod common;
mod gpu;
mod train;
