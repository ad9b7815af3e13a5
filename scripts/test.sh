#!/usr/bin/env bash
# Every test: formatting, lints, unit tests, the engine's end-to-end suite, the CLI suite, and
# each binding in its own language (C under valgrind, PHP FFI, pytest, node --test).
# Installs what the tests need on a fresh machine first.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/workz-build/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# System packages the suites use: coreutils for the hook tests; Node.js and npm for the
# JavaScript builder's tests (npm installs, bundles run in node) and the Node binding; gcc,
# valgrind and php-cli for the C ABI; python3-venv for the Python binding; chromium for the
# pages of the real-world corpus; redis-server for the Redis cache tier.
need=()
for cmd in sh sleep env; do command -v "$cmd" >/dev/null || need+=(coreutils); done
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v gcc >/dev/null || need+=(gcc)
command -v valgrind >/dev/null || need+=(valgrind)
command -v php >/dev/null || need+=(php-cli)
# Headless Chromium runs the real-world corpus's pages (tests/real_world.rs).
command -v chromium >/dev/null || need+=(chromium)
# The Redis cache tier is tested against a real server (tests/redis_cache.rs starts its own on a
# free loopback port; apt's install does not start one here).
command -v redis-server >/dev/null || need+=(redis-server)
# Every command a build runs is sandboxed in bubblewrap (tests/sandbox.rs tries hostile apps).
command -v bwrap >/dev/null || need+=(bubblewrap)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# With bubblewrap working, every suite's builds run sandboxed (the engine's default "auto" mode
# sandboxes when it can): check it does, rather than let them pass unsandboxed.
bwrap --ro-bind / / --unshare-all --die-with-parent true \
  || { echo "bubblewrap cannot make namespaces here: the suites would run unsandboxed" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
# An S3-compatible server for the object-store tier (tests/remote_cache.rs starts its own on a
# free loopback port): moto's, from PyPI, in a virtualenv outside the checkout.
MOTO_VENV="${WORKZ_MOTO_VENV:-$HOME/.cache/workz-build/moto-venv}"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q 'moto[server]>=5.1,<6'
fi
export WORKZ_TEST_MOTO_SERVER="$MOTO_VENV/bin/moto_server"
# playwright-core drives Debian's chromium through the dashboard test (tests/dashboard.rs);
# the package alone, no browser download, outside the checkout.
PLAYWRIGHT_DIR="${WORKZ_PLAYWRIGHT_DIR:-$HOME/.cache/workz-build/playwright}"
if [ ! -f "$PLAYWRIGHT_DIR/node_modules/playwright-core/package.json" ]; then
  mkdir -p "$PLAYWRIGHT_DIR"
  npm install --prefix "$PLAYWRIGHT_DIR" --no-audit --no-fund --silent playwright-core@1.65.1
fi
export WORKZ_TEST_PLAYWRIGHT="$PLAYWRIGHT_DIR/node_modules/playwright-core"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
# test-hooks: the engine's panic point, so that what the CLI prints for a panic is tested.
cargo test --workspace --locked --features workz-build-cli/test-hooks
echo "== fuzz once more, seeds shown (WORKZ_FUZZ_SEED and WORKZ_FUZZ_CASES replay a run)"
scripts/fuzz.sh 1000 1
echo "== cargo test -p workz-build --no-default-features (no JavaScript or Flutter builder compiled in)"
cargo test -p workz-build --no-default-features --locked
echo "== C ABI: C program (plain and under valgrind), PHP FFI"
tests/c/run.sh
echo "== Python binding: pytest"
bindings-python/run-tests.sh
echo "== Node binding: node --test"
bindings-node/run-tests.sh
