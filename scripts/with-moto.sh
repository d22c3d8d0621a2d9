#!/usr/bin/env bash
# Runs a command with a private moto server (local/moto_server.py --run): a free
# loopback port, state machine execution on, AWS_ENDPOINT_URL and test credentials set
# for the command, the server stopped when it ends.
#   scripts/with-moto.sh cargo test -p e2e
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -x "$root/.venv/bin/moto_server" ] || bash "$root/scripts/bootstrap.sh"
exec "$root/.venv/bin/python" "$root/local/moto_server.py" --run -- "$@"
