#!/usr/bin/env bash
# The cost of auditing an application's calls (BENCHMARKS.md, "Access"): assign and
# record-metric with an editor key against two servers with API keys, one auditing
# every changing call (`audit_runtime_calls = true`, the default) and one auditing only
# changes of definitions (`false`), in turn for ROUNDS rounds (the order flips each
# round). Needs target/release/llmops.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./target/release/llmops
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

declare -A PORT=([on]=56180 [off]=56190) KEY
for which in on off; do
  admin=$($BIN auth bootstrap --data-dir "$WORK/$which" | sed -n 's/^secret: //p')
  flag=true; [ $which = off ] && flag=false
  LLMOPS_AUTH__MODE=api_keys LLMOPS_AUDIT_RUNTIME_CALLS=$flag RUST_LOG=warn $BIN serve \
    --listen 127.0.0.1:${PORT[$which]} --metrics-listen 127.0.0.1:$((PORT[$which] + 1)) \
    --data-dir "$WORK/$which" 2>"$WORK/$which.log" &
  PIDS+=($!)
  sleep 2
  KEY[$which]=$($BIN --server http://127.0.0.1:${PORT[$which]} --api-key "$admin" auth create \
    --name bench --role editor | sed -n 's/^secret: //p')
done
SCEN=assign,record-metric
LOAD="--duration 10s --warmup 2s --connections 4 --streams 16"
for round in $(seq 1 "${ROUNDS:-4}"); do
  if [ $((round % 2)) = 1 ]; then order="on off"; else order="off on"; fi
  for which in $order; do
    echo "=== round $round: audit_runtime_calls $which"
    $BIN --api-key "${KEY[$which]}" bench --server http://127.0.0.1:${PORT[$which]} \
      --scenarios $SCEN $LOAD
  done
done
