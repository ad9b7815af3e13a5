#!/usr/bin/env bash
# Warm cache hit of the same project: `workz-build build` against `turbo run build` replaying
# its cache, on three.js x10 and on a 1,000-module app, in one run. turbo is timed as its
# users' shells run it at best: the native binary (not the npm launcher, which starts Node
# first), telemetry off, in a workspace with a lockfile and a .gitignore, with its daemon and
# without it. On a hit turbo restores the task's outputs (dist/) from its cache; the engine
# reuses (and verifies) the app's latest release.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/js-tools.sh"
"$(dirname "$0")/threejs.sh" --setup-only >/dev/null 2>&1 || true  # makes $WORK/three10 if missing

MONO="$WORK/turbo-mono"
make_mono() {
  rm -rf "$MONO" && mkdir -p "$MONO/apps"
  cat > "$MONO/package.json" <<'JSON'
{ "name": "bench-mono", "private": true, "packageManager": "npm@11.0.0", "workspaces": ["apps/*"] }
JSON
  cat > "$MONO/turbo.json" <<'JSON'
{ "$schema": "https://turbo.build/schema.json", "tasks": { "build": { "outputs": ["dist/**"] } } }
JSON
  # three.js x10, built by esbuild under turbo.
  mkdir -p "$MONO/apps/three10"
  cp -r "$WORK/three10/entry.js" "$WORK/three10"/copy* "$MONO/apps/three10/"
  cp "$WORK/three10/workz.json" "$MONO/apps/three10/"
  cat > "$MONO/apps/three10/package.json" <<'JSON'
{ "name": "three10", "private": true, "scripts": { "build": "esbuild entry.js --bundle --minify --sourcemap --outdir=dist --log-level=error" } }
JSON
  # 1,000 small modules imported by one entry.
  mkdir -p "$MONO/apps/mod1k/src"
  python3 - "$MONO/apps/mod1k" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(1000):
    with open(os.path.join(root, "src", f"m{i}.js"), "w") as f:
        f.write(f"export function f{i}(x) {{\n  const table = [{', '.join(str((i * 7 + k) % 97) for k in range(20))}];\n  return table.reduce((a, b) => a + b * x, {i});\n}}\n")
with open(os.path.join(root, "src", "main.js"), "w") as f:
    for i in range(1000):
        f.write(f"import {{ f{i} }} from './m{i}.js';\n")
    f.write("console.log([" + ", ".join(f"f{i}(1)" for i in range(1000)) + "].reduce((a, b) => a + b, 0));\n")
open(os.path.join(root, "workz.json"), "w").write('{"name": "mod1k", "appType": "javascript", "buildConfig": {"javascript": {"entry": "src/main.js", "generateSW": false}}}')
open(os.path.join(root, "package.json"), "w").write('{"name": "mod1k", "private": true, "scripts": {"build": "esbuild src/main.js --bundle --minify --outdir=dist --log-level=error"}}')
PY
  printf 'node_modules\ndist\n.turbo\n' > "$MONO/.gitignore"
  (cd "$MONO" && npm install --package-lock-only --no-audit --no-fund --loglevel=error >&2)
  (cd "$MONO" && git init -q && git add -A && git -c user.email=b@b -c user.name=bench commit -qm bench)
  touch "$MONO/.bench-v2"
}
[ -f "$MONO/.bench-v2" ] || make_mono
TURBO="$JS_TOOLS/node_modules/@turbo/linux-64/bin/turbo"
[ -x "$TURBO" ] || { echo "no native turbo binary at $TURBO" >&2; exit 1; }
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

export WORKZ_CACHE_DIR="$WORK/turbo-workz-cache" WORKZ_ARTIFACTS_DIR="$WORK/turbo-workz-artifacts"
cfg="$WORK/three10-engine.json"
for app in three10 mod1k; do
  "$WORKZ" build "$MONO/apps/$app" --config "$cfg" > /dev/null   # fill the cache
  (cd "$MONO" && "$TURBO" run build --filter="$app" --output-logs=none > /dev/null)  # fill turbo's cache
done
sleep 3  # past the stat caches' racy window, as a real rebuild would be
rows=()
for app in three10 mod1k; do
  hyperfine -N --warmup 3 --runs 20 --export-json "$WORK/turbo-$app.json" \
    -n "workz-build ($app)" "$WORKZ build $MONO/apps/$app --config $cfg" \
    -n "turbo, daemon ($app)" "$TURBO --cwd $MONO run build --filter=$app --output-logs=none --daemon" \
    -n "turbo, no daemon ($app)" "$TURBO --cwd $MONO run build --filter=$app --output-logs=none --no-daemon" >&2
  w=$(median_ms "$WORK/turbo-$app.json" 0); td=$(median_ms "$WORK/turbo-$app.json" 1); tn=$(median_ms "$WORK/turbo-$app.json" 2)
  rw=$(peak_rss_mb "$WORKZ" build "$MONO/apps/$app" --config "$cfg")
  rt=$(cd "$MONO" && peak_rss_mb "$TURBO" run build --filter="$app" --output-logs=none --no-daemon)
  rows+=("| $app | $w ms | $td ms | $tn ms | $(python3 -c "print(f'{min($td, $tn)/$w:.1f}x')") | $rw MB | $rt MB |")
done
echo "warm cache hit, whole process, median of 20 (native turbo 2 replaying its local cache)"
echo "| app | workz-build | turbo (daemon) | turbo (no daemon) | faster than turbo's best by | RSS workz-build | RSS turbo |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo "goal: at least 5x faster than turbo"
