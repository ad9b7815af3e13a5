#!/usr/bin/env bash
# Build the addon (dev profile, sharing the workspace's compiled crates), check that the
# committed native.d.ts is what napi generates, and run the node --test suite.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/workz-build/target}"
npm ci --no-audit --no-fund --loglevel=error
node build.mjs --check
node --test __test__/
