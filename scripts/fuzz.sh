#!/usr/bin/env bash
# The fuzz suites (tests/fuzz.rs: configs, requests, source trees, archives, built in-process;
# tests/serve.rs `fuzzed_…`: the HTTP API of `workz-build serve`), ROUNDS rounds of CASES cases
# each, every round with a fresh seed, printed with the command that replays it.
#   scripts/fuzz.sh                 a nightly run: 20000 cases, 5 rounds (≈ 10 min here)
#   scripts/fuzz.sh 1000 1          what scripts/test.sh runs
# Needs what scripts/test.sh installs (bubblewrap: the service sandboxes by default).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/workz-build/target}"
cases="${1:-20000}"
rounds="${2:-5}"
for round in $(seq "$rounds"); do
  echo "== fuzz round $round of $rounds: $cases cases per suite"
  # The same features as the workspace test run: nothing is compiled again.
  WORKZ_FUZZ_CASES="$cases" cargo test --workspace --locked --features workz-build-cli/test-hooks \
    --test fuzz --test serve -- --nocapture no_input_makes fuzzed_requests
done
