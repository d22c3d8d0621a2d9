"""Cost per million orders, happy and compensating path, from measured figures.

Measured inputs: each handler's warm CPU time per invocation (criterion,
`cargo bench -p shop --bench warm`, read from target/criterion) and the memory size
in template.yaml. Counted inputs: the AWS calls, DynamoDB capacity units, SQS
requests, events and state transitions each path makes (below, from the code and the
ASL). Assumed inputs, printed with the result: the latency of each AWS call as seen
from Lambda, which this machine cannot measure.

The same model is evaluated at the memory sizes of the AWS reference samples (Python
on x86_64 at 384 and 768 MB) twice: with the Rust CPU time (what those memory sizes
cost even if Python did the work as fast as Rust), and with the Rust CPU time scaled by
the measured ratio of one boto3 call to one Rust SDK call
(bench/python-peer/warm_call.py against the criterion baseline).

Usage: python scripts/cost_model.py --python-call-us US [--criterion DIR]
"""

import argparse
import json
import math
from pathlib import Path

# us-east-1 list prices (USD), as published by AWS for each service.
PRICE = {
    "lambda_gb_s_arm64": 0.0000133334,
    "lambda_gb_s_x86_64": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "http_api_request": 1.00 / 1e6,
    "sqs_request": 0.40 / 1e6,
    "ddb_wru": 0.625 / 1e6,
    "ddb_rru": 0.125 / 1e6,
    "sfn_transition": 0.025 / 1e3,
    "eventbridge_event": 1.00 / 1e6,
    # Spans sent to the OTLP traces endpoint with Transaction Search on are ingested
    # as structured logs (log group aws/spans) at CloudWatch Logs' standard ingestion
    # price; 1 % of them indexed as X-Ray trace summaries at no charge.
    "logs_ingest_gb": 0.50,
}

# Traces, per order at TraceSampleRatio=1: the spans of one order's trace as `shop
# trace --json` counts them through shop local (the functions' own; the saga's
# states come from Step Functions' tracing), and their mean size as the local
# receiver stores them (compact JSON, measured). Assumed: CloudWatch stores each span
# with its resource and scope, about twice that.
SPANS_PER_ORDER = {"happy (confirmed)": 38, "compensating (card declined)": 37}
SPAN_BYTES_MEASURED = 700
SPAN_BYTES_FACTOR_ASSUMED = 2.0

# Assumed latency of one call from a function in the same region, in ms.
LATENCY_MS = {"dynamodb": 6, "sqs": 8, "sfn": 15, "events": 15}

# Lambda gives a function one full vCPU at 1,769 MB and a proportional share below.
FULL_CPU_MB = 1769

# Per invocation: its criterion benchmark and the AWS calls it waits on.
HANDLERS = {
    "orders-api": ("orders-api: place an order", {"dynamodb": 4, "sqs": 1}),
    "order-intake": ("order-intake: start a saga", {"sfn": 1, "events": 1}),
    "inventory": ("inventory: reserve", {"dynamodb": 2, "sfn": 1, "events": 1}),
    "payments": ("payments: charge", {"dynamodb": 2, "sfn": 1, "events": 1}),
    "fulfilment": ("fulfilment: ship", {"dynamodb": 1}),
}

# Per order. Invocations assume one record per batch (light traffic, the dearest case).
# DynamoDB: the order (1 KB) put by the API and updated twice by the saga (stock
# held and payment pending in one update, then confirmed or cancelled); the
# idempotency claim and answer; the catalog read (2 items, eventually consistent);
# a reservation transaction of 2 stock items + 1 reservation item (2 WRU each);
# the ledger read by each payment command and its writes (claim, authorized,
# captured); the order's payment method read by the authorization; one shipment; the
# pending index (a GSI write when the order is stored, a GSI delete when
# MarkPaymentPending takes it out).
# Transitions: `shop capacity` counts the happy path's from the definition (7);
# the declined path enters Route, ReserveStock, MarkPaymentPending, AuthorizePayment,
# ReleaseStock, CancelOrder, PublishOrderCancelled (7).
# Not per order: the orphan sweep's schedule (8,640 runs a month of 4 index Queries
# each, a few cents a month whatever the traffic).
# SQS: each message is sent, received and deleted (3 requests); messages: the order,
# the reserve, authorize and capture commands, the outcome event to fulfilment.
PATHS = {
    "happy (confirmed)": {
        "invocations": {"orders-api": 1, "order-intake": 1, "inventory": 1, "payments": 2, "fulfilment": 1},
        "http": 1,
        "sqs": 5 * 3,
        "wru": 1 + 2 + 2 + 6 + 3 + 1 + 2,
        "rru": 1 + 2 + 1,
        "transitions": 7,
        "events": 4,
    },
    "compensating (card declined)": {
        "invocations": {"orders-api": 1, "order-intake": 1, "inventory": 2, "payments": 1, "fulfilment": 1},
        "http": 1,
        "sqs": 5 * 3,
        "wru": 1 + 2 + 2 + 6 + 6 + 2 + 2,
        "rru": 1 + 1 + 1 + 1 + 1,
        "transitions": 7,
        "events": 5,
    },
}

# (label, architecture, memory MB, CPU scaled to Python's per-call cost?)
DEPLOYMENTS = [
    ("this stack: Rust, arm64, 128 MB", "arm64", 128, False),
    ("Python, x86_64, 384 MB, Rust's CPU", "x86_64", 384, False),
    ("Python, x86_64, 384 MB, Python's CPU", "x86_64", 384, True),
    ("Python, x86_64, 768 MB, Rust's CPU", "x86_64", 768, False),
    ("Python, x86_64, 768 MB, Python's CPU", "x86_64", 768, True),
]
BASELINE = "baseline: one DynamoDB PutItem"


def cpu_ms(criterion_dir, bench):
    path = Path(criterion_dir) / "warm" / bench.replace(":", "_").replace(" ", "_") / "new" / "estimates.json"
    if not path.exists():
        candidates = [p for p in (Path(criterion_dir) / "warm").glob("*/new/estimates.json")
                      if json.loads((p.parent / "benchmark.json").read_text())["function_id"] == bench]
        path = candidates[0]
    return json.loads(path.read_text())["median"]["point_estimate"] / 1e6


def billed_ms(cpu, calls, memory_mb):
    wall = cpu * max(1.0, FULL_CPU_MB / memory_mb)
    wall += sum(LATENCY_MS[service] * n for service, n in calls.items())
    return math.ceil(wall)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion", default=str(Path(__file__).resolve().parent.parent / "target" / "criterion"))
    parser.add_argument("--python-call-us", type=float, required=True,
                        help="CPU µs of one boto3 PutItem (bench/python-peer/warm_call.py)")
    args = parser.parse_args()
    cpu = {name: cpu_ms(args.criterion, bench) for name, (bench, _) in HANDLERS.items()}
    rust_call_us = cpu_ms(args.criterion, BASELINE) * 1000
    python_ratio = args.python_call_us / rust_call_us

    print("Measured warm CPU per invocation (criterion median):")
    for name, ms in cpu.items():
        print(f"  {name:13} {ms * 1000:8.1f} µs")
    print(f"One PutItem: Rust SDK {rust_call_us:.0f} µs, boto3 {args.python_call_us:.0f} µs "
          f"(Python's CPU = Rust's × {python_ratio:.1f})")
    print("Assumed call latency (ms): " + ", ".join(f"{k} {v}" for k, v in LATENCY_MS.items()))
    print()
    header = f"{'path':30} {'deployment':38} {'Lambda $':>9} {'other $':>9} {'total $':>9} {'Lambda share':>12}"
    print("Cost per 1,000,000 orders (USD, us-east-1 list prices)")
    print(header)
    print("-" * len(header))
    for path, p in PATHS.items():
        other = (p["http"] * PRICE["http_api_request"] + p["sqs"] * PRICE["sqs_request"]
                 + p["wru"] * PRICE["ddb_wru"] + p["rru"] * PRICE["ddb_rru"]
                 + p["transitions"] * PRICE["sfn_transition"]
                 + p["events"] * PRICE["eventbridge_event"]) * 1e6
        for label, arch, memory, python_cpu in DEPLOYMENTS:
            lam = 0.0
            for name, count in p["invocations"].items():
                work = cpu[name] * (python_ratio if python_cpu else 1.0)
                ms = billed_ms(work, HANDLERS[name][1], memory)
                lam += count * (ms / 1000 * memory / 1024 * PRICE[f"lambda_gb_s_{arch}"]
                                + PRICE["lambda_request"])
            lam *= 1e6
            total = lam + other
            print(f"{path:30} {label:38} {lam:9.2f} {other:9.2f} {total:9.2f} {lam / total:11.1%}")
    print()
    print("Traces (TraceSampleRatio=1; the cost scales with the ratio), per 1,000,000 orders:")
    for path, spans in SPANS_PER_ORDER.items():
        gb = spans * SPAN_BYTES_MEASURED * SPAN_BYTES_FACTOR_ASSUMED * 1e6 / 1e9
        print(f"  {path:30} {spans} spans/order, {gb:6.1f} GB ingested: ${gb * PRICE['logs_ingest_gb']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
