#!/usr/bin/env bash
# Source hashing of a 10,000-file / 200 MB tree: `workz-build sources` (walk + BLAKE3 of every
# file, no remembered digests) against `b3sum` over the same files, side by side in one run:
# b3sum as one process, and b3sum given every core (`xargs -P <cores>`), which is what a
# user who wants it fast runs: given the file list (built before timing), and with `find`
# walking the tree in the same pipeline, as a user types it. The files are `.js`: scripts,
# which a build keeps in memory and a hash-only pass must not.
source "$(dirname "$0")/common.sh"
command -v b3sum >/dev/null || cargo install --locked --root "$TOOLS" b3sum >&2

TREE="$WORK/tree-10k"
if [ ! -f "$TREE/.complete" ]; then
  rm -rf "$TREE"
  python3 - "$TREE" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
total_target, files = 200 * 1000 * 1000, 10_000
# Sizes like a real tree: many small files, a few large ones (log-normal), scaled to 200 MB.
sizes = [rng.lognormvariate(9.0, 1.3) for _ in range(files)]
scale = total_target / sum(sizes)
for i, s in enumerate(sizes):
    d = os.path.join(root, f"pkg{i % 50}", f"mod{i % 7}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i}.js"), "wb") as f:
        f.write(rng.randbytes(max(1, int(s * scale))))
PY
  touch "$TREE/.complete"
fi
(cd "$TREE" && find . -type f ! -name .complete -printf '%P\0' > "$WORK/tree-10k.list")
files=$(tr -cd '\0' < "$WORK/tree-10k.list" | wc -c)
bytes=$(du -sb --exclude=.complete "$TREE" | cut -f1)
cat "$WORK/tree-10k.list" | (cd "$TREE" && xargs -0 cat > /dev/null)  # warm the page cache

cores=$(nproc)
per=$(( (files + cores - 1) / cores ))
hyperfine --warmup 2 --runs 10 --export-json "$WORK/hash.json" \
  -n workz-build "$WORKZ sources $TREE > /dev/null" \
  -n b3sum "cd $TREE && xargs -0 -a $WORK/tree-10k.list b3sum > /dev/null" \
  -n "b3sum x$cores" "cd $TREE && xargs -0 -P $cores -n $per -a $WORK/tree-10k.list b3sum > /dev/null" \
  -n "find | b3sum x$cores" "cd $TREE && find . -type f ! -name .complete -print0 | xargs -0 -P $cores -n $per b3sum > /dev/null" >&2

ours=$(median_ms "$WORK/hash.json" 0)
theirs=$(median_ms "$WORK/hash.json" 1)
parallel=$(median_ms "$WORK/hash.json" 2)
walked=$(median_ms "$WORK/hash.json" 3)
rss_ours=$(peak_rss_mb "$WORKZ" sources "$TREE")
rss_theirs=$(cd "$TREE" && peak_rss_mb xargs -0 -a "$WORK/tree-10k.list" b3sum)
python3 - "$files" "$bytes" "$ours" "$theirs" "$parallel" "$rss_ours" "$rss_theirs" "$cores" "$walked" <<'PY'
import sys
files, size, ours, theirs, parallel, rss_ours, rss_theirs, cores, walked = sys.argv[1:]
mb = int(size) / 1e6
print(f"source hashing, {files} files, {mb:.0f} MB (median of 10, warm page cache, {cores} cores)")
print(f"| tool | median | throughput | peak RSS |")
print(f"| --- | --- | --- | --- |")
print(f"| workz-build sources | {ours} ms | {mb / (float(ours) / 1000):.0f} MB/s | {rss_ours} MB |")
print(f"| b3sum (one process) | {theirs} ms | {mb / (float(theirs) / 1000):.0f} MB/s | {rss_theirs} MB |")
print(f"| b3sum x{cores} (xargs -P {cores}) | {parallel} ms | {mb / (float(parallel) / 1000):.0f} MB/s | {rss_theirs} MB each |")
print(f"| find + b3sum x{cores} (the walk included) | {walked} ms | {mb / (float(walked) / 1000):.0f} MB/s | {rss_theirs} MB each |")
print(f"workz-build vs parallel b3sum: {float(parallel) / float(ours):.2f}x (goal >= 1.0x at <= 32 MB peak RSS)")
PY
