#!/usr/bin/env bash
# The sandbox's cost: (1) per command — a static app whose hook runs `true` ten times, built
# with --force (every hook runs) with sandbox.mode "none" and "required", side by side; the
# difference divided by ten is what bubblewrap adds to one command; (2) on the JavaScript
# example's cold build with its npm install (the cache off, so npm installs every time).
source "$(dirname "$0")/common.sh"
need_apt bubblewrap
DIR="$WORK/sandbox"
rm -rf "$DIR"; mkdir -p "$DIR/app"
hooks=$(python3 -c 'import json; print(json.dumps(["true"] * 10))')
echo "{\"name\": \"Ten Hooks\", \"appType\": \"static\", \"hooks\": {\"preBuild\": $hooks}}" > "$DIR/app/workz.json"
echo "<!doctype html><h1>hooks</h1>" > "$DIR/app/index.html"
echo '{"sandbox": {"mode": "none"}}' > "$DIR/none.json"
echo '{"sandbox": {"mode": "required"}}' > "$DIR/required.json"
echo '{"sandbox": {"mode": "none"}, "buildSystem": {"cacheEnabled": false}}' > "$DIR/none-cold.json"
echo '{"sandbox": {"mode": "required"}, "buildSystem": {"cacheEnabled": false}}' > "$DIR/required-cold.json"
export WORKZ_CACHE_DIR="$DIR/cache" WORKZ_ARTIFACTS_DIR="$DIR/artifacts"
hyperfine -N --warmup 3 --runs 30 --export-json "$DIR/hooks.json" \
  "$WORKZ --config $DIR/none.json build --force $DIR/app" \
  "$WORKZ --config $DIR/required.json build --force $DIR/app" >&2
none=$(median_ms "$DIR/hooks.json" 0); required=$(median_ms "$DIR/hooks.json" 1)
cp -r "$ROOT/examples/javascript-app" "$DIR/js"
rm -rf "$DIR/js/node_modules"
hyperfine -N --warmup 1 --runs 10 --export-json "$DIR/js.json" \
  "$WORKZ --config $DIR/none-cold.json build $DIR/js" \
  "$WORKZ --config $DIR/required-cold.json build $DIR/js" >&2
js_none=$(median_ms "$DIR/js.json" 0); js_required=$(median_ms "$DIR/js.json" 1)
echo "a static app whose preBuild runs \`true\` 10 times, built with --force, median of 30:"
echo "| sandbox.mode | whole build |"
echo "| --- | --- |"
echo "| none | $none ms |"
echo "| required (bubblewrap) | $required ms |"
python3 -c "import sys; print('per command: %.2f ms (goal: at most 10 ms)' % ((float(sys.argv[2]) - float(sys.argv[1])) / 10))" "$none" "$required"
echo
echo "the JavaScript example, cold (cache off: npm install every time), median of 10:"
echo "| sandbox.mode | whole build |"
echo "| --- | --- |"
echo "| none | $js_none ms |"
echo "| required (bubblewrap) | $js_required ms |"
