"""moto server, made safe for concurrent DynamoDB writes, and the one way this project
starts it (`shop local`, the end-to-end tests and scripts/with-moto.sh all run this file).

moto serves requests on threads without locking, and its TransactWriteItems
snapshots every table the transaction touches and restores that snapshot when a
condition fails. A write another request made in between is erased: under load
(the chaos run, a busy `shop local`) a committed stock reservation vanished when
a concurrent reservation of the same SKU failed. On AWS a transaction is isolated.
Serializing DynamoDB writes restores that guarantee; reads stay concurrent.

Step Functions' StartExecution has the same kind of gap: it checks that no execution
has the name, copies the state machine, then adds the new execution, without a lock.
Two deliveries of one intake message at once (the chaos run's duplicate delivery) then
started two executions with the same name, which AWS never does: in the 10,000-order
run both ran, one charged while the other cancelled. StartExecution is serialized too.

Serializing writes hides the failure DynamoDB gives concurrent transactions: a
TransactWriteItems that names an item another transaction is still writing is
cancelled with the reason `TransactionConflict` for that item (and `None` for the
others), nothing written. `TransactionConflicts` puts that back: a transaction that
arrives while another one naming the same item is in flight (waiting for the write
lock, being applied, or committing) is cancelled so. AWS's commit takes longer than
moto's in-memory write; SHOP_DYNAMODB_COMMIT_MS (default 10) keeps a finished
transaction's items held that much longer, outside the lock, as its two-phase commit
would. SHOP_DYNAMODB_CONFLICTS=off turns the emulation off.

With SHOP_AWS_CALL_LOG=FILE set, every call a function makes (a request whose user
agent carries `app/<function>`, see `shop_aws::for_function`) is appended to FILE as
one JSON line: the function, the IAM action the call needs and the resource it names.
scripts/security_review.py compares those calls with the template's grants.

It also removes four costs that grow with load and made moto, one Python process,
the ceiling of every long run (py-spy on the chaos run: over half the time holding
the GIL went to the first two):
- SQS checked each received message's retention by computing every attribute of its
  queue, which counts all the queue's messages, three times;
- `unix_time()` built two datetimes for what `time.time()` returns;
- every request listed moto's package directory to find its service;
- each Step Functions task built a new boto3 client, and werkzeug logged each request;
- each execution parsed the state machine definition again (ANTLR), and every JSONPath
  in it or in an EventBridge input path built a new yacc parser before parsing.
- each TransactWriteItems deep-copied every table it touched, to restore on a failed
  condition: a cost that grows with the table (the inventory table holds one
  reservation per order), so a long run slowed down as it went. With writes
  serialized, only the items the transaction names can change while it runs, so
  only those are copied; the rest of the snapshot shares the table's items.
SendTaskHeartbeat on a callback task that declares no HeartbeatSeconds: AWS accepts
it while the task waits (the beat resets a clock nobody reads), moto answers
InvalidToken as if the task were gone. The workers' receipt of a saga command is such
a heartbeat (docs/backpressure.md), so moto would make every command look stale. The
patch accepts it while the task waits; once answered or timed out, moto's own answers
stand (TaskTimedOut, TaskDoesNotExist, InvalidToken).

A retried callback task keeps its first task token in moto, and the endpoint still
holds the first attempt's answer: the retry fails at once with the old error, and
the command it sends carries a token already answered. On AWS every attempt is a new
task with its own token. The patch draws a fresh token for an attempt whose token was
already answered or timed out, before the attempt sends its command.

SendTaskFailure's `cause` is dropped by moto's request handler (it passes the error
only), so a Catch sees `"Cause": null` and every failure in an execution history has an
empty cause. AWS keeps it: it is what an operator reads in `shop saga show` and what
the compensation work queue carries. The patch passes it on.

CloudWatch Logs Insights: moto's StartQuery reads `fields`, `sort` and `limit` and
ignores every `filter`, so a query answers with every event of the log group. `shop
trace --stack` finds an order's spans in `aws/spans` with two filters (an attribute
equal to a string, a field in a list of strings); the patch applies those two shapes,
on the event's JSON with nested keys joined by dots as Logs Insights names them, before
the limit, and refuses any other filter rather than answer it unfiltered.

Parsed definitions are shared between executions: their components keep no state of
an execution except a lazily drawn heap key, drawn here before sharing so concurrent
executions cannot draw it twice.
The answers are unchanged; only the time to compute them is.

What can be done on the wire is WSGI middleware around moto's app (`Serialized`,
`CallLog`); what needs moto's internals is a patch below, each target checked by
local/test_moto_server.py, and the whole file refuses to run on another moto version
than the one it was written for (`EXPECTED_MOTO`).

Usage:
  python local/moto_server.py [-H HOST] [-p PORT] [--ready-file FILE]
      serves; with -p 0 a free port is picked and `http://HOST:PORT` is written to
      FILE once the server answers.
  python local/moto_server.py --run -- COMMAND...
      serves on a free loopback port, runs COMMAND with AWS_ENDPOINT_URL and test
      credentials pointing at it, stops when COMMAND ends, exits with its status.
"""

import copy
import functools
import io
import json
import logging
import os
import re
import sys
import threading
import time
import types

import argparse
import subprocess
import tempfile
import urllib.request

import jsonpath_ng.ext
import moto
import moto.backends
import moto.core.utils
import moto.stepfunctions.parser.asl.utils.boto_client as sfn_boto
import moto.stepfunctions.parser.asl.utils.json_path as sfn_json_path
import moto.dynamodb.models as dynamodb_models
import moto.logs.models as logs_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.sqs.models import SQSBackend
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
    StateTaskServiceCallback)
from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.responses import StepFunctionResponse
from moto.core.responses import EmptyResult
from moto.core.config import default_user_config
from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                           create_backend_app)
from werkzeug.serving import make_server

# The moto every patch below was written and checked against (scripts/requirements.txt
# pins it). Another version may have moved a patched function or changed what it does.
EXPECTED_MOTO = "5.2.5"

# Requests AWS isolates and moto does not, by X-Amz-Target: every DynamoDB write, and
# StartExecution. Step Functions' own DynamoDB calls come back over HTTP, so they pass
# through here too.
_DYNAMODB_WRITES = threading.Lock()
_SERIALIZED = {
    **{f"DynamoDB_20120810.{op}": _DYNAMODB_WRITES for op in (
        "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")},
    "AWSStepFunctions.StartExecution": threading.Lock(),
}


class Serialized:
    """WSGI middleware: one request at a time of each serialized kind, answered whole
    before the next starts."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        lock = _SERIALIZED.get(environ.get("HTTP_X_AMZ_TARGET", ""))
        if lock is None:
            return self.app(environ, start_response)
        with lock:
            return list(self.app(environ, start_response))


_IN_FLIGHT = {}
_IN_FLIGHT_LOCK = threading.Lock()
_KEY_SCHEMAS = {}


def _key_names(table_name):
    """The key attribute names of the table, looked up in every account and region."""
    if table_name not in _KEY_SCHEMAS:
        tables = (backend.tables.get(table_name)
                  for regions in dynamodb_models.dynamodb_backends.values()
                  for backend in regions.values())
        table = next((t for t in tables if t is not None), None)
        if table is None:
            return ()
        _KEY_SCHEMAS[table_name] = tuple(k for k in (table.hash_key_attr, table.range_key_attr) if k)
    return _KEY_SCHEMAS[table_name]


def _transaction_items(body):
    """(table, key) per element of a TransactWriteItems body, in order."""
    items = []
    for element in body.get("TransactItems", []):
        for spec in element.values():
            table = spec.get("TableName")
            key = spec.get("Key")
            if key is None:
                item = spec.get("Item") or {}
                key = {name: item.get(name) for name in _key_names(table)}
            items.append((table, json.dumps(key, sort_keys=True)))
    return items


class TransactionConflicts:
    """WSGI middleware: cancels a TransactWriteItems that overlaps another one in
    flight on the same item, as DynamoDB does."""

    def __init__(self, app, commit_seconds):
        self.app = app
        self.commit_seconds = commit_seconds

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET") != "DynamoDB_20120810.TransactWriteItems":
            return self.app(environ, start_response)
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            items = _transaction_items(json.loads(raw or b"{}"))
        except (ValueError, AttributeError):
            return self.app(environ, start_response)
        keys = set(items)
        with _IN_FLIGHT_LOCK:
            busy = {key for key in keys if _IN_FLIGHT.get(key)}
            if not busy:
                for key in keys:
                    _IN_FLIGHT[key] = _IN_FLIGHT.get(key, 0) + 1
        if busy:
            return self._cancelled(items, busy, start_response)
        try:
            answer = list(self.app(environ, start_response))
            if self.commit_seconds:
                time.sleep(self.commit_seconds)
            return answer
        finally:
            with _IN_FLIGHT_LOCK:
                for key in keys:
                    _IN_FLIGHT[key] -= 1
                    if not _IN_FLIGHT[key]:
                        del _IN_FLIGHT[key]

    @staticmethod
    def _cancelled(items, busy, start_response):
        reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
                   if item in busy else {"Code": "None"} for item in items]
        codes = ", ".join(r["Code"] for r in reasons)
        body = json.dumps({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            "CancellationReasons": reasons,
        }).encode()
        start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0"),
                                           ("Content-Length", str(len(body)))])
        return [body]


_TRANSACTION = threading.local()


class _TableSnapshots:
    """Stands in for the `copy` module inside moto.dynamodb.models. While a
    transaction runs (`_TRANSACTION.backend` set), a deep copy of a table is a
    snapshot that copies only the items the transaction names."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        backend = getattr(_TRANSACTION, "backend", None)
        if backend is None or not isinstance(value, Table):
            return copy.deepcopy(value, memo)
        snapshot = copy.copy(value)
        snapshot.items = type(value.items)(value.items.default_factory)
        for hash_key, entry in value.items.items():
            snapshot.items[hash_key] = dict(entry) if value.has_range_key else entry
        for op in _TRANSACTION.ops:
            if op.get("TableName") != value.name:
                continue
            try:
                hash_key, range_key = backend.get_keys_value(value, op.get("Item") or op.get("Key") or {})
            except Exception:  # noqa: BLE001 - moto reports the bad key itself
                continue
            if value.has_range_key and range_key in value.items.get(hash_key, {}):
                snapshot.items[hash_key][range_key] = copy.deepcopy(value.items[hash_key][range_key])
            elif not value.has_range_key and hash_key in value.items:
                snapshot.items[hash_key] = copy.deepcopy(value.items[hash_key])
        return snapshot


def _item_level_snapshots(method):
    def transact(self, transact_items, *args, **kwargs):
        _TRANSACTION.backend = self
        _TRANSACTION.ops = [op for item in transact_items for op in item.values()
                            if isinstance(op, dict)]
        try:
            return method(self, transact_items, *args, **kwargs)
        finally:
            _TRANSACTION.backend = None

    transact.__name__ = method.__name__
    return transact


dynamodb_models.copy = _TableSnapshots()
DynamoDBBackend.transact_write_items = _item_level_snapshots(DynamoDBBackend.transact_write_items)


def _copy(function):
    return types.FunctionType(function.__code__, function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)


def _give_body(function, replacement, **names):
    """Runs `replacement`'s body whenever `function` is called, also through the
    `from ... import function` bindings other moto modules made; `names` become
    globals of `function`'s module for that body to use."""
    function.__globals__.update(names)
    function.__code__ = replacement.__code__


def _unix_time(dt=None):
    return _shop_now() if dt is None else _shop_unix_time(dt)  # noqa: F821


def _boto_client_for(region, service, state_credentials=None):
    key = (region, service, repr(state_credentials))
    client = _shop_clients.get(key)  # noqa: F821
    if client is None:
        client = _shop_clients.setdefault(  # noqa: F821
            key, _shop_boto_client_for(region, service, state_credentials))  # noqa: F821
    return client


def _retained(self, queue_name, message):
    period = int(self.get_queue(queue_name).message_retention_period)
    return period + message.sent_timestamp / 1000 > time.time()


_give_body(moto.core.utils.unix_time, _unix_time,
           _shop_now=time.time, _shop_unix_time=_copy(moto.core.utils.unix_time))
_give_body(sfn_boto.boto_client_for, _boto_client_for,
           _shop_clients={}, _shop_boto_client_for=_copy(sfn_boto.boto_client_for))
SQSBackend.is_message_valid_based_on_retention_period = _retained


def _notify_heartbeat(self):
    if self._outcome is not None:
        return False
    if self._heartbeat_endpoint:
        self._heartbeat_endpoint.notify()
    return True


CallbackEndpoint.notify_heartbeat = _notify_heartbeat


def _send_task_failure(self):
    self.stepfunction_backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause"))
    return EmptyResult()


StepFunctionResponse.send_task_failure = _send_task_failure


def _token_per_attempt(attempt):
    def _eval_execution(self, env):
        task = env.states.context_object.context_object_data.get("Task")
        used = task and env.callback_pool_manager.get(task["Token"])
        if used is not None and (used.get_outcome() is not None or used.consumer_error is not None):
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        return attempt(self, env)

    _eval_execution.__name__ = attempt.__name__
    return _eval_execution


StateTaskServiceCallback._eval_execution = _token_per_attempt(StateTaskServiceCallback._eval_execution)


_LIMIT = re.compile(r"\|\s*limit\s+(\d+)\s*(?=\||$)")
_FILTER_COMMAND = re.compile(r"(?:^|\|)\s*filter\s+([^|]*)")
_FILTER = re.compile(r'^([A-Za-z0-9_.@]+)\s*(?:=\s*("[^"]*")|in\s*(\[(?:\s*"[^"]*"\s*,?)*\]))\s*$')


def _flattened(value, prefix=""):
    """A JSON event's fields as Logs Insights names them: nested keys joined by dots."""
    if not isinstance(value, dict):
        return {prefix: value}
    fields = {}
    for key, inner in value.items():
        fields.update(_flattened(inner, f"{prefix}.{key}" if prefix else key))
    return fields


def _filters(query):
    """The query's filters as (field, allowed values); ValueError for a shape this
    emulation does not apply."""
    filters = []
    for clause in _FILTER_COMMAND.findall(query):
        match = _FILTER.match(clause.strip())
        if not match:
            raise ValueError(f"the emulated Logs Insights applies `filter F = \"s\"` and "
                             f"`filter F in [\"s\", ...]` only, not `filter {clause.strip()}`")
        field, equal, members = match.groups()
        filters.append((field, {json.loads(equal)} if equal else set(json.loads(members))))
    return filters


_execute_query = logs_models.execute_query


def _execute_filtered_query(log_groups, query, start_time, end_time):
    filters = _filters(query)
    limit = _LIMIT.search(query)
    rows = _execute_query(log_groups=log_groups, query=_LIMIT.sub("", query),
                          start_time=start_time, end_time=end_time)
    if filters:
        messages = {event.event_id: event.message for group in log_groups
                    for stream in group.streams.values() for event in stream.events}

        def kept(row):
            try:
                fields = _flattened(json.loads(messages[row["@ptr"]]))
            except (KeyError, ValueError):
                return False
            return all(fields.get(field) in allowed for field, allowed in filters)

        rows = [row for row in rows if kept(row)]
    return rows[:int(limit.group(1))] if limit else rows


logs_models.execute_query = _execute_filtered_query


def _draw_heap_keys(node, seen):
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, EvalComponent):
        node.heap_key  # noqa: B018 - draws the key once, before the tree is shared
        children = vars(node).values()
    elif isinstance(node, (list, tuple, set)):
        children = node
    elif isinstance(node, dict):
        children = node.values()
    else:
        return
    for child in children:
        _draw_heap_keys(child, seen)


_parse_definition = AmazonStateLanguageParser.parse


@functools.lru_cache(maxsize=64)
def _parsed_definition(definition):
    parsed = _parse_definition(definition)
    _draw_heap_keys(parsed[0], set())
    return parsed


AmazonStateLanguageParser.parse = staticmethod(_parsed_definition)
_parse_json_path = functools.lru_cache(maxsize=4096)(jsonpath_ng.ext.parse)
jsonpath_ng.ext.parse = _parse_json_path
sfn_json_path.parse = _parse_json_path
_MODULES = tuple(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _MODULES
logging.getLogger("werkzeug").setLevel(logging.WARNING)

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
    elif service == "dynamodb" and body.get("IndexName"):
        yield f"dynamodb:{operation}", f"{body.get('TableName')}/index/{body['IndexName']}"
    elif service == "dynamodb":
        yield f"dynamodb:{operation}", body.get("TableName")
    elif service == "sqs":
        yield f"sqs:{operation.replace('Batch', '')}", _name(body.get("QueueUrl"))
    elif service == "states":
        # Task-token calls name no state machine; IAM checks the token's machine. An
        # execution ARN (`...:execution:MACHINE:NAME`) names its machine.
        execution = body.get("executionArn") or ""
        if ":execution:" in execution:
            yield f"states:{operation}", execution.split(":execution:", 1)[1].split(":", 1)[0]
        else:
            yield f"states:{operation}", _name(body.get("stateMachineArn")) or "task-token"
    elif service == "events":
        for entry in body.get("Entries", []):
            yield f"events:{operation}", _name(entry.get("EventBusName") or "default")
    elif service == "secretsmanager":
        yield f"secretsmanager:{operation}", _name(body.get("SecretId"))


class CallLog:
    """WSGI middleware: appends the IAM action and resource of every call a function
    makes to `path`, one JSON line each."""

    def __init__(self, app, path):
        self.app = app
        self.path = path

    def __call__(self, environ, start_response):
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
            with _LOG_LOCK, open(self.path, "a", encoding="utf-8") as log:
                log.write(text)
        return self.app(environ, start_response)


def application():
    """moto's app as this project serves it: Step Functions executes state machines
    (what `POST /moto-api/config` would switch on, set before any is created), writes
    are serialized, and calls are logged when SHOP_AWS_CALL_LOG names a file."""
    if moto.__version__ != EXPECTED_MOTO:
        sys.exit(f"local/moto_server.py was written for moto {EXPECTED_MOTO}, found "
                 f"{moto.__version__}: check every patch (python local/test_moto_server.py) "
                 "before moving the pin in scripts/requirements.txt")
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    app = DomainDispatcherApplication(create_backend_app)
    app = Serialized(app)
    if os.environ.get("SHOP_DYNAMODB_CONFLICTS", "on") != "off":
        app = TransactionConflicts(app, float(os.environ.get("SHOP_DYNAMODB_COMMIT_MS", "10")) / 1000)
    if os.environ.get("SHOP_AWS_CALL_LOG"):
        app = CallLog(app, os.environ["SHOP_AWS_CALL_LOG"])
    return app


def _wait_until_answering(endpoint, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"moto server did not answer on {endpoint} within {seconds} s")


def serve(host, port):
    """Serves on `port` (0: a free one) until the process ends; returns the endpoint
    once it answers."""
    server = make_server(host, port, application(), threaded=True,
                         request_handler=MotoRequestHandler)
    # Step Functions' service integrations call back to this port.
    os.environ["MOTO_PORT"] = str(server.port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://{host}:{server.port}"
    _wait_until_answering(endpoint)
    return endpoint


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=0)
    parser.add_argument("--ready-file")
    parser.add_argument("--run", action="store_true",
                        help="run the command after `--` against the server")
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    endpoint = serve(args.host, args.port)
    if args.run:
        # The command keeps this terminal; the server's own output goes to a log file.
        log_path = os.path.join(tempfile.gettempdir(), f"moto-{os.environ['MOTO_PORT']}.log")
        command_out, command_err = os.dup(1), os.dup(2)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.write(command_err, f"moto server on {endpoint} (log: {log_path})\n".encode())
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test",
                   AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
                   AWS_DEFAULT_REGION="us-east-1", AWS_MAX_ATTEMPTS="3")
        return subprocess.call(command, env=env, stdout=command_out, stderr=command_err)
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w", encoding="utf-8") as f:
            f.write(endpoint)
        os.replace(args.ready_file + ".tmp", args.ready_file)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
