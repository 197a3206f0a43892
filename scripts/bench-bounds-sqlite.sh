#!/usr/bin/env bash
# What bounds durable writes on SQLite: fsync calls per request during one scenario
# (strace -c on the server). Needs a release build and strace.
set -uo pipefail
cd "$(dirname "$0")/.."
for scen in create-alert record-metric; do
  rm -rf /tmp/bounds-sq; mkdir -p /tmp/bounds-sq
  strace -f -c -e trace=fsync,fdatasync -o /tmp/bounds-strace-$scen.txt ./target/release/llmops serve --listen 127.0.0.1:50998 --metrics-listen 127.0.0.1:0 --data-dir /tmp/bounds-sq >/tmp/bounds-sq.log 2>&1 &
  sleep 3
  ./target/release/llmops bench --server http://127.0.0.1:50998 --scenarios $scen --duration 5s --warmup 0s --json > /tmp/bounds-sq-$scen.json
  pkill -INT -f "llmops serve --listen 127.0.0.1:50998"; sleep 3
  echo "sqlite $scen:"; grep -E "fsync|fdatasync" /tmp/bounds-strace-$scen.txt
  python3 -c "import json,sys; [print('  ', r['scenario'], r['requests']) for r in json.load(open('/tmp/bounds-sq-$scen.json'))]"
done
