#!/usr/bin/env bash
# Runs the Python gRPC end-to-end client test against an already built server.
#
#   cargo build            # first, separately; this script never builds
#   tests/python/run.sh
#
# Environment:
#   VENV        virtualenv to create/use (default: target/python-venv, relative to the repo root)
#   PYTHON      interpreter used to create the venv (default: python3)
#   LLMOPS_BIN  server binary (default: target/debug/llmops)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

VENV="${VENV:-target/python-venv}"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

exec "$VENV/bin/python" tests/python/prompt_client_test.py "$@"
