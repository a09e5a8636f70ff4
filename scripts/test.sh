#!/usr/bin/env bash
# Runs every test, after installing what is missing (scripts/setup.sh):
#   1. the web app's release build with Trunk (wasm-bindgen + wasm-opt) into dist/ — which also
#      proves the model and GPU crates build for wasm32,
#   2. native tests of the whole workspace: CPU engine, PyTorch parity, CLI, GPU engine on
#      lavapipe, trainer smoke test,
#   3. the browser suites of attn-model (the CPU engine's wasm build against the fixtures),
#      attn-gpu (WebGPU parity) and web (components) in headless Chromium, through cargo's wasm32
#      runner (wasm-bindgen-test-runner), on the web app's release build of every dependency,
#   4. end-to-end tests: dist/ served on 127.0.0.1 and driven in headless Chromium
#      (tests/e2e, screenshots in tests/artifacts/).
# Independent steps all run; the end-to-end step needs step 1. Exits non-zero if any failed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/setup.sh"
cd "$ROOT"

started=$SECONDS
summary=()
failed=0

# run_step NAME COMMAND... — runs one step and records its outcome and time.
run_step() {
  local name=$1 t0=$SECONDS rc=0
  shift
  printf '\n==> %s\n' "$name"
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    summary+=("$(printf 'ok      %4ds  %s' $((SECONDS - t0)) "$name")")
  else
    summary+=("$(printf 'FAILED  %4ds  %s (exit %d)' $((SECONDS - t0)) "$name" "$rc")")
    failed=1
  fi
  return "$rc"
}

skip_step() { summary+=("$(printf 'skipped        %s (%s)' "$1" "$2")"); failed=1; }

# Temporary files of every step (Chromium leaves ~90 MB per browser in TMPDIR) go in one folder,
# removed at the end.
scratch="$(mktemp -d)"
export TMPDIR="$scratch"
trap 'rm -rf "$scratch"' EXIT
# Test output is also collected here, to print one overall count at the end.
results_log="$(mktemp)"
# The native suites. Every native step selects the whole workspace (`--workspace`), so cargo
# unifies the dependencies' features the same way each time and the end-to-end step reuses every
# build of this one (with `-p attn-e2e` alone it would build the engine and its dependencies a
# second time, with other features). The e2e binary needs dist/ and one browser at a time: it runs
# in its own step.
native_tests() {
  cargo test --workspace --exclude attn-e2e 2>&1 | tee -a "$results_log"
}
e2e_tests() {
  cargo test --workspace --test e2e -- --test-threads=1 --nocapture 2>&1 | tee -a "$results_log"
}

# The wasm suites in headless Chromium, with wasm-bindgen-test-runner as cargo's runner for
# wasm32 (.cargo/config.toml; it reads the browser flags from the crate's webdriver.json, and
# CHROMEDRIVER from scripts/env.sh). Release builds of attn-model, attn-gpu and attn-web with the
# features of the relaxed-SIMD worker, selected together: every dependency is then the very build
# `trunk build --release` made for that worker (step 1), and only the test crates compile here.
# (`wasm-pack test --headless --chrome` in each crate runs the same suites, in the test profile.)
#   model: the CPU engine's wasm build (the relaxed-SIMD worker's, which Chromium runs) against
#          the PyTorch/transformers fixtures and the hand-checkable variants; the plain simd128
#          build differs only in the matrix product's fused multiply-add and is exercised by the
#          end-to-end test that runs the page with `simd=plain`;
#   gpu:   the GPU engine's parity tests on the browser's WebGPU (SwiftShader);
#   components: the page without a model list, the heatmap painter on a real canvas, a session's
#          GPU engine pair against its CPU engine pair.
wasm_tests() {
  WASM_BINDGEN_TEST_TIMEOUT=900 cargo test --release --target wasm32-unknown-unknown \
    -p attn-model -p attn-gpu -p attn-web --features attn-web/relaxed-simd "$@" 2>&1 |
    tee -a "$results_log"
}

# Trunk 0.21 finds the crate from its working directory: run it in web/ with the top config.
build_web() { (cd web && trunk build --release --config ../trunk.toml); }

web_ok=1
run_step "web app: trunk build --release -> dist/" build_web || web_ok=0

run_step "native tests: cargo test --workspace" native_tests || true

run_step "CPU engine in headless Chromium (wasm, --test model)" wasm_tests --test model || true

run_step "GPU engine in headless Chromium (wasm, --test gpu)" wasm_tests --test gpu || true

run_step "app components in headless Chromium (wasm, --test components)" wasm_tests --test components || true

if [ "$web_ok" -eq 1 ]; then
  # One browser at a time: Chromium on SwiftShader wants both cores.
  run_step "end-to-end: dist/ in headless Chromium" e2e_tests || true
else
  skip_step "end-to-end: dist/ in headless Chromium" "the web build failed"
fi

printf '\n==> summary (%ds in all)\n' $((SECONDS - started))
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "FAILED"
else
  echo "all tests passed; screenshots in tests/artifacts/"
fi
# One closing line over every cargo test binary that ran.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$results_log"
exit "$failed"
