#!/usr/bin/env bash
# Farm throughput: 60 small apps (static sites with and without styles, bundled scripts)
# submitted by 3 client processes at once (timed: submission), then built by 1, 2 and 3
# `workz-build worker` processes (2 slots each) started on this machine once all 60 wait
# (timed: from the workers' start to the last result). Every run starts from empty caches and
# a fresh Redis, so all 60 are real builds.
source "$(dirname "$0")/common.sh"
need_apt redis-server
BASE="$WORK/farm-throughput"
rm -rf "$BASE"
mkdir -p "$BASE"
python3 - "$BASE/apps" <<'PY'
import json, os, sys
root = sys.argv[1]
for i in range(60):
    d = os.path.join(root, f"app{i}")
    os.makedirs(os.path.join(d, "src"))
    def w(p, s):
        with open(os.path.join(d, p), "w") as f:
            f.write(s)
    if i % 3 == 0:
        w("workz.json", json.dumps({"name": f"app{i}", "appType": "javascript"}))
        w("index.html", "<!doctype html><div id=app></div><script type=module src=src/main.js></script>")
        w("src/main.js", f"import {{ greet }} from './greet.js';\ndocument.getElementById('app').textContent = greet({i});\n")
        w("src/greet.js", "export function greet(n) { return `hello ${n}`; }\n"
          + "".join(f"export const word{k} = 'w{k}-{i}';\n" for k in range(20)))
    else:
        w("workz.json", json.dumps({"name": f"app{i}", "appType": "static"}))
        for p in range(20):
            w(f"p{p}.html", f"<!doctype html><link rel=stylesheet href=site.css><h1>app {i} page {p}</h1>\n")
        w("index.html", f"<!doctype html><h1>app {i}</h1>")
        if i % 3 == 1:
            w("site.css", f"h1 {{ margin: {i}px; color: teal; }}\n" * 100)
PY

run() {  # $1 = workers, $2 = slots each; prints seconds
  local workers=$1 slots=$2 dir="$BASE/run$1x$2"
  rm -rf "$dir"; mkdir -p "$dir"
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  local redis=$!
  # Stopped however the run ends (a failed check exits the subshell).
  trap 'kill $redis 2>/dev/null || true' EXIT
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo "{\"queue\": {\"redis\": {\"url\": \"redis://127.0.0.1:$port/0\"}}, \"cache\": {\"remote\": {\"url\": \"file://$dir/shared\"}}}" > "$dir/engine.json"
  python3 - "$WORKZ" "$dir" "$BASE/apps" "$workers" "$slots" <<'PY'
import json, os, subprocess, sys, threading, time
workz, dir, apps, workers, slots = sys.argv[1:]
env = dict(os.environ, WORKZ_CACHE_DIR=f"{dir}/client/cache", WORKZ_ARTIFACTS_DIR=f"{dir}/client/artifacts")
cmd = [workz, "--config", f"{dir}/engine.json"]
ids = []
started = time.monotonic()
def client(k):
    for i in range(k * 20, k * 20 + 20):
        out = subprocess.run(cmd + ["submit", f"{apps}/app{i}", "--json"], env=env, capture_output=True, check=True)
        ids.append(json.loads(out.stdout)["build_id"])
threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
for t in threads: t.start()
for t in threads: t.join()
submitted = time.monotonic() - started
started = time.monotonic()
procs = [subprocess.Popen(cmd + ["worker", "--name", f"w{w}", "--concurrency", slots], stderr=subprocess.DEVNULL,
                          env=dict(os.environ, WORKZ_CACHE_DIR=f"{dir}/w{w}/cache", WORKZ_ARTIFACTS_DIR=f"{dir}/w{w}/artifacts"))
         for w in range(1, int(workers) + 1)]
while True:
    status = json.loads(subprocess.run(cmd + ["farm", "status", "--json"], env=env, capture_output=True).stdout)
    if sum(status["queued"].values()) == 0 and status["running"] == 0:
        break
    time.sleep(0.05)
elapsed = time.monotonic() - started
for p in procs: p.terminate()
for p in procs: p.wait()
ok = sum(json.loads(subprocess.run(cmd + ["status", i, "--json"], env=env, capture_output=True).stdout)["state"] == "succeeded" for i in ids)
assert ok == 60, f"{ok} of 60 succeeded"
print(f"{submitted:.2f} {elapsed:.2f}")
PY
  kill "$redis" 2>/dev/null || true
  wait "$redis" 2>/dev/null || true
}

echo "| workers × slots | 60 submissions (3 clients) | 60 builds, workers' start to last result | builds/s |"
echo "| --- | --- | --- | --- |"
for shape in 1x2 2x2 3x2 1x6; do
  read -r submitted built < <(run "${shape%x*}" "${shape#*x}")
  echo "| ${shape/x/ × } | $submitted s | $built s | $(python3 -c "print('%.1f' % (60 / $built))") |"
done
echo "(this machine: $(nproc) cores)"
