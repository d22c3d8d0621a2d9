//! Cold start of every function's release binary under a fake Lambda Runtime API (the
//! HTTP contract Lambda's runtime interface serves), against two baselines run the same
//! way in the same process: a C program that only asks for its first invocation (the
//! floor) and a Python handler with the same init (boto3 clients for the same services)
//! under `awslambdaric`. Init is exec → first `GET /runtime/invocation/next`, over many
//! rounds, each starting every program once in a random order; the first round also
//! gives each function its sample event from `events/` (the first invocation, with cold
//! connections to the emulator) and reads the peak RSS.
//! Payments runs twice, its init building the Stripe provider (the wrapped localstripe)
//! and, in the same run, the sandbox it started with. A first invocation of a saga
//! worker carries a task token no execution holds: the worker drops the command at its
//! receipt (the saga gave up on it), so that column is the receipt, not the work.
//!
//! Then the cold path a payment command really takes: a fresh environment's init plus
//! its first authorization through Stripe, with a live task token (a saga execution
//! driven to AuthorizePayment for a fresh order each time), for the payments binary as
//! built and, when `target/bench/payments-before` exists (the script builds it from
//! the commit named by `BEFORE`), for that baseline, alternating run by run.
//!
//! Every function runs with its traces exported to a local OTLP receiver (as on AWS,
//! unsigned) and again with tracing off (`TRACES_SAMPLE_RATIO=0`); with `BEFORE`, the
//! binaries of that commit run beside them (`target/bench/before/`).
//!
//!   scripts/bench-cold-start.sh [RUNS]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use shop_aws::orders::DynamoOrderStore;
use shop_domain::ports::{OrderStore, SagaStarter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};

/// What the fake Runtime API saw, with when.
enum Seen {
    Next(Instant),
    Response(Instant),
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
        Seen::Response(Instant::now())
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

/// One program to start under the fake Runtime API.
struct Candidate {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    /// The event of the measured invocation, if the candidate handles one.
    event: Option<String>,
}

/// A fake Runtime API on a free port; returns its address, what it sees, and where
/// to push events.
async fn runtime_api() -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<Seen>,
    mpsc::UnboundedSender<String>,
    tokio::task::JoinHandle<()>,
) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
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
    (address, seen, events_tx, server)
}

/// What one start of a candidate measured.
struct Start {
    init: Duration,
    invocation: Option<Duration>,
    rss_mib: Option<f64>,
}

async fn start_once(candidate: &Candidate, endpoint: &str, invoke: bool) -> Start {
    let (address, mut seen, events, server) = runtime_api().await;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&candidate.program)
        .args(&candidate.args)
        .envs(&candidate.env)
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", &candidate.name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", candidate.program.display()));
    let init = match next_seen(&mut seen, &candidate.name, "first GET next").await {
        Some(Seen::Next(at)) => at - started,
        _ => panic!("{}: expected GET next", candidate.name),
    };
    let mut out = Start {
        init,
        invocation: None,
        rss_mib: None,
    };
    if let (true, Some(event)) = (invoke, &candidate.event) {
        let sent = Instant::now();
        let _ = events.send(event.clone());
        match next_seen(&mut seen, &candidate.name, "response").await {
            Some(Seen::Response(at)) => out.invocation = Some(at - sent),
            Some(Seen::Error(e)) => panic!("{} failed: {e}", candidate.name),
            _ => panic!("{}: expected a response", candidate.name),
        }
        if let Some(Seen::Next(_)) = next_seen(&mut seen, &candidate.name, "second GET next").await
        {
            out.rss_mib = child.id().and_then(peak_rss_kib).map(|k| k as f64 / 1024.0);
        }
    }
    let _ = child.kill().await;
    server.abort();
    out
}

/// What the Runtime API sees next; a program that dies or hangs fails the benchmark
/// with its name instead of stalling it.
async fn next_seen(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    name: &str,
    waiting_for: &str,
) -> Option<Seen> {
    tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .unwrap_or_else(|_| panic!("{name}: no {waiting_for} within 30 s"))
}

/// The functions of the template, their binaries and their sample events.
const FUNCTIONS: [(&str, &str, &str); 7] = [
    (
        "orders-api",
        "OrdersApiFunction",
        "events/orders-api/get-order.json",
    ),
    (
        "order-intake",
        "OrderIntakeFunction",
        "events/order-intake/orders-batch.json",
    ),
    (
        "inventory",
        "InventoryFunction",
        "events/inventory/commands-batch.json",
    ),
    (
        "payments",
        "PaymentsFunction",
        "events/payments/commands-batch.json",
    ),
    (
        "fulfilment",
        "FulfilmentFunction",
        "events/fulfilment/order-outcomes.json",
    ),
    (
        "orphan-sweeper",
        "OrphanSweeperFunction",
        "events/orphan-sweeper/scheduled.json",
    ),
    (
        "stripe-webhook",
        "StripeWebhookFunction",
        "events/stripe-webhook/payment-intent-capturable.json",
    ),
];

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let floor = root.join("target/bench/floor");
    let python = root.join(".venv-bench/bin/python");
    for needed in [&floor, &python] {
        assert!(
            needed.exists(),
            "run scripts/bench-cold-start.sh (missing {})",
            needed.display()
        );
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("run under scripts/with-moto.sh");
    let sdk = local_runtime::emulator::emulator_sdk(&endpoint).await;
    let template = local_runtime::Template::load(&root.join("template.yaml")).expect("template");
    let name = format!("cold{}", std::process::id());
    let mut stripe = local_runtime::emulator::Emulator::start_stripe(
        &root,
        &std::env::temp_dir().join("order-saga-bench"),
        &name,
        None,
    )
    .await
    .expect("the wrapped localstripe starts");
    let stack = local_runtime::provision(
        &template,
        &name,
        &BTreeMap::from([("StripeApiBase".to_owned(), stripe.endpoint.clone())]),
        &local_runtime::provision::Clients::new(&sdk),
        "us-east-1",
    )
    .await
    .expect("stack");
    local_app::put_local_stripe_secrets(&sdk, &stack)
        .await
        .expect("the local Stripe key");
    let order = shop_domain::Order {
        payment_token: "pm_card_visa".into(),
        ..shop_domain::fakes::pending_order("MUG", 1, 1250)
    };
    // One order per payments candidate: the ledger answers a second authorization of
    // an order from its record, without the provider.
    let sandbox_order = shop_domain::Order {
        order_id: shop_domain::OrderId::generate(),
        ..order.clone()
    };
    let orders = DynamoOrderStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        stack.tables["OrdersTable"].clone(),
    );
    for stored in [&order, &sandbox_order] {
        orders.insert(stored).await.expect("order stored");
    }

    // The functions export their spans here, as they do to X-Ray on AWS.
    let receiver = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let traces = format!(
        "http://{}/v1/traces",
        receiver.local_addr().expect("an address")
    );
    let trace_file = local_runtime::traces::TraceFile::create(
        std::env::temp_dir().join(format!("order-saga-bench/{name}.traces.jsonl")),
    )
    .expect("a trace file");
    let (_stop_receiver, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(local_runtime::traces::serve(receiver, trace_file, stopped));

    let mut candidates = vec![Candidate {
        name: "C floor (GET next only)".into(),
        program: floor,
        args: Vec::new(),
        env: BTreeMap::new(),
        event: None,
    }];
    for (binary, logical_id, sample) in FUNCTIONS {
        let program = root.join("target/release").join(binary);
        assert!(
            program.exists(),
            "run scripts/bench-cold-start.sh (missing {binary})"
        );
        let mut event: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join(sample)).expect("sample"))
                .expect("sample JSON");
        if binary == "orders-api" {
            let path = format!("/v1/orders/{}", order.order_id);
            event["rawPath"] = serde_json::json!(path);
            event["pathParameters"]["id"] = serde_json::json!(order.order_id.to_string());
            event["requestContext"]["http"]["path"] = serde_json::json!(path);
        }
        let mut env = stack.functions[logical_id].env.clone();
        env.insert("TRACES_ENDPOINT".into(), traces.clone());
        env.insert("TRACES_SIGNED".into(), "false".into());
        let before = root.join("target/bench/before").join(binary);
        if before.exists() {
            candidates.push(Candidate {
                name: format!("{binary} before tracing"),
                program: before,
                args: Vec::new(),
                env: env.clone(),
                event: Some(event.to_string()),
            });
        }
        let mut off = env.clone();
        off.insert("TRACES_SAMPLE_RATIO".into(), "0".into());
        candidates.push(Candidate {
            name: format!("{binary}, tracing off"),
            program: program.clone(),
            args: Vec::new(),
            env: off,
            event: Some(event.to_string()),
        });
        if binary == "payments" {
            // The Authorize of a stored order (see the module's note on the receipt).
            let authorize = |event: &mut serde_json::Value, order: &shop_domain::Order| {
                let record = &mut event["Records"][0];
                let mut command: serde_json::Value =
                    serde_json::from_str(record["body"].as_str().expect("a body")).expect("JSON");
                command["orderId"] = serde_json::json!(order.order_id.to_string());
                record["body"] = serde_json::json!(command.to_string());
            };
            authorize(&mut event, &sandbox_order);
            let mut sandbox = env.clone();
            sandbox.insert("PAYMENT_PROVIDER".into(), "sandbox".into());
            candidates.push(Candidate {
                name: "payments, sandbox (before Stripe)".into(),
                program: program.clone(),
                args: Vec::new(),
                env: sandbox,
                event: Some(event.to_string()),
            });
            authorize(&mut event, &order);
        }
        candidates.push(Candidate {
            name: binary.into(),
            program,
            args: Vec::new(),
            env,
            event: Some(event.to_string()),
        });
    }
    candidates.push(Candidate {
        name: "Python peer (boto3 ×4, awslambdaric)".into(),
        program: python,
        args: vec!["-m".into(), "awslambdaric".into(), "handler.handler".into()],
        env: BTreeMap::from([(
            "PYTHONPATH".to_owned(),
            root.join("bench/python-peer").display().to_string(),
        )]),
        // Init only: awslambdaric 4.2.2 takes the event and then never posts an answer
        // under this fake API (nor under a Python one), so its invocation is not timed.
        event: None,
    });

    // Rounds: each starts every candidate once, in a new random order, so the machine's
    // drift over the run (other work, frequency) falls on all of them alike, and no
    // candidate always follows the same binary (one started right after its own binary
    // finds that binary's pages and code hot). The first round also invokes each and
    // reads its peak RSS.
    let mut firsts = Vec::new();
    for candidate in &candidates {
        firsts.push(start_once(candidate, &endpoint, true).await);
    }
    let mut inits: Vec<Vec<f64>> = firsts.iter().map(|m| vec![ms(m.init)]).collect();
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    let mut rng = fastrand::Rng::with_seed(21);
    for _ in 1..runs {
        rng.shuffle(&mut order);
        for &i in &order {
            inits[i].push(ms(start_once(&candidates[i], &endpoint, false).await.init));
        }
    }
    let mut rows = Vec::new();
    for ((candidate, measured), times) in candidates.iter().zip(firsts).zip(inits) {
        let (median, p95) = median_p95(times);
        rows.push((candidate, median, p95, measured));
    }
    let floor_median = rows[0].1;
    let python_median = rows[rows.len() - 1].1;
    println!(
        "{runs} rounds, each starting every program once in a random order under a fake Runtime API; ratios of medians, same process"
    );
    println!(
        "| program | init median | init p95 | × floor | Python peer ÷ | first invocation | peak RSS | binary |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (candidate, median, p95, measured) in &rows {
        println!(
            "| {} | {median:.2} ms | {p95:.2} ms | {:.1}× | {:.0}× | {} | {} | {} |",
            candidate.name,
            median / floor_median,
            python_median / median,
            measured
                .invocation
                .map(|d| format!("{:.1} ms", ms(d)))
                .unwrap_or_else(|| "–".into()),
            measured
                .rss_mib
                .map(|r| format!("{r:.1} MiB"))
                .unwrap_or_else(|| "–".into()),
            size_mb(&candidate.program),
        );
    }
    cold_paths(&root, &sdk, &stack, &orders, &endpoint, runs.min(15)).await;
    stripe.stop().await;
}

/// Stores a fresh order and drives its saga to AuthorizePayment (answering
/// ReserveStock as inventory would); returns the SQS event carrying that Authorize,
/// whose task token the saga is waiting on.
async fn live_authorize(
    sdk: &aws_config::SdkConfig,
    stack: &local_runtime::provision::Stack,
    orders: &DynamoOrderStore,
    sample: &serde_json::Value,
) -> String {
    let order = shop_domain::Order {
        payment_token: "pm_card_visa".into(),
        created_at: shop_domain::now_rfc3339(),
        ..shop_domain::fakes::pending_order("MUG", 1, 1250)
    };
    orders.insert(&order).await.expect("order stored");
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    // Started as the intake starts it: through the adapter, which adds the trace context
    // every state of the saga reads.
    shop_aws::saga::SfnSagaStarter::new(sfn.clone(), &stack.state_machines["OrderSaga"])
        .start(
            &order.order_id,
            &shop_domain::services::saga_input(&order, shop_domain::services::WaitLimits::DEFAULT),
        )
        .await
        .expect("saga started");
    let id = order.order_id.to_string();
    let take = |queue: &'static str| {
        let (sqs, url, id) = (sqs.clone(), stack.queues[queue].url.clone(), id.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                assert!(Instant::now() < deadline, "no command for {id} on {queue}");
                let received = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .expect("receive");
                for m in received.messages() {
                    let body = m.body().unwrap_or_default().to_owned();
                    if body.contains(&id) {
                        sqs.delete_message()
                            .queue_url(&url)
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .send()
                            .await
                            .expect("delete");
                        return body;
                    }
                }
            }
        }
    };
    let reserve: serde_json::Value =
        serde_json::from_str(&take("InventoryQueue").await).expect("a command");
    sfn.send_task_success()
        .task_token(reserve["taskToken"].as_str().expect("a token"))
        .output(r#"{"reserved":true}"#)
        .send()
        .await
        .expect("reservation answered");
    let authorize = take("PaymentsQueue").await;
    let mut event = sample.clone();
    event["Records"][0]["body"] = serde_json::json!(authorize);
    event.to_string()
}

/// Init plus the first authorization, for the payments binary as built and the
/// baseline before it (when built), alternating.
async fn cold_paths(
    root: &Path,
    sdk: &aws_config::SdkConfig,
    stack: &local_runtime::provision::Stack,
    orders: &DynamoOrderStore,
    endpoint: &str,
    runs: usize,
) {
    let sample: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("events/payments/commands-batch.json")).expect("sample"),
    )
    .expect("sample JSON");
    let env = stack.functions["PaymentsFunction"].env.clone();
    let mut programs = vec![(
        "payments (key read overlapped with init)",
        root.join("target/release/payments"),
    )];
    let before = root.join("target/bench/payments-before");
    if before.exists() {
        programs.insert(0, ("payments before (key read in init)", before));
    }
    let mut paths: Vec<Vec<f64>> = vec![Vec::new(); programs.len()];
    let mut inits: Vec<Vec<f64>> = vec![Vec::new(); programs.len()];
    for _ in 0..runs {
        for (i, (name, program)) in programs.iter().enumerate() {
            let candidate = Candidate {
                name: (*name).into(),
                program: program.clone(),
                args: Vec::new(),
                env: env.clone(),
                event: Some(live_authorize(sdk, stack, orders, &sample).await),
            };
            let measured = start_once(&candidate, endpoint, true).await;
            let invocation = measured
                .invocation
                .unwrap_or_else(|| panic!("{name}: the authorization was not answered"));
            inits[i].push(ms(measured.init));
            paths[i].push(ms(measured.init + invocation));
        }
    }
    println!();
    println!(
        "Cold path of a payment command: init + the first authorization through Stripe (a live task token), {runs} runs each, alternating"
    );
    println!("| program | init median | cold path median | cold path p95 |");
    println!("|---|---:|---:|---:|");
    for (i, (name, _)) in programs.iter().enumerate() {
        let (init, _) = median_p95(inits[i].clone());
        let (median, p95) = median_p95(paths[i].clone());
        println!("| {name} | {init:.2} ms | {median:.2} ms | {p95:.2} ms |");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn size_mb(program: &Path) -> String {
    match std::fs::metadata(program) {
        Ok(m) if m.len() > 100_000 => format!("{:.2} MB", m.len() as f64 / 1_000_000.0),
        _ => "–".into(),
    }
}
