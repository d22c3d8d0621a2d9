//! The serverless patterns on the emulator: the express priority lane and heartbeats
//! on the slow payment step.

use async_trait::async_trait;
use e2e::{App, AppPorts};
use serde_json::Value;
use shop_domain::OrderId;
use shop_domain::payment::{ChargeRequest, LedgerStatus, ProviderError};
use shop_domain::ports::{PaymentProvider, PortError, TaskCallbacks};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    async fn charge(&self, request: &ChargeRequest) -> Result<String, ProviderError> {
        let first = self
            .seen
            .lock()
            .unwrap()
            .insert(request.idempotency_key.clone());
        if first {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.charge(request).await
    }
    async fn refund(&self, key: &str) -> Result<bool, ProviderError> {
        self.inner.refund(key).await
    }
}

/// Counts heartbeats, and with `deliver == false` drops them: a worker whose heartbeats
/// never reach Step Functions, as when it hangs or dies.
struct Beats {
    inner: Arc<dyn TaskCallbacks>,
    deliver: bool,
    count: Arc<AtomicUsize>,
}

#[async_trait]
impl TaskCallbacks for Beats {
    async fn succeed(&self, token: &str, output: &Value) -> Result<bool, PortError> {
        self.inner.succeed(token, output).await
    }
    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<bool, PortError> {
        self.inner.fail(token, error, cause).await
    }
    async fn heartbeat(&self, token: &str) -> Result<bool, PortError> {
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.deliver {
            self.inner.heartbeat(token).await
        } else {
            Ok(true)
        }
    }
}

/// A stack whose provider takes 30 s on the first charge (HeartbeatSeconds is 20, the
/// step's TimeoutSeconds 60) and whose payments worker does or does not get its
/// heartbeats through.
async fn slow_payments(deliver: bool) -> (App, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let beats = count.clone();
    let app = App::start_configured(
        move |ports: &mut AppPorts| {
            ports.payments.provider = Arc::new(SlowFirstCharge {
                inner: ports.payments.provider.clone(),
                delay: Duration::from_secs(30),
                seen: Mutex::default(),
            });
            for callbacks in [
                &mut ports.inventory.callbacks,
                &mut ports.payments.callbacks,
            ] {
                *callbacks = Arc::new(Beats {
                    inner: callbacks.clone(),
                    deliver,
                    count: beats.clone(),
                });
            }
        },
        &[("PaymentProviderTimeoutMs", "45000")],
    )
    .await;
    (app, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_charge_that_sends_heartbeats_is_not_timed_out() {
    let (app, beats) = slow_payments(true).await;
    let (_, placed) = app.place(&[("MUG", 1)], "tok_visa", None).await;
    let id = order_id(&placed);
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert!(
        beats.load(Ordering::SeqCst) >= 3,
        "a beat every ~6.7 s over 30 s"
    );
    assert_eq!(
        app.ledger(&id).await.unwrap().status,
        LedgerStatus::Captured
    );
    assert_eq!(
        app.sandbox.net_captured(&OrderId::parse(&id).unwrap()),
        1250
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_whose_heartbeats_stop_is_timed_out_early_and_compensated() {
    let (app, beats) = slow_payments(false).await;
    let started = std::time::Instant::now();
    let (_, placed) = app.place(&[("MUG", 1)], "tok_visa", None).await;
    let id = order_id(&placed);
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    // AWS documents States.HeartbeatTimeout or States.Timeout for a missed heartbeat;
    // the emulator reports States.Timeout. The timing tells the two timeouts apart.
    assert!(
        matches!(
            order["cancelReason"].as_str(),
            Some("States.HeartbeatTimeout" | "States.Timeout")
        ),
        "{order}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "noticed after HeartbeatSeconds (20 s), not the step's 60 s timeout: {:?}",
        started.elapsed()
    );
    assert!(
        beats.load(Ordering::SeqCst) >= 1,
        "the worker tried to beat"
    );
    // The charge that finished late is refused by the tombstone; nothing stays charged.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let ledger = app.ledger(&id).await.unwrap().status;
    assert!(
        matches!(ledger, LedgerStatus::Refunded | LedgerStatus::Voided),
        "{ledger:?}"
    );
    assert_eq!(app.sandbox.net_captured(&OrderId::parse(&id).unwrap()), 0);
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
