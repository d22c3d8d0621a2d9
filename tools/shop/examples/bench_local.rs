//! Benchmark of `shop local`: time to ready, and latency from `POST /v1/orders` to the
//! order's terminal state, against moto alone running the same saga definition with
//! every task token answered at once by a bare responder (no functions, no runner).
//! The difference is the local runner's and the functions' own cost.
//!
//!   cargo run --profile local-bench -p shop --example bench_local -- [ORDERS] [IN_FLIGHT]

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::join_all;
use local_app::{LocalApp, LocalOptions};
use local_runtime::emulator::Emulator;
use local_runtime::emulator::emulator_sdk;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn run_closed_loop<F, Fut>(
    orders: usize,
    in_flight: usize,
    one: F,
) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Duration> + Send + 'static,
{
    let one = Arc::new(one);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (one, next) = (one.clone(), next.clone());
            async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= orders {
                        return latencies;
                    }
                    latencies.push(one(i).await);
                }
            }
        })
        .collect();
    let mut all: Vec<Duration> = join_all(workers).await.into_iter().flatten().collect();
    all.sort();
    (all, started.elapsed())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let orders: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let in_flight: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");

    // Baseline start: moto alone, from spawn to answering.
    let t = Instant::now();
    let mut bare = Emulator::start(&root, &root.join(".shop"), "bench-baseline")
        .await
        .expect("moto starts");
    let moto_ready = t.elapsed();

    // Baseline latency: the same definition, tokens answered at once.
    let sdk = emulator_sdk(&bare.endpoint).await;
    let template = local_runtime::Template::load(&root.join("template.yaml")).unwrap();
    let stack = Arc::new(
        local_runtime::provision(
            &template,
            "base",
            &BTreeMap::new(),
            &local_runtime::provision::Clients::new(&sdk),
            "us-east-1",
        )
        .await
        .unwrap(),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    for queue in ["InventoryQueue", "PaymentsQueue"] {
        let (sqs, sfn, url) = (sqs.clone(), sfn.clone(), stack.queues[queue].url.clone());
        tokio::spawn(async move {
            loop {
                let Ok(out) = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                else {
                    continue;
                };
                for m in out.messages.unwrap_or_default() {
                    let body: Value =
                        serde_json::from_str(m.body.as_deref().unwrap_or("{}")).unwrap_or_default();
                    let token = body["taskToken"].as_str().unwrap_or_default();
                    let _ = sfn
                        .send_task_success()
                        .task_token(token)
                        .output(json!({"chargeId": "ch_bench"}).to_string())
                        .send()
                        .await;
                    let _ = sqs
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(m.receipt_handle.unwrap_or_default())
                        .send()
                        .await;
                }
            }
        });
    }
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let (table, machine) = (
        stack.tables["OrdersTable"].clone(),
        stack.state_machines["OrderSaga"].clone(),
    );
    let (baseline, baseline_wall) = run_closed_loop(orders, in_flight, move |i| {
        let (dynamo, sfn, table, machine) = (dynamo.clone(), sfn.clone(), table.clone(), machine.clone());
        async move {
            let id = format!("ord-base{i:06}");
            let started = Instant::now();
            dynamo
                .put_item()
                .table_name(&table)
                .item("orderId", AttributeValue::S(id.clone()))
                .item("status", AttributeValue::S("PENDING".into()))
                .item("history", AttributeValue::L(vec![]))
                .send()
                .await
                .unwrap();
            let input = json!({"orderId": id, "customerId": "b", "lines": [{"sku": "MUG", "quantity": 1, "unitPrice": 1250}],
                "total": 1250, "currency": "EUR", "paymentToken": "pm_card_visa", "correlationId": "bench"});
            let arn = sfn.start_execution().state_machine_arn(&machine).name(&id).input(input.to_string()).send().await.unwrap().execution_arn;
            loop {
                let d = sfn.describe_execution().execution_arn(&arn).send().await.unwrap();
                if d.status.as_str() != "RUNNING" {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    bare.stop().await;

    // The runner: shop local from nothing to ready, then shoppers over its routes.
    let app = Arc::new(
        LocalApp::start(LocalOptions {
            root: root.clone(),
            port: 0,
            stack_name: "bench".into(),
            ..LocalOptions::default()
        })
        .await
        .expect("shop local starts"),
    );
    let local_ready = app.startup;
    let shopper = app.clone();
    let (local, local_wall) = run_closed_loop(orders, in_flight, move |_| {
        let app = shopper.clone();
        async move {
            let body = r#"{"currency":"EUR","paymentToken":"pm_card_visa","lines":[{"sku":"MUG","quantity":1}]}"#;
            let started = Instant::now();
            let placed = app.request("bench", "POST", "/v1/orders", Some(body)).await.expect("answer");
            let id = serde_json::from_str::<Value>(&placed.body).unwrap()["orderId"].as_str().unwrap().to_owned();
            loop {
                let r = app.request("bench", "GET", &format!("/v1/orders/{id}"), None).await.expect("answer");
                let status = serde_json::from_str::<Value>(&r.body).unwrap()["status"].as_str().unwrap_or("").to_owned();
                if status == "CONFIRMED" || status == "CANCELLED" {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    match Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => eprintln!("app still shared; exiting without stop"),
    }

    println!("| measure | moto alone (baseline) | shop local | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| start to ready | {} | {} | {:.2}x |",
        ms(moto_ready),
        ms(local_ready),
        local_ready.as_secs_f64() / moto_ready.as_secs_f64()
    );
    for (name, p) in [("p50 order latency", 0.5), ("p95 order latency", 0.95)] {
        let (b, l) = (percentile(&baseline, p), percentile(&local, p));
        println!(
            "| {name} | {} | {} | {:.2}x |",
            ms(b),
            ms(l),
            l.as_secs_f64() / b.as_secs_f64()
        );
    }
    println!(
        "| {orders} orders, {in_flight} in flight, wall time | {} | {} | {:.2}x |",
        ms(baseline_wall),
        ms(local_wall),
        local_wall.as_secs_f64() / baseline_wall.as_secs_f64()
    );
}
