"""The Python peer for cold-start benchmarks: the same init as the Rust functions
(clients for DynamoDB, SQS, Step Functions and EventBridge, created once at import,
as AWS's Python samples and Powertools do), run by awslambdaric under the same fake
Runtime API."""
import boto3

dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
stepfunctions = boto3.client("stepfunctions")
events = boto3.client("events")


def handler(event, context):
    return {"statusCode": 200, "body": "{}"}
