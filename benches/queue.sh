#!/usr/bin/env bash
# Queue overhead, side by side on one Redis: no-op jobs enqueued (64 in flight) and taken,
# completed and acknowledged by one worker process with 1 and with 8 slots — the farm's
# protocol (core/benches/queue_overhead.rs: the reads, placement, the take and complete
# scripts a `workz-build worker` runs around each build) against BullMQ (npm, its Worker with
# the same concurrency). Then the in-process queue's admissions (no Redis). Jobs per second,
# median of 3 runs each, alternating.
source "$(dirname "$0")/common.sh"
need_apt redis-server
if [ ! -d "$TOOLS/bullmq/node_modules/bullmq" ]; then
  mkdir -p "$TOOLS/bullmq"
  (cd "$TOOLS/bullmq" && npm install --silent --no-audit --no-fund bullmq@5 >&2)
fi
cargo bench --locked -p workz-build --bench queue_overhead --manifest-path "$ROOT/Cargo.toml" --no-run >&2
ours() { cargo bench --locked -q -p workz-build --bench queue_overhead --manifest-path "$ROOT/Cargo.toml" -- "$@" 2>/dev/null; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

median() { python3 -c 'import statistics,sys; print(int(statistics.median(map(float, sys.argv[1:]))))' "$@"; }
echo "| concurrency | jobs | workz-build farm queue (jobs/s) | BullMQ 5 (jobs/s) | ratio |"
echo "| --- | --- | --- | --- | --- |"
for concurrency in 1 8; do
  jobs=$(( concurrency == 1 ? 5000 : 20000 ))
  ours_runs=(); bull_runs=()
  for _ in 1 2 3; do
    ours_runs+=("$(ours farm "redis://127.0.0.1:$PORT/0" "$jobs" "$concurrency")")
    bull_runs+=("$(NODE_PATH="$TOOLS/bullmq/node_modules" node "$ROOT/benches/bullmq-queue.cjs" "$PORT" "$jobs" "$concurrency")")
    redis-cli -p "$PORT" flushall >/dev/null
  done
  o=$(median "${ours_runs[@]}"); b=$(median "${bull_runs[@]}")
  echo "| $concurrency | $jobs | $o (${ours_runs[*]}) | $b (${bull_runs[*]}) | $(python3 -c "print('%.2f×' % ($o / $b))") |"
done
runs=()
for _ in 1 2 3; do runs+=("$(ours in-process 200000)"); done
echo "in-process queue (PriorityGate, 8 slots, 200,000 no-op jobs): $(median "${runs[@]}") jobs/s (${runs[*]}) — goal ≥ 20,000"
