#!/usr/bin/env bash
# The cost of API keys and TLS on the hot path (BENCHMARKS.md, "Access"): get-prompt and
# render against one server without authentication, one with `[auth] mode = "api_keys"`
# and an editor key (the tool creates its prompt before the load), and one with the
# key over TLS (a self-signed P-256 certificate made here with openssl), in turn for
# ROUNDS rounds (the order rotates each round, so a drift of the machine shows). Needs
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
TLS_ADMIN=$($BIN auth bootstrap --data-dir "$WORK/tls" | sed -n 's/^secret: //p')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$WORK/server.key" -out "$WORK/server.pem" -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -addext extendedKeyUsage=serverAuth 2>/dev/null
RUST_LOG=warn $BIN serve --listen 127.0.0.1:56150 --metrics-listen 127.0.0.1:56151 \
  --data-dir "$WORK/open" 2>"$WORK/open.log" &
PIDS+=($!)
LLMOPS_AUTH__MODE=api_keys RUST_LOG=warn $BIN serve --listen 127.0.0.1:56160 \
  --metrics-listen 127.0.0.1:56161 --data-dir "$WORK/keys" 2>"$WORK/keys.log" &
PIDS+=($!)
LLMOPS_AUTH__MODE=api_keys LLMOPS_TLS__CERT_FILE="$WORK/server.pem" \
  LLMOPS_TLS__KEY_FILE="$WORK/server.key" RUST_LOG=warn $BIN serve --listen 127.0.0.1:56170 \
  --metrics-listen 127.0.0.1:56171 --data-dir "$WORK/tls" 2>"$WORK/tls.log" &
PIDS+=($!)
sleep 2
KEY=$($BIN --server http://127.0.0.1:56160 --api-key "$ADMIN" auth create --name bench \
  --role editor | sed -n 's/^secret: //p')
TLS_KEY=$($BIN --server https://localhost:56170 --ca-cert "$WORK/server.pem" \
  --api-key "$TLS_ADMIN" auth create --name bench --role editor | sed -n 's/^secret: //p')
SCEN=get-prompt,render
LOAD="--duration 10s --warmup 2s --connections 4 --streams 16"
for round in $(seq 1 "${ROUNDS:-3}"); do
  case $((round % 3)) in
    1) order="open keys tls" ;;
    2) order="keys tls open" ;;
    0) order="tls open keys" ;;
  esac
  for which in $order; do
    case $which in
      open)
        echo "=== round $round: no authentication"
        $BIN bench --server http://127.0.0.1:56150 --scenarios $SCEN $LOAD ;;
      keys)
        echo "=== round $round: API key"
        $BIN --api-key "$KEY" bench --server http://127.0.0.1:56160 --scenarios $SCEN $LOAD ;;
      tls)
        echo "=== round $round: API key over TLS"
        $BIN --api-key "$TLS_KEY" --ca-cert "$WORK/server.pem" bench \
          --server https://localhost:56170 --scenarios $SCEN $LOAD ;;
    esac
  done
done
