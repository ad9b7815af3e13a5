#!/usr/bin/env bash
# Shared storage, whole processes, side by side in one run:
#  1. a second machine's first hit of a 1,000-file static app from the object store (empty
#     local cache and artifact dirs), against bulk copies of the same blobs from the same
#     server by the tools a user would pick: `rclone copy --transfers 32` (a Go bulk copier,
#     s5cmd-style) and `aws s3 sync` (AWS CLI, its defaults);
#  2. a local hit with Redis and the object store configured, against the same hit without them
#     (the shared tiers must not be consulted when a local tier answers).
# The S3 server is moto (from PyPI, in the test virtualenv), Redis is Debian's, both on free
# loopback ports, stopped at the end. (rclone runs without AWS_CA_BUNDLE: it refuses a custom CA
# bundle for plain-HTTP endpoints.)
source "$(dirname "$0")/common.sh"
need_apt rclone redis-server curl

MOTO_VENV="${WORKZ_MOTO_VENV:-$HOME/.cache/workz-build/moto-venv}"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q 'moto[server]>=5.1,<6'
fi
AWS="$(command -v aws || true)"
if [ -z "$AWS" ]; then
  python3 -m venv "$TOOLS/awscli-venv"
  "$TOOLS/awscli-venv/bin/pip" install -q awscli
  AWS="$TOOLS/awscli-venv/bin/aws"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3_PORT=$(free_port)
REDIS_PORT=$(free_port)
"$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >/dev/null 2>&1 &
MOTO_PID=$!
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
REDIS_PID=$!
trap 'kill $MOTO_PID $REDIS_PID 2>/dev/null || true' EXIT
ENDPOINT="http://127.0.0.1:$S3_PORT"
for _ in $(seq 100); do curl -sf -X PUT "$ENDPOINT/bench" >/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1

make_static_1k "$WORK/static-1k"
APP="$WORK/static-1k"
SHARED="$WORK/remote-shared.json"
cat > "$SHARED" <<EOF
{"cache": {"redis": {"url": "redis://127.0.0.1:$REDIS_PORT/0"},
           "remote": {"url": "s3://bench/builds", "endpoint": "$ENDPOINT"}}}
EOF
REMOTE_ONLY="$WORK/remote-only.json"
cat > "$REMOTE_ONLY" <<EOF
{"cache": {"remote": {"url": "s3://bench/builds", "endpoint": "$ENDPOINT"}}}
EOF

# Machine 1 builds and stores into the bucket.
M1="$WORK/remote-m1"
rm -rf "$M1"
WORKZ_CACHE_DIR="$M1/cache" WORKZ_ARTIFACTS_DIR="$M1/artifacts" "$WORKZ" build "$APP" --config "$SHARED" --json > "$WORK/remote-m1.json"
blobs=$(curl -s "$ENDPOINT/bench?list-type=2&prefix=builds/cas/&max-keys=5000" | grep -o '<Key>' | wc -l)

# Machine 2: empty cache and artifacts before every run.
M2="$WORK/remote-m2"
RCLONE_DEST="$WORK/remote-rclone" AWS_DEST="$WORK/remote-aws"
RCLONE="env -u AWS_CA_BUNDLE RCLONE_CONFIG=/dev/null RCLONE_S3_PROVIDER=Other RCLONE_S3_ENDPOINT=$ENDPOINT RCLONE_S3_ACCESS_KEY_ID=testing RCLONE_S3_SECRET_ACCESS_KEY=testing rclone"
rm -rf "$M2"
WORKZ_CACHE_DIR="$M2/cache" WORKZ_ARTIFACTS_DIR="$M2/artifacts" "$WORKZ" build "$APP" --config "$REMOTE_ONLY" --json > "$WORK/remote-m2.json"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["cache"]["tier"] == "remote", r["cache"]; print("machine 2: hit from", r["cache"]["tier"], file=sys.stderr)' "$WORK/remote-m2.json"
hyperfine -N --warmup 1 --runs 10 --export-json "$WORK/remote-hit.json" \
  -n "workz-build, second machine's first hit" --prepare "rm -rf $M2" \
  "env WORKZ_CACHE_DIR=$M2/cache WORKZ_ARTIFACTS_DIR=$M2/artifacts $WORKZ build $APP --config $REMOTE_ONLY" \
  -n "rclone copy --transfers 32" --prepare "rm -rf $RCLONE_DEST" \
  "$RCLONE copy --transfers 32 --checkers 32 :s3:bench/builds/cas $RCLONE_DEST" \
  -n "aws s3 sync" --prepare "rm -rf $AWS_DEST" \
  "$AWS --endpoint-url $ENDPOINT s3 sync s3://bench/builds/cas $AWS_DEST --only-show-errors" >&2
ours=$(median_ms "$WORK/remote-hit.json" 0)
rclone_ms=$(median_ms "$WORK/remote-hit.json" 1)
aws_ms=$(median_ms "$WORK/remote-hit.json" 2)

# A local hit: machine 1 again, with both shared tiers configured, and without them.
sleep 3  # past the stat caches' racy window, as a real rebuild would be
export WORKZ_CACHE_DIR="$M1/cache" WORKZ_ARTIFACTS_DIR="$M1/artifacts"
"$WORKZ" build "$APP" --config "$SHARED" >/dev/null
hyperfine -N --warmup 5 --runs 40 --export-json "$WORK/remote-local-hit.json" \
  -n "local hit, no shared tiers" "$WORKZ build $APP" \
  -n "local hit, Redis + object store configured" "$WORKZ build $APP --config $SHARED" >&2
plain=$(median_ms "$WORK/remote-local-hit.json" 0)
shared=$(median_ms "$WORK/remote-local-hit.json" 1)

ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
echo "second machine's first hit, 1,000-file static app, $blobs blobs in the bucket (moto on loopback), median of 10:"
echo "| command | median | vs rclone |"
echo "| --- | --- | --- |"
echo "| workz-build build (hash sources, fetch entry + blobs, verify, publish) | $ours ms | $(ratio "$ours" "$rclone_ms")× |"
echo "| rclone copy --transfers 32 (the blobs only) | $rclone_ms ms | 1.00× |"
echo "| aws s3 sync (the blobs only) | $aws_ms ms | $(ratio "$aws_ms" "$rclone_ms")× |"
echo "goal: workz-build within 1.5× of the bulk copy"
echo
echo "local hit of the same app, median of 40:"
echo "| config | median |"
echo "| --- | --- |"
echo "| no shared tiers | $plain ms |"
echo "| Redis + object store configured | $shared ms ($(ratio "$shared" "$plain")×) |"
