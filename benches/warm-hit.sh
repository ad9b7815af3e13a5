#!/usr/bin/env bash
# A warm cache hit of a 1,000-file static app, as a whole `workz-build build` process.
source "$(dirname "$0")/common.sh"

make_static_1k "$WORK/static-1k"
APP="$WORK/static-1k"
export WORKZ_CACHE_DIR="$WORK/warm-cache" WORKZ_ARTIFACTS_DIR="$WORK/warm-artifacts"
rm -rf "$WORKZ_CACHE_DIR" "$WORKZ_ARTIFACTS_DIR"
"$WORKZ" build "$APP" --json > "$WORK/cold.json"
sleep 3  # let the stat caches see files older than their racy window, as a real rebuild would
"$WORKZ" build "$APP" --json > "$WORK/warm.json"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["cache"]["hit"], r; print("second build: hit from", r["cache"]["tier"], "reused release:", r["artifacts"]["reused"], file=sys.stderr)' "$WORK/warm.json"

# 1: the usual rebuild (the app's latest release is identical and is reused after verification);
# 2: the same hit into an empty artifact root, so every file is restored from the cache and verified.
hyperfine --warmup 3 --runs 40 --export-json "$WORK/warm-hit.json" \
  -n "hit, release reused" "$WORKZ build $APP" \
  -n "hit, restored from cache" --prepare "rm -rf $WORK/fresh-artifacts" "$WORKZ build $APP --out $WORK/fresh-artifacts" >&2
reused=$(median_ms "$WORK/warm-hit.json" 0)
restored=$(median_ms "$WORK/warm-hit.json" 1)
rss=$(peak_rss_mb "$WORKZ" build "$APP")
rm -rf "$WORK/fresh-artifacts"
rss_restored=$(peak_rss_mb "$WORKZ" build "$APP" --out "$WORK/fresh-artifacts")
cold=$(python3 -c 'import json,sys; print("%.0f" % (json.load(open(sys.argv[1]))["duration"]*1000))' "$WORK/cold.json")
files=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["artifacts"]["files"]))' "$WORK/warm.json")
echo "warm cache hit, 1,000-file static app ($files output files with .gz variants), median of 40:"
echo "| case | median | peak RSS |"
echo "| --- | --- | --- |"
echo "| hit, identical latest release reused | $reused ms | $rss MB |"
echo "| hit, restored from cache into an empty artifact root | $restored ms | $rss_restored MB |"
echo "| (cold build, for scale, one run) | $cold ms | |"
echo "goal: < 30 ms median, < 30 MB peak RSS"
