//! Cold and warm start of a function's release binary under a fake Lambda Runtime API
//! (the same HTTP contract Lambda's runtime interface serves): time from exec to the
//! first `GET /runtime/invocation/next` (init), the first invocation (cold: clients make
//! their first connections) and the second (warm), and the process's peak RSS. The event
//! is the orders API's `GET /v1/orders/{id}` for an order stored in the emulator.
//!
//!   cargo build --release -p orders-api
//!   scripts/with-moto.sh cargo run --profile local-bench -p shop --example bench_cold_start -- [RUNS]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use shop_aws::orders::DynamoOrderStore;
use shop_domain::ports::OrderStore;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};

/// What the fake Runtime API saw, with when.
enum Seen {
    Next(Instant),
    Response(Instant, String),
    Error(String),
}

struct RuntimeApi {
    seen: mpsc::UnboundedSender<Seen>,
    events: Mutex<mpsc::UnboundedReceiver<String>>,
}

async fn serve(
    api: Arc<RuntimeApi>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_owned();
    if path.ends_with("/invocation/next") {
        let _ = api.seen.send(Seen::Next(Instant::now()));
        let event = api.events.lock().await.recv().await.unwrap_or_default();
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            + 10_000;
        return Ok(Response::builder()
            .header(
                "Lambda-Runtime-Aws-Request-Id",
                uuid::Uuid::new_v4().to_string(),
            )
            .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
            .header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench",
            )
            .header(
                "Lambda-Runtime-Trace-Id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::new(Bytes::from(event)))
            .unwrap_or_default());
    }
    let body = req.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    let _ = api.seen.send(if path.ends_with("/response") {
        Seen::Response(Instant::now(), text)
    } else {
        Seen::Error(format!("{path}: {text}"))
    });
    Ok(Response::builder()
        .status(202)
        .body(Full::new(Bytes::new()))
        .unwrap_or_default())
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn median_p95(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.95))
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let binary = root.join("target/release/orders-api");
    assert!(
        binary.exists(),
        "build it first: cargo build --release -p orders-api"
    );
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("run under scripts/with-moto.sh");
    let sdk = shop::local::emulator_sdk(&endpoint).await;
    let template = local_runtime::Template::load(&root.join("template.yaml")).expect("template");
    let stack = local_runtime::provision(
        &template,
        &format!("cold{}", std::process::id()),
        &BTreeMap::new(),
        &local_runtime::provision::Clients::new(&sdk),
        "us-east-1",
    )
    .await
    .expect("stack");
    let order = shop_domain::fakes::pending_order("MUG", 1, 1250);
    DynamoOrderStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        stack.tables["OrdersTable"].clone(),
    )
    .insert(&order)
    .await
    .expect("order stored");
    let mut event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("events/orders-api/get-order.json")).expect("sample"),
    )
    .expect("sample JSON");
    let path = format!("/v1/orders/{}", order.order_id);
    event["rawPath"] = serde_json::json!(path);
    event["pathParameters"]["id"] = serde_json::json!(order.order_id.to_string());
    event["requestContext"]["http"]["path"] = serde_json::json!(path);
    let event = event.to_string();

    let env = stack.functions["OrdersApiFunction"].env.clone();
    let (mut init, mut cold, mut warm, mut rss) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let api = Arc::new(RuntimeApi {
            seen: seen_tx,
            events: Mutex::new(events_rx),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = api.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| serve(api.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&binary)
            .envs(&env)
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts");
        let mut timings = Vec::new();
        let mut last = started;
        for _ in 0..2 {
            match seen.recv().await {
                Some(Seen::Next(at)) => {
                    timings.push(at - last);
                    last = Instant::now();
                    let _ = events_tx.send(event.clone());
                }
                _ => panic!("expected GET next"),
            }
            match seen.recv().await {
                Some(Seen::Response(at, body)) => {
                    assert!(body.contains("\"statusCode\":200"), "{body}");
                    timings.push(at - last);
                    last = at;
                }
                Some(Seen::Error(e)) => panic!("the function failed: {e}"),
                _ => panic!("expected a response"),
            }
        }
        if let Some(Seen::Next(_)) = seen.recv().await {
            rss.push(child.id().and_then(peak_rss_kib).unwrap_or(0) as f64 / 1024.0);
        }
        let _ = child.kill().await;
        server.abort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        init.push(ms(timings[0]));
        cold.push(ms(timings[1]));
        warm.push(ms(timings[3]));
    }
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0) as f64 / 1_048_576.0;
    println!(
        "orders-api release binary ({size:.1} MB), {runs} runs, fake Runtime API, DynamoDB on moto"
    );
    println!("| measure | median | p95 |");
    println!("|---|---:|---:|");
    for (name, values) in [
        ("init: exec → first GET next", init),
        ("first invocation (cold clients)", cold),
        ("second invocation (warm)", warm),
    ] {
        let (m, p) = median_p95(values);
        println!("| {name} | {m:.1} ms | {p:.1} ms |");
    }
    let (m, p) = median_p95(rss);
    println!("| peak RSS after two invocations | {m:.1} MiB | {p:.1} MiB |");
}
