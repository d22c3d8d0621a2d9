//! Operator tooling against a real stack on the emulator: dead letters are inspected
//! and replayed without loss or duplication, failed sagas are listed, shown and
//! redriven to completion.

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use e2e::App;
use indicatif::ProgressBar;
use serde_json::{Value, json};
use shop_domain::OrderId;
use shop_domain::payment::{
    Authentication, Authorization, ChargeRequest, LedgerStatus, ProviderError, Released,
};
use shop_domain::ports::{PaymentProvider, PortError, SagaStarter, StartOutcome};
use shop_ops::OpsError;
use shop_ops::audit::{Journal, read_audit};
use shop_ops::dlq::{self, ReplayOptions, Source};
use shop_ops::saga::{self, RedrivePlan};
use shop_ops::stack::{LocalStackFile, Ops};
use shop_ops::trace::TraceFile;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("order-saga-ops-{}", uuid::Uuid::new_v4().simple()))
}

fn order_id(placed: &Value) -> String {
    placed["orderId"].as_str().expect("order id").to_owned()
}

async fn depth(app: &App, url: &str) -> u64 {
    let out = aws_sdk_sqs::Client::new(&app.sdk)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    out.attributes
        .unwrap_or_default()
        .values()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .sum()
}

async fn wait_depth(app: &App, url: &str, want: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = depth(app, url).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{url} holds {now}, want {want}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A saga starter that fails while `broken` is set: the intake consumer's outage.
struct Outage {
    inner: Arc<dyn SagaStarter>,
    broken: Arc<AtomicBool>,
}

#[async_trait]
impl SagaStarter for Outage {
    async fn start(&self, order_id: &OrderId, input: &Value) -> Result<StartOutcome, PortError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(PortError::new("saga.start", "states endpoint down"));
        }
        self.inner.start(order_id, input).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_orders_are_peeked_then_replayed_after_the_fix_and_complete() {
    // GIVEN an intake whose saga starter is down
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    // (orders waiting in the DLQ keep their deadline: the shop's 15 minutes, not the
    // tests' 20 s, or the replay would rightly cancel them as expired)
    let app = App::start_configured(
        move |ports| {
            ports.order_intake.saga = Arc::new(Outage {
                inner: ports.order_intake.saga.clone(),
                broken: flag.clone(),
            })
        },
        &[("MaxOrderWaitSeconds", "900")],
    )
    .await;
    let dir = scratch();
    let ops = app.ops(&dir);
    let mut ids = Vec::new();
    for sku in ["MUG", "TEE", "MUG"] {
        let (r, placed) = app.place(&[(sku, 1)], "tok_visa", None).await;
        assert_eq!(r.status, 202);
        ids.push(order_id(&placed));
    }
    // WHEN the orders exhaust maxReceiveCount they sit in the orders DLQ
    let orders_dlq = ops.queue("OrdersDLQ").unwrap();
    wait_depth(&app, &orders_dlq.url, 3, Duration::from_secs(90)).await;

    // THEN `list` shows the depth, the source queue and the alarm
    let listed = dlq::list(&ops).await.unwrap();
    let row = listed.iter().find(|q| q.key == "OrdersDLQ").unwrap();
    assert_eq!(row.depth, 3);
    assert!(row.oldest_age_seconds.is_some());
    assert!(
        matches!(&row.sources[..], [Source::Queue { name, .. }] if name.ends_with("OrdersQueue"))
    );
    assert_eq!(row.alarms.len(), 1, "{:?}", row.alarms);
    let target = listed.iter().find(|q| q.key == "EventTargetDLQ").unwrap();
    assert!(
        matches!(&target.sources[..], [Source::RuleTarget { target, .. }] if target == "fulfilment")
    );

    // AND `peek` decodes them with the reason and leaves them in place
    let peeked = dlq::peek(&ops, "OrdersDLQ", 10, None).await.unwrap();
    let mut peeked_ids: Vec<_> = peeked
        .iter()
        .map(|l| {
            l.json.as_ref().unwrap()["orderId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    peeked_ids.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(peeked_ids, sorted);
    assert!(
        peeked
            .iter()
            .all(|l| l.reason.contains("OrdersQueue") && l.receive_count >= 1)
    );
    assert_eq!(
        dlq::peek(&ops, "OrdersDLQ", 10, None).await.unwrap().len(),
        3
    );
    wait_depth(&app, &orders_dlq.url, 3, Duration::from_secs(5)).await;
    // AND a filter selects exactly the matching message
    let filter = format!("orderId={}", ids[1]).parse().unwrap();
    let one = dlq::peek(&ops, "OrdersDLQ", 10, Some(&filter))
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].json.as_ref().unwrap()["orderId"], ids[1].as_str());

    // WHEN the outage is fixed, a dry run moves nothing
    broken.store(false, Ordering::SeqCst);
    let stop = AtomicBool::new(false);
    let dry = ReplayOptions {
        dry_run: true,
        ..ReplayOptions::default()
    };
    let summary = dlq::replay(&ops, "OrdersDLQ", &dry, &ProgressBar::hidden(), &stop)
        .await
        .unwrap();
    assert_eq!((summary.would_move.len(), summary.moved), (3, 0));
    wait_depth(&app, &orders_dlq.url, 3, Duration::from_secs(5)).await;
    // AND a filtered replay moves only the selected order, then the rest follow
    let only = ReplayOptions {
        filter: Some(filter),
        ..ReplayOptions::default()
    };
    let summary = dlq::replay(&ops, "OrdersDLQ", &only, &ProgressBar::hidden(), &stop)
        .await
        .unwrap();
    assert_eq!(
        (summary.moved, summary.skipped_by_filter),
        (1, 2),
        "{summary:?}"
    );
    assert!(
        summary.destination.ends_with("OrdersQueue"),
        "{}",
        summary.destination
    );
    let rest = dlq::replay(
        &ops,
        "OrdersDLQ",
        &ReplayOptions::default(),
        &ProgressBar::hidden(),
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(rest.moved, 2, "{rest:?}");
    assert!(
        rest.move_task.is_none() && rest.move_task_refused.is_some(),
        "moto has no StartMessageMoveTask, so the manual path ran: {rest:?}"
    );
    assert!(rest.failed.is_empty());
    // THEN every order completes and the DLQ is empty
    for id in &ids {
        assert_eq!(app.wait_terminal(id, WAIT).await["status"], "CONFIRMED");
    }
    wait_depth(&app, &orders_dlq.url, 0, Duration::from_secs(5)).await;
    // AND a replayed message continues its order's trace: the intake's failed tries
    // and the one after the replay sit in the trace the API request began, with the
    // saga's work after them
    let traces = LocalStackFile::read(&app.stack_file)
        .unwrap()
        .traces
        .expect("shop local keeps the session's traces");
    for id in &ids {
        let trace = shop_ops::trace::assemble(id, TraceFile::read(&traces).unwrap());
        assert_eq!(trace.orphans, 0, "{}", shop_ops::trace::render(&trace));
        let spans = |service: &str| {
            trace
                .rows
                .iter()
                .filter(move |r| r.span.service.ends_with(service) && r.span.name == "record")
                .collect::<Vec<_>>()
        };
        let intake = spans("OrderIntakeFunction");
        assert!(
            intake.iter().any(|r| r.span.error.is_some())
                && intake.iter().any(|r| r.span.error.is_none()),
            "a failed try and the replayed one: {}",
            shop_ops::trace::render(&trace)
        );
        assert!(
            !spans("InventoryFunction").is_empty(),
            "{}",
            shop_ops::trace::render(&trace)
        );
    }
    // AND every run left an audit record
    let audit = read_audit(&ops.files);
    assert_eq!(audit.len(), 3);
    assert_eq!(
        audit
            .iter()
            .map(|a| (a.dry_run, a.count))
            .collect::<Vec<_>>(),
        [(true, 0), (false, 1), (false, 2)]
    );
    assert!(
        audit
            .iter()
            .all(|a| a.action == "dlq replay" && a.subject == "OrdersDLQ")
    );
}

/// A queue and its DLQ outside the template, registered as stack outputs, so a replay
/// can be checked message by message without a consumer taking them.
async fn spare_queues(app: &App, fifo: bool) -> (Ops, PathBuf, String, String) {
    let sqs = aws_sdk_sqs::Client::new(&app.sdk);
    let suffix = if fifo { ".fifo" } else { "" };
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut dlq = sqs
        .create_queue()
        .queue_name(format!("spare-{tag}-dlq{suffix}"));
    if fifo {
        dlq = dlq.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let dlq_url = dlq.send().await.unwrap().queue_url.unwrap();
    let dlq_arn = format!("arn:aws:sqs:us-east-1:123456789012:spare-{tag}-dlq{suffix}");
    let mut source = sqs
        .create_queue()
        .queue_name(format!("spare-{tag}{suffix}"))
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1}).to_string(),
        );
    if fifo {
        source = source.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let source_url = source.send().await.unwrap().queue_url.unwrap();
    let mut outputs = app.stack.outputs.clone();
    outputs.insert("SpareQueueUrl".into(), source_url.clone());
    outputs.insert("SpareDLQUrl".into(), dlq_url.clone());
    let dir = scratch();
    let ops = Ops::new(
        &app.sdk,
        shop_ops::stack::StackOutputs(outputs),
        shop_ops::audit::OpsFiles::in_dir(&dir),
    );
    (ops, dir, source_url, dlq_url)
}

async fn receive_all(app: &App, url: &str) -> Vec<(Option<String>, String)> {
    app.drain_messages(url)
        .await
        .into_iter()
        .map(|m| {
            let group = m.attributes.as_ref().and_then(|a| {
                a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    .cloned()
            });
            (group, m.body.unwrap_or_default())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_replay_then_a_rerun_moves_every_message_exactly_once() {
    let app = App::start().await;
    let (ops, _dir, source_url, dlq_url) = spare_queues(&app, false).await;
    let sqs = aws_sdk_sqs::Client::new(&app.sdk);
    let sent: BTreeSet<String> = (0..20).map(|i| json!({"n": i}).to_string()).collect();
    for body in &sent {
        sqs.send_message()
            .queue_url(&dlq_url)
            .message_body(body)
            .message_attributes(
                "correlationId",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("c-1")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    // WHEN a replay is stopped (Ctrl-C) after a few messages
    let progress = ProgressBar::hidden();
    let stop = Arc::new(AtomicBool::new(false));
    let (watch_progress, watch_stop) = (progress.clone(), stop.clone());
    tokio::spawn(async move {
        while watch_progress.position() < 6 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        watch_stop.store(true, Ordering::SeqCst);
    });
    let first = dlq::replay(
        &ops,
        "SpareDLQ",
        &ReplayOptions::default(),
        &progress,
        &stop,
    )
    .await
    .unwrap();
    assert!(first.interrupted);
    assert!((6..20).contains(&first.moved), "{first:?}");
    // AND, as after a crash between sending and deleting, one more message was sent and
    // journaled but is still in the DLQ
    let r = sqs
        .receive_message()
        .queue_url(&dlq_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let m = r.messages.unwrap().remove(0);
    sqs.send_message()
        .queue_url(&source_url)
        .message_body(m.body.clone().unwrap())
        .send()
        .await
        .unwrap();
    Journal::open(&ops.files)
        .record_sent(&dlq_url, m.message_id.as_deref().unwrap(), "queue spare")
        .unwrap();
    sqs.change_message_visibility()
        .queue_url(&dlq_url)
        .receipt_handle(m.receipt_handle.unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    // THEN the re-run finishes the job without sending anything twice
    let second = dlq::replay(
        &ops,
        "SpareDLQ",
        &ReplayOptions::default(),
        &ProgressBar::hidden(),
        &AtomicBool::new(false),
    )
    .await
    .unwrap();
    assert!(!second.interrupted);
    assert_eq!(second.resumed, 1, "{second:?}");
    assert_eq!(first.moved + second.moved, 20, "{first:?} {second:?}");
    let arrived: Vec<String> = receive_all(&app, &source_url)
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(arrived.len(), 20, "count");
    assert_eq!(
        arrived.into_iter().collect::<BTreeSet<_>>(),
        sent,
        "content"
    );
    assert_eq!(depth(&app, &dlq_url).await, 0);
    let audit = read_audit(&ops.files);
    assert_eq!(
        audit.iter().map(|a| a.interrupted).collect::<Vec<_>>(),
        [true, false]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fifo_replay_keeps_each_groups_order() {
    let app = App::start().await;
    let (ops, _dir, source_url, dlq_url) = spare_queues(&app, true).await;
    let sqs = aws_sdk_sqs::Client::new(&app.sdk);
    for i in 0..6 {
        for group in ["a", "b"] {
            sqs.send_message()
                .queue_url(&dlq_url)
                .message_body(json!({"group": group, "seq": i}).to_string())
                .message_group_id(group)
                .message_deduplication_id(format!("{group}-{i}"))
                .send()
                .await
                .unwrap();
        }
    }
    let summary = dlq::replay(
        &ops,
        "SpareDLQ",
        &ReplayOptions::default(),
        &ProgressBar::hidden(),
        &AtomicBool::new(false),
    )
    .await
    .unwrap();
    assert_eq!(summary.moved, 12, "{summary:?}");
    let arrived = receive_all(&app, &source_url).await;
    let mut by_group: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (group, body) in arrived {
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(group.as_deref(), v["group"].as_str(), "group id kept");
        by_group
            .entry(group.unwrap())
            .or_default()
            .push(v["seq"].as_i64().unwrap());
    }
    assert_eq!(by_group["a"], [0, 1, 2, 3, 4, 5]);
    assert_eq!(by_group["b"], [0, 1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_undelivered_event_is_replayed_to_the_bus_and_reaches_its_target() {
    let app = App::start().await;
    let ops = app.ops(&scratch());
    let target_dlq = ops.queue("EventTargetDLQ").unwrap();
    let order = "ord-0000000000000000000000000000abcd";
    // GIVEN an OrderConfirmed event EventBridge could not deliver, as it dead-letters one
    let event = json!({
        "version": "0", "id": "e-1", "detail-type": "OrderConfirmed", "source": "shop.orders",
        "account": "123456789012", "time": "2026-11-22T10:00:00Z", "region": "us-east-1",
        "resources": [],
        "detail": {"schemaVersion": 1, "orderId": order, "correlationId": "c-1",
                   "occurredAt": "2026-11-22T10:00:00Z", "customerId": "c",
                   "lines": [{"sku": "MUG", "quantity": 1, "unitPrice": 1250}],
                   "total": 1250, "currency": "EUR", "chargeId": "ch_1"}
    });
    let attribute = |v: &str| {
        aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .unwrap()
    };
    aws_sdk_sqs::Client::new(&app.sdk)
        .send_message()
        .queue_url(&target_dlq.url)
        .message_body(event.to_string())
        .message_attributes("ERROR_CODE", attribute("SQS_THROTTLED"))
        .message_attributes("ERROR_MESSAGE", attribute("throttled"))
        .message_attributes(
            "RULE_ARN",
            attribute("arn:aws:events:us-east-1:123456789012:rule/x"),
        )
        .message_attributes(
            "TARGET_ARN",
            attribute("arn:aws:sqs:us-east-1:123456789012:y"),
        )
        .send()
        .await
        .unwrap();
    // THEN peek shows the original event and the delivery error
    let peeked = dlq::peek(
        &ops,
        "EventTargetDLQ",
        10,
        Some(&"attr.ERROR_CODE=SQS_THROTTLED".parse().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(
        peeked[0].delivery_failure.as_ref().unwrap().code,
        "SQS_THROTTLED"
    );
    assert_eq!(peeked[0].json.as_ref().unwrap()["detail"]["orderId"], order);
    assert!(peeked[0].reason.contains("SQS_THROTTLED"));
    // WHEN it is replayed, it goes back onto the bus and fulfilment ships the order
    let summary = dlq::replay(
        &ops,
        "EventTargetDLQ",
        &ReplayOptions::default(),
        &ProgressBar::hidden(),
        &AtomicBool::new(false),
    )
    .await
    .unwrap();
    assert_eq!(summary.moved, 1, "{summary:?}");
    assert!(
        summary.destination.starts_with("bus "),
        "{}",
        summary.destination
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.shipment_exists(order).await {
        assert!(
            Instant::now() < deadline,
            "the replayed event reached fulfilment"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(depth(&app, &target_dlq.url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_operator_input_is_refused_and_foreign_messages_stay_put() {
    let app = App::start().await;
    let ops = app.ops(&scratch());
    let stop = AtomicBool::new(false);
    // unknown queue
    let err = dlq::peek(&ops, "NoSuchDLQ", 10, None).await.unwrap_err();
    assert!(matches!(err, OpsError::UnknownQueue { .. }), "{err}");
    assert!(
        err.to_string().contains("PaymentsDLQ"),
        "lists the known queues: {err}"
    );
    // malformed filter
    let err = "detail..orderId=1"
        .parse::<shop_ops::filter::Filter>()
        .unwrap_err();
    assert!(matches!(err, OpsError::Filter { .. }), "{err}");
    // a DLQ holding a foreign message beside a real command
    let inventory_dlq = ops.queue("InventoryDLQ").unwrap();
    let sqs = aws_sdk_sqs::Client::new(&app.sdk);
    for body in [
        "<xml>not ours</xml>",
        r#"{"command":"Restock","sku":"MUG","quantity":1}"#,
    ] {
        sqs.send_message()
            .queue_url(&inventory_dlq.url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let peeked = dlq::peek(&ops, "InventoryDLQ", 10, None).await.unwrap();
    assert_eq!(peeked.len(), 2);
    assert_eq!(peeked.iter().filter(|l| l.json.is_none()).count(), 1);
    let summary = dlq::replay(
        &ops,
        "InventoryDLQ",
        &ReplayOptions::default(),
        &ProgressBar::hidden(),
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(summary.moved, 1, "{summary:?}");
    assert_eq!(summary.failed.len(), 1);
    assert!(
        summary.failed[0].1.contains("not JSON"),
        "{:?}",
        summary.failed
    );
    // the foreign message is still there, visible again, and nothing else broke
    let left = dlq::peek(&ops, "InventoryDLQ", 10, None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].body, "<xml>not ours</xml>");
    // a replay to the DLQ itself is refused
    let to_self = ReplayOptions {
        to: Some("InventoryDLQ".into()),
        ..ReplayOptions::default()
    };
    let err = dlq::replay(
        &ops,
        "InventoryDLQ",
        &to_self,
        &ProgressBar::hidden(),
        &stop,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OpsError::Refused(_)), "{err}");
    let (_, app_order) = app.place(&[("MUG", 1)], "tok_visa", None).await;
    assert_eq!(
        app.wait_terminal(&order_id(&app_order), WAIT).await["status"],
        "CONFIRMED"
    );
}

/// The payment provider is down while `broken` is set.
struct ProviderOutage {
    inner: Arc<dyn PaymentProvider>,
    broken: Arc<AtomicBool>,
}

#[async_trait]
impl PaymentProvider for ProviderOutage {
    async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(ProviderError::Transient("provider down".into()));
        }
        self.inner.authorize(request).await
    }
    async fn authentication(&self, payment_id: &str) -> Result<Authentication, ProviderError> {
        self.inner.authentication(payment_id).await
    }
    async fn capture(&self, id: &str, request: &ChargeRequest) -> Result<(), ProviderError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(ProviderError::Transient("provider down".into()));
        }
        self.inner.capture(id, request).await
    }
    async fn release(
        &self,
        id: Option<&str>,
        request: &ChargeRequest,
    ) -> Result<Released, ProviderError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(ProviderError::Transient("refund endpoint down".into()));
        }
        self.inner.release(id, request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_saga_is_listed_shown_and_redriven_to_completion() {
    // GIVEN a payment provider that is down for charges and refunds
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let app = App::start_with(move |ports| {
        ports.payments.provider = Arc::new(ProviderOutage {
            inner: ports.payments.provider.clone(),
            broken: flag.clone(),
        })
    })
    .await;
    let ops = app.ops(&scratch());
    let (_, placed) = app.place(&[("MUG", 2)], "tok_visa", None).await;
    let id = order_id(&placed);
    let (status, _) = app.wait_execution(&id, 2 * WAIT).await;
    assert_eq!(status, "FAILED");
    // THEN `list --status FAILED` names the order, the failing state and the error
    let failed = saga::list(&ops, Some(saga::RunStatus::Failed), None)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].order_id, id);
    assert_eq!(failed[0].state.as_deref(), Some("RefundPayment"));
    assert_eq!(failed[0].error.as_deref(), Some("CompensationFailed"));
    assert!(
        saga::list(&ops, Some(saga::RunStatus::Running), None)
            .await
            .unwrap()
            .is_empty()
    );
    // AND `show` has the timeline and flags the order as stuck
    let report = saga::show(&ops, &id).await.unwrap();
    let states: Vec<_> = report.runs[0].1.iter().map(|s| s.state.as_str()).collect();
    assert!(
        states.starts_with(&[
            "Route",
            "ReserveStock",
            "MarkPaymentPending",
            "AuthorizePayment",
            "RefundPayment",
            "WaitToRefund",
            "RefundPayment"
        ]),
        "{states:?}"
    );
    let charge = &report.runs[0].1[3];
    assert!(charge.retries >= 1, "{charge:?}");
    // The charge was retried while the provider was down, until the order's deadline
    // (20 s in the tests) ended it.
    assert!(
        charge
            .error
            .as_deref()
            .unwrap_or("")
            .starts_with("OrderExpired"),
        "{charge:?}"
    );
    assert_eq!(
        report.reservation.as_ref().unwrap().status,
        shop_aws::stock::ReservationStatus::Reserved
    );
    assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    // AND the case waits on the compensation queue
    let cases = saga::compensations(&ops, 10).await.unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].order_id, id);
    // WHEN the provider is back and the payments circuit breaker's cool-down (20 s in
    // template.yaml) has passed, a dry run says what would happen
    broken.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let dry = saga::redrive(&ops, &id, true).await.unwrap();
    let RedrivePlan::Restart { name, input } = &dry.plan else {
        panic!("{:?}", dry.plan)
    };
    assert_eq!(name, &format!("{id}-redrive-1"));
    assert_eq!(input["resume"], "compensate");
    assert!(dry.started.is_none());
    // AND replaying the compensation case redrives it and takes the case off the queue
    let done = saga::replay_compensations(&ops, false).await.unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].1.as_ref().unwrap().started.is_some());
    assert!(saga::compensations(&ops, 10).await.unwrap().is_empty());
    // THEN the redriven run compensates to the end
    let (status, _) = app.wait_execution(&format!("{id}-redrive-1"), WAIT).await;
    assert_eq!(
        status,
        "SUCCEEDED",
        "{:#?}",
        saga::show(&ops, &id).await.unwrap().runs.last()
    );
    let order = app.wait_terminal(&id, WAIT).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(
        order["cancelReason"], "OrderExpired",
        "the original reason: the outage outlasted the order's wait"
    );
    let mug = app.stock("MUG").await;
    assert_eq!((mug.available, mug.reserved), (100, 0));
    assert_eq!(app.sandbox().net_captured(&OrderId::parse(&id).unwrap()), 0);
    let report = saga::show(&ops, &id).await.unwrap();
    assert_eq!(report.runs.len(), 2);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    // AND a second redrive has nothing to do
    let again = saga::redrive(&ops, &id, false).await.unwrap();
    assert!(
        matches!(again.plan, RedrivePlan::Nothing { .. }),
        "{:?}",
        again.plan
    );
    assert!(again.started.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_charge_for_a_cancelled_order_never_reaches_the_provider() {
    // GIVEN an order cancelled after its charge kept timing out past the order's
    // deadline (the tests' 20 s), the ledger holding a tombstone
    let app = App::start().await;
    let ops = app.ops(&scratch());
    let (_, placed) = app.place(&[("TEE", 1)], "tok_timeout", None).await;
    let id = order_id(&placed);
    assert_eq!(app.wait_terminal(&id, WAIT).await["status"], "CANCELLED");
    assert_eq!(app.ledger(&id).await.unwrap().status, LedgerStatus::Voided);
    // AND its Authorize command sits in the payments DLQ: its saga no longer waits for
    // it (the receipt drops it), and the ledger's tombstone would refuse it next
    let charge = app
        .recording_bodies("PaymentsFunction")
        .into_iter()
        .find(|b| b.contains("\"Authorize\""))
        .expect("the saga sent an Authorize");
    assert!(
        !charge.contains("tok_timeout"),
        "no payment method: {charge}"
    );
    let oid = OrderId::parse(&id).unwrap();
    let attempts_before = app.sandbox().attempts(&oid);
    let payments_dlq = ops.queue("PaymentsDLQ").unwrap();
    aws_sdk_sqs::Client::new(&app.sdk)
        .send_message()
        .queue_url(&payments_dlq.url)
        .message_body(&charge)
        .send()
        .await
        .unwrap();
    let before = app.recording_bodies("PaymentsFunction").len();
    // WHEN an operator replays it
    let summary = dlq::replay(
        &ops,
        "PaymentsDLQ",
        &ReplayOptions::default(),
        &ProgressBar::hidden(),
        &AtomicBool::new(false),
    )
    .await
    .unwrap();
    assert_eq!(summary.moved, 1);
    // THEN payments handles it (once) and charges nothing
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.recording_bodies("PaymentsFunction").len() == before {
        assert!(
            Instant::now() < deadline,
            "payments received the replayed Authorize"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        app.recording_bodies("PaymentsFunction").len(),
        before + 1,
        "handled, not retried"
    );
    assert_eq!(app.ledger(&id).await.unwrap().status, LedgerStatus::Voided);
    assert_eq!(
        app.sandbox().attempts(&oid),
        attempts_before,
        "the provider was never asked"
    );
    assert!(
        app.sandbox().books().iter().all(|m| m.order_id != oid),
        "nothing captured, nothing given back"
    );
    assert_eq!(depth(&app, &payments_dlq.url).await, 0);
    assert!(saga::show(&ops, &id).await.unwrap().violations.is_empty());
}

/// A span as X-Ray keeps it in `aws/spans` once Transaction Search is on: OpenTelemetry's
/// semantic convention format, one log event per span.
fn span_log_event(span: &shop_ops::trace::Span) -> aws_sdk_cloudwatchlogs::types::InputLogEvent {
    let nanos = |ns: u128| u64::try_from(ns).unwrap();
    let message = json!({
        "resource": {"attributes": {"service.name": span.service, "cloud.provider": "aws"}},
        "scope": {"name": "observability"},
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "parentSpanId": span.parent_span_id.clone().unwrap_or_default(),
        "name": span.name,
        "kind": "INTERNAL",
        "startTimeUnixNano": nanos(span.start_ns),
        "endTimeUnixNano": nanos(span.end_ns),
        "durationNano": nanos(span.end_ns - span.start_ns),
        "attributes": span.attributes,
        "links": span.links.iter().map(|(t, s)| json!({"traceId": t, "spanId": s})).collect::<Vec<_>>(),
        "status": match &span.error {
            Some(message) => json!({"code": "ERROR", "message": message}),
            None => json!({"code": "UNSET"}),
        },
    });
    aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
        .timestamp(i64::try_from(span.start_ns / 1_000_000).unwrap())
        .message(message.to_string())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployed_stacks_trace_is_read_from_transaction_search_as_the_local_one_is() {
    // GIVEN a compensated order and a confirmed one, their spans kept by shop local
    let app = App::start().await;
    let ops = app.ops(&scratch());
    let (_, declined) = app.place(&[("MUG", 1)], "tok_decline", None).await;
    let (_, confirmed) = app.place(&[("MUG", 1)], "tok_visa", None).await;
    let (declined, confirmed) = (order_id(&declined), order_id(&confirmed));
    assert_eq!(
        app.wait_terminal(&declined, WAIT).await["status"],
        "CANCELLED"
    );
    assert_eq!(
        app.wait_terminal(&confirmed, WAIT).await["status"],
        "CONFIRMED"
    );
    let traces = LocalStackFile::read(&app.stack_file)
        .unwrap()
        .traces
        .expect("shop local keeps the session's traces");
    // (each function exports its spans once it has answered: wait until none arrives)
    let mut local = shop_ops::trace::local(&ops, &traces, &declined)
        .await
        .unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = shop_ops::trace::local(&ops, &traces, &declined)
            .await
            .unwrap();
        if again.rows.len() == local.rows.len() {
            break;
        }
        local = again;
    }
    // AND every span of the session in aws/spans, as X-Ray writes them there
    ops.logs
        .create_log_group()
        .log_group_name(shop_ops::trace::transaction_search::SPANS_LOG_GROUP)
        .send()
        .await
        .unwrap();
    ops.logs
        .create_log_stream()
        .log_group_name(shop_ops::trace::transaction_search::SPANS_LOG_GROUP)
        .log_stream_name("default")
        .send()
        .await
        .unwrap();
    let mut spans = TraceFile::read(&traces).unwrap();
    spans.sort_by_key(|s| s.start_ns);
    ops.logs
        .put_log_events()
        .log_group_name(shop_ops::trace::transaction_search::SPANS_LOG_GROUP)
        .log_stream_name("default")
        .set_log_events(Some(spans.iter().map(span_log_event).collect()))
        .send()
        .await
        .unwrap();
    // WHEN `shop trace --stack` reads the order's trace
    let deployed = shop_ops::trace::deployed(&ops, &declined).await.unwrap();
    // THEN it is the trace shop local shows: the same spans, parents, outcomes and
    // order, the saga's compensation among them, none of the other order's
    let rows = |t: &shop_ops::trace::OrderTrace| {
        t.rows
            .iter()
            .map(|r| {
                let s = &r.span;
                (
                    s.span_id.clone(),
                    s.parent_span_id.clone(),
                    s.service.clone(),
                    s.error.is_some(),
                    r.depth,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rows(&deployed),
        rows(&local),
        "{}",
        shop_ops::trace::render(&deployed)
    );
    assert_eq!(
        (deployed.trace_id.as_str(), deployed.orphans),
        (local.trace_id.as_str(), 0)
    );
    assert!(
        deployed.rows.iter().any(|r| r.span.name == "ReleaseStock"),
        "{}",
        shop_ops::trace::render(&deployed)
    );
    assert!(
        deployed.rows.iter().all(|r| r
            .span
            .attributes
            .get("order.id")
            .is_none_or(|o| o == declined.as_str())),
        "{}",
        shop_ops::trace::render(&deployed)
    );
}
