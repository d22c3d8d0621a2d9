//! Warm cost: the CPU time one invocation of each handler spends, with its AWS calls
//! answered at once by a fake endpoint (canned responses on another thread), so the
//! figure is the function's own work: decoding, domain logic, SDK serialization and
//! signing, HTTP, JSON logs. The baseline is one bare SDK call in the same process, so
//! each handler reads as a ratio of "one AWS call".
//!
//! `cargo bench -p shop --bench warm`; results in BENCHMARKS.md.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use observability::traces::Tracing;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

/// CPU time of the benchmark thread. The handler runs on a current-thread runtime
/// driven by that thread, so this counts its work and not the fake endpoint's.
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = cpu_time::ThreadTime;
    type Value = Duration;

    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }
    fn end(&self, started: Self::Intermediate) -> Self::Value {
        started.elapsed()
    }
    fn add(&self, a: &Self::Value, b: &Self::Value) -> Self::Value {
        *a + *b
    }
    fn zero(&self) -> Self::Value {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Self::Value) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (divisor, unit) = if typical >= 1e6 {
            (1e6, "ms cpu")
        } else {
            (1e3, "µs cpu")
        };
        values.iter_mut().for_each(|v| *v /= divisor);
        unit
    }
    fn scale_throughputs(&self, _: f64, _: &Throughput, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v = 1e9 / *v);
        "invocations/cpu-s"
    }
    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns cpu"
    }
}

/// Answers every call the functions make, as the services would on success.
fn answer(target: &str, body: &Value) -> Value {
    match target {
        "DynamoDB_20120810.BatchGetItem" => json!({
            "Responses": { "catalog": [
                { "sku": { "S": "MUG" }, "name": { "S": "Mug" }, "prices": { "M": { "EUR": { "N": "1250" } } } },
                { "sku": { "S": "TEE" }, "name": { "S": "Tee" }, "prices": { "M": { "EUR": { "N": "1999" } } } }
            ] },
            "UnprocessedKeys": {}
        }),
        "AmazonSQS.SendMessage" => json!({
            "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274",
            "MD5OfMessageBody": format!("{:x}", md5::compute(body["MessageBody"].as_str().unwrap_or(""))),
        }),
        "AWSStepFunctions.StartExecution" => json!({
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:saga:ord-1",
            "startDate": 1.7637e9,
        }),
        "AWSEvents.PutEvents" => {
            let n = body["Entries"].as_array().map_or(0, Vec::len);
            json!({ "FailedEntryCount": 0, "Entries": vec![json!({ "EventId": "e-1" }); n] })
        }
        "DynamoDB_20120810.Query" => json!({ "Items": [], "Count": 0, "ScannedCount": 0 }),
        "secretsmanager.GetSecretValue" => json!({
            "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:key-AbCdEf",
            "Name": "key",
            "SecretString": "{\"apiKey\":\"sandbox-key-0123456789\"}",
        }),
        _ => json!({}),
    }
}

/// Starts the fake endpoint on a runtime of its own and returns its URL.
fn fake_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                tokio::spawn(async move {
                    let service = service_fn(
                        |request: hyper::Request<hyper::body::Incoming>| async move {
                            let target = request
                                .headers()
                                .get("x-amz-target")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            let bytes = request
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            let answer = answer(&target, &body).to_string();
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/x-amz-json-1.0")
                                    .body(Full::new(Bytes::from(answer)))
                                    .expect("response"),
                            )
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
    });
    url
}

fn event(path: &str) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(path);
    serde_json::from_slice(&std::fs::read(file).expect("event file")).expect("event JSON")
}

/// The first record of an `events/` batch, as a one-record batch.
fn first_record(path: &str) -> SqsEvent {
    let batch = event(path);
    let record: SqsMessage =
        serde_json::from_value(batch["Records"][0].clone()).expect("SQS record");
    let mut event = SqsEvent::default();
    event.records = vec![record];
    event
}

/// Benchmarks one SQS-triggered handler on a one-record batch that must succeed.
fn bench_batch<F, Fut>(
    group: &mut criterion::BenchmarkGroup<'_, ThreadCpu>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    event: &SqsEvent,
    handle: F,
) where
    F: Fn(SqsEvent) -> Fut,
    Fut: std::future::Future<Output = SqsBatchResponse>,
{
    group.bench_function(name, |b| {
        b.to_async(runtime).iter(|| async {
            let response = handle(event.clone()).await;
            assert!(response.batch_item_failures.is_empty(), "{name}");
        })
    });
}

/// `handle` on `event` as a function runs it with tracing on: inside its invocation's
/// span, under its subscriber, its spans exported after it (OTLP JSON, signed with
/// SigV4 as on AWS, to the fake endpoint).
async fn traced<E, Fut>(
    tracing: &Tracing<shop_aws::otlp::Exporter>,
    dispatch: &tracing::Dispatch,
    event: E,
    handle: impl FnOnce(E) -> Fut,
) -> Fut::Output
where
    E: observability::traces::Trigger,
    Fut: std::future::Future,
{
    tracing
        .invoke(dispatch, "bench", "invocation", event, handle)
        .await
}

fn warm(c: &mut Criterion<ThreadCpu>) {
    let url = fake_endpoint();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sdk = runtime.block_on(async {
        shop_aws::load_sdk_config()
            .await
            .to_builder()
            .endpoint_url(&url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                aws_sdk_dynamodb::config::Credentials::new(
                    "AKIDBENCH",
                    "bench",
                    None,
                    None,
                    "bench",
                ),
            ))
            .build()
    });
    let env: BTreeMap<&str, String> = BTreeMap::from([
        // Lambda sets it; one name for every handler here, whose failures none has.
        ("AWS_LAMBDA_FUNCTION_NAME", "bench".into()),
        ("CATALOG_TABLE", "catalog".into()),
        ("ORDERS_TABLE", "orders".into()),
        ("IDEMPOTENCY_TABLE", "idempotency".into()),
        ("ORDERS_QUEUE_URL", format!("{url}/123456789012/orders")),
        (
            "EXPRESS_ORDERS_QUEUE_URL",
            format!("{url}/123456789012/express"),
        ),
        (
            "STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:123456789012:stateMachine:saga".into(),
        ),
        ("EVENT_BUS_NAME", "orders".into()),
        ("INVENTORY_TABLE", "inventory".into()),
        ("PAYMENTS_TABLE", "payments".into()),
        ("PAYMENT_PROVIDER_KEY_SECRET", "key".into()),
        // The sandbox: this measures the function's own work, not a provider's.
        ("PAYMENT_PROVIDER", "sandbox".into()),
        ("SHIPMENTS_TABLE", "shipments".into()),
    ]);
    let env = |name: &str| env.get(name).cloned();
    // Logs as in Lambda (JSON, info), written nowhere: their formatting is part of the cost.
    observability::init_logging_to(std::io::sink);

    // Each function built as its main.rs builds it.
    let env = shop_aws::Settings::new(&env);
    let config = orders_api::Config::from_env(env).expect("orders-api");
    let api = orders_api::OrdersApi::new(&config, orders_api::Ports::aws(&sdk, &config));
    let config = order_intake::Config::from_env(env).expect("order-intake");
    let intake = order_intake::Intake::new(&config, order_intake::Ports::aws(&sdk, &config));
    let config = inventory::Config::from_env(env).expect("inventory");
    let inventory = inventory::Inventory::new(&config, inventory::Ports::aws(&sdk, &config));
    let config = payments::Config::from_env(env).expect("payments");
    let provider = runtime
        .block_on(payments::provider(&sdk, &config))
        .expect("payments");
    let payments = payments::Payments::new(
        &config,
        payments::Ports::aws(&sdk, &config, provider.port()),
    );
    let config = fulfilment::Config::from_env(env).expect("fulfilment");
    let fulfilment = fulfilment::Fulfilment::new(&config, fulfilment::Ports::aws(&sdk, &config));
    let config = orphan_sweeper::Config::from_env(env).expect("orphan-sweeper");
    let sweeper =
        orphan_sweeper::OrphanSweeper::new(&config, orphan_sweeper::Ports::aws(&sdk, &config));
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);

    let place: ApiGatewayV2httpRequest =
        serde_json::from_value(event("orders-api/place-order.json")).expect("API request");
    let orders = first_record("order-intake/orders-batch.json");
    let reserve = first_record("inventory/commands-batch.json");
    let charge = first_record("payments/commands-batch.json");
    let ship = first_record("fulfilment/order-outcomes.json");

    let tracing = shop_aws::otlp::tracing(
        &sdk,
        "bench",
        &shop_aws::otlp::TraceConfig {
            endpoint: format!("{url}/v1/traces"),
            sample_ratio: 1.0,
            signed: true,
        },
    );
    let dispatch = tracing.dispatch(std::io::sink);
    let (tracing, dispatch) = (&tracing, &dispatch);

    let mut group = c.benchmark_group("warm");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("baseline: one DynamoDB PutItem", |b| {
        b.to_async(&runtime).iter(|| async {
            dynamo
                .put_item()
                .table_name("orders")
                .item(
                    "orderId",
                    aws_sdk_dynamodb::types::AttributeValue::S("ord-1".into()),
                )
                .send()
                .await
                .expect("put");
        })
    });
    group.bench_function("orders-api: place an order", |b| {
        b.to_async(&runtime).iter(|| async {
            let deadline = std::time::SystemTime::now() + Duration::from_secs(10);
            let response = api.handle(place.clone(), deadline).await;
            assert_eq!(response.status_code, 202, "{:?}", response.body);
        })
    });
    bench_batch(
        &mut group,
        &runtime,
        "order-intake: start a saga",
        &orders,
        |e| intake.handle(e),
    );
    bench_batch(&mut group, &runtime, "inventory: reserve", &reserve, |e| {
        inventory.handle(e)
    });
    bench_batch(&mut group, &runtime, "payments: charge", &charge, |e| {
        payments.handle(e, std::time::SystemTime::now() + Duration::from_secs(30))
    });
    bench_batch(&mut group, &runtime, "fulfilment: ship", &ship, |e| {
        fulfilment.handle(e)
    });
    // The same invocations with tracing on: what the spans and their export cost.
    group.bench_function("orders-api: place an order, traced", |b| {
        b.to_async(&runtime).iter(|| async {
            let deadline = std::time::SystemTime::now() + Duration::from_secs(10);
            let response = traced(tracing, dispatch, place.clone(), |e| {
                api.handle(e, deadline)
            })
            .await;
            assert_eq!(response.status_code, 202, "{:?}", response.body);
        })
    });
    bench_batch(
        &mut group,
        &runtime,
        "order-intake: start a saga, traced",
        &orders,
        |e| traced(tracing, dispatch, e, |e| intake.handle(e)),
    );
    bench_batch(
        &mut group,
        &runtime,
        "inventory: reserve, traced",
        &reserve,
        |e| traced(tracing, dispatch, e, |e| inventory.handle(e)),
    );
    bench_batch(
        &mut group,
        &runtime,
        "payments: charge, traced",
        &charge,
        |e| {
            traced(tracing, dispatch, e, |e| {
                payments.handle(e, std::time::SystemTime::now() + Duration::from_secs(30))
            })
        },
    );
    bench_batch(
        &mut group,
        &runtime,
        "fulfilment: ship, traced",
        &ship,
        |e| traced(tracing, dispatch, e, |e| fulfilment.handle(e)),
    );
    // Not a saga step: one scheduled run finding nothing, a Query per index shard.
    group.bench_function("orphan-sweeper: a run with nothing to sweep", |b| {
        b.to_async(&runtime).iter(|| async {
            let summary = sweeper.handle().await.expect("sweep");
            assert_eq!(summary.examined, 0);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu).sample_size(50);
    targets = warm
}
criterion_main!(benches);
