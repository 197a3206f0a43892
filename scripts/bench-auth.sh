#!/usr/bin/env bash
# The cost of API keys on the hot path (BENCHMARKS.md, "Access"): get-prompt and render
# against one server without authentication and one with `[auth] mode = "api_keys"`
# and an editor key (the tool creates its prompt before the load), alternating for
# ROUNDS rounds (the order flips each round, so a drift of the machine shows). Needs
# target/release/llmops.
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

ADMIN=$($BIN auth bootstrap --data-dir "$WORK/keys" | sed -n 's/^secret: //p')
RUST_LOG=warn $BIN serve --listen 127.0.0.1:56150 --metrics-listen 127.0.0.1:56151 \
  --data-dir "$WORK/open" 2>"$WORK/open.log" &
PIDS+=($!)
LLMOPS_AUTH__MODE=api_keys RUST_LOG=warn $BIN serve --listen 127.0.0.1:56160 \
  --metrics-listen 127.0.0.1:56161 --data-dir "$WORK/keys" 2>"$WORK/keys.log" &
PIDS+=($!)
sleep 2
KEY=$($BIN --server http://127.0.0.1:56160 --api-key "$ADMIN" auth create --name bench \
  --role editor | sed -n 's/^secret: //p')
SCEN=get-prompt,render
LOAD="--duration 10s --warmup 2s --connections 4 --streams 16"
for round in $(seq 1 "${ROUNDS:-4}"); do
  if [ $((round % 2)) = 1 ]; then order="open keys"; else order="keys open"; fi
  for which in $order; do
    if [ $which = open ]; then
      echo "=== round $round: no authentication"
      $BIN bench --server http://127.0.0.1:56150 --scenarios $SCEN $LOAD
    else
      echo "=== round $round: API key"
      $BIN --api-key "$KEY" bench --server http://127.0.0.1:56160 --scenarios $SCEN $LOAD
    fi
  done
done
