#!/usr/bin/env bash
# The security review of template.yaml (docs/security.md): IAM grants against the calls
# the code makes, wildcards, encryption, auth outside dev, secrets, and checkov with
# every failure suppressed for a written reason (security/suppressions.yaml).
#   scripts/security-review.sh --calls FILE   # FILE: the emulator's call log of a test run
#   scripts/security-review.sh                # runs the end-to-end tests to record one
# Installs checkov into .venv-checkov (kept apart from moto's venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
calls=""
if [ "${1:-}" = "--calls" ]; then calls="$2"; fi

bash scripts/bootstrap.sh
venv="$root/.venv-checkov"
if [ ! -x "$venv/bin/checkov" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r scripts/checkov-requirements.txt
fi
report="$(mktemp)"
own_calls=""
trap 'rm -f "$report" $own_calls' EXIT
if [ -z "$calls" ]; then
  own_calls="$(mktemp)"
  calls="$own_calls"
  PATH="$root/.venv/bin:$PATH" SHOP_AWS_CALL_LOG="$calls" setsid --wait \
    scripts/with-moto.sh cargo test -p e2e -- --test-threads 8 >&2
fi
# checkov exits 1 when a check fails; the review decides what a failure means.
"$venv/bin/checkov" -f template.yaml --framework cloudformation -o json >"$report" 2>/dev/null || true
"$root/.venv/bin/python" scripts/security_review.py --calls "$calls" --checkov "$report"
