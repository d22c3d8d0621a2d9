#!/usr/bin/env bash
# Size of every function as Lambda gets it: the stripped release binary and its zip,
# for x86_64 and arm64 (cargo lambda build --release --output-format zip). Goal: each
# binary at most 6 MB. Peak RSS is measured by scripts/bench-cold-start.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh >/dev/null
export PATH="$root/.venv/bin:$PATH"   # cargo-lambda and zig live in the project venv
functions=(orders-api order-intake inventory payments fulfilment orphan-sweeper stripe-webhook)
for arch in x86_64 arm64; do
  flag=(); [ "$arch" = arm64 ] && flag=(--arm64)
  cargo lambda build --quiet --release "${flag[@]}" --output-format zip --lambda-dir "target/lambda-$arch" >&2
done
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1000000 }'; }
echo "| function | x86_64 binary | x86_64 zip | arm64 binary | arm64 zip |"
echo "|---|---:|---:|---:|---:|"
for f in "${functions[@]}"; do
  row="| $f"
  for arch in x86_64 arm64; do
    triple=x86_64-unknown-linux-gnu; [ "$arch" = arm64 ] && triple=aarch64-unknown-linux-gnu
    row+=" | $(mb "$(stat -c %s "target/$triple/release/$f")") | $(mb "$(stat -c %s "target/lambda-$arch/$f/bootstrap.zip")")"
  done
  echo "$row |"
done
