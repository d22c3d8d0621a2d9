//! Benchmark of the priority lane on `shop local`: with a backlog of N standard orders
//! already queued for intake, how long until an express order's saga starts, next to a
//! standard order placed at the same moment (the baseline: the same order without the
//! lane). Prints a table; the express column should stay flat as N grows.
//!
//! The backlog's sagas are not run: a saga-starter wrapper (the fault-injection port)
//! answers for backlog orders after 200 ms (a StartExecution round trip plus the
//! intake's own work on a cold, throttled day), and the standard lane runs with its
//! minimum concurrency (`StandardIntakeConcurrency=2`), so a backlog takes a while to drain.
//! On one machine every saga shares one emulator process, and a few hundred running
//! sagas slow every API call, which would measure the emulator rather than the lane.
//! The backlog still costs the intake consumers what it costs on AWS.
//!
//!   scripts/with-moto.sh cargo run --profile local-bench -p shop --example bench_priority -- [N ...]

use async_trait::async_trait;
use local_app::{LocalApp, LocalOptions};
use serde_json::Value;
use shop_domain::Order;
use shop_domain::OrderId;
use shop_domain::ports::{PortError, SagaStarter, StartOutcome};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BACKLOG_CUSTOMER: &str = "backlog";

/// Starts probe sagas for real; answers for backlog orders after a StartExecution's time.
struct BacklogStarter(Arc<dyn SagaStarter>);

#[async_trait]
impl SagaStarter for BacklogStarter {
    async fn start(&self, order_id: &OrderId, input: &Value) -> Result<StartOutcome, PortError> {
        if input["customerId"] == BACKLOG_CUSTOMER {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(StartOutcome::Started);
        }
        self.0.start(order_id, input).await
    }
}

/// Queues `n` standard orders for intake so that they all become visible at once
/// (SQS message timers), and returns when they have: the backlog is then in the queue,
/// not already half consumed while it was being sent.
async fn queue_backlog(app: &LocalApp, n: usize) {
    const DELAY: Duration = Duration::from_secs(90);
    let sqs = aws_sdk_sqs::Client::new(&app.sdk);
    let url = &app.stack.queues["OrdersQueue"].url;
    let sending = Instant::now();
    let backlog: Vec<Order> = (0..n)
        .map(|_| Order {
            customer_id: shop_domain::CustomerId(BACKLOG_CUSTOMER.into()),
            ..shop_domain::fakes::pending_order("MUG", 1, 1250)
        })
        .collect();
    for chunk in backlog.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, o)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(serde_json::to_string(o).unwrap_or_default())
                    .delay_seconds(DELAY.as_secs() as i32)
                    .build()
                    .expect("entry")
            })
            .collect();
        sqs.send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("backlog queued");
    }
    assert!(
        sending.elapsed() < DELAY,
        "sending the backlog took longer than its timer"
    );
    tokio::time::sleep(DELAY - sending.elapsed()).await;
}

/// Places an order and returns how long until the API answered and until its saga
/// execution exists.
async fn time_to_saga(app: &LocalApp, express: bool) -> (Duration, Duration) {
    let body = format!(
        r#"{{"currency":"EUR","paymentToken":"pm_card_visa","express":{express},"lines":[{{"sku":"TEE","quantity":1}}]}}"#
    );
    let started = Instant::now();
    let placed = app
        .request("probe", "POST", "/v1/orders", Some(&body))
        .await
        .expect("the API answers");
    let answered = started.elapsed();
    let id = serde_json::from_str::<serde_json::Value>(&placed.body)
        .ok()
        .and_then(|v| v["orderId"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("order placed: {} {}", placed.status, placed.body));
    let arn = shop_aws::saga::execution_arn(&app.stack.state_machines["OrderSaga"], &id);
    let sfn = aws_sdk_sfn::Client::new(&app.sdk);
    loop {
        if sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .is_ok()
        {
            return (answered, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "saga of {id} never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_drained(app: &LocalApp) {
    let sqs = aws_sdk_sqs::Client::new(&app.sdk);
    let url = &app.stack.queues["OrdersQueue"].url;
    loop {
        let out = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .expect("queue attributes");
        let left: u64 = out
            .attributes
            .unwrap_or_default()
            .values()
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![0, 100, 400]
    } else {
        sizes
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let app = LocalApp::start(LocalOptions {
        root,
        stack_name: "bench-priority".into(),
        ports: Some(Arc::new(|ports| {
            ports.order_intake.saga = Arc::new(BacklogStarter(ports.order_intake.saga.clone()))
        })),
        parameters: [("StandardIntakeConcurrency".to_owned(), "2".to_owned())].into(),
        ..LocalOptions::default()
    })
    .await
    .expect("shop local starts");
    let restock = aws_sdk_sqs::Client::new(&app.sdk);
    for sku in ["MUG", "TEE"] {
        restock
            .send_message()
            .queue_url(&app.stack.queues["InventoryQueue"].url)
            .message_body(format!(
                r#"{{"command":"Restock","sku":"{sku}","quantity":100000}}"#
            ))
            .send()
            .await
            .expect("restock");
    }
    println!(
        "| standard orders queued | express: POST answered | express: POST → saga started | standard (no lane): POST → saga started | standard / express |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for n in sizes {
        wait_drained(&app).await;
        queue_backlog(&app, n).await;
        let (express, standard) = tokio::join!(time_to_saga(&app, true), time_to_saga(&app, false));
        let ((answered, express), (_, standard)) = (express, standard);
        println!(
            "| {n} | {:.2} s | {:.2} s | {:.2} s | {:.1}× |",
            answered.as_secs_f64(),
            express.as_secs_f64(),
            standard.as_secs_f64(),
            standard.as_secs_f64() / express.as_secs_f64().max(0.001)
        );
    }
    app.stop().await;
}
