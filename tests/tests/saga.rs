//! The saga end to end on moto: the real `order-saga.asl.json` executes, commands
//! travel through the template's queues to the real handlers, and each scenario
//! checks order status, stock, ledger, sandbox provider and emitted events.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use e2e::{App, command_violations, schema_violations, slow_reservations};
use serde_json::{Value, json};
use shop_domain::payment::{
    Authentication, Authorization, ChargeRequest, LedgerStatus, ProviderError, Released,
};
use shop_domain::ports::{OrderQueue, PaymentProvider, PortError};
use shop_domain::{Order, OrderId};
use std::sync::Arc;
use std::time::Duration;

#[path = "saga/chaos.rs"]
mod chaos;

const WAIT: Duration = Duration::from_secs(60);

/// Detail types published for an order. Publication is at least once (a redelivered
/// intake message publishes `OrderPlaced` again), so duplicates are folded; captures
/// and reservations are counted separately, on the ledger, the sandbox and the stock.
fn types<'a>(events: &'a [Value], order_id: &str) -> Vec<&'a str> {
    let mut t: Vec<_> = App::for_order(events, order_id)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    t.sort_unstable();
    t.dedup();
    t
}

fn order_id(placed: &Value) -> String {
    placed["orderId"]
        .as_str()
        .expect("order id in 202 body")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn happy_path_confirms_charges_once_and_ships() {
    // GIVEN a fresh stack with 100 mugs and 50 tees
    let app = App::start().await;
    // WHEN a shopper orders 2 mugs and 1 tee
    let (response, placed) = app.place(&[("MUG", 2), ("TEE", 1)], "tok_visa", None).await;
    assert_eq!(response.status, 202, "{}", response.body);
    let id = order_id(&placed);
    let order = app.wait_terminal(&id, WAIT).await;
    // THEN the order is confirmed with catalog prices and a full history
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["total"], 2 * 1250 + 1999);
    let history: Vec<_> = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["PENDING", "RESERVED", "PAYMENT_PENDING", "CONFIRMED"]
    );
    // AND stock is held once, the card captured once, the execution succeeded
    let mug = app.stock("MUG").await;
    assert_eq!((mug.available, mug.reserved), (98, 2));
    assert_eq!(
        app.ledger(&id).await.unwrap().status,
        LedgerStatus::Captured
    );
    assert_eq!(
        app.sandbox().net_captured(&OrderId::parse(&id).unwrap()),
        4499
    );
    assert_eq!(app.wait_execution(&id, WAIT).await.0, "SUCCEEDED");
    // AND fulfilment received OrderConfirmed through the rule and shipped
    let mut shipped = false;
    for _ in 0..50 {
        shipped = app.shipment_exists(&id).await;
        if shipped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(shipped, "fulfilment created a shipment");
    let events = app.events().await;
    assert_eq!(
        types(&events, &id),
        [
            "OrderConfirmed",
            "OrderPlaced",
            "PaymentCaptured",
            "StockReserved"
        ]
    );
    assert_eq!(schema_violations(&events), Vec::<String>::new());
    assert_eq!(
        command_violations(
            "InventoryCommand",
            &app.recording_bodies("InventoryFunction")
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        command_violations("PaymentCommand", &app.recording_bodies("PaymentsFunction")),
        Vec::<String>::new()
    );
    let correlation = placed_correlation(&app, &id).await;
    assert!(
        App::for_order(&events, &id)
            .iter()
            .all(|(_, d)| d["correlationId"] == correlation.as_str()),
        "one correlation id from API to events"
    );
}

async fn placed_correlation(app: &App, id: &str) -> String {
    let r = app
        .http("GET", &format!("/v1/orders/{id}"), &[], None)
        .await;
    let events = app.recording_bodies("OrderIntakeFunction");
    let body = events
        .iter()
        .find(|b| b.contains(id))
        .expect("intake saw the order");
    let order: Value = serde_json::from_str(body).unwrap();
    assert_eq!(r.status, 200);
    order["correlationId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_stock_cancels_without_holding_or_charging() {
    let app = App::start().await;
    let (_, placed) = app.place(&[("MUG", 1), ("CAP", 1)], "tok_visa", None).await;
    let id = order_id(&placed);
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["cancelReason"], "OutOfStock");
    let mug = app.stock("MUG").await;
    assert_eq!(
        (mug.available, mug.reserved),
        (100, 0),
        "all or nothing: the mug was not held"
    );
    assert!(app.ledger(&id).await.is_none());
    let events = app.events().await;
    assert_eq!(types(&events, &id), ["OrderCancelled", "OrderPlaced"]);
    assert_eq!(App::for_order(&events, &id)[1].1["reason"], "OutOfStock");
    assert_eq!(schema_violations(&events), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declined_card_releases_stock_and_cancels() {
    let app = App::start().await;
    let (_, placed) = app.place(&[("TEE", 3)], "tok_decline", None).await;
    let id = order_id(&placed);
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["cancelReason"], "PaymentDeclined");
    let tee = app.stock("TEE").await;
    assert_eq!((tee.available, tee.reserved), (50, 0));
    assert_eq!(
        app.ledger(&id).await.unwrap().status,
        LedgerStatus::Declined
    );
    assert_eq!(app.sandbox().net_captured(&OrderId::parse(&id).unwrap()), 0);
    let events = app.events().await;
    assert_eq!(
        types(&events, &id),
        [
            "OrderCancelled",
            "OrderPlaced",
            "PaymentDeclined",
            "StockReleased",
            "StockReserved"
        ]
    );
    assert_eq!(schema_violations(&events), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_payment_failures_are_retried_to_success() {
    let app = App::start().await;
    let (_, placed) = app.place(&[("MUG", 1)], "tok_flaky", None).await;
    let id = order_id(&placed);
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let oid = OrderId::parse(&id).unwrap();
    assert_eq!(
        app.sandbox().attempts(&oid),
        3,
        "two transient failures, then success"
    );
    assert_eq!(app.sandbox().net_captured(&oid), 1250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_timeout_compensates_and_late_commands_are_refused() {
    // GIVEN a card whose charge never answers, on an order that may wait 15 s
    let app = App::start_configured(|_| {}, &[("MaxOrderWaitSeconds", "15")]).await;
    let (_, placed) = app.place(&[("RARE", 1)], "tok_timeout", None).await;
    let id = order_id(&placed);
    // THEN the charge is retried until the order's deadline, then compensated
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["cancelReason"], "OrderExpired", "{order}");
    assert_eq!(app.ledger(&id).await.unwrap().status, LedgerStatus::Voided);
    let rare = app.stock("RARE").await;
    assert_eq!((rare.available, rare.reserved), (1, 0));

    // WHEN the original Charge and Reserve come back late without a saga waiting to
    // drop them at receipt (sent as an operator would, with no task token)
    let attempts = app.sandbox().attempts(&OrderId::parse(&id).unwrap());
    app.send(
        "PaymentsQueue",
        &format!(r#"{{"command":"Authorize","correlationId":"late","orderId":"{id}","amount":50000,"currency":"EUR"}}"#),
    )
    .await;
    app.send(
        "InventoryQueue",
        &format!(r#"{{"command":"Reserve","correlationId":"late","orderId":"{id}","lines":[{{"sku":"RARE","quantity":1,"unitPrice":50000}}]}}"#),
    )
    .await;
    app.wait_consumed("PaymentsFunction", "late").await;
    app.wait_consumed("InventoryFunction", "late").await;
    // THEN both are refused by the tombstones: no charge, no stock held
    assert_eq!(app.ledger(&id).await.unwrap().status, LedgerStatus::Voided);
    assert_eq!(app.sandbox().net_captured(&OrderId::parse(&id).unwrap()), 0);
    assert_eq!(
        app.sandbox().attempts(&OrderId::parse(&id).unwrap()),
        attempts,
        "the provider was not called"
    );
    let rare = app.stock("RARE").await;
    assert_eq!((rare.available, rare.reserved), (1, 0));
    assert!(
        app.drain("PaymentsDLQ").await.is_empty(),
        "a refused late command is handled, not dead-lettered"
    );
}

struct RefundsAlwaysFail(Arc<dyn PaymentProvider>);

#[async_trait]
impl PaymentProvider for RefundsAlwaysFail {
    async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError> {
        self.0.authorize(request).await
    }
    async fn authentication(&self, payment_id: &str) -> Result<Authentication, ProviderError> {
        self.0.authentication(payment_id).await
    }
    async fn capture(&self, id: &str, request: &ChargeRequest) -> Result<(), ProviderError> {
        self.0.capture(id, request).await
    }
    async fn release(&self, _: Option<&str>, _: &ChargeRequest) -> Result<Released, ProviderError> {
        Err(ProviderError::Transient("refund endpoint down".into()))
    }
}

/// The tests' compensation patience is 5 s past the order's forward steps' latest end
/// (placed + 20 s of waiting + 10 s of work + a 30 s retry delay), retried every
/// second (`tests/src/lib.rs`); production's is a day, every minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compensation_that_keeps_failing_waits_its_patience_then_goes_to_the_work_queue() {
    let app = App::start_with(|ports| {
        ports.payments.provider = Arc::new(RefundsAlwaysFail(ports.payments.provider.clone()))
    })
    .await;
    let (_, placed) = app.place(&[("MUG", 1)], "tok_unavailable", None).await;
    let id = order_id(&placed);
    let (status, error) = app.wait_execution(&id, 2 * WAIT).await;
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("CompensationFailed"))
    );
    let scratch = std::env::temp_dir().join(format!("saga-{}", uuid::Uuid::new_v4().simple()));
    let report = shop_ops::saga::show(&app.ops(&scratch), &id).await.unwrap();
    let waits = report.runs[0]
        .1
        .iter()
        .filter(|step| step.state == "WaitToRefund")
        .count();
    assert!(
        waits >= 3,
        "the refund was sent again and again, {waits} waits"
    );
    let cases = app.drain("CompensationQueue").await;
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["orderId"], id.as_str());
    assert_eq!(cases[0]["failure"]["Error"], "CompensationExhausted");
    assert!(
        cases[0]["failure"]["Cause"]
            .as_str()
            .is_some_and(|cause| cause.contains("PaymentProviderUnavailable")),
        "{}",
        cases[0]["failure"]
    );
    let order: Value = serde_json::from_str(
        &app.http("GET", &format!("/v1/orders/{id}"), &[], None)
            .await
            .body,
    )
    .unwrap();
    assert_eq!(
        order["status"], "PAYMENT_PENDING",
        "left for a human, not marked cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_request_with_the_same_key_places_one_order() {
    let app = App::start().await;
    let (first, a) = app.place(&[("MUG", 1)], "tok_visa", Some("retry-1")).await;
    let (second, b) = app.place(&[("MUG", 1)], "tok_visa", Some("retry-1")).await;
    assert_eq!((first.status, second.status), (202, 202));
    assert_eq!(a, b);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    let (other, problem) = app.place(&[("MUG", 2)], "tok_visa", Some("retry-1")).await;
    assert_eq!(other.status, 422);
    assert_eq!(
        problem["type"],
        "https://order-saga.example/problems/idempotency-key-reused"
    );
    let id = order_id(&a);
    assert_eq!(app.wait_terminal(&id, WAIT).await["status"], "CONFIRMED");
    assert_eq!(app.execution_names().await, vec![id.clone()]);
    assert_eq!(app.stock("MUG").await.reserved, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_the_intake_queue_refuses_is_cancelled_and_its_key_freed_for_the_retry() {
    use aws_sdk_sqs::types::QueueAttributeName as Attr;
    let app = App::start().await;
    let sqs = aws_sdk_sqs::Client::new(&app.sdk);
    let queue = app.stack.queues["OrdersQueue"].clone();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(Attr::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    sqs.delete_queue()
        .queue_url(&queue.url)
        .send()
        .await
        .unwrap();

    let (refused, problem) = app
        .place(&[("MUG", 1)], "tok_visa", Some("refused-1"))
        .await;
    assert_eq!(refused.status, 503, "{problem}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let stored = aws_sdk_dynamodb::Client::new(&app.sdk)
        .scan()
        .table_name(&app.stack.tables["OrdersTable"])
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert_eq!(stored.len(), 1, "the refused order was stored once");
    let status = stored[0].get("status").and_then(|v| v.as_s().ok());
    assert_eq!(
        status.map(String::as_str),
        Some("CANCELLED"),
        "not left pending"
    );

    let keep: std::collections::HashMap<_, _> = attributes
        .into_iter()
        .filter(|(name, _)| {
            matches!(
                name,
                Attr::VisibilityTimeout
                    | Attr::MessageRetentionPeriod
                    | Attr::RedrivePolicy
                    | Attr::SqsManagedSseEnabled
            )
        })
        .collect();
    sqs.create_queue()
        .queue_name(&queue.name)
        .set_attributes(Some(keep))
        .send()
        .await
        .unwrap();
    let (accepted, placed) = app
        .place(&[("MUG", 1)], "tok_visa", Some("refused-1"))
        .await;
    assert_eq!(accepted.status, 202, "the released key takes the retry");
    assert_eq!(accepted.header("idempotent-replayed"), None);
    let id = order_id(&placed);
    assert_eq!(app.wait_terminal(&id, WAIT).await["status"], "CONFIRMED");
    assert_eq!(app.execution_names().await, vec![id]);
    assert_eq!(app.stock("MUG").await.reserved, 1);
}

/// The orders API dying after it stored an order and before it enqueued it: the
/// first order only, remembering which one was stranded.
struct CrashBeforeEnqueue {
    inner: Arc<dyn OrderQueue>,
    stranded: Arc<std::sync::Mutex<Option<String>>>,
}

#[async_trait]
impl OrderQueue for CrashBeforeEnqueue {
    async fn enqueue(&self, order: &Order) -> Result<(), PortError> {
        let first = {
            let mut stranded = self.stranded.lock().unwrap();
            stranded.is_none().then(|| {
                *stranded = Some(order.order_id.to_string());
            })
        };
        if first.is_some() {
            panic!("crash between storing and enqueueing");
        }
        self.inner.enqueue(order).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_stranded_by_a_crash_before_intake_is_cancelled_by_the_sweep() {
    let stranded = Arc::new(std::sync::Mutex::new(None));
    let record = stranded.clone();
    let faults = move |ports: &mut e2e::AppPorts| {
        ports.orders_api.queue = Arc::new(CrashBeforeEnqueue {
            inner: ports.orders_api.queue.clone(),
            stranded: record.clone(),
        })
    };
    let app = App::start_configured(faults, &[("OrphanAfterSeconds", "60")]).await;
    let sweep = || async {
        app.invoke("OrphanSweeperFunction", json!({}))
            .await
            .expect("the sweep runs")
    };

    let (crashed, problem) = app.place(&[("MUG", 1)], "tok_visa", Some("strand-1")).await;
    let crashed_at = std::time::Instant::now();
    assert_eq!(crashed.status, 500, "{problem}");
    let orphan = stranded
        .lock()
        .unwrap()
        .clone()
        .expect("crashed after storing");
    let early = sweep().await;
    assert_eq!(
        early["cancelled"],
        json!([]),
        "younger than the orphan age: {early}"
    );

    // The shopper retries with the same key; once the crashed request's claim on it
    // lapses the retry is a fresh order, which goes through.
    let (retried, placed) = loop {
        let (r, body) = app.place(&[("MUG", 1)], "tok_visa", Some("strand-1")).await;
        if r.status != 409 || crashed_at.elapsed() > Duration::from_secs(45) {
            break (r, body);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(retried.status, 202, "{placed}");
    let id = order_id(&placed);
    assert_ne!(id, orphan);
    assert_eq!(app.wait_terminal(&id, WAIT).await["status"], "CONFIRMED");
    let confirmed = aws_sdk_dynamodb::Client::new(&app.sdk)
        .get_item()
        .table_name(&app.stack.tables["OrdersTable"])
        .key("orderId", AttributeValue::S(id.clone()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(
        !confirmed.contains_key("pendingShard"),
        "the saga took the confirmed order out of the pending index"
    );

    tokio::time::sleep(Duration::from_secs(61).saturating_sub(crashed_at.elapsed())).await;
    let swept = sweep().await;
    assert_eq!(swept["cancelled"], json!([orphan]), "{swept}");
    let r = app
        .http("GET", &format!("/v1/orders/{orphan}"), &[], None)
        .await;
    assert_eq!(r.status, 200);
    let order: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(order["status"], "CANCELLED");
    let history = order["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["reason"], "intake-never-started");
    let events = app.events().await;
    assert_eq!(types(&events, &orphan), ["OrderCancelled"]);
    assert!(schema_violations(&events).is_empty());
    assert_eq!(
        app.execution_names().await,
        vec![id],
        "no saga for the orphan"
    );
    assert!(app.ledger(&orphan).await.is_none());
    assert_eq!(
        app.stock("MUG").await.reserved,
        1,
        "only the retried order holds stock"
    );

    let again = sweep().await;
    assert_eq!(
        again["examined"], 0,
        "the orphan left the pending index: {again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_delivered_twice_starts_one_saga_and_charges_once() {
    let app = App::start().await;
    let (_, placed) = app.place(&[("TEE", 2)], "tok_visa", None).await;
    let id = order_id(&placed);
    app.wait_consumed("OrderIntakeFunction", &id).await;
    // WHEN the same intake message arrives again (SQS at-least-once delivery)
    let original = app
        .recording_bodies("OrderIntakeFunction")
        .into_iter()
        .find(|b| b.contains(&id))
        .unwrap();
    app.send("OrdersQueue", &original).await;
    let order = app.wait_terminal(&id, WAIT).await;
    // THEN there is still one execution, one reservation and one capture
    assert_eq!(order["status"], "CONFIRMED");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deliveries = app
        .recording_bodies("OrderIntakeFunction")
        .iter()
        .filter(|b| b.contains(&id))
        .count();
    assert!(
        deliveries >= 2,
        "the duplicate was delivered ({deliveries} deliveries)"
    );
    assert_eq!(app.execution_names().await, vec![id.clone()]);
    let tee = app.stock("TEE").await;
    assert_eq!((tee.available, tee.reserved), (48, 2));
    assert_eq!(
        app.sandbox().net_captured(&OrderId::parse(&id).unwrap()),
        2 * 1999
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shopper_cancels_before_payment_and_the_saga_compensates() {
    // GIVEN reservations that take a second, so the cancel lands while PENDING
    let app = App::start_with(slow_reservations(Duration::from_secs(1))).await;
    let (_, placed) = app.place(&[("MUG", 5)], "tok_visa", None).await;
    let id = order_id(&placed);
    // AND another shopper, who learnt the id, tries first: told it does not exist
    let theirs = app
        .http_as(
            "someone-else",
            "POST",
            &format!("/v1/orders/{id}/cancel"),
            &[],
            None,
        )
        .await;
    assert_eq!(theirs.status, 404, "{}", theirs.body);
    let unchanged = app
        .http("GET", &format!("/v1/orders/{id}"), &[], None)
        .await;
    let unchanged: Value = serde_json::from_str(&unchanged.body).unwrap();
    assert!(unchanged["cancelReason"].is_null(), "{unchanged}");
    let cancel = app
        .http("POST", &format!("/v1/orders/{id}/cancel"), &[], None)
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["cancelReason"], "cancelled-by-customer");
    app.wait_execution(&id, WAIT).await;
    let mug = app.stock("MUG").await;
    assert_eq!(
        (mug.available, mug.reserved),
        (100, 0),
        "the late reservation was released"
    );
    assert!(app.ledger(&id).await.is_none(), "no charge was attempted");
    let cancelled: Vec<_> = App::for_order(&app.events().await, &id)
        .into_iter()
        .filter(|(t, _)| *t == "OrderCancelled")
        .map(|(_, d)| d["reason"].clone())
        .collect();
    assert_eq!(cancelled, ["CancelledByCustomer"]);
    // AND cancelling a confirmed order is a conflict
    let (_, done) = app.place(&[("TEE", 1)], "tok_visa", None).await;
    let done = order_id(&done);
    app.wait_terminal(&done, WAIT).await;
    let late = app
        .http("POST", &format!("/v1/orders/{done}/cancel"), &[], None)
        .await;
    assert_eq!(late.status, 409);
}

struct PoisonReserve(Arc<dyn shop_domain::ports::StockStore>);

#[async_trait]
impl shop_domain::ports::StockStore for PoisonReserve {
    async fn reserve(
        &self,
        _: &OrderId,
        _: &[shop_domain::OrderLine],
    ) -> Result<shop_domain::ports::ReserveOutcome, shop_domain::ports::PortError> {
        panic!("poison: this command crashes the handler every time")
    }
    async fn release(
        &self,
        o: &OrderId,
        l: &[shop_domain::OrderLine],
    ) -> Result<shop_domain::ports::ReleaseOutcome, shop_domain::ports::PortError> {
        self.0.release(o, l).await
    }
    async fn restock(
        &self,
        s: &shop_domain::Sku,
        q: u32,
    ) -> Result<shop_domain::ports::StockLevel, shop_domain::ports::PortError> {
        self.0.restock(s, q).await
    }
    async fn level(
        &self,
        s: &shop_domain::Sku,
    ) -> Result<Option<shop_domain::ports::StockLevel>, shop_domain::ports::PortError> {
        self.0.level(s).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_command_is_dead_lettered_and_the_saga_compensates_on_timeout() {
    // GIVEN an inventory handler that crashes on every Reserve, and an order that may
    // wait longer than the five deliveries take (4 s apart), so each one crashes
    let app = App::start_configured(
        |ports| ports.inventory.stock = Arc::new(PoisonReserve(ports.inventory.stock.clone())),
        &[("MaxOrderWaitSeconds", "40")],
    )
    .await;
    let (_, placed) = app.place(&[("MUG", 1)], "tok_visa", None).await;
    let id = order_id(&placed);
    // THEN after maxReceiveCount deliveries the command sits in the DLQ, unanswered
    let order = app.wait_terminal(&id, Duration::from_secs(90)).await;
    let dead = app.drain("InventoryDLQ").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["command"], "Reserve");
    assert_eq!(dead[0]["orderId"], id.as_str());
    // AND the saga's wait timed out and compensated
    assert_eq!(order["cancelReason"], "States.Timeout");
    let mug = app.stock("MUG").await;
    assert_eq!((mug.available, mug.reserved), (100, 0));
    let deliveries = app
        .recording_bodies("InventoryFunction")
        .iter()
        .filter(|b| b.contains("\"Reserve\"") && b.contains(&id))
        .count();
    assert_eq!(deliveries, 5, "maxReceiveCount deliveries, then the DLQ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_queue_messages_are_dead_lettered_and_nothing_else_breaks() {
    // GIVEN messages no producer of ours sends: not JSON, wrong types, an unknown
    // command, a missing field, and a body near SQS's 256 KiB limit (the payments
    // queue's visibility lowered so five deliveries take seconds, not 15 minutes)
    let app = App::start_configured(|_| {}, &[("PaymentsQueueVisibilityTimeout", "4")]).await;
    let huge = format!(
        r#"{{"command":"Reserve","orderId":"ord-01a2040b059d7423bb9e5f0baee65274","lines":[{}]}}"#,
        vec![r#"{"sku":"MUG","quantity":1,"unitPrice":1}"#; 5500].join(",")
    );
    assert!(huge.len() > 200 * 1024 && huge.len() < 256 * 1024);
    let hostile: Vec<(&str, String)> = vec![
        ("InventoryQueue", "not json at all".into()),
        ("InventoryQueue", r#"{"command":"Reserve","orderId":42,"lines":"MUG"}"#.into()),
        ("InventoryQueue", r#"{"command":"Teleport","orderId":"ord-x"}"#.into()),
        ("InventoryQueue", huge),
        ("PaymentsQueue", r#"{"command":"Authorize","orderId":"ord-01a2040b059d7423bb9e5f0baee65274","amount":-5,"currency":"EUR"}"#.into()),
        ("PaymentsQueue", "[1,2,3]".into()),
        ("OrdersQueue", r#"{"orderId":"ord-1","lines":null}"#.into()),
        ("FulfilmentQueue", r#"{"detail-type":"OrderConfirmed","detail":"nope"}"#.into()),
    ];
    for (queue, body) in &hostile {
        app.send(queue, body).await;
    }
    // WHEN a shopper places a real order at the same time
    let (_, placed) = app.place(&[("MUG", 2)], "tok_visa", None).await;
    let id = order_id(&placed);

    // THEN the real order is confirmed, charged once, its stock held
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(
        app.sandbox().net_captured(&OrderId::parse(&id).unwrap()),
        2500
    );
    assert_eq!(app.stock("MUG").await.reserved, 2);
    // AND every hostile message ends in its queue's DLQ, unchanged, after
    // maxReceiveCount failed deliveries; nothing else is dead-lettered
    for queue in ["Inventory", "Payments", "Orders", "Fulfilment"] {
        let expected: Vec<&String> = hostile
            .iter()
            .filter(|(q, _)| q.starts_with(queue))
            .map(|(_, b)| b)
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let mut dead = Vec::new();
        while dead.len() < expected.len() && std::time::Instant::now() < deadline {
            dead.extend(
                app.drain_messages(&format!("{queue}DLQ"))
                    .await
                    .into_iter()
                    .filter_map(|m| m.body),
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut dead_sorted: Vec<&String> = dead.iter().collect();
        dead_sorted.sort();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(dead_sorted, expected_sorted, "{queue}DLQ");
    }
    // AND the stock and the ledger saw nothing of them
    let mug = app.stock("MUG").await;
    assert_eq!((mug.available, mug.reserved), (98, 2));
    assert!(
        app.ledger("ord-01a2040b059d7423bb9e5f0baee65274")
            .await
            .is_none()
    );
}
