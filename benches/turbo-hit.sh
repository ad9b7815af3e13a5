#!/usr/bin/env bash
# Warm cache hit of the same project: `workz-build build` against `turbo run build` replaying
# its cache (turbo from npm), on three.js x10 and on a 1,000-module app, in one run.
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
  (cd "$MONO" && git init -q && git add -A && git -c user.email=b@b -c user.name=bench commit -qm bench)
}
[ -f "$MONO/turbo.json" ] || make_mono

export WORKZ_CACHE_DIR="$WORK/turbo-workz-cache" WORKZ_ARTIFACTS_DIR="$WORK/turbo-workz-artifacts"
cfg="$WORK/three10-engine.json"
for app in three10 mod1k; do
  "$WORKZ" build "$MONO/apps/$app" --config "$cfg" > /dev/null   # fill the cache
  (cd "$MONO" && turbo run build --filter="$app" --output-logs=none > /dev/null)  # fill turbo's cache
done
sleep 3  # past the stat caches' racy window, as a real rebuild would be
rows=()
for app in three10 mod1k; do
  hyperfine -N --warmup 3 --runs 20 --export-json "$WORK/turbo-$app.json" \
    -n "workz-build ($app)" "$WORKZ build $MONO/apps/$app --config $cfg" \
    -n "turbo ($app)" "turbo --cwd $MONO run build --filter=$app --output-logs=none" >&2
  w=$(median_ms "$WORK/turbo-$app.json" 0); t=$(median_ms "$WORK/turbo-$app.json" 1)
  rw=$(peak_rss_mb "$WORKZ" build "$MONO/apps/$app" --config "$cfg")
  rt=$(cd "$MONO" && peak_rss_mb turbo run build --filter="$app" --output-logs=none)
  rows+=("| $app | $w ms | $t ms | $(python3 -c "print(f'{$t/$w:.1f}x')") | $rw MB | $rt MB |")
done
echo "warm cache hit, whole process, median of 20 (turbo 2 replaying its local cache)"
echo "| app | workz-build | turbo run build | workz-build faster by | RSS workz-build | RSS turbo |"
echo "| --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo "goal: at least 5x faster than turbo"
