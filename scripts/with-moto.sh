#!/usr/bin/env bash
# Runs a command with a private moto server: picks a free loopback port, starts moto
# from the project's venv with MOTO_PORT set (its Step Functions integrations call
# back to that port), switches on state machine execution before anything is
# created, exports the AWS_* variables the SDK reads, and stops the server on exit.
#   scripts/with-moto.sh cargo test -p e2e
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$root/.venv/bin/python"
[ -x "$root/.venv/bin/moto_server" ] || bash "$root/scripts/bootstrap.sh"

port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="${TMPDIR:-/tmp}/moto-$port.log"
MOTO_PORT="$port" "$py" "$root/local/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
cleanup() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$py" - "$port" <<'PY'
import json, sys, time, urllib.request
port = sys.argv[1]
base = f"http://127.0.0.1:{port}"
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/moto-api/", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit(f"moto server did not start on port {port}")
req = urllib.request.Request(base + "/moto-api/config", method="POST",
    data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
    headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=5)
PY
echo "moto server on 127.0.0.1:$port (log: $log)" >&2

export MOTO_PORT="$port"
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_MAX_ATTEMPTS=3
"$@"
