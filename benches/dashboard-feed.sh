#!/usr/bin/env bash
# The dashboard feed under load, with no dashboard connected and with $CLIENTS WebSocket
# clients (one Node process on this same machine, so they also take CPU from the builds):
# - paced: a build whose hook prints 10,000 lines a second for 6 s (each line a `log` event,
#   broadcast to every socket) while a 1,000-page static app is built again and again: that
#   build's time, and how many of the 60,000 events each client received;
# - burst: a build whose hook prints $LINES lines as fast as it can: its time, the events/s.
# The builds' own durations (the engine's figure); alternating rounds, medians.
source "$(dirname "$0")/common.sh"
LINES="${LINES:-50000}" CLIENTS="${CLIENTS:-50}" ROUNDS="${ROUNDS:-7}"
DIR="$WORK/dashboard-feed"
rm -rf "$DIR"; mkdir -p "$DIR/app"
echo "{\"name\": \"Chatty\", \"appType\": \"static\", \"hooks\": {\"preBuild\": [\"seq -f 'line %g of the hook' 1 $LINES\"]}}" > "$DIR/app/workz.json"
echo "<!doctype html><h1>chatty</h1>" > "$DIR/app/index.html"
tar -C "$DIR/app" -cf "$DIR/app.tar" .
mkdir -p "$DIR/paced"
cat > "$DIR/paced/workz.json" <<'JSON'
{"name": "Paced", "appType": "static", "hooks": {"preBuild": ["python3 -c 'import sys, time\nstart = time.monotonic()\nfor i in range(600):\n    sys.stdout.write(\"\".join(f\"line {i * 100 + j} of the paced hook\\n\" for j in range(100)))\n    sys.stdout.flush()\n    time.sleep(max(0, start + (i + 1) / 100 - time.monotonic()))'"]}}
JSON
echo "<!doctype html><h1>paced</h1>" > "$DIR/paced/index.html"
tar -C "$DIR/paced" -cf "$DIR/paced.tar" .
make_static_1k "$WORK/static-1k"
tar -C "$WORK/static-1k" -cf "$DIR/static.tar" .
export WORKZ_CACHE_DIR="$DIR/cache" WORKZ_ARTIFACTS_DIR="$DIR/artifacts" WORKZ_API_TOKEN=bench-token-0123456789
# Room for every line: 1 MiB of hook output is the default cap.
echo '{"limits": {"maxLogBytes": 67108864}}' > "$DIR/engine.json"
"$WORKZ" --config "$DIR/engine.json" serve --listen 127.0.0.1:0 > "$DIR/serve.out" 2>/dev/null &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$DIR/serve.out" 2>/dev/null && break; sleep 0.05; done
ADDRESS=$(sed -n 's#listening on http://##p' "$DIR/serve.out")
SERVE_PID=$SERVE_PID node --no-warnings --experimental-websocket "$ROOT/benches/dashboard-feed.mjs" "$ADDRESS" "$DIR" "$LINES" "$CLIENTS" "$ROUNDS"
