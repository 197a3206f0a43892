#!/usr/bin/env bash
# Runs the same llmops bench scenarios against a server on SQLite and on PostgreSQL,
# alternately, twice each.
set -euo pipefail
cd "$(dirname "$0")/.."
SCEN=health,get-prompt,record-metric,create-alert,import
for round in 1 2; do
  echo "=== round $round sqlite"
  ./target/release/llmops bench --scenarios $SCEN --duration 10s --warmup 2s --import-samples 200000
  schema=bench_$(date +%s%N)
  psql -h 127.0.0.1 -U postgres test -qc "CREATE SCHEMA $schema"
  echo "=== round $round postgres"
  LLMOPS_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test?options[search_path]=$schema" \
    ./target/release/llmops bench --scenarios $SCEN --duration 10s --warmup 2s --import-samples 200000
  PGOPTIONS="-c client_min_messages=warning" psql -h 127.0.0.1 -U postgres test -qc "DROP SCHEMA $schema CASCADE"
done
