"""CPU time of one warm boto3 DynamoDB PutItem against an endpoint that answers at once.

The Python counterpart of the `baseline: one DynamoDB PutItem` row of
`cargo bench -p shop --bench warm`: same call, same kind of fake endpoint (another
thread, canned answer over HTTP on loopback), CPU time of the calling thread only.
scripts/cost_model.py scales the Rust handlers' CPU by the ratio of the two.

Usage: .venv-bench/bin/python bench/python-peer/warm_call.py [CALLS]
"""

import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3


class Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.0")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
        region_name="us-east-1",
        aws_access_key_id="AKIDBENCH",
        aws_secret_access_key="bench",
    )

    def put():
        client.put_item(TableName="orders", Item={"orderId": {"S": "ord-1"}})

    for _ in range(200):
        put()
    samples = []
    for _ in range(20):
        start = time.thread_time_ns()
        for _ in range(calls // 20):
            put()
        samples.append((time.thread_time_ns() - start) / (calls // 20) / 1000)
    print(f"boto3 {boto3.__version__} PutItem: median {statistics.median(samples):.0f} µs CPU "
          f"per call (20 samples of {calls // 20})")


if __name__ == "__main__":
    main()
