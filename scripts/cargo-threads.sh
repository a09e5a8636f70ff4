#!/usr/bin/env bash
# `cargo build` for the wasm build with threads (the page's threaded compute worker, the
# benchmark's threaded engine): wasm32 with the `atomics` target feature and a shared memory,
# which rayon's pool of web workers shares (docs/ARCHITECTURE.md, "Threads").
#
#   scripts/cargo-threads.sh -p CRATE --features threads,... [--release]
#
# The standard library that rustup ships for wasm32 is built without `atomics`, so this one is
# rebuilt from rustup's `rust-src` component (`-Z build-std`, scripts/setup.sh installs it).
# That flag is unstable: RUSTC_BOOTSTRAP=1 lets this stable toolchain accept it, for this build
# only. Its artifacts go to a target folder of their own, `$CARGO_TARGET_DIR/threads`, so the
# other builds' caches stay valid. The wasm lands in
# `$CARGO_TARGET_DIR/threads/wasm32-unknown-unknown/<profile>/`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
flags=(
  # As .cargo/config.toml (RUSTFLAGS replaces it), plus what threads need.
  -C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals
  # One memory shared by every thread, imported by each (wasm-bindgen hands it to the workers);
  # 4 GiB is wasm32's limit, and a shared memory must declare its maximum.
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296
  # The thread-local storage hooks wasm-bindgen calls in each new thread.
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base
)
RUSTC_BOOTSTRAP=1 RUSTFLAGS="${flags[*]}" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/threads" \
  cargo build --target wasm32-unknown-unknown -Z build-std=panic_abort,std "$@"
