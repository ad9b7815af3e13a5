#!/usr/bin/env bash
# The C ABI tested from C and PHP against the real library: the C program plainly and under
# valgrind (no errors, no definite leaks), then the PHP FFI script. Needs gcc, valgrind and
# php-cli (scripts/test.sh installs them).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/workz-build/target}"
cargo build --locked -p workz-build-c --features test-hooks

# The committed header must be what cbindgen makes of the crate now (WORKZ_UPDATE_HEADER=1 rewrites it).
TOOLS="$HOME/.cache/workz-build/tools"
if ! "$TOOLS/bin/cbindgen" --version 2>/dev/null | grep -q '^cbindgen 0\.29\.'; then
  cargo install --quiet --locked --root "$TOOLS" cbindgen --version '~0.29'
fi
GENERATED="$(mktemp)"
"$TOOLS/bin/cbindgen" --quiet --config bindings-c/cbindgen.toml --crate workz-build-c --output "$GENERATED" bindings-c
if [ -n "${WORKZ_UPDATE_HEADER:-}" ]; then cp "$GENERATED" include/workz_build.h; fi
if ! diff -u include/workz_build.h "$GENERATED"; then
  echo "include/workz_build.h is stale: run WORKZ_UPDATE_HEADER=1 tests/c/run.sh and commit it" >&2
  exit 1
fi
rm -f "$GENERATED"
LIB_DIR="$CARGO_TARGET_DIR/debug"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
APP="$ROOT/examples/static-site"

gcc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -I include tests/c/api_test.c \
  -L "$LIB_DIR" -lworkz_build -Wl,-rpath,"$LIB_DIR" -o "$SCRATCH/api_test"
"$SCRATCH/api_test" "$SCRATCH/plain" "$APP"
# Still-reachable blocks are the process-wide runtime and its thread stacks; anything
# definitely or indirectly lost is a leak.
valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect "$SCRATCH/api_test" "$SCRATCH/valgrind" "$APP"
echo "C API under valgrind: no errors, no leaks"

php -d ffi.enable=1 tests/php/build_test.php "$ROOT/include/workz_build.h" "$LIB_DIR/libworkz_build.so" \
  "$SCRATCH/php" "$APP"

# The same library on a farm: a real Redis on a free loopback port and a real worker process.
cargo build --locked -p workz-build-cli
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$SCRATCH" >/dev/null &
REDIS_PID=$!
trap 'kill $REDIS_PID ${WORKER_PID:-} 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
cat > "$SCRATCH/farm.json" <<JSON
{"queue": {"redis": {"url": "redis://127.0.0.1:$PORT/0"}, "leaseSeconds": 5},
 "cache": {"remote": {"url": "file://$SCRATCH/php-farm/shared"}}}
JSON
WORKZ_CACHE_DIR="$SCRATCH/php-farm/worker" WORKZ_ARTIFACTS_DIR="$SCRATCH/php-farm/worker-artifacts" \
  "$CARGO_TARGET_DIR/debug/workz-build" --config "$SCRATCH/farm.json" worker --name php-farm --concurrency 2 2>/dev/null &
WORKER_PID=$!
SLOW="$SCRATCH/slow-app"
mkdir -p "$SLOW"
echo '{"name": "Slow", "appType": "static", "hooks": {"preBuild": ["sleep 60"]}}' > "$SLOW/workz.json"
echo '<!doctype html><h1>slow</h1>' > "$SLOW/index.html"
WORKZ_CACHE_DIR="$SCRATCH/php-farm/client" WORKZ_ARTIFACTS_DIR="$SCRATCH/php-farm/client-artifacts" \
  php -d ffi.enable=1 tests/php/farm_test.php "$ROOT/include/workz_build.h" "$LIB_DIR/libworkz_build.so" \
  "$SCRATCH/farm.json" "$APP" "$SLOW"
