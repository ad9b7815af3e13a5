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
