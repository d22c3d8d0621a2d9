"""localstripe, a stateful Stripe emulator (PyPI `localstripe`), made to answer as Stripe
does where the payments function depends on it, and the one way this project starts it
(`shop local` and the end-to-end tests run this file).

Where localstripe differs from Stripe's documentation, the difference is fixed here, at
the wire, by aiohttp middleware around localstripe's own app; local/test_stripe_server.py
has a test per difference, and the file refuses to run on another localstripe version
than the one it was written for (`EXPECTED_LOCALSTRIPE`).

1. Idempotency-Key is ignored by localstripe: the same key made two PaymentIntents.
   Stripe saves the status and body of the first request made with a key and replays
   them (with `Idempotent-Replayed: true`) for any later request with the same key and
   the same parameters, for at least 24 hours; the same key with other parameters or
   another endpoint is refused with 400 `idempotency_error`; a request while another
   with the same key is still running gets 409. Keys are scoped to the API key.
   Stripe saves nothing for a request that never began executing (authentication
   failed, 409, 429); neither does this.
2. A declined card's answer: localstripe answers 402 with `type: invalid_request_error`
   and no `decline_code`. Stripe answers 402 with `type: card_error`, the card's `code`
   and the issuer's `decline_code`. Rewritten.
3. A declined card's reason: localstripe declines a charge only for 4000000000000341 and
   two 3-D Secure cards, always as `card_declined`; it declines the generic decline card
   4000000000000002 (`pm_card_visa_chargeDeclined`) only when it is attached to a
   customer, and authorizes a PaymentIntent with it. Stripe declines a charge on each of
   its decline test cards, with the card's own code and decline code (`DECLINES`, from
   Stripe's testing page). Patched: `PaymentMethod._charging_is_declined` answers for
   every card in `DECLINES`, and the middleware of difference 2 reads the card's codes.
4. Stripe's test PaymentMethod ids: localstripe knows `pm_card_visa`,
   `pm_card_visa_chargeDeclined` and `pm_card_chargeCustomerFail`; Stripe also has one
   per decline reason and 3-D Secure card (`TEST_PAYMENT_METHODS`). Patched:
   `PaymentMethod._try_get_canonical_test_article` makes those too.
6. Webhook events: localstripe sends `payment_intent.succeeded` only when money is
   captured, and nothing when a manual-capture PaymentIntent becomes capturable, when
   a 3-D Secure authentication fails or when a PaymentIntent is cancelled. Stripe sends
   `payment_intent.amount_capturable_updated` when an authorization is held (at
   confirmation, or once the shopper authenticated), `payment_intent.payment_failed`
   when the authentication fails and `payment_intent.canceled` on a cancel. Patched on
   localstripe's PaymentIntent (`patch_events`); localstripe signs and delivers them
   (`POST /_config/webhooks/{id}` registers an endpoint, as the Dashboard does).
7. Refunds beyond what is left: localstripe refunds the charge's whole amount when
   no amount is given, even after part refunds, and accepts a refund of more than is
   left, or of a charge refunded in full. Stripe refunds what is left when no amount is
   given and refuses more with 400 `invalid_request_error` (`charge_already_refunded`
   once nothing is left). Patched on localstripe's Refund (`patch_refunds`).
5. localstripe writes its whole store to /tmp/localstripe.pickle after every write and
   reloads it at start, so two emulators on one machine (parallel tests) overwrite each
   other's accounts and a restart resumes an old one. A Stripe account belongs to one
   shop: each emulator here keeps its store in memory, for its own life.

What Stripe does that no emulator does on its own, switched on for the tests that need
it:
- latency: `--latency-ms P50,P99` delays every API answer by a log-normal draw with
  those percentiles (`shop local --payment-latency`);
- failures: `POST /_config/faults {"status": 429|500|503, "count": N}` answers the next N
  API requests with that status and Stripe's error body (`rate_limit_error`,
  `api_error`), before they reach the emulator, so nothing is saved for their keys.

Usage:
  python local/stripe_server.py [-p PORT] [--ready-file FILE] [--latency-ms P50,P99]
      serves on 127.0.0.1; with -p 0 a free port is picked and `http://127.0.0.1:PORT`
      is written to FILE once the server listens.
"""

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import re
import socket
import sys
import time

from aiohttp import web

import localstripe
import localstripe.resources
import localstripe.server

# The localstripe every fix below was written and checked against
# (scripts/requirements.txt pins it).
EXPECTED_LOCALSTRIPE = "1.15.10"

# Stripe's decline test cards: number -> (code, decline_code).
DECLINES = {
    "4000000000000002": ("card_declined", "generic_decline"),
    "4000000000000341": ("card_declined", "generic_decline"),
    "4000000000009995": ("card_declined", "insufficient_funds"),
    "4000000000009987": ("card_declined", "lost_card"),
    "4000000000009979": ("card_declined", "stolen_card"),
    "4000000000000069": ("expired_card", None),
    "4000000000000127": ("incorrect_cvc", None),
    "4000000000000119": ("processing_error", None),
}

# Stripe's test PaymentMethod ids that localstripe does not know -> card number.
TEST_PAYMENT_METHODS = {
    "pm_card_visa_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_visa_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_visa_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_threeDSecure2Required": "4000000000003220",
    "pm_card_authenticationRequired": "4000002760003184",
}

# How long Stripe keeps a key's answer at least.
IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600

# The standard normal's 99th percentile.
Z99 = 2.326347874040841


def installed_version():
    from importlib.metadata import version
    return version("localstripe")


def api_key_of(request):
    """The account a request is made for (Stripe scopes idempotency keys to it)."""
    return request.headers.get("Authorization", "")


async def params_of(request):
    """What Stripe compares between a key's requests: the endpoint and its parameters."""
    body = await request.read()
    query = request.query_string
    digest = hashlib.sha256(
        b"\0".join([request.method.encode(), request.path.encode(), query.encode(), body]))
    return digest.hexdigest()


class Idempotency:
    """Difference 1: saves each key's first answer and replays it."""

    def __init__(self, clock=time.time):
        self.saved = {}
        self.running = set()
        self.clock = clock

    def _error(self, status, message):
        body = {"error": {"type": "idempotency_error", "message": message}}
        return web.json_response(body, status=status)

    @web.middleware
    async def middleware(self, request, handler):
        key = request.headers.get("Idempotency-Key")
        if key is None or not request.path.startswith("/v1/") or request.method != "POST":
            return await handler(request)
        scope = (api_key_of(request), key)
        fingerprint = await params_of(request)
        now = self.clock()
        saved = self.saved.get(scope)
        if saved is not None and now - saved["at"] > IDEMPOTENCY_WINDOW_SECONDS:
            del self.saved[scope]
            saved = None
        if saved is not None:
            if saved["fingerprint"] != fingerprint:
                return self._error(400, (
                    "Keys for idempotent requests can only be used with the same "
                    "parameters they were first used with."))
            response = web.Response(status=saved["status"], body=saved["body"],
                                    content_type="application/json")
            response.headers["Idempotent-Replayed"] = "true"
            response.headers["Idempotency-Key"] = key
            return response
        if scope in self.running:
            return self._error(409, (
                "There is currently another in-progress request using this "
                "Stripe-Idempotency-Key. Try again later."))
        self.running.add(scope)
        try:
            response = await handler(request)
        except web.HTTPException as e:
            response = e
        finally:
            self.running.discard(scope)
        if response.status not in (401, 409, 429) and not response.headers.get("X-Shop-Fault"):
            self.saved[scope] = {
                "fingerprint": fingerprint,
                "status": response.status,
                "body": response.body,
                "at": now,
            }
        response.headers["Idempotency-Key"] = key
        return response


def card_number_of_charge(charge_id):
    """The card number behind a failed charge, when it is a card."""
    try:
        charge = localstripe.resources.Charge._api_retrieve(charge_id)
        method = localstripe.resources.PaymentMethod._api_retrieve(charge.payment_method)
        return getattr(method, "_card_number", None)
    except Exception:  # noqa: BLE001 - any lookup failure leaves the generic reason
        return None


@web.middleware
async def card_errors(request, handler):
    """Differences 2 and 3: a declined card is a `card_error` with the card's codes."""
    response = await handler(request)
    if response.status != 402 or not isinstance(response, web.Response) or not response.body:
        return response
    try:
        body = json.loads(response.body)
    except ValueError:
        return response
    error = body.get("error")
    if not isinstance(error, dict):
        return response
    code, decline_code = DECLINES.get(card_number_of_charge(error.get("charge")),
                                      ("card_declined", "generic_decline"))
    error["type"] = "card_error"
    error["code"] = code
    if decline_code:
        error["decline_code"] = decline_code
    return web.json_response(body, status=402)


def patch_cards():
    """Differences 3 and 4, on localstripe's PaymentMethod."""
    method = localstripe.resources.PaymentMethod
    charging_is_declined = method._charging_is_declined
    canonical = method._try_get_canonical_test_article

    def declined(self):
        return (getattr(self, "type", None) == "card"
                and self._card_number in DECLINES) or charging_is_declined(self)

    def test_article(cls, id):
        number = TEST_PAYMENT_METHODS.get(id)
        if number is not None:
            return method(type="card", card={
                "number": number, "exp_month": "12", "exp_year": "2030", "cvc": "123"})
        return canonical.__func__(cls, id)

    method._charging_is_declined = declined
    method._try_get_canonical_test_article = classmethod(test_article)


def patch_refunds():
    """Difference 7, on localstripe's Refund: what is left of the charge bounds it."""
    resources = localstripe.resources
    refund = resources.Refund
    create = refund.__init__

    def bounded(self, charge=None, payment_intent=None, amount=None, **kwargs):
        target = charge
        if target is None and isinstance(payment_intent, str):
            try:
                intent = resources.PaymentIntent._api_retrieve(payment_intent)
                target = intent.latest_charge.id if intent.latest_charge else None
            except Exception:  # noqa: BLE001 - localstripe's own checks answer it below
                target = None
        if isinstance(target, str):
            try:
                charge_obj = resources.Charge._api_retrieve(target)
            except Exception:  # noqa: BLE001 - localstripe's own checks answer it below
                charge_obj = None
            if charge_obj is not None:
                left = charge_obj.amount - charge_obj.amount_refunded
                if left <= 0:
                    raise resources.UserError(
                        400, f"Charge {target} has already been refunded.",
                        {"code": "charge_already_refunded"})
                asked = resources.try_convert_to_int(amount) if amount is not None else left
                if isinstance(asked, int) and asked > left:
                    raise resources.UserError(
                        400, f"Refund amount ({asked}) is greater than unrefunded amount "
                             f"on charge ({left})", {"param": "amount"})
                amount = asked
        create(self, charge=charge, payment_intent=payment_intent, amount=amount, **kwargs)

    refund.__init__ = bounded


def send_event(kind, obj):
    resources = localstripe.resources
    resources.schedule_webhook(resources.Event(kind, obj))


def patch_events():
    """Difference 6, for an authorization held: localstripe's PaymentIntent makes its
    charge in `_create_charge` (at confirmation, and after a successful
    authentication)."""
    intent = localstripe.resources.PaymentIntent
    create_charge = intent._create_charge

    def held_when_capturable(self, on_failure_now):
        create_charge(self, on_failure_now)
        if self.capture_method == "manual" and self.status == "requires_capture":
            send_event("payment_intent.amount_capturable_updated", self)

    intent._create_charge = held_when_capturable


PAYMENT_INTENT_ACTION = re.compile(r"^/v1/payment_intents/(pi_[A-Za-z0-9]+)/(cancel|_authenticate)$")


@web.middleware
async def intent_events(request, handler):
    """Difference 6, for a failed authentication and a cancel: localstripe registered
    those endpoints' functions before this file could patch them, so their events are
    sent here, once the endpoint answered 200."""
    response = await handler(request)
    match = PAYMENT_INTENT_ACTION.match(request.path)
    if request.method != "POST" or match is None or response.status != 200:
        return response
    if response.headers.get("Idempotent-Replayed") == "true":
        return response
    obj = localstripe.resources.PaymentIntent._api_retrieve(match.group(1))
    if match.group(2) == "cancel":
        send_event("payment_intent.canceled", obj)
    elif obj._authentication_failed:
        send_event("payment_intent.payment_failed", obj)
    return response


class Faults:
    """Stripe's rate limits and server errors, on demand."""

    BODIES = {
        429: ("rate_limit_error", "Too many requests hit the API too quickly."),
        500: ("api_error", "An unknown error occurred"),
        502: ("api_error", "Bad gateway"),
        503: ("api_error", "Service unavailable"),
    }

    def __init__(self):
        self.status = None
        self.count = 0

    async def configure(self, request):
        data = await request.json()
        status, count = data.get("status"), data.get("count", 1)
        if status not in self.BODIES or not isinstance(count, int) or count < 0:
            return web.json_response(
                {"error": {"type": "invalid_request_error",
                           "message": f"status must be one of {sorted(self.BODIES)}"}},
                status=400)
        self.status, self.count = status, count
        return web.json_response({"status": status, "count": count})

    @web.middleware
    async def middleware(self, request, handler):
        if self.count > 0 and request.path.startswith("/v1/"):
            self.count -= 1
            kind, message = self.BODIES[self.status]
            response = web.json_response(
                {"error": {"type": kind, "message": message}}, status=self.status)
            response.headers["X-Shop-Fault"] = "injected"
            return response
        return await handler(request)


class Latency:
    """Stripe's answer times: a log-normal with the given median and 99th percentile."""

    def __init__(self, p50_ms, p99_ms, rng=None):
        if not 0 < p50_ms <= p99_ms:
            raise ValueError("latency needs 0 < P50 <= P99")
        self.mu = math.log(p50_ms / 1000)
        self.sigma = (math.log(p99_ms / 1000) - self.mu) / Z99
        self.rng = rng or random.Random()

    def sample(self):
        return math.exp(self.mu + self.sigma * self.rng.gauss(0, 1))

    @web.middleware
    async def middleware(self, request, handler):
        if request.path.startswith("/v1/"):
            await asyncio.sleep(self.sample())
        return await handler(request)


def in_memory_store():
    """Difference 5: no store file shared between emulators or kept across runs."""
    store = localstripe.resources.store
    store.clear()
    store.dump_to_disk = lambda: None
    store.try_load_from_disk = lambda: None


def check_version():
    found = installed_version()
    if found != EXPECTED_LOCALSTRIPE:
        sys.exit(f"local/stripe_server.py was written for localstripe {EXPECTED_LOCALSTRIPE}, "
                 f"found {found}: check every difference it fixes (local/test_stripe_server.py) "
                 "before changing EXPECTED_LOCALSTRIPE")


def build_app(latency=None):
    """localstripe's app with every fix: outermost the faults and latency a caller
    sees first, then idempotency (which saves what the emulator answered), then the
    card-error shape, then localstripe's own middleware."""
    in_memory_store()
    patch_cards()
    patch_events()
    patch_refunds()
    app = localstripe.server.app
    faults = Faults()
    idempotency = Idempotency()
    ours = [faults.middleware]
    if latency is not None:
        ours.append(latency.middleware)
    ours += [idempotency.middleware, intent_events, card_errors]
    for i, middleware in enumerate(ours):
        app.middlewares.insert(i, middleware)
    app.router.add_post("/_config/faults", faults.configure)
    return app


def parse_latency(text):
    if not text:
        return None
    p50, p99 = (float(x) for x in text.split(","))
    return Latency(p50, p99)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-p", "--port", type=int, default=8420)
    parser.add_argument("--ready-file")
    parser.add_argument("--latency-ms", help="P50,P99 in milliseconds")
    args = parser.parse_args(argv)
    check_version()
    app = build_app(parse_latency(args.latency_ms))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]

    async def serve():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        print(f"localstripe {installed_version()} (wrapped) on http://127.0.0.1:{port}",
              flush=True)
        if args.ready_file:
            with open(args.ready_file + ".tmp", "w", encoding="utf-8") as f:
                f.write(f"http://127.0.0.1:{port}")
            os.replace(args.ready_file + ".tmp", args.ready_file)
        await asyncio.Event().wait()

    asyncio.run(serve())

if __name__ == "__main__":
    main(sys.argv[1:])
