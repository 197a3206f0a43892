#!/usr/bin/env bash
# The cost of online evaluation on ingest (BENCHMARKS.md, "Online evaluation"):
# log-generations, then log-generations-online (an online evaluation of three local
# scorers sampling every generation), on a fresh server per round; after each round,
# how many samples were scored and how many skipped (the queue's bound). Then the
# judge-scored rate against the mock provider at 50 ms, at online_max_concurrency 8 and
# 64. Needs target/release/llmops.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./target/release/llmops
WORK=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for round in $(seq 1 "${ROUNDS:-2}"); do
  rm -rf "$WORK/data"
  RUST_LOG=warn $BIN serve --listen 127.0.0.1:56280 --metrics-listen 127.0.0.1:56281 \
    --data-dir "$WORK/data" 2>"$WORK/server.log" &
  PID=$!
  sleep 2
  echo "=== round $round"
  $BIN bench --server http://127.0.0.1:56280 --scenarios log-generations,log-generations-online \
    --duration 10s --warmup 2s
  curl -s http://127.0.0.1:56281/metrics | grep -E "^llmops_online_samples_(skipped|scored)_total" || true
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
for concurrency in 8 64; do
  echo "=== online-judge at online_max_concurrency $concurrency"
  $BIN bench --scenarios online-judge --eval-latency 50ms --online-concurrency "$concurrency" \
    --online-samples $((concurrency * 100))
done
