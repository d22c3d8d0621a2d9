#!/usr/bin/env bash
# The long chaos run: 10,000 orders (or the count given) through the real saga on a
# private moto server, faults injected at random through the ports, every invariant
# checked afterwards. Prints the seed and a table; exits 1 on any violation.
#   scripts/chaos.sh                      # 10,000 orders, a fresh seed
#   scripts/chaos.sh --orders 2000 --seed 42
#   scripts/chaos.sh --stacks 2           # two stacks side by side, one emulator per core
#   scripts/chaos.sh --stripe --orders 1000   # paying through Stripe (localstripe)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
export AWS_DEFAULT_REGION=us-east-1 RUST_LOG="${RUST_LOG:-error}"
exec scripts/with-moto.sh cargo run --quiet --profile local-bench -p e2e --example chaos -- "$@"
