//! Benchmark of the priority lane on `shop local`: with a backlog of N standard orders
//! already queued for intake, how long until an express order's saga starts, next to a
//! standard order placed at the same moment (the baseline: the same order without the
//! lane). Prints a table; the express column should stay flat as N grows.
//!
//!   cargo run --profile local-bench -p shop --example bench_priority -- [N ...]

use shop::local::{LocalApp, LocalOptions};
use shop_aws::orders::DynamoOrderStore;
use shop_domain::ports::OrderStore;
use shop_domain::{
    Currency, CustomerId, Order, OrderId, OrderLine, OrderStatus, Sku, StatusChange,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn backlog_order() -> Order {
    Order {
        order_id: OrderId::generate(),
        customer_id: CustomerId("backlog".into()),
        lines: vec![OrderLine {
            sku: Sku("MUG".into()),
            quantity: 1,
            unit_price: 1250,
        }],
        currency: Currency::EUR,
        total: 1250,
        status: OrderStatus::Pending,
        history: vec![StatusChange {
            status: OrderStatus::Pending,
            at: "2026-11-22T00:00:00Z".into(),
            reason: None,
        }],
        payment_token: "tok_visa".into(),
        correlation_id: "bench".into(),
        created_at: "2026-11-22T00:00:00Z".into(),
        express: false,
    }
}

/// Queues `n` standard orders for intake at once (stored first, as the API would).
async fn queue_backlog(app: &LocalApp, n: usize) {
    let orders = DynamoOrderStore::new(
        aws_sdk_dynamodb::Client::new(&app.sdk),
        app.stack.tables["OrdersTable"].clone(),
    );
    let batch: Vec<Order> = (0..n).map(|_| backlog_order()).collect();
    for o in &batch {
        orders.insert(o).await.expect("backlog order stored");
    }
    let sqs = aws_sdk_sqs::Client::new(&app.sdk);
    let url = &app.stack.queues["OrdersQueue"].url;
    for chunk in batch.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, o)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(serde_json::to_string(o).unwrap_or_default())
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
}

/// Places an order and returns how long until its saga execution exists.
async fn time_to_saga(app: &LocalApp, express: bool) -> Duration {
    let body = format!(
        r#"{{"customerId":"probe","currency":"EUR","paymentToken":"tok_visa","express":{express},"lines":[{{"sku":"TEE","quantity":1}}]}}"#
    );
    let started = Instant::now();
    let placed = app
        .request("POST", "/v1/orders", Some(&body))
        .await
        .expect("the API answers");
    let id = serde_json::from_str::<serde_json::Value>(&placed.body)
        .ok()
        .and_then(|v| v["orderId"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("order placed: {} {}", placed.status, placed.body));
    let machine = &app.stack.state_machines["OrderSaga"];
    let arn = format!(
        "{}:{id}",
        machine.replacen(":stateMachine:", ":execution:", 1)
    );
    let sfn = aws_sdk_sfn::Client::new(&app.sdk);
    loop {
        if sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .is_ok()
        {
            return started.elapsed();
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
        endpoint: None,
        port: 0,
        invoke_url: None,
        seed: None,
        stack_name: "bench-priority".into(),
        wrappers: Default::default(),
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
        "| standard orders queued | express: POST → saga started | standard (no lane): POST → saga started | standard / express |"
    );
    println!("|---:|---:|---:|---:|");
    for n in sizes {
        wait_drained(&app).await;
        queue_backlog(&app, n).await;
        let (express, standard) = tokio::join!(time_to_saga(&app, true), time_to_saga(&app, false));
        println!(
            "| {n} | {:.2} s | {:.2} s | {:.1}× |",
            express.as_secs_f64(),
            standard.as_secs_f64(),
            standard.as_secs_f64() / express.as_secs_f64().max(0.001)
        );
    }
    app.stop().await;
}
