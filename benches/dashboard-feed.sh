#!/usr/bin/env bash
# The dashboard feed under load: a build whose hook prints $LINES lines as fast as it can (each
# line is a `log` event, broadcast to every dashboard socket), with no dashboard connected and
# with $CLIENTS WebSocket clients connected (one Node process, on this same machine, so they
# also take CPU from the build). Reports the build's own duration (the engine's figure),
# the events per second, and how many events each client received. Alternating rounds.
source "$(dirname "$0")/common.sh"
LINES="${LINES:-50000}" CLIENTS="${CLIENTS:-50}" ROUNDS="${ROUNDS:-7}"
DIR="$WORK/dashboard-feed"
rm -rf "$DIR"; mkdir -p "$DIR/app"
echo "{\"name\": \"Chatty\", \"appType\": \"static\", \"hooks\": {\"preBuild\": [\"seq -f 'line %g of the hook' 1 $LINES\"]}}" > "$DIR/app/workz.json"
echo "<!doctype html><h1>chatty</h1>" > "$DIR/app/index.html"
tar -C "$DIR/app" -cf "$DIR/app.tar" .
export WORKZ_CACHE_DIR="$DIR/cache" WORKZ_ARTIFACTS_DIR="$DIR/artifacts" WORKZ_API_TOKEN=bench-token-0123456789
# Room for every line: 1 MiB of hook output is the default cap.
echo '{"limits": {"maxLogBytes": 67108864}}' > "$DIR/engine.json"
"$WORKZ" --config "$DIR/engine.json" serve --listen 127.0.0.1:0 > "$DIR/serve.out" 2>/dev/null &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$DIR/serve.out" 2>/dev/null && break; sleep 0.05; done
ADDRESS=$(sed -n 's#listening on http://##p' "$DIR/serve.out")
node --no-warnings --experimental-websocket "$ROOT/benches/dashboard-feed.mjs" "$ADDRESS" "$DIR/app.tar" "$LINES" "$CLIENTS" "$ROUNDS"
