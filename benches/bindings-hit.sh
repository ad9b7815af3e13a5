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
# Rounds alternate the callers so that a slow spell of this shared VM hits all of them.
ROUNDS="${ROUNDS:-5}"
: > "$WORK/hit-rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  rust=$("$CARGO_TARGET_DIR/release/examples/hit_loop" "$APP" "$(state rust)" "$RUNS")
  php=$(php -d ffi.enable=1 "$ROOT/benches/bindings-hit.php" "$ROOT/include/workz_build.h" \
    "$CARGO_TARGET_DIR/release/libworkz_build.so" "$APP" "$(state php)" "$RUNS" 1)
  php_lean=$(php -d ffi.enable=1 "$ROOT/benches/bindings-hit.php" "$ROOT/include/workz_build.h" \
    "$CARGO_TARGET_DIR/release/libworkz_build.so" "$APP" "$(state php)" "$RUNS" 0)
  python=$("$VENV/bin/python" "$ROOT/benches/bindings-hit.py" "$APP" "$(state python)" "$RUNS")
  node=$(node "$ROOT/benches/bindings-hit.js" "$ROOT/bindings-node" "$APP" "$(state node)" "$RUNS")
  echo "$rust $php $php_lean $python $node" >> "$WORK/hit-rounds.txt"
done
python3 - "$WORK/hit-rounds.txt" "$RUNS" <<'PY'
import statistics, sys
rounds = [list(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
names = ["Rust (Engine::build_blocking)", "PHP FFI (wz_engine_build + json_decode, full file list)",
         "PHP FFI (same, \"list_files\": false)", "Python (Engine.build)", "Node (await engine.build)"]
medians = [statistics.median(r[i] for r in rounds) for i in range(len(names))]
print(f"cache-hit build of a 200-file static app: median of {sys.argv[2]} builds per process, "
      f"median over {len(rounds)} alternating rounds")
print("| caller | median per build | vs Rust (medians) | vs Rust (median of per-round ratios) | per-round ratios |")
print("| --- | --- | --- | --- | --- |")
for i, name in enumerate(names):
    ratios = [r[i] / r[0] for r in rounds]
    listed = " ".join(f"{x:.2f}" for x in ratios)
    print(f"| {name} | {medians[i]:.3f} ms | {medians[i] / medians[0]:.2f}x | {statistics.median(ratios):.2f}x | {listed} |")
PY
