#!/usr/bin/env bash
# Builds the app (release: the CPU engine in wasm is slow unoptimised) and serves it at
# http://127.0.0.1:8080, rebuilding on changes. PORT=... picks another port; further arguments
# go to `trunk serve`. Installs what is missing first (scripts/setup.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/setup.sh"

# Trunk 0.21 finds the crate from its working directory: run it in web/ with the top config.
cd "$ROOT/web"
exec trunk serve --config ../trunk.toml --release --address 127.0.0.1 --port "${PORT:-8080}" "$@"
