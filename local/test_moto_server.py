"""Checks every moto internal local/moto_server.py patches, so a moto upgrade fails
here, loudly, instead of silently changing what the emulator does.

Run: .venv/bin/python local/test_moto_server.py (the README's test command does).
"""

import inspect
import io
import json
import os
import sys
import tempfile
import threading
import time
import unittest
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moto  # noqa: E402
import moto.backends  # noqa: E402
import moto.core.utils  # noqa: E402
import moto.dynamodb.models as dynamodb_models  # noqa: E402
import moto.stepfunctions.parser.asl.utils.boto_client as sfn_boto  # noqa: E402
from moto.dynamodb.models import DynamoDBBackend  # noqa: E402
from moto.sqs.models import SQSBackend  # noqa: E402
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent  # noqa: E402
from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: E402

import moto_server  # noqa: E402  (applies the patches)


def params(function):
    return list(inspect.signature(function).parameters)


class PatchTargets(unittest.TestCase):
    def test_moto_is_the_version_the_patches_were_written_for(self):
        self.assertEqual(moto.__version__, moto_server.EXPECTED_MOTO)

    def test_transactions_deep_copy_tables_through_the_module_copy(self):
        # The item-level snapshot stands in for `copy` inside moto.dynamodb.models;
        # moto must still snapshot tables with `copy.deepcopy` there.
        source = inspect.getsource(dynamodb_models)
        self.assertIn("copy.deepcopy(", source)
        self.assertIsInstance(dynamodb_models.copy, moto_server._TableSnapshots)
        self.assertEqual(params(DynamoDBBackend.get_keys_value)[:3], ["self", "table", "keys"])

    def test_replaced_bodies_take_the_original_arguments(self):
        original_unix_time = moto.core.utils.unix_time.__globals__["_shop_unix_time"]
        self.assertEqual(params(original_unix_time), params(moto_server._unix_time))
        original_client = sfn_boto.boto_client_for.__globals__["_shop_boto_client_for"]
        self.assertEqual(params(original_client), params(moto_server._boto_client_for))

    def test_replaced_bodies_answer_as_the_originals(self):
        original = moto.core.utils.unix_time.__globals__["_shop_unix_time"]
        at = datetime(2026, 11, 29, 8, 0, 0, tzinfo=timezone.utc).replace(tzinfo=None)
        self.assertEqual(moto.core.utils.unix_time(at), original(at))
        self.assertLess(abs(moto.core.utils.unix_time() - original()), 1.0)

    def test_sqs_retention_check_keeps_its_signature(self):
        self.assertEqual(params(SQSBackend.is_message_valid_based_on_retention_period),
                         ["self", "queue_name", "message"])

    def test_state_machine_parsing_and_heap_keys_exist(self):
        self.assertIsInstance(inspect.getattr_static(EvalComponent, "heap_key"), property)
        self.assertTrue(callable(StepFunctionsParserBackend.start_execution))
        self.assertTrue(callable(moto.backends.list_of_moto_modules))

    def test_logs_queries_run_through_the_module_execute_query(self):
        import moto.logs.models as logs_models
        self.assertIs(logs_models.execute_query, moto_server._execute_filtered_query)
        self.assertEqual(params(moto_server._execute_query),
                         ["log_groups", "query", "start_time", "end_time"])
        self.assertIn("execute_query(", inspect.getsource(logs_models.LogQuery.__init__))


class Differences(unittest.TestCase):
    """Each place moto answers otherwise than AWS, and the patch that makes it answer
    as AWS does."""

    def test_a_heartbeat_is_accepted_while_a_task_without_heartbeat_seconds_waits(self):
        from moto.stepfunctions.parser.asl.eval.callback.callback import (
            CallbackEndpoint, CallbackOutcomeSuccess)
        waiting = CallbackEndpoint(callback_id="t1")
        self.assertTrue(waiting.notify_heartbeat(), "AWS accepts it; moto said InvalidToken")
        beating = CallbackEndpoint(callback_id="t2")
        clock = beating.setup_heartbeat_endpoint(heartbeat_seconds=5)
        self.assertTrue(beating.notify_heartbeat())
        self.assertTrue(clock.clear_and_wait(), "the beat reached the task's clock")
        waiting.notify(CallbackOutcomeSuccess(callback_id="t1", output="{}"))
        self.assertFalse(waiting.notify_heartbeat(), "an answered task takes no beat")

    @staticmethod
    def _callback_machine(name, task_fields, states=None):
        """A served emulator with a state machine whose task `T` sends its token to a
        queue: (sqs, sfn, queue URL, state machine ARN)."""
        import boto3
        endpoint = moto_server.serve("127.0.0.1", 0)
        aws = dict(endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
        sqs, sfn = boto3.client("sqs", **aws), boto3.client("stepfunctions", **aws)
        queue = sqs.create_queue(QueueName=name)["QueueUrl"]
        task = {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 30, **task_fields}
        machine = sfn.create_state_machine(
            name=name, definition=json.dumps({"StartAt": "T", "States": {"T": task, **(states or {})}}),
            roleArn="arn:aws:iam::123456789012:role/saga")["stateMachineArn"]
        return sqs, sfn, queue, machine

    def test_each_attempt_of_a_retried_callback_task_has_its_own_token(self):
        sqs, sfn, queue, machine = self._callback_machine("retried", {
            "End": True,
            "Retry": [{"ErrorEquals": ["Busy"], "IntervalSeconds": 1, "MaxAttempts": 3}]})
        execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]

        def next_token():
            for _ in range(20):
                for m in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []):
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
                    return json.loads(m["Body"])["token"]
            self.fail("no command")

        first = next_token()
        sfn.send_task_heartbeat(taskToken=first)  # moto said InvalidToken: no HeartbeatSeconds
        sfn.send_task_failure(taskToken=first, error="Busy", cause="try again")
        second = next_token()
        self.assertNotEqual(first, second)
        sfn.send_task_heartbeat(taskToken=second)
        sfn.send_task_success(taskToken=second, output="{}")
        for _ in range(50):
            status = sfn.describe_execution(executionArn=execution)["status"]
            if status != "RUNNING":
                break
            time.sleep(0.1)
        self.assertEqual(status, "SUCCEEDED")
        failures = [e for e in sfn.get_execution_history(executionArn=execution)["events"]
                    if e["type"] == "TaskFailed"]
        self.assertEqual(len(failures), 1, "the retry waited for its own answer")
        self.assertEqual(failures[0]["taskFailedEventDetails"].get("cause"), "try again",
                         "moto dropped SendTaskFailure's cause")

    def test_a_failure_reaches_the_catch_with_its_cause(self):
        sqs, sfn, queue, machine = self._callback_machine("caught", {
            "Next": "Caught",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Caught"}],
        }, {"Caught": {"Type": "Pass", "End": True}})
        execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        for _ in range(20):
            messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
            if messages:
                break
        token = json.loads(messages[0]["Body"])["token"]
        sfn.send_task_failure(taskToken=token, error="RefundFailed", cause="provider down")
        for _ in range(50):
            done = sfn.describe_execution(executionArn=execution)
            if done["status"] != "RUNNING":
                break
            time.sleep(0.1)
        self.assertEqual(json.loads(done["output"])["failure"],
                         {"Error": "RefundFailed", "Cause": "provider down"})


    def test_a_logs_insights_filter_keeps_only_the_matching_events(self):
        import boto3
        endpoint = moto_server.serve("127.0.0.1", 0)
        logs = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")
        logs.create_log_group(logGroupName="aws/spans")
        logs.create_log_stream(logGroupName="aws/spans", logStreamName="default")
        now = int(time.time() * 1000)
        spans = [{"traceId": t, "name": n, "attributes": {"order.id": o}}
                 for t, n, o in [("t1", "a", "ord-1"), ("t1", "b", "ord-2"),
                                 ("t2", "c", "ord-1"), ("t3", "d", "ord-3")]]
        logs.put_log_events(logGroupName="aws/spans", logStreamName="default", logEvents=[
            {"timestamp": now + i, "message": json.dumps(s)} for i, s in enumerate(spans)])

        def names(query):
            started = logs.start_query(logGroupName="aws/spans", startTime=now // 1000 - 60,
                                       endTime=now // 1000 + 60, queryString=query)
            rows = logs.get_query_results(queryId=started["queryId"])["results"]
            return sorted(json.loads(next(f["value"] for f in row if f["field"] == "@message"))["name"]
                          for row in rows)

        self.assertEqual(names('fields @message | filter attributes.order.id = "ord-1"'), ["a", "c"],
                         "moto answered every event, unfiltered")
        self.assertEqual(names('fields @message | filter traceId in ["t1", "t3"] | limit 10'),
                         ["a", "b", "d"])
        self.assertEqual(len(names('fields @message | filter traceId in ["t1", "t2"] | limit 1')), 1,
                         "the limit counts what the filter kept")
        with self.assertRaises(Exception, msg="an unsupported filter is refused, not ignored"):
            names('fields @message | filter name like /a/')


class Middleware(unittest.TestCase):
    def test_a_transaction_overlapping_another_on_an_item_is_cancelled_as_a_conflict(self):
        started, release = threading.Event(), threading.Event()

        def slow_app(environ, start_response):
            started.set()
            release.wait(5)
            start_response("200 OK", [])
            return [b"{}"]

        app = moto_server.TransactionConflicts(slow_app, commit_seconds=0)

        def call(*keys):
            body = json.dumps({"TransactItems": [
                {"Update": {"TableName": "stock", "Key": {"pk": {"S": k}}}} for k in keys]}).encode()
            environ = {"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.TransactWriteItems",
                       "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
            status = []
            answer = b"".join(app(environ, lambda s, h: status.append(s)))
            return status[0], json.loads(answer)

        first = []
        worker = threading.Thread(target=lambda: first.append(call("RES#1", "SKU#MUG")))
        worker.start()
        self.assertTrue(started.wait(5))
        status, answer = call("RES#2", "SKU#MUG")
        self.assertEqual(status, "400 Bad Request")
        self.assertTrue(answer["__type"].endswith("#TransactionCanceledException"))
        self.assertEqual([r["Code"] for r in answer["CancellationReasons"]],
                         ["None", "TransactionConflict"])
        release.set()
        worker.join(5)
        self.assertEqual(first[0][0], "200 OK")
        self.assertEqual(call("RES#3", "SKU#MUG")[0], "200 OK", "free once the first committed")

    def test_serialized_requests_never_overlap_and_others_do(self):
        inside, most = [0], [0]
        lock = threading.Lock()

        def app(environ, start_response):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1
            return [b"ok"]

        served = moto_server.Serialized(app)

        def call(target):
            served({"HTTP_X_AMZ_TARGET": target}, None)

        for target, expected in (("DynamoDB_20120810.TransactWriteItems", 1),
                                 ("DynamoDB_20120810.GetItem", 4)):
            most[0] = 0
            threads = [threading.Thread(target=call, args=(target,)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(most[0], expected, target)

    def test_the_call_log_names_each_item_of_a_transaction(self):
        body = json.dumps({"TransactItems": [
            {"Put": {"TableName": "inv"}}, {"ConditionCheck": {"TableName": "orders"}}]}).encode()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "calls.jsonl")
            logged = moto_server.CallLog(lambda environ, start: [b""], path)
            logged({"HTTP_USER_AGENT": "aws-sdk-rust app/inventory",
                    "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.TransactWriteItems",
                    "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}, None)
            with open(path, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f]
        self.assertEqual(lines, [
            {"function": "inventory", "action": "dynamodb:PutItem", "resource": "inv"},
            {"function": "inventory", "action": "dynamodb:ConditionCheckItem", "resource": "orders"},
        ])


class Snapshots(unittest.TestCase):
    def test_a_failed_transaction_restores_only_what_it_named(self):
        backend = DynamoDBBackend("us-east-1", "123456789012")
        backend.create_table("t", schema=[{"AttributeName": "k", "KeyType": "HASH"}],
                             attr=[{"AttributeName": "k", "AttributeType": "S"}],
                             throughput=None, billing_mode="PAY_PER_REQUEST",
                             indexes=None, global_indexes=None, streams=None, sse_specification=None,
                             tags=[], deletion_protection_enabled=False, warm_throughput=None)
        backend.put_item("t", {"k": {"S": "a"}, "v": {"S": "1"}})
        with self.assertRaises(Exception):
            backend.transact_write_items([
                {"Put": {"TableName": "t", "Item": {"k": {"S": "b"}}}},
                {"Put": {"TableName": "t", "Item": {"k": {"S": "a"}, "v": {"S": "2"}},
                         "ConditionExpression": "attribute_not_exists(k)"}},
            ])
        self.assertEqual(backend.get_item("t", {"k": {"S": "a"}}).attrs["v"].value, "1")
        self.assertIsNone(backend.get_item("t", {"k": {"S": "b"}}))


if __name__ == "__main__":
    unittest.main()
