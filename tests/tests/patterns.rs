//! The serverless patterns on the emulator: the express priority lane, and how a saga
//! command's time in its queue, its work and the order's deadline end.

use async_trait::async_trait;
use e2e::{App, AppPorts, SHOPPER};
use serde_json::Value;
use shop_domain::payment::{
    Authentication, Authorization, ChargeRequest, LedgerStatus, ProviderError, Released,
};
use shop_domain::ports::{
    PaymentProvider, PortError, ReleaseOutcome, ReserveOutcome, StockLevel, StockStore,
    TaskCallbacks,
};
use shop_domain::{OrderId, OrderLine, Sku};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn order_id(placed: &Value) -> String {
    placed["orderId"].as_str().expect("order id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn express_orders_have_their_own_lane_and_consumer_concurrency() {
    let app = App::start().await;
    // The runner honours each event source's ScalingConfig.MaximumConcurrency.
    let intake = &app.stack.functions["OrderIntakeFunction"];
    let mut lanes: Vec<_> = intake
        .sqs_sources
        .iter()
        .map(|s| (s.queue.as_str(), s.max_concurrency))
        .collect();
    lanes.sort();
    assert_eq!(lanes, [("ExpressOrdersQueue", 2), ("OrdersQueue", 5)]);
    // An express order is accepted, marked and confirmed.
    let body = r#"{"currency":"EUR","paymentToken":"tok_visa","express":true,"lines":[{"sku":"MUG","quantity":1}]}"#;
    let r = app
        .http(
            "POST",
            "/v1/orders",
            &[("content-type", "application/json")],
            Some(body),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = order_id(&serde_json::from_str(&r.body).unwrap());
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(
        (order["status"].as_str(), order["express"].as_bool()),
        (Some("CONFIRMED"), Some(true))
    );
    // A wrongly typed express flag is refused with the field named.
    let bad = body.replace("\"express\":true", "\"express\":\"yes\"");
    let r = app
        .http(
            "POST",
            "/v1/orders",
            &[("content-type", "application/json")],
            Some(&bad),
        )
        .await;
    assert!(matches!(r.status, 400 | 422), "{} {}", r.status, r.body);
    assert!(r.body.contains("express"), "{}", r.body);
}

/// The first charge attempt of each order takes `delay`: a slow but healthy provider.
struct SlowFirstCharge {
    inner: Arc<dyn PaymentProvider>,
    delay: Duration,
    seen: Mutex<HashSet<String>>,
}

#[async_trait]
impl PaymentProvider for SlowFirstCharge {
    async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError> {
        let first = self
            .seen
            .lock()
            .unwrap()
            .insert(request.idempotency_key.clone());
        if first {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.authorize(request).await
    }
    async fn authentication(&self, payment_id: &str) -> Result<Authentication, ProviderError> {
        self.inner.authentication(payment_id).await
    }
    async fn capture(&self, id: &str, request: &ChargeRequest) -> Result<(), ProviderError> {
        self.inner.capture(id, request).await
    }
    async fn release(
        &self,
        id: Option<&str>,
        request: &ChargeRequest,
    ) -> Result<Released, ProviderError> {
        self.inner.release(id, request).await
    }
}

/// Crashes the worker at its first receipt of a saga command, before anything else:
/// the message comes back after the queue's visibility timeout, as after a Lambda
/// that died or a queue that held it that long.
struct FirstReceiptCrashes {
    inner: Arc<dyn TaskCallbacks>,
    /// The token whose receipt crashed, once it did.
    crashed: Arc<Mutex<Option<String>>>,
    /// Every token answered, success or failure.
    answered: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl TaskCallbacks for FirstReceiptCrashes {
    async fn succeed(&self, token: &str, output: &Value) -> Result<bool, PortError> {
        self.answered.lock().unwrap().push(token.to_owned());
        self.inner.succeed(token, output).await
    }
    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<bool, PortError> {
        self.answered.lock().unwrap().push(token.to_owned());
        self.inner.fail(token, error, cause).await
    }
    async fn heartbeat(&self, token: &str) -> Result<bool, PortError> {
        {
            let mut crashed = self.crashed.lock().unwrap();
            if crashed.is_none() {
                *crashed = Some(token.to_owned());
                drop(crashed);
                panic!("the worker dies at its first receipt");
            }
        }
        self.inner.heartbeat(token).await
    }
}

/// The first Reserve of each order crashes inside the stock port, holding nothing.
struct FirstReserveCrashes {
    inner: Arc<dyn StockStore>,
    crashed: AtomicBool,
}

#[async_trait]
impl StockStore for FirstReserveCrashes {
    async fn reserve(
        &self,
        order_id: &OrderId,
        lines: &[OrderLine],
    ) -> Result<ReserveOutcome, PortError> {
        if !self.crashed.swap(true, Ordering::SeqCst) {
            panic!("the worker dies before reserving");
        }
        self.inner.reserve(order_id, lines).await
    }
    async fn release(
        &self,
        order_id: &OrderId,
        lines: &[OrderLine],
    ) -> Result<ReleaseOutcome, PortError> {
        self.inner.release(order_id, lines).await
    }
    async fn restock(&self, sku: &Sku, quantity: u32) -> Result<StockLevel, PortError> {
        self.inner.restock(sku, quantity).await
    }
    async fn level(&self, sku: &Sku) -> Result<Option<StockLevel>, PortError> {
        self.inner.level(sku).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_charge_within_its_work_time_is_not_timed_out() {
    // GIVEN a provider that takes 20 s over an order's first charge (the old charge
    // step timed out after 20 s without a heartbeat), and 25 s of work allowed once a
    // command is picked up
    let app = App::start_configured(
        |ports: &mut AppPorts| {
            ports.payments.provider = Arc::new(SlowFirstCharge {
                inner: ports.payments.provider.clone(),
                delay: Duration::from_secs(20),
                seen: Mutex::default(),
            });
        },
        &[
            ("PaymentProviderTimeoutMs", "25000"),
            ("CommandWorkSeconds", "25"),
        ],
    )
    .await;
    let (_, placed) = app.place(&[("MUG", 1)], "tok_visa", None).await;
    let id = order_id(&placed);
    // THEN the order is confirmed, charged once
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(
        app.ledger(&id).await.unwrap().status,
        LedgerStatus::Captured
    );
    let order_id = OrderId::parse(&id).unwrap();
    assert_eq!(app.sandbox().net_captured(&order_id), 1250);
    assert_eq!(
        app.sandbox().attempts(&order_id),
        1,
        "one call, never timed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_delivered_after_its_saga_gave_up_is_not_executed() {
    // GIVEN an order that may wait 15 s, steps that time out 1 s after that, and a
    // payments worker that dies on its first receipt, so the Authorize comes back 30 s
    // later, after its step timed out
    let (crashed, answered) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(Vec::new())));
    let (crashed_in, answered_in) = (crashed.clone(), answered.clone());
    let app = App::start_configured(
        move |ports: &mut AppPorts| {
            ports.payments.callbacks = Arc::new(FirstReceiptCrashes {
                inner: ports.payments.callbacks.clone(),
                crashed: crashed_in.clone(),
                answered: answered_in.clone(),
            });
        },
        &[
            ("MaxOrderWaitSeconds", "15"),
            ("CommandWorkSeconds", "1"),
            ("PaymentsQueueVisibilityTimeout", "30"),
        ],
    )
    .await;
    let (_, placed) = app.place(&[("MUG", 2)], "tok_visa", None).await;
    let id = order_id(&placed);
    // THEN the saga times the charge out and compensates
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert_eq!(order["cancelReason"], "States.Timeout", "{order}");
    // AND the Authorize, delivered again after that, never reached the provider
    let deliveries = || {
        app.recording_bodies("PaymentsFunction")
            .iter()
            .filter(|b| b.contains("\"Authorize\"") && b.contains(&id))
            .count()
    };
    let redelivered = std::time::Instant::now();
    while deliveries() < 2 && redelivered.elapsed() < Duration::from_secs(45) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        deliveries(),
        2,
        "the Authorize came back after its step timed out"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let charge_token = crashed
        .lock()
        .unwrap()
        .clone()
        .expect("the first receipt crashed");
    assert!(
        !answered.lock().unwrap().contains(&charge_token),
        "the stale Authorize was dropped at its receipt, never answered"
    );
    let order_id = OrderId::parse(&id).unwrap();
    assert_eq!(app.sandbox().attempts(&order_id), 0, "no provider call");
    assert_eq!(app.sandbox().net_captured(&order_id), 0);
    assert_eq!(app.ledger(&id).await.unwrap().status, LedgerStatus::Voided);
    let mug = app.stock("MUG").await;
    assert_eq!((mug.available, mug.reserved), (100, 0));
    assert!(
        app.drain("PaymentsDLQ").await.is_empty(),
        "dropped, not dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_that_waits_past_the_shops_limit_is_cancelled_for_it_and_never_charged() {
    // GIVEN a shop that lets an order wait 3 s, and an inventory worker that dies on
    // its first Reserve, so the command is picked up again 4 s later
    let app = App::start_configured(
        |ports: &mut AppPorts| {
            ports.inventory.stock = Arc::new(FirstReserveCrashes {
                inner: ports.inventory.stock.clone(),
                crashed: AtomicBool::new(false),
            });
        },
        &[("MaxOrderWaitSeconds", "3"), ("CommandWorkSeconds", "10")],
    )
    .await;
    let (_, placed) = app.place(&[("MUG", 2)], "tok_visa", None).await;
    let id = order_id(&placed);
    // THEN the order is cancelled for waiting too long, with nothing held or charged
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(
        (order["status"].as_str(), order["cancelReason"].as_str()),
        (Some("CANCELLED"), Some("OrderExpired")),
        "{order}"
    );
    let order_id = OrderId::parse(&id).unwrap();
    assert_eq!(app.sandbox().attempts(&order_id), 0);
    assert_eq!(app.sandbox().net_captured(&order_id), 0);
    let mug = app.stock("MUG").await;
    assert_eq!((mug.available, mug.reserved), (100, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_resolve_on_the_stage_the_api_is_served_on() {
    // GIVEN the template's `$default` stage: links are paths from the root
    let root = App::start().await;
    let (r, placed) = root.place(&[("MUG", 1)], "tok_visa", None).await;
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(location, format!("/v1/orders/{}", order_id(&placed)));
    assert_eq!(root.http("GET", &location, &[], None).await.status, 200);

    // GIVEN the same API on a named stage: API Gateway serves it under /{stage} and
    // keeps the prefix in rawPath, so the API's links must carry it
    let staged = App::start_on_stage("prod").await;
    let body =
        r#"{"currency":"EUR","paymentToken":"tok_visa","lines":[{"sku":"MUG","quantity":1}]}"#;
    let json = [("content-type", "application/json")];
    let r = staged
        .http("POST", "/prod/v1/orders", &json, Some(body))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let location = r.header("location").unwrap().to_owned();
    assert!(location.starts_with("/prod/v1/orders/ord-"), "{location}");
    // THEN the Location followed as a client would answers 200, with and without
    // following the listing's links
    assert_eq!(staged.http("GET", &location, &[], None).await.status, 200);
    let list = staged
        .http("GET", "/prod/v1/orders?limit=1", &[], None)
        .await;
    let list: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    let first = list["orders"][0]["links"]["self"].as_str().unwrap();
    assert_eq!(first, location);
    // AND a path without the stage is API Gateway's own 404, before any function
    let bare = staged
        .http("GET", &location["/prod".len()..], &[], None)
        .await;
    assert_eq!(
        (bare.status, bare.body.as_str()),
        (404, r#"{"message":"Not Found"}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn above_the_stage_rate_the_api_answers_429_as_api_gateway_does_and_below_it_never() {
    // GIVEN a stage that admits bursts of 5 and 1 request a second on each route
    let app = App::start_configured(
        |_: &mut AppPorts| {},
        &[
            ("ApiThrottlingRateLimit", "1"),
            ("ApiThrottlingBurstLimit", "5"),
        ],
    )
    .await;
    // WHEN 12 listings arrive at once (one token, signed before: the requests only
    // arrive, as a client's would)
    let bearer = format!("Bearer {}", app.token(SHOPPER));
    let auth = [("authorization", bearer.as_str())];
    let answers =
        futures::future::join_all((0..12).map(|_| app.http_raw("GET", "/v1/orders", &auth, None)))
            .await;
    // THEN the burst is served and the rest refused as API Gateway refuses them
    let served = answers.iter().filter(|r| r.status == 200).count();
    let throttled: Vec<_> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!((served, throttled.len()), (5, 7), "{answers:?}");
    assert!(
        throttled
            .iter()
            .all(|r| r.body == r#"{"message":"Too Many Requests"}"#)
    );
    // AND another route has its own bucket
    let (_, placed) = app.place(&[("MUG", 1)], "tok_visa", None).await;
    assert!(placed["orderId"].is_string(), "{placed}");

    // GIVEN the template's limits (100 a second, bursts of 200)
    let app = App::start().await;
    // THEN 150 requests at once are all served
    let bearer = format!("Bearer {}", app.token(SHOPPER));
    let auth = [("authorization", bearer.as_str())];
    let answers =
        futures::future::join_all((0..150).map(|_| app.http_raw("GET", "/v1/orders", &auth, None)))
            .await;
    assert!(
        answers.iter().all(|r| r.status == 200),
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sandbox_provider_answers_with_the_configured_latency() {
    // GIVEN a provider that takes a second over every call (`--payment-latency 1s,1s`)
    let app = App::start_configured(
        |_: &mut AppPorts| {},
        &[
            ("PaymentSandboxLatency", "1s,1s"),
            ("PaymentProviderTimeoutMs", "5000"),
        ],
    )
    .await;
    let (_, placed) = app.place(&[("MUG", 1)], "tok_visa", None).await;
    let order = app.wait_terminal(&order_id(&placed), WAIT).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    // THEN the charge took at least that second between the order's two statuses
    let at = |status: &str| {
        let change = order["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == status)
            .unwrap_or_else(|| panic!("no {status} in {order}"));
        shop_domain::parse_rfc3339(change["at"].as_str().unwrap()).unwrap()
    };
    let charging = at("CONFIRMED") - at("PAYMENT_PENDING");
    assert!(charging >= time::Duration::seconds(1), "{charging}");
}
