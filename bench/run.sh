#!/usr/bin/env bash
# The browser benchmark, from one command on a fresh machine (docs/BENCHMARKS.md):
#   bash bench/run.sh [--quick] [--only l4d128|gpt2small|l32h32|engines|cpu|gpu|page|MODEL] [--out FILE]
# Installs its dev-only dependencies when missing (onnxruntime-web and playwright-core from npm
# into bench/node_modules, onnx for the export from PyPI), writes random GPT-2 models in both
# formats (bench/models), builds the engines' wasm module (bench/pkg), then times everything in
# one headless Chromium and prints the ratios; then builds the app (dist/) and times input →
# repaint on every built-in model. Results: bench/results/latest.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
"$ROOT/scripts/setup.sh"
bench="$ROOT/bench"

if [ ! -d "$bench/node_modules/onnxruntime-web" ] || [ ! -d "$bench/node_modules/playwright-core" ]; then
  (cd "$bench" && npm install --no-audit --no-fund)
fi
if ! python3 -c "import onnx, torch, transformers" 2>/dev/null; then
  python3 -m pip install --quiet onnx torch transformers
fi
if [ ! -f "$bench/models/gpt2small/t64.onnx" ] || [ "$bench/export.py" -nt "$bench/models/gpt2small/t64.onnx" ]; then
  python3 "$bench/export.py" "$bench/models"
fi

# The same profile and target features as the page's two workers (release, +simd128 from
# .cargo/config.toml, and once more with relaxed SIMD's multiply-add); wasm-bindgen from
# scripts/setup.sh.
cargo build --release -p attn-bench --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir "$bench/pkg" \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/attn_bench.wasm"
cargo build --release -p attn-bench --target wasm32-unknown-unknown --features relaxed-simd
wasm-bindgen --target web --out-dir "$bench/pkg-relaxed" \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/attn_bench.wasm"
# And with wasm threads (relaxed SIMD too), for the runs with 2 threads.
"$ROOT/scripts/cargo-threads.sh" --release -p attn-bench --features relaxed-simd,threads
wasm-bindgen --target web --out-dir "$bench/pkg-threads" \
  "$CARGO_TARGET_DIR/threads/wasm32-unknown-unknown/release/attn_bench.wasm"

# The app itself, for the page-level figure (the same build as scripts/serve.sh).
(cd "$ROOT/web" && trunk build --release --config ../trunk.toml)

node "$bench/run.mjs" "$@"
