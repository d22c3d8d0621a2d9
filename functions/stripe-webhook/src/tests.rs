use super::*;
use shop_domain::ports::PortError;
use std::sync::Mutex;

const SECRET: &str = "whsec_unit_0123456789abcdef";

#[derive(Default)]
struct Settlements {
    asked: Mutex<Vec<(OrderId, String)>>,
    down: Mutex<bool>,
}

#[async_trait::async_trait]
impl PaymentSettlements for Settlements {
    async fn settle(&self, order_id: &OrderId, event_id: &str) -> Result<(), PortError> {
        if *self.down.lock().unwrap() {
            return Err(PortError::new("payments.settle", "queue unavailable"));
        }
        self.asked
            .lock()
            .unwrap()
            .push((order_id.clone(), event_id.to_owned()));
        Ok(())
    }
}

/// The secret store; counts reads.
struct Secret(Mutex<(String, usize)>);

#[async_trait::async_trait]
impl SecretSource for Secret {
    async fn read(&self) -> Result<SigningSecret, BoxError> {
        let mut held = self.0.lock().unwrap();
        held.1 += 1;
        Ok(SigningSecret::new(held.0.clone()))
    }
}

struct Fixture {
    webhook: StripeWebhook,
    settlements: Arc<Settlements>,
    secret: Arc<Secret>,
}

async fn fixture() -> Fixture {
    let config = shop_aws::settings::with_pairs(
        &[
            ("AWS_LAMBDA_FUNCTION_NAME", "shop-StripeWebhookFunction"),
            ("PAYMENTS_QUEUE_URL", "https://sqs/payments"),
            ("STRIPE_WEBHOOK_SECRET", "arn:secret"),
        ],
        Config::from_env,
    )
    .unwrap();
    assert_eq!(config.tolerance, Duration::from_secs(300));
    let settlements = Arc::new(Settlements::default());
    let secret = Arc::new(Secret(Mutex::new((SECRET.into(), 0))));
    let webhook = StripeWebhook::new(
        &config,
        Ports {
            settlements: settlements.clone(),
            secret: secret.clone(),
        },
    )
    .await
    .unwrap();
    Fixture {
        webhook,
        settlements,
        secret,
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn event(kind: &str, order: &OrderId) -> String {
    json!({
        "id": "evt_1",
        "object": "event",
        "type": kind,
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "metadata": {"order_id": order}}}
    })
    .to_string()
}

fn delivery(body: &str, signature: Option<String>) -> ApiGatewayV2httpRequest {
    let mut request = ApiGatewayV2httpRequest::default();
    request.body = Some(body.to_owned());
    if let Some(signature) = signature {
        request
            .headers
            .insert("stripe-signature", signature.parse().unwrap());
    }
    request
}

fn signed(body: &str, secret: &str, at: i64) -> ApiGatewayV2httpRequest {
    delivery(
        body,
        Some(signature::sign(
            body.as_bytes(),
            &SigningSecret::new(secret),
            at,
        )),
    )
}

fn answer(response: &ApiGatewayV2httpResponse) -> (i64, String, Value) {
    let body = match &response.body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("{other:?}"),
    };
    let content_type = response.headers["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (response.status_code, content_type, body)
}

#[tokio::test]
async fn a_signed_event_about_an_orders_payment_is_handed_to_payments_once() {
    let f = fixture().await;
    let order = OrderId::generate();
    for kind in EVENTS {
        let reply = f
            .webhook
            .handle(signed(&event(kind, &order), SECRET, now()))
            .await;
        assert_eq!(answer(&reply).0, 200, "{kind}");
        assert_eq!(answer(&reply).2["settling"], true);
    }
    assert_eq!(
        f.settlements.asked.lock().unwrap().as_slice(),
        [
            (order.clone(), "evt_1".to_string()),
            (order.clone(), "evt_1".to_string()),
            (order.clone(), "evt_1".to_string())
        ]
    );
    // A text body API Gateway base64-encoded is verified over its raw bytes.
    let body = event(EVENTS[0], &order);
    let mut encoded = signed(&body, SECRET, now());
    encoded.body = Some(base64::engine::general_purpose::STANDARD.encode(&body));
    encoded.is_base64_encoded = true;
    assert_eq!(answer(&f.webhook.handle(encoded).await).0, 200);
}

#[tokio::test]
async fn forged_stale_and_unsigned_deliveries_are_refused_and_change_nothing() {
    let f = fixture().await;
    let body = event(EVENTS[0], &OrderId::generate());
    for request in [
        signed(&body, "whsec_forger_000000000000", now()),
        signed(&body, SECRET, now() - 301),
        delivery(&body, None),
        delivery(&body, Some("t=1,v1=nothex".into())),
    ] {
        let (status, content_type, problem) = answer(&f.webhook.handle(request).await);
        assert_eq!(status, 400);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(
            problem["type"],
            "https://order-saga.example/problems/webhook-signature-invalid"
        );
    }
    assert!(f.settlements.asked.lock().unwrap().is_empty());
    assert_eq!(
        f.secret.0.lock().unwrap().1,
        2,
        "read at start and once again after the first mismatch, not on every forgery"
    );
}

#[tokio::test]
async fn a_rolled_secret_is_read_again_and_the_previous_one_still_verifies() {
    let f = fixture().await;
    f.secret.0.lock().unwrap().0 = "whsec_rolled_00000000000".into();
    let order = OrderId::generate();
    let body = event(EVENTS[1], &order);
    let reply = f
        .webhook
        .handle(signed(&body, "whsec_rolled_00000000000", now()))
        .await;
    assert_eq!(answer(&reply).0, 200);
    let reply = f.webhook.handle(signed(&body, SECRET, now())).await;
    assert_eq!(answer(&reply).0, 200, "a delivery signed before the roll");
    assert_eq!(f.settlements.asked.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn other_events_are_acknowledged_and_ignored_and_a_queue_failure_asks_stripe_again() {
    let f = fixture().await;
    let order = OrderId::generate();
    let ignored = [
        event("customer.created", &order),
        json!({"id": "evt_2", "type": EVENTS[0], "data": {"object": {"metadata": {}}}}).to_string(),
    ];
    for body in ignored {
        let reply = f.webhook.handle(signed(&body, SECRET, now())).await;
        assert_eq!(answer(&reply).0, 200);
        assert_eq!(answer(&reply).2["settling"], false);
    }
    assert!(f.settlements.asked.lock().unwrap().is_empty());
    let reply = f.webhook.handle(signed("not json", SECRET, now())).await;
    assert_eq!(answer(&reply).0, 400);
    *f.settlements.down.lock().unwrap() = true;
    let reply = f
        .webhook
        .handle(signed(&event(EVENTS[0], &order), SECRET, now()))
        .await;
    let (status, _, problem) = answer(&reply);
    assert_eq!(status, 503, "Stripe retries a 5xx");
    assert_eq!(
        problem["type"],
        "https://order-saga.example/problems/service-unavailable"
    );
}

#[test]
fn every_answer_is_documented_in_the_openapi_document() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/orders-api.yaml"
    ))
    .unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    let documented: Vec<&str> =
        doc["components"]["schemas"]["WebhookProblem"]["properties"]["type"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
    for slug in PROBLEMS {
        assert!(
            documented.contains(&format!("{TYPE_BASE}{slug}").as_str()),
            "{slug}"
        );
    }
    assert_eq!(documented.len(), PROBLEMS.len());
    let operation = &doc["paths"]["/v1/webhooks/stripe"]["post"];
    assert_eq!(operation["security"], json!([]), "no JWT on Stripe's route");
    for status in ["200", "400", "503"] {
        assert!(operation["responses"][status].is_object(), "{status}");
    }
}

#[tokio::test]
async fn a_delivery_is_one_span_tree_of_its_own() {
    use observability::traces::testing::{attribute, invoke, named};
    let f = fixture().await;
    let delivery = signed(&event(EVENTS[0], &OrderId::generate()), SECRET, now());
    let (reply, spans) = invoke("shop-StripeWebhookFunction", delivery, |d| {
        f.webhook.handle(d)
    })
    .await;
    assert_eq!(answer(&reply).0, 200);
    let invocation = named(&spans, "shop-StripeWebhookFunction");
    assert_eq!(
        attribute(invocation, "faas.trigger").as_deref(),
        Some("http")
    );
    assert_eq!(
        invocation.parent_span_id,
        opentelemetry::trace::SpanId::INVALID,
        "Stripe sends no trace context"
    );
    let handled = named(&spans, "event");
    assert_eq!(handled.parent_span_id, invocation.span_context.span_id());
    assert_eq!(attribute(handled, "event_id").as_deref(), Some("evt_1"));
}
