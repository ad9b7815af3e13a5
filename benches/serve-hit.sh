#!/usr/bin/env bash
# The service's overhead on a cache hit: a host that speaks HTTP (one Python process, keeping
# nothing between builds) tars a 52-file static app, POSTs it to `workz-build serve` and reads
# the build's Server-Sent Events to the end, against `workz-build build` of the same app as a
# whole process. Medians of 30, side by side in one run.
source "$(dirname "$0")/common.sh"
DIR="$WORK/serve-hit"
rm -rf "$DIR"; mkdir -p "$DIR/app/css"
echo '{"name": "Serve Hit", "version": "1.0.0", "appType": "static"}' > "$DIR/app/workz.json"
for i in $(seq 50); do echo "<!doctype html><h1>page $i</h1>" > "$DIR/app/p$i.html"; done
echo "<!doctype html><link rel=stylesheet href=css/site.css><h1>home</h1>" > "$DIR/app/index.html"
python3 -c 'print("h1 { color: teal; }\n" * 200)' > "$DIR/app/css/site.css"
export WORKZ_CACHE_DIR="$DIR/cache" WORKZ_ARTIFACTS_DIR="$DIR/artifacts" WORKZ_API_TOKEN=bench-token-0123456789
"$WORKZ" serve --listen 127.0.0.1:0 > "$DIR/serve.out" 2>/dev/null &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$DIR/serve.out" 2>/dev/null && break; sleep 0.05; done
ADDRESS=$(sed -n 's#listening on http://##p' "$DIR/serve.out")
"$WORKZ" build "$DIR/app" > /dev/null 2>&1
sleep 3  # past the stat cache's racy window
hyperfine -N --warmup 3 --runs 30 --export-json "$DIR/cli.json" "$WORKZ build $DIR/app" >&2
cli_ms=$(median_ms "$DIR/cli.json" 0)
http_ms=$(python3 - "$ADDRESS" "$DIR/app" <<'PY'
import http.client, io, json, os, statistics, sys, tarfile, time
address, app = sys.argv[1:]
host, port = address.rsplit(":", 1)
headers = {"Authorization": "Bearer " + os.environ["WORKZ_API_TOKEN"]}
def once():
    started = time.perf_counter()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        t.add(app, arcname=".")
    c = http.client.HTTPConnection(host, int(port))
    c.request("POST", "/api/builds", out.getvalue(), dict(headers, **{"Content-Type": "application/x-tar"}))
    build_id = json.loads(c.getresponse().read())["build_id"]
    c.close()
    c = http.client.HTTPConnection(host, int(port))
    c.request("GET", f"/api/builds/{build_id}/events", headers=headers)
    body = c.getresponse().read().decode()
    c.close()
    assert '"cache":{"key"' in body and '"hit":true' in body, body[-500:]
    return (time.perf_counter() - started) * 1000
for _ in range(3):
    once()
print("%.1f" % statistics.median(once() for _ in range(30)))
PY
)
echo "cache hit of a 52-file static app, median of 30:"
echo "| how | median |"
echo "| --- | --- |"
echo "| workz-build build (whole process) | $cli_ms ms |"
echo "| HTTP: tar + POST /api/builds + SSE to the end (one Python process) | $http_ms ms |"
python3 -c "import sys; print('the service adds: %.1f ms (goal: at most 5 ms)' % (float(sys.argv[2]) - float(sys.argv[1])))" "$cli_ms" "$http_ms"
