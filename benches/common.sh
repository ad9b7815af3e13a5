# Shared set-up for the benchmark scripts: builds the release CLI, installs the tools compared against.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/workz-build/target}"
TOOLS="$HOME/.cache/workz-build/tools"
WORK="${BENCH_DIR:-$HOME/.cache/workz-build/bench}"
mkdir -p "$TOOLS" "$WORK"
export PATH="$TOOLS/bin:$PATH"

need_apt() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

need_apt hyperfine time python3
cargo build --release --locked -p workz-build-cli --manifest-path "$ROOT/Cargo.toml" >&2
WORKZ="$CARGO_TARGET_DIR/release/workz-build"

# Peak resident set size of a command, in MB.
peak_rss_mb() {
  /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1 | awk '{printf "%.1f", $1 / 1024}'
}

# Median of a hyperfine JSON export, in milliseconds, for the command at index $2.
median_ms() {
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]; print("%.1f" % (r["median"]*1000))' "$1" "$2"
}

# A static app of 1,000 pages of varied sizes (the same one every time), at $1.
make_static_1k() {
  if [ ! -f "$1/workz.json" ]; then
    rm -rf "$1"
    python3 - "$1" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(7)
os.makedirs(root)
open(os.path.join(root, "workz.json"), "w").write('{"name": "Thousand Pages", "version": "1.0.0", "appType": "static"}')
open(os.path.join(root, "index.html"), "w").write("<!doctype html><title>1k</title><h1>index</h1>")
for i in range(999):
    d = os.path.join(root, "pages", str(i // 100))
    os.makedirs(d, exist_ok=True)
    body = "".join(f"<p>page {i} paragraph {j}: lorem ipsum dolor sit amet</p>\n" for j in range(rng.randint(5, 100)))
    open(os.path.join(d, f"p{i}.html"), "w").write(body)
PY
  fi
}
