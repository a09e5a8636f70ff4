//! attn-train's integration tests, linked into one test binary.
//!
//! Each module is the file of the same name beside this one; `cargo test --test train MODULE::`
//! runs one of them.

mod agreement;
mod smoke;
mod zoo;
