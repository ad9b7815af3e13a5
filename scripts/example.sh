#!/usr/bin/env bash
# The main job: build the example JavaScript app in examples/javascript-app (TypeScript,
# CSS, an image, one npm dependency) on the engine's embedded defaults (no configuration
# file) and print where the built site was published.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/workz-build/target}"
# npm installs the app's dependency; bubblewrap sandboxes the commands a build runs
# (docs/security.md).
need=()
command -v npm >/dev/null || need+=(nodejs npm)
command -v bwrap >/dev/null || need+=(bubblewrap)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
cargo build --release --locked -p workz-build-cli --manifest-path "$ROOT/Cargo.toml"
site=$("$CARGO_TARGET_DIR/release/workz-build" build "$ROOT/examples/javascript-app")
echo "The built site is in: $site"
echo "Open $site/index.html, or serve it: python3 -m http.server -d '$site'"
