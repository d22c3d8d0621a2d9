//! Real money's path end to end: the stack as `shop local` runs it by default, paying
//! through the Stripe adapter against localstripe wrapped as Stripe answers. Each test
//! reads what Stripe holds (PaymentIntents, refunds) besides the order and the ledger.

use async_trait::async_trait;
use e2e::App;
use local_runtime::http_client::HttpClient;
use serde_json::Value;
use shop_domain::payment::{
    Authentication, Authorization, ChargeRequest, LedgerStatus, ProviderError, Released,
};
use shop_domain::ports::PaymentProvider;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn stripe_app() -> App {
    App::start_configured(|_| {}, &[("PaymentProvider", "stripe")]).await
}

/// A stack paying through Stripe whose captures Stripe refuses ([`CaptureRefused`]).
async fn stripe_app_refusing_captures() -> App {
    App::start_configured(
        |ports| ports.payments.provider = Arc::new(CaptureRefused(ports.payments.provider.clone())),
        &[("PaymentProvider", "stripe")],
    )
    .await
}

/// GET on the Stripe emulator with the key `shop local` gave the stack.
async fn stripe_get(app: &App, path: &str) -> Value {
    let url = app
        .stripe_url
        .as_deref()
        .expect("the stack pays through Stripe");
    let (status, _, body) = HttpClient::default()
        .send_with_headers(
            "GET",
            &format!("{url}{path}"),
            Vec::new(),
            &[(
                "authorization",
                &format!("Bearer {}", local_app::LOCAL_STRIPE_KEY),
            )],
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Every PaymentIntent Stripe holds for an order (by its metadata).
async fn intents_of(app: &App, order_id: &str) -> Vec<Value> {
    let all = stripe_get(app, "/v1/payment_intents").await;
    all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pi| pi["metadata"]["order_id"] == order_id)
        .cloned()
        .collect()
}

fn order_id(placed: &Value) -> String {
    placed["orderId"].as_str().expect("order id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmed_order_is_authorized_then_captured_exactly_once() {
    let app = stripe_app().await;
    let (r, placed) = app.place(&[("MUG", 2)], "pm_card_visa", None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = order_id(&placed);
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let ledger = app.ledger(&id).await.expect("a ledger record");
    assert_eq!(ledger.status, LedgerStatus::Captured);
    let intents = intents_of(&app, &id).await;
    assert_eq!(intents.len(), 1, "one PaymentIntent: {intents:?}");
    let intent = &intents[0];
    assert_eq!(ledger.charge_id.as_deref(), intent["id"].as_str());
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["capture_method"], "manual");
    assert_eq!(intent["amount"], order["total"]);
    assert_eq!(intent["latest_charge"]["captured"], true);
    let refunds = stripe_get(
        &app,
        &format!(
            "/v1/refunds?payment_intent={}",
            intent["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(refunds["data"].as_array().map(Vec::len), Some(0));
    let shipped_by = std::time::Instant::now() + Duration::from_secs(20);
    while !app.shipment_exists(&id).await {
        assert!(
            std::time::Instant::now() < shipped_by,
            "no shipment for {id}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_card_cancels_the_order_with_stripes_decline_code_and_holds_nothing() {
    let app = stripe_app().await;
    let (_, placed) = app
        .place(
            &[("MUG", 1)],
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            None,
        )
        .await;
    let id = order_id(&placed);
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert_eq!(order["cancelReason"], "PaymentDeclined", "{order}");
    let ledger = app.ledger(&id).await.expect("a ledger record");
    assert_eq!(ledger.status, LedgerStatus::Declined);
    assert_eq!(ledger.decline_code.as_deref(), Some("insufficient_funds"));
    let events = app.events().await;
    let declined: Vec<_> = App::for_order(&events, &id)
        .into_iter()
        .filter(|(t, _)| *t == "PaymentDeclined")
        .collect();
    assert!(!declined.is_empty(), "PaymentDeclined published");
    assert_eq!(declined[0].1["reason"], "insufficient_funds");
    let intents = intents_of(&app, &id).await;
    assert!(
        intents
            .iter()
            .all(|pi| pi["status"] == "requires_payment_method"),
        "nothing authorized: {intents:?}"
    );
    let mug = app.stock("MUG").await;
    assert_eq!(mug.reserved, 0, "the stock went back");
}

/// Stripe refuses every capture (as it does one of an authorization that expired).
struct CaptureRefused(Arc<dyn PaymentProvider>);

#[async_trait]
impl PaymentProvider for CaptureRefused {
    async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError> {
        self.0.authorize(request).await
    }
    async fn authentication(&self, payment_id: &str) -> Result<Authentication, ProviderError> {
        self.0.authentication(payment_id).await
    }
    async fn capture(&self, _: &str, _: &ChargeRequest) -> Result<(), ProviderError> {
        Err(ProviderError::Refused(
            "Stripe answered 400 (invalid_request_error, charge_expired_for_capture)".into(),
        ))
    }
    async fn release(
        &self,
        id: Option<&str>,
        request: &ChargeRequest,
    ) -> Result<Released, ProviderError> {
        self.0.release(id, request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_that_fails_after_authorization_is_voided_never_captured() {
    // GIVEN a stack whose captures Stripe refuses
    let app = stripe_app_refusing_captures().await;
    // WHEN an order's card is authorized and its capture refused
    let (_, placed) = app.place(&[("TEE", 1)], "pm_card_visa", None).await;
    let id = order_id(&placed);
    let order = app.wait_terminal(&id, WAIT).await;
    // THEN the order is cancelled and the authorization voided: no capture, no refund
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert_eq!(order["cancelReason"], "PaymentRefused", "{order}");
    let intents = intents_of(&app, &id).await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["status"], "canceled", "{intents:?}");
    assert_eq!(intents[0]["latest_charge"]["captured"], false);
    assert_eq!(app.ledger(&id).await.unwrap().status, LedgerStatus::Voided);
    assert_eq!(app.stock("TEE").await.reserved, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_payment_method_travels_in_the_saga_its_queues_or_its_events() {
    // GIVEN a confirmed order and one whose capture is refused (compensated)
    let app = stripe_app_refusing_captures().await;
    let (_, placed) = app.place(&[("MUG", 1)], "pm_card_visa", None).await;
    let id = order_id(&placed);
    assert_eq!(app.wait_terminal(&id, WAIT).await["status"], "CANCELLED");
    // THEN the execution's input and history, every message any function received,
    // every event and the compensation work queue name the order, never its method
    let seen = everything_the_order_left(&app, &id).await;
    let leaks: Vec<_> = seen.iter().filter(|s| s.contains("pm_card")).collect();
    assert!(leaks.is_empty(), "payment method found: {leaks:?}");
    // The payments service's own table keeps it, for a charge of unknown outcome.
    assert_eq!(
        app.ledger(&id).await.unwrap().payment_method.as_deref(),
        Some("pm_card_visa")
    );
}

/// What an order's saga left where operators and other services read: its
/// execution's inputs, outputs, parameters and causes (read field by field: the SDK's
/// Debug redacts them), every message any function received, every event, and the
/// compensation work queue.
async fn everything_the_order_left(app: &App, id: &str) -> Vec<String> {
    let history = execution_history(app, id).await;
    let mut seen: Vec<String> = Vec::new();
    for e in history.events() {
        seen.extend(
            [
                e.execution_started_event_details().and_then(|d| d.input()),
                e.state_entered_event_details().and_then(|d| d.input()),
                e.state_exited_event_details().and_then(|d| d.output()),
                e.task_scheduled_event_details().map(|d| d.parameters()),
                e.task_succeeded_event_details().and_then(|d| d.output()),
                e.task_failed_event_details().and_then(|d| d.cause()),
                e.execution_succeeded_event_details()
                    .and_then(|d| d.output()),
            ]
            .into_iter()
            .flatten()
            .map(str::to_owned),
        );
    }
    assert!(seen.iter().any(|e| e.contains(id)), "the history is read");
    for function in app.stack.functions.keys() {
        seen.extend(app.recording_bodies(function));
    }
    seen.extend(app.events().await.iter().map(Value::to_string));
    seen.extend(
        app.drain("CompensationQueue")
            .await
            .iter()
            .map(Value::to_string),
    );
    seen
}

/// What the shopper's browser sees while the issuer asks for authentication: the
/// order in `PAYMENT_ACTION_REQUIRED`, and the PaymentIntent id and client secret
/// from its `paymentAction`.
async fn action_required(app: &App, id: &str) -> (Value, String, String) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = app
            .http("GET", &format!("/v1/orders/{id}"), &[], None)
            .await;
        let order: Value = serde_json::from_str(&r.body).unwrap();
        if order["status"] == "PAYMENT_ACTION_REQUIRED" {
            let secret = order["paymentAction"]["clientSecret"]
                .as_str()
                .expect("the owner sees the client secret")
                .to_owned();
            let intent = secret.split("_secret_").next().unwrap().to_owned();
            return (order, intent, secret);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never asked to authenticate: {order}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Places an order paid with Stripe's 3-D Secure test card and waits until its owner
/// is asked to authenticate and the saga waits in `AwaitAuthentication`: the order as
/// its owner reads it, its id, the PaymentIntent and the client secret.
async fn awaiting_3d_secure(app: &App, sku: &str) -> (Value, String, String, String) {
    let (_, placed) = app
        .place(&[(sku, 1)], "pm_card_threeDSecure2Required", None)
        .await;
    let id = order_id(&placed);
    let (order, intent, secret) = action_required(app, &id).await;
    app.wait_consumed("PaymentsFunction", "AwaitAuthentication")
        .await;
    (order, id, intent, secret)
}

/// What Stripe.js does in the shopper's browser with the client secret: the issuer's
/// authentication, passed or failed (localstripe's stand-in for the 3-D Secure page).
async fn authenticate(app: &App, intent: &str, secret: &str, success: bool) {
    let (status, answer) = try_authenticate(app, intent, secret, success).await;
    assert_eq!(status, 200, "{answer}");
}

/// Stripe's answer to an authentication attempt: its status and body.
async fn try_authenticate(app: &App, intent: &str, secret: &str, success: bool) -> (u16, String) {
    let url = app.stripe_url.as_deref().unwrap();
    let body = serde_json::json!({ "client_secret": secret, "success": success });
    let (status, _, answer) = HttpClient::default()
        .send_with_headers(
            "POST",
            &format!("{url}/v1/payment_intents/{intent}/_authenticate"),
            body.to_string().into_bytes(),
            &[(
                "authorization",
                &format!("Bearer {}", local_app::LOCAL_STRIPE_KEY),
            )],
        )
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&answer).into_owned())
}

/// Delivers `body` to the webhook route as Stripe would, signed with `secret` at `at`.
async fn deliver(app: &App, body: &str, secret: &str, at: i64) -> (u16, Value) {
    let signature = stripe_webhook::signature::sign(
        body.as_bytes(),
        &stripe_webhook::signature::SigningSecret::new(secret),
        at,
    );
    let r = app
        .http_raw(
            "POST",
            "/v1/webhooks/stripe",
            &[
                ("content-type", "application/json"),
                ("stripe-signature", &signature),
            ],
            Some(body),
        )
        .await;
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// An event about an order's PaymentIntent, as Stripe sends it.
fn intent_event(event_id: &str, kind: &str, intent: &str, order: &str) -> String {
    serde_json::json!({
        "id": event_id,
        "object": "event",
        "type": kind,
        "data": {"object": {"id": intent, "object": "payment_intent", "metadata": {"order_id": order}}},
    })
    .to_string()
}

/// The order's saga execution history, every event of it.
async fn execution_history(
    app: &App,
    id: &str,
) -> aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput {
    let arn = shop_aws::saga::execution_arn(&app.stack.state_machines["OrderSaga"], id);
    aws_sdk_sfn::Client::new(&app.sdk)
        .get_execution_history()
        .execution_arn(&arn)
        .max_results(1000)
        .send()
        .await
        .unwrap()
}

/// How many times the saga's AwaitAuthentication step was answered.
async fn authentication_answers(app: &App, id: &str) -> usize {
    let history = execution_history(app, id).await;
    let mut in_step = false;
    let mut answers = 0;
    for e in history.events() {
        if let Some(d) = e.state_entered_event_details() {
            in_step = d.name() == "AwaitAuthentication";
        }
        if in_step
            && (e.task_succeeded_event_details().is_some()
                || e.task_failed_event_details().is_some())
        {
            answers += 1;
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_3d_secure_order_waits_for_the_shopper_and_confirms_when_the_webhook_says_so() {
    let app = stripe_app().await;
    // GIVEN an order paid with a card whose issuer asks for 3-D Secure
    // THEN its owner is asked to authenticate, and nothing is held meanwhile
    let (order, id, intent, secret) = awaiting_3d_secure(&app, "MUG").await;
    assert_eq!(
        app.ledger(&id).await.unwrap().status,
        LedgerStatus::AwaitingAuthentication
    );
    assert_eq!(
        stripe_get(&app, &format!("/v1/payment_intents/{intent}")).await["status"],
        "requires_action"
    );
    let listed = app.http("GET", "/v1/orders", &[], None).await;
    assert!(
        !listed.body.contains(&secret),
        "a listing never shows the secret"
    );
    let stranger = app
        .http_as(
            "someone-else",
            "GET",
            &format!("/v1/orders/{id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(stranger.status, 404, "nor does another shopper's read");
    // WHEN the shopper authenticates in the browser
    authenticate(&app, &intent, &secret, true).await;
    // THEN Stripe's webhook settles the payment: confirmed, captured once, secret gone
    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "CONFIRMED", "{done}");
    assert!(done.get("paymentAction").is_none(), "{done}");
    let statuses: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["status"].as_str())
        .collect();
    assert!(
        statuses.contains(&"PAYMENT_ACTION_REQUIRED"),
        "{statuses:?}"
    );
    let intents = intents_of(&app, &id).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["status"], "succeeded");
    assert_eq!(intents[0]["latest_charge"]["captured"], true);
    assert_eq!(intents[0]["latest_charge"]["amount"], order["total"]);
    assert_eq!(
        app.ledger(&id).await.unwrap().status,
        LedgerStatus::Captured
    );
    let settled = app.recording_bodies("PaymentsFunction");
    assert!(
        settled
            .iter()
            .any(|b| b.contains("SettleAuthentication") && b.contains(&id)),
        "the webhook's event reached the payments function"
    );
    assert_eq!(authentication_answers(&app, &id).await, 1);
    // The client secret and the payment method stayed out of the saga, its queues and
    // its events.
    let leaks: Vec<_> = everything_the_order_left(&app, &id)
        .await
        .into_iter()
        .filter(|s| s.contains(&secret) || s.contains("pm_card"))
        .collect();
    assert!(leaks.is_empty(), "a payment secret found: {leaks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_3d_secure_cancels_the_order_and_leaves_nothing_to_confirm() {
    let app = stripe_app().await;
    let (_, id, intent, secret) = awaiting_3d_secure(&app, "TEE").await;
    authenticate(&app, &intent, &secret, false).await;
    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["cancelReason"], "PaymentDeclined", "{done}");
    assert!(done.get("paymentAction").is_none());
    let ledger = app.ledger(&id).await.unwrap();
    assert_eq!(ledger.status, LedgerStatus::Declined);
    assert_eq!(
        ledger.decline_code.as_deref(),
        Some("payment_intent_authentication_failure")
    );
    // Cancelled at Stripe: the browser cannot confirm it with another card later.
    assert_eq!(
        stripe_get(&app, &format!("/v1/payment_intents/{intent}")).await["status"],
        "canceled"
    );
    assert_eq!(app.stock("TEE").await.reserved, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_3d_secure_is_voided_at_its_deadline_and_the_order_cancelled() {
    let app = App::start_configured(
        |_| {},
        &[
            ("PaymentProvider", "stripe"),
            ("PaymentAuthenticationTimeoutSeconds", "60"),
        ],
    )
    .await;
    let (_, id, intent, secret) = awaiting_3d_secure(&app, "MUG").await;
    // The shopper never authenticates: past the deadline the order is cancelled
    let done = app.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["cancelReason"], "States.Timeout", "{done}");
    assert!(done.get("paymentAction").is_none());
    assert_eq!(app.ledger(&id).await.unwrap().status, LedgerStatus::Voided);
    assert_eq!(app.stock("MUG").await.reserved, 0);
    // and the PaymentIntent cancelled: a late authentication holds nothing
    assert_eq!(
        stripe_get(&app, &format!("/v1/payment_intents/{intent}")).await["status"],
        "canceled"
    );
    let (late, _) = try_authenticate(&app, &intent, &secret, true).await;
    assert_eq!(
        late, 400,
        "Stripe refuses to authenticate a cancelled payment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_stale_webhooks_change_nothing_and_a_duplicate_has_one_effect() {
    let app = stripe_app().await;
    let (_, id, intent, secret) = awaiting_3d_secure(&app, "MUG").await;
    let claim = intent_event(
        "evt_forged",
        "payment_intent.amount_capturable_updated",
        &intent,
        &id,
    );
    // A forged event (another secret) and a replayed one (signed an hour ago) are
    // refused with a problem and change nothing.
    for (secret, at) in [
        ("whsec_forger_0000000000000000", unix_now()),
        (local_app::LOCAL_STRIPE_WEBHOOK_SECRET, unix_now() - 3600),
    ] {
        let (status, problem) = deliver(&app, &claim, secret, at).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(
            problem["type"],
            "https://order-saga.example/problems/webhook-signature-invalid"
        );
    }
    // Even a genuine event does not make the payment held: Stripe is asked.
    let (status, _) = deliver(
        &app,
        &claim,
        local_app::LOCAL_STRIPE_WEBHOOK_SECRET,
        unix_now(),
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let order = app
        .http("GET", &format!("/v1/orders/{id}"), &[], None)
        .await;
    assert!(
        order.body.contains("PAYMENT_ACTION_REQUIRED"),
        "{}",
        order.body
    );
    assert_eq!(
        app.ledger(&id).await.unwrap().status,
        LedgerStatus::AwaitingAuthentication
    );
    // WHEN the shopper authenticates and the same event arrives three more times
    authenticate(&app, &intent, &secret, true).await;
    let genuine = intent_event(
        "evt_duplicated",
        "payment_intent.amount_capturable_updated",
        &intent,
        &id,
    );
    for _ in 0..3 {
        let (status, answer) = deliver(
            &app,
            &genuine,
            local_app::LOCAL_STRIPE_WEBHOOK_SECRET,
            unix_now(),
        )
        .await;
        assert_eq!((status, &answer["settling"]), (200, &Value::Bool(true)));
    }
    // THEN the order is confirmed once, captured once, its step answered once
    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "CONFIRMED", "{done}");
    let intents = intents_of(&app, &id).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["latest_charge"]["captured"], true);
    assert_eq!(intents[0]["latest_charge"]["amount"], done["total"]);
    assert_eq!(authentication_answers(&app, &id).await, 1);
    let confirmed = App::for_order(&app.events().await, &id)
        .into_iter()
        .filter(|(t, _)| *t == "OrderConfirmed")
        .count();
    assert_eq!(confirmed, 1);
}
