#!/usr/bin/env bash
# Property-based API testing with schemathesis against `shop local`, driven by
# openapi/orders-api.yaml: every check (no 5xx, status codes, content types, headers
# and bodies conform to the document, invalid data rejected, valid data accepted).
#   scripts/schemathesis.sh            # 300 examples per operation
#   scripts/schemathesis.sh 50
# Installs schemathesis into .venv-schemathesis (kept apart from moto's venv), starts
# `shop local` on a free port (with its own moto server) and stops it afterwards.
# Every request carries a shopper's bearer token from `shop token`, as clients send
# it; schemathesis's auth checks also send none and a wrong one, which must be 401.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
examples="${1:-300}"
venv="$root/.venv-schemathesis"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r scripts/schemathesis-requirements.txt
fi
bash scripts/bootstrap.sh
cargo build --quiet -p shop
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
stack="schemathesis$$"
RUST_LOG=warn target/debug/shop local --port "$port" --issuer-port 0 --stack-name "$stack" >"$log" 2>&1 &
shop_pid=$!
cleanup() { kill -TERM "$shop_pid" 2>/dev/null || true; wait "$shop_pid" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT INT TERM
for _ in $(seq 1 600); do
  grep -q "Press Ctrl-C to stop" "$log" && break
  kill -0 "$shop_pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
token="$(target/debug/shop token --customer schemathesis --expires 3h --local-stack "$stack")"
# unsupported_method expects 405 for a method the document does not list; an HTTP API
# has no 405: API Gateway answers any path or method no route declares with
# 404 {"message":"Not Found"} before the API runs, and `shop local` answers as it does.
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run openapi/orders-api.yaml \
  --url "http://127.0.0.1:$port" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --exclude-checks unsupported_method \
  --max-examples "$examples" \
  --workers 2 \
  --seed 20261122 \
  --no-color
