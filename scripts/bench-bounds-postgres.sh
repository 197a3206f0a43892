#!/usr/bin/env bash
# What bounds durable writes on PostgreSQL: WAL syncs and commits per request during
# one scenario (pg_stat_wal and pg_stat_database deltas). Needs a release build and
# the test server on 127.0.0.1:5432.
set -uo pipefail
cd "$(dirname "$0")/.."
PSQL="psql -h 127.0.0.1 -U postgres test -Atc"
for scen in create-alert record-metric; do
  schema=bounds_$(date +%s%N)
  $PSQL "CREATE SCHEMA $schema" >/dev/null
  url="postgres://postgres@127.0.0.1:5432/test?options[search_path]=$schema"
  ./target/release/llmops serve --listen 127.0.0.1:50999 --metrics-listen 127.0.0.1:0 --data-dir /tmp/bounds-pg --database-url "$url" >/tmp/bounds-pg.log 2>&1 &
  sleep 3
  before=$($PSQL "SELECT wal_sync, (SELECT xact_commit FROM pg_stat_database WHERE datname='test') FROM pg_stat_wal")
  ./target/release/llmops bench --server http://127.0.0.1:50999 --scenarios $scen --duration 5s --warmup 0s --json > /tmp/bounds-pg-$scen.json
  after=$($PSQL "SELECT wal_sync, (SELECT xact_commit FROM pg_stat_database WHERE datname='test') FROM pg_stat_wal")
  pkill -INT -f "llmops serve --listen 127.0.0.1:50999"; sleep 2
  $PSQL "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1
  echo "postgres $scen wal_sync|commits before=$before after=$after"
  python3 -c "import json,sys; [print('  ', r['scenario'], r['requests']) for r in json.load(open('/tmp/bounds-pg-$scen.json'))]"
done
