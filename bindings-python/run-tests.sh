#!/usr/bin/env bash
# Build the wheel (abi3, dev profile so that it shares the test build's compiled crates),
# install it into a virtualenv and run the pytest suite against it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/workz-build/target}"
VENV="${WORKZ_PY_VENV:-$HOME/.cache/workz-build/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q 'maturin>=1.16,<2' 'pytest>=8'
DIST="$(mktemp -d)"
trap 'rm -rf "$DIST"' EXIT
"$VENV/bin/maturin" build --quiet --profile dev --locked --features test-hooks -m "$HERE/Cargo.toml" -o "$DIST" -i "$VENV/bin/python"
"$VENV/bin/pip" install -q --force-reinstall --no-deps "$DIST"/*.whl
cd "$HERE/tests"
"$VENV/bin/python" -m pytest -q "$@"
