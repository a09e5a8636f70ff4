# The environment every build, serve and test step needs. Sourced by the other scripts; source
# it in your own shell too (`source scripts/env.sh`) to run cargo or trunk by hand.
# Safe to source repeatedly. Sets no shell options of its own.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

# Pinned tool versions (scripts/setup.sh installs them). The `wasm-bindgen` crate in Cargo.toml
# must be `=WASM_BINDGEN_VERSION`, and trunk.toml names the same wasm-bindgen and wasm-opt.
WASM_BINDGEN_VERSION=0.2.130
TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132.0.0

# Cargo-installed tools, then wasm-opt from npm's binaryen. The npm one must come before any
# system wasm-opt: Debian's binaryen (108) produces wasm that fails to load.
case ":$PATH:" in
  *":$ROOT/node_modules/.bin:"*) ;;
  *) PATH="$ROOT/node_modules/.bin:$PATH" ;;
esac
case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) PATH="$HOME/.cargo/bin:$PATH" ;;
esac
export PATH

# Trunk must neither look for a newer version of itself nor download tools.
export TRUNK_SKIP_VERSION_CHECK=true

# A build cache outside the clone, shared by every checkout on this machine. Nothing relies on
# it being warm; it only makes the next run fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/attn-playground/target}"
# The build tools' own build folder (scripts/setup.sh), beside it.
export TOOLS_TARGET_DIR="${TOOLS_TARGET_DIR:-$HOME/.cache/attn-playground/tools-target}"

# wgpu on Vulkan (lavapipe) and Chromium warn without a private runtime directory.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/attn-playground-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 0700 "$XDG_RUNTIME_DIR"

# Browser tests: Debian's Chromium and its driver (wasm-bindgen-test-runner and the e2e tests
# read these).
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
