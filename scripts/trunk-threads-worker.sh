#!/usr/bin/env bash
# Trunk post_build hook (trunk.toml): builds the compute worker with wasm threads (web/threads)
# into the staged site, `attn-worker-threads/` beside index.html, for the page to start where it
# is cross-origin isolated (web/attn-worker-threads.js). Trunk cannot build it itself: it needs
# its own target features and standard library (scripts/cargo-threads.sh).
set -euo pipefail
dir="${TRUNK_STAGING_DIR:?run by trunk as a post_build hook}"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/cargo-threads.sh" --release -p attn-worker-threads
out="$dir/attn-worker-threads"
wasm-bindgen --target web --no-typescript --out-dir "$out" \
  "$CARGO_TARGET_DIR/threads/wasm32-unknown-unknown/release/attn_worker_threads.wasm"
# As Trunk does for the other workers (data-wasm-opt="3"); the module's features section names
# the features it uses (threads, SIMD), so wasm-opt reads them from there.
wasm-opt -O3 "$out/attn_worker_threads_bg.wasm" -o "$out/attn_worker_threads_bg.wasm"
