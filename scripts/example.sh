#!/usr/bin/env bash
# The main job: build the example app in examples/ on the engine's embedded defaults
# (no configuration file) and print where the built site was published.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/workz-build/target}"
cargo build --release --locked -p workz-build-cli --manifest-path "$ROOT/Cargo.toml"
site=$("$CARGO_TARGET_DIR/release/workz-build" build "$ROOT/examples/static-site")
echo "The built site is in: $site"
echo "Open $site/index.html, or serve it: python3 -m http.server -d '$site'"
