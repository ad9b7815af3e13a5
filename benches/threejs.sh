#!/usr/bin/env bash
# Cold build of three.js x10 (esbuild's benchmark: one entry importing ten copies of three.js
# src/, minified, with source maps): the whole `workz-build build` process against esbuild and
# against webpack 5 + babel-loader + terser (the platform document's toolchain), in one run.
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/js-tools.sh"

APP="$WORK/three10"
if [ ! -f "$APP/entry.js" ]; then
  rm -rf "$APP" && mkdir -p "$APP"
  for i in $(seq 0 9); do cp -r "$JS_TOOLS/node_modules/three/src" "$APP/copy$i"; done
  {
    for i in $(seq 0 9); do echo "import * as copy$i from './copy$i/Three.js';"; done
    echo "export default [$(seq -s, -f 'copy%g' 0 9)];"
  } > "$APP/entry.js"
fi
# Every tool writes outside the app: the engine reads (and checks) every file of it.
rm -rf "$APP/out-webpack"
cat > "$APP/webpack.config.cjs" <<'JS'
const path = require("path");
const tools = [process.env.JS_TOOLS];
module.exports = {
  mode: "production",
  entry: "./entry.js",
  output: { path: path.resolve(__dirname, "../three10-webpack-out"), filename: "[name].[contenthash].js" },
  devtool: "source-map",
  module: { rules: [{ test: /\.js$/, use: { loader: require.resolve("babel-loader", { paths: tools }),
    options: { presets: [[require.resolve("@babel/preset-env", { paths: tools }), { targets: "defaults" }]] } } }] },
  performance: { hints: false },
};
JS
# webpack runs babel's preset-env for the "defaults" browsers (the platform document's
# toolchain transpiles); the engine and esbuild target esnext, so webpack also does the
# lowering work the others skip. Its time is the platform's old pipeline, not a like-for-like
# bundler race.
# three.js compiles node shaders with `new Function`: the app switches that rule off, as a user would.
cat > "$APP/workz.json" <<'JSON'
{ "name": "three10", "appType": "javascript",
  "buildConfig": { "javascript": { "entry": "entry.js", "target": "esnext", "generateSW": false,
                                   "securityRules": { "no-new-function": "off" } },
                   "optimization": { "minify": true, "sourceMaps": true } } }
JSON
# Same work for every tool: bundle, minify, source maps; no precompression for the engine.
cat > "$WORK/three10-engine.json" <<'JSON'
{ "optimization": { "compression": "none", "minification": true, "sourceMaps": true } }
JSON
export JS_TOOLS
[ "${1:-}" = "--setup-only" ] && exit 0
runs="${RUNS:-5}"
hyperfine --warmup 1 --runs "$runs" --export-json "$WORK/three10.json" \
  -n workz-build --prepare "rm -rf $WORK/three10-cache $WORK/three10-out" \
    "$WORKZ build $APP --config $WORK/three10-engine.json --cache-dir $WORK/three10-cache --out $WORK/three10-out" \
  -n esbuild --prepare "rm -rf $WORK/three10-esbuild" \
    "esbuild $APP/entry.js --bundle --minify --sourcemap --outdir=$WORK/three10-esbuild --log-level=error" >&2
hyperfine --runs 1 --export-json "$WORK/three10-webpack.json" -n "webpack 5 + babel + terser" \
  "cd $APP && webpack --config webpack.config.cjs --no-stats" >&2

rm -rf "$WORK/three10-cache" "$WORK/three10-out" "$WORK/three10-esbuild"
rss_w=$(peak_rss_mb "$WORKZ" build "$APP" --config "$WORK/three10-engine.json" --cache-dir "$WORK/three10-cache" --out "$WORK/three10-out")
rss_e=$(peak_rss_mb esbuild "$APP/entry.js" --bundle --minify --sourcemap --outdir="$WORK/three10-esbuild" --log-level=error)
rss_p=$(cd "$APP" && peak_rss_mb webpack --config webpack.config.cjs --no-stats)
w=$(median_ms "$WORK/three10.json" 0); e=$(median_ms "$WORK/three10.json" 1); p=$(median_ms "$WORK/three10-webpack.json" 0)
size_w=$(find "$WORK/three10-out" -name 'entry-*.js' -printf '%s\n' | sort -n | tail -1)
# The minified bundle must compute what the source computes.
bundle=$(find "$WORK/three10-out" -name 'entry-*.js' | head -1)
if [ "$(node "$ROOT/benches/threejs-check.mjs" "$bundle")" != "$(node "$ROOT/benches/threejs-check.mjs" "$APP/entry.js")" ]; then
  echo "the engine's bundle does not compute what the source computes" >&2
  exit 1
fi
size_e=$(stat -c %s "$WORK/three10-esbuild/entry.js")
python3 - "$w" "$e" "$p" "$rss_w" "$rss_e" "$rss_p" "$size_w" "$size_e" "$runs" <<'PY'
import sys
w, e, p, rw, re, rp, sw, se, runs = sys.argv[1:]
w, e, p = float(w), float(e), float(p)
print(f"three.js x10 cold build, minified + source maps (median of {runs}; webpack: 1 run)")
print("| tool | wall time | vs esbuild | peak RSS | main bundle |")
print("| --- | --- | --- | --- | --- |")
print(f"| workz-build (rolldown, in-process) | {w:.0f} ms | {w/e:.2f}x | {rw} MB | {int(sw)/1e6:.2f} MB |")
print(f"| esbuild 0.28 | {e:.0f} ms | 1.00x | {re} MB | {int(se)/1e6:.2f} MB |")
print(f"| webpack 5 + babel-loader + terser | {p:.0f} ms | {p/e:.1f}x | {rp} MB | |")
print(f"workz-build is {p/w:.1f}x faster than webpack (goal >= 50x) and {w/e:.2f}x esbuild's time (goal <= 1.0x)")
PY
