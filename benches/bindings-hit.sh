#!/usr/bin/env bash
# A cache-hit build of the same app through the Rust API, PHP FFI, Python and Node, each in
# one long-lived process (as the platform embeds the engine), median per build, one run:
# what the edges cost on top of the Rust call.
source "$(dirname "$0")/common.sh"
need_apt php-cli python3-venv
RUNS="${RUNS:-300}"
cargo build --release --locked -p workz-build --example hit_loop --manifest-path "$ROOT/Cargo.toml" >&2
cargo build --release --locked -p workz-build-c --manifest-path "$ROOT/Cargo.toml" >&2
VENV="$HOME/.cache/workz-build/venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q 'maturin>=1.16,<2'
DIST="$(mktemp -d)"
"$VENV/bin/maturin" build --quiet --release --locked -m "$ROOT/bindings-python/Cargo.toml" -o "$DIST" -i "$VENV/bin/python" >&2
"$VENV/bin/pip" install -q --force-reinstall --no-deps "$DIST"/*.whl
(cd "$ROOT/bindings-node" && npm ci --no-audit --no-fund --loglevel=error && node build.mjs --release) >&2

# A 200-file static app.
APP="$WORK/hit-app"
if [ ! -f "$APP/workz.json" ]; then
  mkdir -p "$APP/pages"
  echo '{"name": "hit-bench", "appType": "static"}' > "$APP/workz.json"
  echo '<!doctype html><h1>bench</h1>' > "$APP/index.html"
  for i in $(seq 1 199); do printf '<p>page %d</p>%s\n' "$i" "$(head -c 2000 /dev/zero | tr '\0' x)" > "$APP/pages/p$i.html"; done
fi
state() { rm -rf "$WORK/hit-state-$1"; echo "$WORK/hit-state-$1"; }
rust=$("$CARGO_TARGET_DIR/release/examples/hit_loop" "$APP" "$(state rust)" "$RUNS")
php=$(php -d ffi.enable=1 "$ROOT/benches/bindings-hit.php" "$ROOT/include/workz_build.h" \
  "$CARGO_TARGET_DIR/release/libworkz_build.so" "$APP" "$(state php)" "$RUNS")
python=$("$VENV/bin/python" "$ROOT/benches/bindings-hit.py" "$APP" "$(state python)" "$RUNS")
node=$(node "$ROOT/benches/bindings-hit.js" "$ROOT/bindings-node" "$APP" "$(state node)" "$RUNS")
python3 - "$rust" "$php" "$python" "$node" "$RUNS" <<'PY'
import sys
rust, php, py, node = map(float, sys.argv[1:5])
print(f"cache-hit build of a 200-file static app, median of {sys.argv[5]} per caller")
print("| caller | median per build | vs Rust |")
print("| --- | --- | --- |")
for name, t in [("Rust (Engine::build_blocking)", rust), ("PHP FFI (wz_engine_build + json_decode)", php),
                ("Python (Engine.build)", py), ("Node (await engine.build)", node)]:
    print(f"| {name} | {t:.3f} ms | {t / rust:.2f}x |")
PY
