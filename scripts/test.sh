#!/usr/bin/env bash
# Every check and test of the project, as CI runs it. Installs its own tools
# (scripts/bootstrap.sh) and starts and stops its own moto server.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/bootstrap.sh
export PATH="$root/.venv/bin:$PATH"
export AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0
step() { printf '\n==> %s\n' "$*" >&2; }

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets -- -D warnings

step "emulator: every moto internal local/moto_server.py patches, and its middleware"
python local/test_moto_server.py

step "emulator: every difference local/stripe_server.py fixes between localstripe and Stripe"
python local/test_stripe_server.py

step "state machine definition (asl-validator)"
asl="$(npx --no-install asl-validator --json-path statemachine/order-saga.asl.json 2>&1)"
echo "$asl"
grep -q "is valid" <<<"$asl"

step "SAM template (sam validate, sam validate --lint)"
sam validate
sam validate --lint

step "policy as code (cfn-guard rules and their tests on the SAM-transformed template, AWS Serverless Rules)"
scripts/policy-as-code.sh

# The deploy artifact itself: `sam build` of the whole template, which builds every
# function with cargo lambda (release, LTO, arm64) as `sam deploy` would upload it. It
# is CPU work while most of the test time is spent waiting on moto, so it runs
# alongside the tests, in a target directory of its own so the two cargo invocations
# never wait for each other's lock.
step "sam build of the whole template (cargo lambda, release, arm64), in the background"
build_log="$(mktemp)"
CARGO_TARGET_DIR="$root/target/lambda-release" setsid sam build --build-dir "$root/target/sam-build" >"$build_log" 2>&1 &
build_pid=$!

step "unit, adapter (moto), contract, end-to-end saga and chaos tests"
log="$(mktemp)"
# Every AWS call a function makes in these tests, for the security review's IAM check.
calls="$(mktemp)"
export SHOP_AWS_CALL_LOG="$calls"
trap 'kill -- "-$build_pid" 2>/dev/null || true; rm -f "$log" "$build_log" "$calls" "${chaos_log:-}"' EXIT
set +e
# In a session of its own, so the processes the tests start and stop (moto servers,
# shop local, cargo lambda watch) can never signal this script's process group.
# The chaos run (8 minutes, mostly waiting on moto) runs alongside the other test
# binaries instead of after them: cargo runs test binaries one at a time and holds the
# build lock while it does, so the chaos binary is built first and started directly,
# from its package's folder as cargo would.
chaos_log="$(mktemp)"
cargo test --workspace --no-run 2>&1 | tee "$log" || exit 1
chaos_bin="$(grep -Eo 'target/debug/deps/saga-[0-9a-f]+' "$log" | head -1)"
[ -n "$chaos_bin" ] || { echo "the saga test binary was not built"; exit 1; }
(cd tests && setsid --wait "$root/$chaos_bin" chaos:: --test-threads 8) >"$chaos_log" 2>&1 &
chaos_pid=$!
setsid --wait scripts/with-moto.sh cargo test --workspace --no-fail-fast -- --test-threads 8 --skip chaos:: 2>&1 | tee "$log"
status="${PIPESTATUS[0]}"
wait "$chaos_pid"
chaos_status=$?
tee -a "$log" <"$chaos_log"
[ "$chaos_status" -eq 0 ] || status="$chaos_status"
set -e
passed="$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')"
failed="$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s+=$6} END {print s+0}')"
[ "$status" -eq 0 ] || { echo "tests: $passed passed, $failed failed"; exit "$status"; }
# A test that is declared and never runs (ignored, compiled out, in a target cargo
# test skips) is a check that silently does nothing: every declared test must run.
declared="$(grep -rEo '#\[(tokio::)?test' --include='*.rs' functions shared tools tests | wc -l)"
ignored="$(grep -Eo 'test result: [a-zA-Z]+\. .* [0-9]+ ignored' "$log" | grep -Eo '[0-9]+ ignored' | awk '{s+=$1} END {print s+0}')"
[ "$ignored" -eq 0 ] || { echo "tests: $ignored ignored"; exit 1; }
[ "$passed" -ge "$declared" ] || { echo "tests: $passed ran of $declared declared"; exit 1; }
echo "tests: $passed passed, $declared declared"

step "fuzz targets build (fuzz/, outside the workspace; scripts/fuzz.sh runs them)"
cargo build --quiet --locked --manifest-path fuzz/Cargo.toml --bins
ls fuzz/target/debug/request_body fuzz/target/debug/sqs_command >/dev/null

step "security review (IAM grants against the calls just made, wildcards, encryption, auth, secrets, checkov)"
scripts/security-review.sh --calls "$calls"

step "waiting for sam build"
if ! wait "$build_pid"; then
  cat "$build_log"
  echo "sam build failed"
  exit 1
fi
grep -m1 "Build Succeeded" "$build_log"
functions="$(grep -c "BuildMethod: rust-cargolambda" template.yaml)"
built="$(ls target/sam-build/*/bootstrap | wc -l)"
[ "$built" -eq "$functions" ] || { cat "$build_log"; echo "sam build produced $built of $functions functions"; exit 1; }
echo "sam build: $built functions in target/sam-build"

echo
echo "tests: $passed passed, $failed failed"
