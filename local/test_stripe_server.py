"""A test per difference local/stripe_server.py fixes between localstripe and Stripe, run
against the wrapped emulator over HTTP, so a localstripe upgrade fails here, loudly,
instead of silently changing what `shop local` and the tests pay with.

Run: .venv/bin/python local/test_stripe_server.py (the README's test command does).
"""

import hashlib
import hmac
import http.server
import json
import os
import threading
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stripe_server  # noqa: E402

KEY = "sk_test_wrapperchecks0001"


class Emulator:
    """The wrapped localstripe as `shop local` starts it."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        ready = os.path.join(self.dir.name, "endpoint")
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "stripe_server.py"),
             "-p", "0", "--ready-file", ready],
            cwd=self.dir.name, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError("the wrapped localstripe did not start")
            time.sleep(0.05)
        with open(ready, encoding="utf-8") as f:
            self.url = f.read().strip()

    def call(self, method, path, form=None, key=KEY, idempotency_key=None, json_body=None):
        data = None
        headers = {"Authorization": f"Bearer {key}"}
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read() or b"{}")

    def authorize(self, payment_method="pm_card_visa", idempotency_key=None, amount=1250,
                  key=KEY):
        return self.call("POST", "/v1/payment_intents", {
            "amount": amount, "currency": "eur", "payment_method": payment_method,
            "payment_method_types[0]": "card", "capture_method": "manual",
            "confirm": "true", "metadata[order_id]": "ord-test"},
            idempotency_key=idempotency_key, key=key)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.dir.cleanup()


class Receiver:
    """A webhook endpoint: keeps every delivery's body and signature header."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["Stripe-Signature"], body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events_of(self, intent_id, deadline=10):
        """The types of the events about one PaymentIntent, once delivered."""
        end = time.time() + deadline
        while True:
            found = [json.loads(body) for _, body in self.received]
            found = [e["type"] for e in found if e["data"]["object"]["id"] == intent_id]
            if found or time.time() > end:
                return found
            time.sleep(0.1)


class Differences(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stripe = Emulator()

    @classmethod
    def tearDownClass(cls):
        cls.stripe.stop()

    def test_localstripe_is_the_version_the_fixes_were_written_for(self):
        self.assertEqual(stripe_server.installed_version(), stripe_server.EXPECTED_LOCALSTRIPE)
        expected = stripe_server.EXPECTED_LOCALSTRIPE
        try:
            stripe_server.EXPECTED_LOCALSTRIPE = "0.0.0"
            with self.assertRaises(SystemExit):
                stripe_server.check_version()
        finally:
            stripe_server.EXPECTED_LOCALSTRIPE = expected

    def test_1_the_same_idempotency_key_replays_the_first_answer(self):
        status, _, first = self.stripe.authorize(idempotency_key="same-key")
        self.assertEqual((status, first["status"]), (200, "requires_capture"))
        status, headers, again = self.stripe.authorize(idempotency_key="same-key")
        self.assertEqual(status, 200)
        self.assertEqual(again["id"], first["id"], "one PaymentIntent, not two")
        self.assertEqual(headers.get("Idempotent-Replayed"), "true")
        # Without a key, or with another one, a request is new.
        _, _, other = self.stripe.authorize(idempotency_key="other-key")
        self.assertNotEqual(other["id"], first["id"])
        # A declined answer is saved and replayed too.
        status, _, declined = self.stripe.authorize("pm_card_visa_chargeDeclined", "declined")
        status2, _, again = self.stripe.authorize("pm_card_visa_chargeDeclined", "declined")
        self.assertEqual((status, status2), (402, 402))
        self.assertEqual(declined, again)

    def test_1_a_key_reused_with_other_parameters_is_refused(self):
        self.stripe.authorize(idempotency_key="reused", amount=1000)
        status, _, body = self.stripe.authorize(idempotency_key="reused", amount=2000)
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["type"], "idempotency_error")

    def test_1_keys_belong_to_one_account(self):
        _, _, mine = self.stripe.authorize(idempotency_key="account-key")
        _, _, theirs = self.stripe.authorize(idempotency_key="account-key",
                                             key="sk_test_anotheraccount01")
        self.assertNotEqual(mine["id"], theirs["id"])

    def test_1_a_refused_authentication_is_not_saved(self):
        status, _, _ = self.stripe.authorize(idempotency_key="auth-key", key="pk_wrong")
        self.assertEqual(status, 401)
        status, _, body = self.stripe.authorize(idempotency_key="auth-key")
        self.assertEqual((status, body["status"]), (200, "requires_capture"))

    def test_2_and_3_a_decline_is_a_card_error_with_the_cards_codes(self):
        cases = {
            "pm_card_visa_chargeDeclined": ("card_declined", "generic_decline"),
            "pm_card_chargeCustomerFail": ("card_declined", "generic_decline"),
            "pm_card_visa_chargeDeclinedInsufficientFunds": ("card_declined",
                                                             "insufficient_funds"),
            "pm_card_chargeDeclinedExpiredCard": ("expired_card", None),
        }
        for method, (code, decline_code) in cases.items():
            with self.subTest(method):
                status, _, body = self.stripe.authorize(method)
                self.assertEqual(status, 402)
                self.assertEqual(body["error"]["type"], "card_error")
                self.assertEqual(body["error"]["code"], code)
                self.assertEqual(body["error"].get("decline_code"), decline_code)

    def test_4_stripes_test_payment_methods_exist(self):
        status, _, body = self.stripe.authorize("pm_card_threeDSecure2Required")
        self.assertEqual((status, body["status"]), (200, "requires_action"))
        status, _, body = self.stripe.authorize("pm_card_visa")
        self.assertEqual((status, body["status"]), (200, "requires_capture"))

    def test_5_the_store_is_never_written_to_the_shared_file(self):
        path = "/tmp/localstripe.pickle"
        before = os.path.getmtime(path) if os.path.exists(path) else None
        self.stripe.authorize()
        after = os.path.getmtime(path) if os.path.exists(path) else None
        self.assertEqual(before, after)

    def test_injected_failures_answer_as_stripe_and_save_nothing(self):
        for status, kind in [(429, "rate_limit_error"), (503, "api_error")]:
            with self.subTest(status):
                code, _, _ = self.stripe.call("POST", "/_config/faults",
                                              json_body={"status": status, "count": 1})
                self.assertEqual(code, 200)
                code, headers, body = self.stripe.authorize(idempotency_key=f"fault-{status}")
                self.assertEqual((code, body["error"]["type"]), (status, kind))
                code, _, body = self.stripe.authorize(idempotency_key=f"fault-{status}")
                self.assertEqual((code, body["status"]), (200, "requires_capture"),
                                 "the retry with the same key goes through")
        code, _, _ = self.stripe.call("POST", "/_config/faults", json_body={"status": 418})
        self.assertEqual(code, 400)

    def test_latency_has_the_percentiles_asked_for(self):
        import random
        latency = stripe_server.Latency(300, 2000, rng=random.Random(7))
        samples = sorted(latency.sample() for _ in range(20000))
        self.assertAlmostEqual(samples[10000], 0.3, delta=0.03)
        self.assertAlmostEqual(samples[19800], 2.0, delta=0.25)
        with self.assertRaises(ValueError):
            stripe_server.Latency(2000, 300)

    def test_6_payment_intent_events_are_stripes_and_signed(self):
        receiver = Receiver()
        secret = "whsec_wrapperchecks"
        code, _, _ = self.stripe.call("POST", "/_config/webhooks/checks", json_body={
            "url": receiver.url, "secret": secret})
        self.assertEqual(code, 200)
        try:
            _, _, held = self.stripe.authorize()
            self.assertEqual(receiver.events_of(held["id"]),
                             ["payment_intent.amount_capturable_updated"])
            for success, event in [(True, "payment_intent.amount_capturable_updated"),
                                   (False, "payment_intent.payment_failed")]:
                _, _, pending = self.stripe.authorize("pm_card_threeDSecure2Required")
                time.sleep(1.5)
                self.assertEqual(receiver.events_of(pending["id"], deadline=0), [],
                                 "nothing is held while the shopper authenticates")
                status, _, _ = self.stripe.call(
                    "POST", f"/v1/payment_intents/{pending['id']}/_authenticate",
                    json_body={"client_secret": pending["client_secret"], "success": success})
                self.assertEqual(status, 200)
                self.assertEqual(receiver.events_of(pending["id"]), [event])
            status, _, _ = self.stripe.call("POST", f"/v1/payment_intents/{held['id']}/cancel", {})
            self.assertEqual(status, 200)
            deadline = time.time() + 10
            while len(receiver.events_of(held["id"])) < 2 and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual(receiver.events_of(held["id"]),
                             ["payment_intent.amount_capturable_updated",
                              "payment_intent.canceled"])
            for header, body in receiver.received:
                fields = dict(part.split("=", 1) for part in header.split(","))
                expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
                self.assertEqual(fields["v1"], expected)
        finally:
            receiver.server.shutdown()
            receiver.server.server_close()

    def test_capture_cancel_and_refund_are_stripes(self):
        _, _, intent = self.stripe.authorize()
        status, _, captured = self.stripe.call(
            "POST", f"/v1/payment_intents/{intent['id']}/capture", {})
        self.assertEqual((status, captured["status"]), (200, "succeeded"))
        status, _, refund = self.stripe.call("POST", "/v1/refunds",
                                             {"payment_intent": intent["id"]})
        self.assertEqual((status, refund["status"]), (200, "succeeded"))
        _, _, held = self.stripe.authorize()
        status, _, cancelled = self.stripe.call(
            "POST", f"/v1/payment_intents/{held['id']}/cancel", {})
        self.assertEqual((status, cancelled["status"]), (200, "canceled"))

    def test_7_refunds_never_give_back_more_than_is_left(self):
        _, _, intent = self.stripe.authorize(amount=1000)
        self.stripe.call("POST", f"/v1/payment_intents/{intent['id']}/capture", {})
        status, _, part = self.stripe.call(
            "POST", "/v1/refunds", {"payment_intent": intent["id"], "amount": 300})
        self.assertEqual((status, part["amount"]), (200, 300))
        status, _, refused = self.stripe.call(
            "POST", "/v1/refunds", {"payment_intent": intent["id"], "amount": 701})
        self.assertEqual(status, 400)
        self.assertEqual(refused["error"]["type"], "invalid_request_error")
        self.assertEqual(refused["error"]["param"], "amount")
        status, _, rest = self.stripe.call("POST", "/v1/refunds",
                                           {"payment_intent": intent["id"]})
        self.assertEqual((status, rest["amount"]), (200, 700), "what is left, not 1000")
        status, _, again = self.stripe.call("POST", "/v1/refunds",
                                            {"payment_intent": intent["id"]})
        self.assertEqual(status, 400)
        self.assertEqual(again["error"]["code"], "charge_already_refunded")
        status, _, listed = self.stripe.call(
            "GET", f"/v1/refunds?payment_intent={intent['id']}")
        self.assertEqual(sorted(r["amount"] for r in listed["data"]), [300, 700])


if __name__ == "__main__":
    unittest.main()
