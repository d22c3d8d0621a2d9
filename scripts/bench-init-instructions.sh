#!/usr/bin/env bash
# Init CPU of every function, counted in instructions by valgrind's callgrind: the
# same count for the same binary and environment whatever else the machine does, where
# the wall-clock cold-start benchmark (scripts/bench-cold-start.sh) swings by ±10 %
# between runs on a shared 2-vCPU machine. Each binary starts with the template's
# settings and a Runtime API address nothing listens on: it runs its whole init, fails
# its first GET next and exits, so the count is init plus that one refused connection.
# Tracing on (ratio 1) and off (ratio 0); with target/bench/before/ (built by
#   BEFORE=<commit> scripts/bench-cold-start.sh) also that commit's binaries.
#   scripts/bench-init-instructions.sh      # after scripts/bench-cold-start.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (Debian: apt-get install valgrind)" >&2; exit 2; }
closed=127.0.0.1:9
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  AWS_ENDPOINT_URL="http://$closed" AWS_LAMBDA_RUNTIME_API="$closed" \
  AWS_LAMBDA_FUNCTION_NAME=bench AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_FUNCTION_VERSION=1 \
  AWS_LAMBDA_LOG_STREAM_NAME=bench AWS_LAMBDA_LOG_GROUP_NAME=bench RUST_LOG=warn \
  CATALOG_TABLE=t-Catalog IDEMPOTENCY_TABLE=t-Idempotency INVENTORY_TABLE=t-Inventory \
  ORDERS_TABLE=t-Orders PAYMENTS_TABLE=t-Payments SHIPMENTS_TABLE=t-Shipments \
  EVENT_BUS_NAME=t-orders STATE_MACHINE_ARN=arn:aws:states:us-east-1:123456789012:stateMachine:t-OrderSaga \
  ORDERS_QUEUE_URL="http://$closed/123456789012/t-OrdersQueue" \
  EXPRESS_ORDERS_QUEUE_URL="http://$closed/123456789012/t-ExpressOrdersQueue" \
  PAYMENTS_QUEUE_URL="http://$closed/123456789012/t-PaymentsQueue" \
  COMMAND_WORK_SECONDS=60 COMPENSATION_PATIENCE_SECONDS=86400 COMPENSATION_RETRY_SECONDS=60 \
  MAX_ORDER_WAIT_SECONDS=900 ORPHAN_AFTER_SECONDS=900 PAYMENT_AUTHENTICATION_TIMEOUT_SECONDS=600 \
  PAYMENT_BREAKER_COOL_DOWN_SECONDS=20 PAYMENT_BREAKER_FAILURES=5 PAYMENT_BREAKER_FAILURE_PERCENT=50 \
  PAYMENT_BREAKER_WINDOW_SECONDS=30 PAYMENT_PROVIDER=stripe PAYMENT_PROVIDER_TIMEOUT_MS=5000 \
  PAYMENT_PROVIDER_KEY_SECRET=arn:aws:secretsmanager:us-east-1:123456789012:secret:t-PaymentProviderKey \
  STRIPE_API_BASE="http://$closed" STRIPE_WEBHOOK_TOLERANCE_SECONDS=300 \
  STRIPE_WEBHOOK_SECRET=arn:aws:secretsmanager:us-east-1:123456789012:secret:t-StripeWebhookSecret \
  TRACES_ENDPOINT="http://$closed/v1/traces" TRACES_SIGNED=false
count() { # binary ratio -> instructions (the program exits 1: its Runtime API refused)
  { TRACES_SAMPLE_RATIO="$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" 2>&1 >/dev/null || true; } \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
echo "| function | before | tracing off | tracing on |"
echo "|---|---:|---:|---:|"
for f in orders-api order-intake inventory payments fulfilment orphan-sweeper stripe-webhook; do
  before=-
  [ -x "target/bench/before/$f" ] && before=$(count "target/bench/before/$f" 1)
  python3 - "$f" "$before" "$(count "target/release/$f" 0)" "$(count "target/release/$f" 1)" <<'PY'
import sys
name, before, off, on = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def cell(n):
    return f"{n:,}" if before == "-" else f"{n:,} ({(n / int(before) - 1) * 100:+.1f} %)"
print(f"| {name} | {before if before == '-' else format(int(before), ',')} | {cell(off)} | {cell(on)} |")
PY
done
