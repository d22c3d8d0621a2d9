#!/usr/bin/env bash
# Cold-start benchmark: every function's release binary against the C floor and a
# Python peer (boto3 + awslambdaric from PyPI, in .venv-bench), all under the same
# fake Lambda Runtime API, with a private moto server for the first invocations.
#   scripts/bench-cold-start.sh [RUNS]     # default 30 starts per program
#   BEFORE=<commit> scripts/bench-cold-start.sh   # also every function as of <commit>,
#                                                 # beside this build's, in the same run
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c 'import awslambdaric, boto3' 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet -r scripts/bench-requirements.txt
fi
mkdir -p target/bench
cc -O2 -o target/bench/floor bench/floor.c
cargo build --quiet --release -p orders-api -p order-intake -p inventory -p payments -p fulfilment -p orphan-sweeper -p stripe-webhook
rm -rf target/bench/payments-before target/bench/before
if [ -n "${BEFORE:-}" ]; then
  tree="$(mktemp -d)"
  git worktree add --force --detach "$tree" "$BEFORE" >/dev/null
  (cd "$tree" && CARGO_TARGET_DIR="$root/target/before-build" cargo build --quiet --release \
    -p orders-api -p order-intake -p inventory -p payments -p fulfilment -p orphan-sweeper -p stripe-webhook)
  git worktree remove --force "$tree"
  mkdir -p target/bench/before
  for f in orders-api order-intake inventory payments fulfilment orphan-sweeper stripe-webhook; do
    cp "target/before-build/release/$f" "target/bench/before/$f"
  done
  cp target/before-build/release/payments target/bench/payments-before
fi
exec scripts/with-moto.sh cargo run --quiet --profile local-bench -p shop --example bench_cold_start -- "$@"
