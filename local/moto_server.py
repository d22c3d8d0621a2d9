"""moto server, made safe for concurrent DynamoDB writes.

moto serves requests on threads without locking, and its TransactWriteItems
snapshots every table the transaction touches and restores that snapshot when a
condition fails. A write another request made in between is erased: under load
(the chaos run, a busy `shop local`) a committed stock reservation vanished when
a concurrent reservation of the same SKU failed. On AWS a transaction is isolated.
Serializing DynamoDB writes restores that guarantee; reads stay concurrent.

With SHOP_AWS_CALL_LOG=FILE set, every call a function makes (a request whose user
agent carries `app/<function>`, see `shop_aws::for_function`) is appended to FILE as
one JSON line: the function, the IAM action the call needs and the resource it names.
scripts/security_review.py compares those calls with the template's grants.

Usage: python local/moto_server.py [moto_server options]
"""

import io
import json
import os
import re
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main

_WRITES = threading.RLock()


def _serialized(method):
    def locked(self, *args, **kwargs):
        with _WRITES:
            return method(self, *args, **kwargs)

    locked.__name__ = method.__name__
    return locked


for _name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
    setattr(DynamoDBBackend, _name, _serialized(getattr(DynamoDBBackend, _name)))

# X-Amz-Target prefix -> IAM service prefix, for the JSON protocols the functions use.
_SERVICES = {
    "DynamoDB_20120810": "dynamodb",
    "AmazonSQS": "sqs",
    "AWSStepFunctions": "states",
    "AWSEvents": "events",
    "secretsmanager": "secretsmanager",
}
# The IAM action each TransactWriteItems / TransactGetItems element needs.
_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
             "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
_APP = re.compile(r"\bapp/([A-Za-z0-9._-]+)")
_LOG_LOCK = threading.Lock()


def _name(resource):
    """The physical name in an ARN or queue URL (`...:table/NAME`, `.../NAME`)."""
    resource = resource or ""
    for marker in (":stateMachine:", ":secret:", ":table/", ":event-bus/"):
        if marker in resource:
            resource = resource.split(marker, 1)[1]
            # Secrets Manager ARNs end in a random "-XXXXXX" suffix.
            return re.sub(r"-[A-Za-z0-9]{6}$", "", resource) if marker == ":secret:" else resource
    return resource.rstrip("/").rsplit("/", 1)[-1]


def _calls(service, operation, body):
    """(IAM action, resource name) pairs one request needs."""
    if service == "dynamodb" and operation in ("TransactWriteItems", "TransactGetItems"):
        for item in body.get("TransactItems", []):
            for kind, spec in item.items():
                yield f"dynamodb:{_TRANSACT[kind]}", spec.get("TableName")
    elif service == "dynamodb" and operation in ("BatchGetItem", "BatchWriteItem"):
        for table in body.get("RequestItems", {}):
            yield f"dynamodb:{operation}", table
    elif service == "dynamodb":
        yield f"dynamodb:{operation}", body.get("TableName")
    elif service == "sqs":
        yield f"sqs:{operation.replace('Batch', '')}", _name(body.get("QueueUrl"))
    elif service == "states":
        # Task-token calls name no state machine; IAM checks the token's machine.
        yield f"states:{operation}", _name(body.get("stateMachineArn")) or "task-token"
    elif service == "events":
        for entry in body.get("Entries", []):
            yield f"events:{operation}", _name(entry.get("EventBusName") or "default")
    elif service == "secretsmanager":
        yield f"secretsmanager:{operation}", _name(body.get("SecretId"))


def _logged(call, path):
    def dispatch(self, environ, start_response):
        agent = environ.get("HTTP_X_AMZ_USER_AGENT", "") + " " + environ.get("HTTP_USER_AGENT", "")
        app = _APP.search(agent)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if app and "." in target:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(raw)
            prefix, operation = target.split(".", 1)
            service = _SERVICES.get(prefix, prefix.lower())
            try:
                body = json.loads(raw or b"{}")
                lines = [{"function": app.group(1), "action": action, "resource": resource}
                         for action, resource in _calls(service, operation, body)]
            except (ValueError, AttributeError, KeyError) as e:
                lines = [{"function": app.group(1), "action": f"{service}:{operation}",
                          "resource": None, "unparsed": str(e)}]
            text = "".join(json.dumps(line) + "\n" for line in lines)
            with _LOG_LOCK, open(path, "a", encoding="utf-8") as log:
                log.write(text)
        return call(self, environ, start_response)

    return dispatch


if os.environ.get("SHOP_AWS_CALL_LOG"):
    DomainDispatcherApplication.__call__ = _logged(
        DomainDispatcherApplication.__call__, os.environ["SHOP_AWS_CALL_LOG"])

if __name__ == "__main__":
    sys.exit(main())
