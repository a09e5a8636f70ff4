#!/usr/bin/env bash
# Fuzzes every parser of outside data with cargo-fuzz (libFuzzer), one target after another, for
# SECONDS each (default 600), and prints each run's executions and findings. Not part of CI: it
# needs a nightly toolchain (for the sanitizer flags) and cargo-fuzz, which this script installs
# when missing. Crashes land in fuzz/artifacts/<target>/; each becomes a regression case in
# crates/attn-model/tests/robustness.rs. docs/RELIABILITY.md records the runs.
#
#   scripts/fuzz.sh                 # every target, 10 minutes each
#   scripts/fuzz.sh 60 own_format   # one target, one minute
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(own_format tensor_stream hf_model gpt2_bpe tokenizer_json variant url_state lesson)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The fuzz build has its own target folder: it never invalidates the project's builds.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/attn-playground/fuzz-target}"
mkdir -p fuzz/artifacts
for target in "${targets[@]}"; do
    # New inputs go to fuzz/work/ (not committed); the committed seeds are read from fuzz/corpus/.
    mkdir -p "fuzz/work/$target"
    echo "==> $target for ${seconds}s"
    # -rss_limit_mb: a parser that allocates from an untrusted length fails here.
    cargo +nightly fuzz run "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 \
        2>&1 | tee "fuzz/artifacts/$target.log" | grep -E "^(#[0-9]+ +DONE|stat::|==[0-9]+==|SUMMARY|Done)" || true
done
