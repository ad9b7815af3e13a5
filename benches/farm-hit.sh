#!/usr/bin/env bash
# The latency a farm adds to a cache hit: `workz-build submit --wait` (sources into the content
# store, a job through Redis, a worker that materialises them and hits its cache, the result
# back) against `workz-build build` of the same app in the calling process, whole processes,
# side by side. Redis (Debian's) on a free loopback port, one worker, a directory as the
# content store; all stopped at the end.
source "$(dirname "$0")/common.sh"
need_apt redis-server

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
FARM="$WORK/farm-hit"
rm -rf "$FARM"
mkdir -p "$FARM"
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
cat > "$FARM/engine.json" <<EOF
{"queue": {"redis": {"url": "redis://127.0.0.1:$PORT/0"}},
 "cache": {"remote": {"url": "file://$FARM/shared"}}}
EOF
WORKZ_CACHE_DIR="$FARM/worker/cache" WORKZ_ARTIFACTS_DIR="$FARM/worker/artifacts" \
  "$WORKZ" --config "$FARM/engine.json" worker --name bench --concurrency 2 2>/dev/null &
WORKER_PID=$!
trap 'kill $WORKER_PID $REDIS_PID 2>/dev/null || true' EXIT

APP="$FARM/app"
mkdir -p "$APP/css"
echo '{"name": "Farm Hit", "version": "1.0.0", "appType": "static"}' > "$APP/workz.json"
for i in $(seq 50); do echo "<!doctype html><h1>page $i</h1>" > "$APP/p$i.html"; done
echo "<!doctype html><link rel=stylesheet href=css/site.css><h1>home</h1>" > "$APP/index.html"
python3 -c 'print("h1 { color: teal; }\n" * 200)' > "$APP/css/site.css"

export WORKZ_CACHE_DIR="$FARM/client/cache" WORKZ_ARTIFACTS_DIR="$FARM/client/artifacts"
"$WORKZ" --config "$FARM/engine.json" submit "$APP" --wait --json > "$FARM/first.json"
"$WORKZ" build "$APP" --json > /dev/null
sleep 3  # past the stat caches' racy window
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["status"] == "succeeded", r; print("farm build on", r["worker"], file=sys.stderr)' "$FARM/first.json"

hyperfine -N --warmup 3 --runs 30 --export-json "$FARM/farm-hit.json" \
  -n "build (in process), hit" "$WORKZ build $APP" \
  -n "submit --wait (farm), hit" "$WORKZ --config $FARM/engine.json submit $APP --wait" >&2
local_ms=$(median_ms "$FARM/farm-hit.json" 0)
farm_ms=$(median_ms "$FARM/farm-hit.json" 1)
echo "cache hit of a 52-file static app, median of 30, whole processes:"
echo "| command | median |"
echo "| --- | --- |"
echo "| workz-build build (in process) | $local_ms ms |"
echo "| workz-build submit --wait (farm: Redis + one worker on loopback) | $farm_ms ms |"
python3 -c "import sys; print('latency the farm adds: %.1f ms (goal: at most 10 ms)' % (float(sys.argv[2]) - float(sys.argv[1])))" "$local_ms" "$farm_ms"
