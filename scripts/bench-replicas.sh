#!/usr/bin/env bash
# Three llmops replicas on one PostgreSQL schema, on this machine (BENCHMARKS.md,
# "Replicas"). Measures, in one run:
#   1. idle overhead of following the shared feeds: each replica's CPU% and the
#      database's transactions per second, over IDLE seconds;
#   2. get-prompt, render and record-metric with the load on one replica, then spread
#      over all three (one bench client per replica, run together);
#   3. subscribe fan-out: SUBSCRIBERS streams on replica B, alerts created on B itself
#      (local delivery) and then on replica A (the replication delay: commit on A to
#      delivery on B); then SPREAD streams spread over A, B and C, alerts created on A;
#   4. a shared evaluation run (EVAL_SAMPLES samples, EVAL_CONCURRENCY per replica, a
#      mock model at 50 ms): on three replicas with an uncapped provider and with a
#      deployment-wide max_concurrency, then on replica A alone after B and C stop.
# Needs target/release/llmops and PostgreSQL at 127.0.0.1:5432 (database test).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./target/release/llmops
IDLE=${IDLE:-30}
SUBSCRIBERS=${SUBSCRIBERS:-3000}
SPREAD=${SPREAD:-10000}
EVAL_SAMPLES=${EVAL_SAMPLES:-2000}
EVAL_CONCURRENCY=${EVAL_CONCURRENCY:-16}
MOCK=127.0.0.1:18080
SCHEMA=bench_replicas_$(date +%s)
PSQL="psql -h 127.0.0.1 -U postgres test -qtA"
$PSQL -c "CREATE SCHEMA $SCHEMA"
URL="postgres://postgres@127.0.0.1:5432/test?options[search_path]=$SCHEMA"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}" ${MOCK_PID:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PGOPTIONS="-c client_min_messages=warning" $PSQL -c "DROP SCHEMA $SCHEMA CASCADE" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The mock model every replica's providers point at: one uncapped, one capped for the
# deployment at the concurrency three replicas would use together.
$BIN bench --serve-mock $MOCK --eval-latency 50ms 2>"$WORK/mock.log" &
MOCK_PID=$!
cat >"$WORK/llmops.toml" <<TOML
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://$MOCK/v1"
model = "m"

[[providers]]
name = "mock-capped"
kind = "openai"
base_url = "http://$MOCK/v1"
model = "m"
max_concurrency = $((EVAL_CONCURRENCY * 3))
TOML
for i in 0 1 2; do
  LLMOPS_CONFIG="$WORK/llmops.toml" LLMOPS_DATABASE_URL=$URL RUST_LOG=warn $BIN serve --listen 127.0.0.1:5605$i \
    --metrics-listen 127.0.0.1:5705$i --data-dir "$WORK/r$i" 2>"$WORK/r$i.log" &
  PIDS+=($!)
done
sleep 3
$BIN --server http://127.0.0.1:56050 cluster status

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
xacts() { $PSQL -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'test'"; }
echo "=== idle for ${IDLE}s"
declare -a before
for i in 0 1 2; do before[$i]=$(ticks "${PIDS[$i]}"); done
x0=$(xacts)
sleep "$IDLE"
x1=$(xacts)
hz=$(getconf CLK_TCK)
for i in 0 1 2; do
  after=$(ticks "${PIDS[$i]}")
  echo "replica $i idle CPU: $(echo "scale=3; ($after - ${before[$i]}) * 100 / $hz / $IDLE" | bc)%"
done
echo "database transactions/s while idle, all three replicas (and this script's two reads): $(echo "scale=1; ($x1 - $x0) / $IDLE" | bc)"

SCEN=health,get-prompt,render,record-metric
echo "=== load on replica A alone"
$BIN bench --server http://127.0.0.1:56050 --scenarios $SCEN --duration 10s --warmup 2s --connections 4 --streams 16
echo "=== the same load spread over A, B and C (one client each, together)"
CLIENTS=()
for i in 0 1 2; do
  $BIN bench --server http://127.0.0.1:5605$i --scenarios $SCEN --duration 10s --warmup 2s \
    --connections 2 --streams 11 >"$WORK/spread$i.txt" 2>&1 &
  CLIENTS+=($!)
done
for pid in "${CLIENTS[@]}"; do wait "$pid"; done
for i in 0 1 2; do echo "--- client of replica $i"; cat "$WORK/spread$i.txt" | grep -v "^$"; done

echo "=== fan-out: $SUBSCRIBERS subscribers on B, alerts created on B (local)"
$BIN bench --server http://127.0.0.1:56051 --scenarios fanout --subscribers "$SUBSCRIBERS" \
  --subscriber-connections 30 --alert-rate 5 --fanout-duration 20s
echo "=== fan-out: $SUBSCRIBERS subscribers on B, alerts created on A (replication delay)"
$BIN bench --server http://127.0.0.1:56051 --fanout-publisher http://127.0.0.1:56050 \
  --scenarios fanout --subscribers "$SUBSCRIBERS" --subscriber-connections 30 --alert-rate 5 \
  --fanout-duration 20s
echo "=== fan-out: $SPREAD subscribers spread over A, B and C, alerts created on A"
$BIN bench --server http://127.0.0.1:56050 --fanout-spread http://127.0.0.1:56051,http://127.0.0.1:56052 \
  --scenarios fanout --subscribers "$SPREAD" --subscriber-connections 30 --alert-rate 5 \
  --fanout-duration 20s

EVAL="--scenarios eval --eval-samples $EVAL_SAMPLES --eval-concurrency $EVAL_CONCURRENCY --eval-latency 50ms"
echo "=== a shared run on three replicas, uncapped provider (the ideal is a third of the reported one)"
$BIN bench --server http://127.0.0.1:56050 $EVAL --eval-provider mock
echo "=== a shared run on three replicas, max_concurrency $((EVAL_CONCURRENCY * 3)) for the deployment"
$BIN bench --server http://127.0.0.1:56050 $EVAL --eval-provider mock-capped
echo "=== the same run on replica A alone (B and C stopped cleanly)"
kill "${PIDS[1]}" "${PIDS[2]}"
sleep 2
$BIN bench --server http://127.0.0.1:56050 $EVAL --eval-provider mock
