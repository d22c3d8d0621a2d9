#!/usr/bin/env bash
# Fuzzes the order request body and the SQS command decoders with cargo-fuzz
# (libFuzzer) for a fixed number of executions per target (not part of CI).
#   scripts/fuzz.sh            # 1,000,000 runs per target
#   scripts/fuzz.sh 100000
# The machine's toolchain is stable; RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the
# sanitizer flags it needs. Exits non-zero on the first crash (the input is kept in
# fuzz/artifacts/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs="${1:-1000000}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in request_body sqs_command; do
  mkdir -p "fuzz/corpus/$target"
  cargo fuzz build --fuzz-dir fuzz "$target"
  start=$(date +%s)
  cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
    -runs="$runs" -max_len=4096 -dict=fuzz/json.dict -print_final_stats=1 2>"fuzz/$target.log" || {
    tail -40 "fuzz/$target.log"; echo "$target: CRASH (see fuzz/artifacts/$target)"; exit 1; }
  done_runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "fuzz/$target.log" | grep -Eo '[0-9]+$')"
  printf '%-14s %12s executions  0 crashes  %4ss\n' "$target" "$done_runs" "$(( $(date +%s) - start ))"
done
