//! Black-box tests of `shop local`: the binary runs as a process with its own moto
//! server, and the test talks to it only over HTTP, like a shopper, then reads the
//! emulator to check stock. A second test runs the functions under
//! `cargo lambda watch` and points `shop local --invoke-url` at it.

use local_runtime::http_client::HttpClient;
use nix::sys::signal::{self, Signal};
use nix::unistd::{self, Pid};
use serde_json::{Value, json};
use shop_aws::stock::DynamoStockStore;
use shop_domain::Sku;
use shop_domain::ports::StockStore;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    child: Child,
    api: String,
    emulator: String,
    /// The Stripe emulator the payments function pays through, when it does.
    stripe: Option<String>,
    stack: String,
    /// The EMF metric lines `shop local` printed so far (its in-process functions
    /// write them to stdout, as a function does on Lambda).
    metrics: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Running {
    /// `Bearer <token>` for `customer`, printed by `shop token` as a developer runs it.
    async fn bearer(&self, customer: &str) -> String {
        let (code, out, err) = shop_cli(
            &[
                "token",
                "--customer",
                customer,
                "--local-stack",
                &self.stack,
                "--state-dir",
            ],
            &[root().join(".shop")],
        )
        .await;
        assert_eq!(code, 0, "shop token: {err}");
        format!("Bearer {}", out.trim())
    }
}

/// Starts `shop local` and waits for its ready banner.
async fn shop_local(stack: &str, extra: &[&str]) -> Running {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args([
            "local",
            "--port",
            &port.to_string(),
            "--issuer-port",
            "0",
            "--stack-name",
            stack,
            "--root",
        ])
        .arg(root())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("shop starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut emulator = String::new();
    let mut stripe = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .expect("shop local became ready in time")
            .unwrap()
            .expect("shop local exited before it was ready");
        if let Some(rest) = line.trim().strip_prefix("emulator") {
            emulator = rest.split_whitespace().next().unwrap().to_owned();
        }
        if let Some(rest) = line.trim().strip_prefix("payments") {
            stripe = rest
                .trim()
                .strip_prefix("Stripe emulator ")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned);
        }
        if line.contains("Press Ctrl-C to stop") {
            break;
        }
    }
    let metrics = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = metrics.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(doc) = serde_json::from_str::<Value>(&line)
                && doc.get("_aws").is_some()
            {
                seen.lock().unwrap().push(doc);
            }
        }
    });
    Running {
        metrics,
        child,
        api: format!("http://127.0.0.1:{port}"),
        emulator,
        stripe,
        stack: stack.to_owned(),
    }
}

async fn call(
    method: &str,
    url: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Value) {
    let client = HttpClient::default();
    let (status, h, b) = client
        .send_with_headers(
            method,
            url,
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            headers,
        )
        .await
        .unwrap();
    (status, h, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn wait_terminal(api: &str, bearer: &str, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, _, order) = call(
            "GET",
            &format!("{api}/v1/orders/{id}"),
            None,
            &[("authorization", bearer)],
        )
        .await;
        if matches!(order["status"].as_str(), Some("CONFIRMED" | "CANCELLED")) {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} not terminal: {order}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn order(sku: &str, quantity: u32, token: &str) -> Value {
    json!({"currency": "EUR", "paymentToken": token, "lines": [{"sku": sku, "quantity": quantity}]})
}

async fn stop(mut running: Running) {
    let pid = Pid::from_raw(running.child.id().unwrap() as i32);
    signal::kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), running.child.wait())
        .await
        .expect("shop local stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "clean exit, got {status}");
    let refused = HttpClient::default()
        .send(
            "GET",
            &format!("{}/moto-api/", running.emulator),
            Vec::new(),
        )
        .await;
    assert!(refused.is_err(), "the emulator stopped with shop local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_uses_the_local_app_over_http() {
    let app = shop_local(&format!("bb{}", std::process::id()), &[]).await;
    let api = &app.api;
    let bearer = app.bearer("bb").await;
    let bb = ("authorization", bearer.as_str());

    // Place an order with an idempotency key, then retry it.
    let (status, _, placed) = call(
        "POST",
        &format!("{api}/v1/orders"),
        Some(order("MUG", 2, "pm_card_visa")),
        &[("idempotency-key", "bb-1"), bb],
    )
    .await;
    assert_eq!(status, 202, "{placed}");
    let (status, headers, again) = call(
        "POST",
        &format!("{api}/v1/orders"),
        Some(order("MUG", 2, "pm_card_visa")),
        &[("idempotency-key", "bb-1"), bb],
    )
    .await;
    assert_eq!((status, &again), (202, &placed));
    assert_eq!(headers["idempotent-replayed"], "true");
    let id = placed["orderId"].as_str().unwrap().to_owned();

    // Poll it to its end; a confirmed order cannot be cancelled.
    let confirmed = wait_terminal(api, &bearer, &id, Duration::from_secs(60)).await;
    assert_eq!(confirmed["status"], "CONFIRMED");
    let (status, headers, problem) =
        call("POST", &format!("{api}/v1/orders/{id}/cancel"), None, &[bb]).await;
    assert_eq!(status, 409);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(
        problem["type"],
        "https://order-saga.example/problems/order-not-cancellable"
    );

    // Out of stock and bad input, as a shopper sees them.
    let (_, _, sold_out) = call(
        "POST",
        &format!("{api}/v1/orders"),
        Some(order("CAP", 1, "pm_card_visa")),
        &[bb],
    )
    .await;
    let cancelled = wait_terminal(
        api,
        &bearer,
        sold_out["orderId"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(cancelled["cancelReason"], "OutOfStock");
    let (status, _, problem) = call(
        "POST",
        &format!("{api}/v1/orders"),
        Some(order("MUG", 0, "pm_card_visa")),
        &[bb],
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "lines[0].quantity");

    // The stock in the emulator shows exactly one reservation of two mugs.
    let sdk = local_runtime::emulator::emulator_sdk(&app.emulator).await;
    let stock = DynamoStockStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        format!("bb{}-InventoryTable", std::process::id()),
    );
    let mug = stock.level(&Sku("MUG".into())).await.unwrap().unwrap();
    assert_eq!((mug.available, mug.reserved), (98, 2));

    // The operator commands find the same app through the stack file shop local wrote.
    let stack = format!("bb{}", std::process::id());
    let (code, out, _) = operator(&stack, &["dlq", "list"]).await;
    assert_eq!(code, 0);
    for dlq in [
        "OrdersDLQ",
        "InventoryDLQ",
        "PaymentsDLQ",
        "FulfilmentDLQ",
        "EventTargetDLQ",
    ] {
        assert!(out.contains(dlq), "{out}");
    }
    let (code, out, _) = operator(&stack, &["saga", "show", &id]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("CapturePayment") && out.contains("invariants: hold"),
        "{out}"
    );
    // AND it ends with the command that shows where the order's time went, which runs
    let suggested = out
        .lines()
        .find_map(|l| l.strip_prefix("where the time went: shop "))
        .unwrap_or_else(|| panic!("no shop trace suggested: {out}"));
    let (code, trace, err) = shop_cli(&suggested.split_whitespace().collect::<Vec<_>>(), &[]).await;
    assert_eq!(code, 0, "{suggested}: {err}");
    assert!(trace.contains("CapturePayment"), "{trace}");

    // A returned mug: part of the captured payment goes back once per reference, through
    // the payments function, and Stripe holds exactly that refund.
    let total = confirmed["total"].as_u64().unwrap();
    let refund = |amount: String, reference: &'static str| {
        let (stack, id) = (stack.clone(), id.clone());
        async move {
            operator(
                &stack,
                &[
                    "payments",
                    "refund",
                    &id,
                    "--amount",
                    &amount,
                    "--reference",
                    reference,
                ],
            )
            .await
        }
    };
    let (code, out, err) = refund("300".into(), "RMA-1").await;
    assert_eq!(code, 0, "{out}{err}");
    let left = total - 300;
    assert!(
        out.contains(&format!("refunded 300 of {id} under RMA-1; {left} left")),
        "{out}"
    );
    let (code, out, _) = refund("300".into(), "RMA-1").await;
    assert_eq!(code, 0);
    assert!(out.contains("RMA-1 already refunded 300"), "{out}");
    let (code, _, err) = refund((left + 1).to_string(), "RMA-2").await;
    assert_eq!(code, 2);
    assert!(err.contains(&format!("more than the {left}")), "{err}");
    let (code, _, err) = refund("10".into(), "RMA 3").await;
    assert_eq!(code, 2);
    assert!(err.contains("reference \"RMA 3\""), "{err}");
    let stripe = app
        .stripe
        .as_deref()
        .expect("shop local pays through Stripe");
    let (status, _, intents) = call(
        "GET",
        &format!("{stripe}/v1/payment_intents"),
        None,
        &[(
            "authorization",
            &format!("Bearer {}", local_app::LOCAL_STRIPE_KEY),
        )],
    )
    .await;
    assert_eq!(status, 200);
    let intent = intents["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pi| pi["metadata"]["order_id"] == id.as_str())
        .expect("the order's PaymentIntent")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, refunds) = call(
        "GET",
        &format!("{stripe}/v1/refunds?payment_intent={intent}"),
        None,
        &[(
            "authorization",
            &format!("Bearer {}", local_app::LOCAL_STRIPE_KEY),
        )],
    )
    .await;
    let amounts: Vec<_> = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_u64())
        .collect();
    assert_eq!(amounts, [Some(300)], "one refund of 300: {refunds}");

    let (code, _, err) = operator(&stack, &["dlq", "peek", "NoSuchDLQ"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("unknown queue \"NoSuchDLQ\""), "{err}");
    let (code, _, err) =
        operator(&stack, &["dlq", "peek", "OrdersDLQ", "--filter", "a..b=1"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("invalid filter"), "{err}");
    let (code, out, _) = operator(&stack, &["dlq", "purge", "OrdersDLQ"]).await;
    assert_eq!(code, 1, "no --yes and no terminal: nothing purged");
    assert!(out.contains("nothing purged"), "{out}");

    // Seeding the running stack again adds nothing: the seed is already on hand.
    let seed_file = root().join("local/seed.json");
    let (code, out, err) = operator(&stack, &["seed", seed_file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 units restocked"), "{out}");
    // The smoke test a deploy ends with: a confirmed and a compensated order, through
    // the API with a token, invariants checked.
    let (code, out, err) = operator(&stack, &["smoke", "--within", "60s"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("smoke: every step held"), "{out}");
    assert!(out.contains("PaymentDeclined"), "{out}");
    // One order, one trace: the confirmed order and the one the smoke test's declined
    // card compensated, each from the API through every function and the saga's states.
    let declined = out
        .lines()
        .find(|l| l.contains("to CANCELLED (PaymentDeclined)"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("ord-")))
        .expect("the smoke test names its compensated order")
        .to_owned();
    for order in [&id, &declined] {
        assert_one_trace(&stack, order).await;
    }
    // Every alarm, each with the topic it pages and its runbook.
    let (code, out, err) = operator(&stack, &["alarms"]).await;
    assert_eq!(code, 0, "no alarm fires on the emulator: {out}{err}");
    assert!(out.contains("24 alarms, 0 in ALARM"), "{out}");
    assert!(
        out.contains("PaymentCircuitRejections") && out.contains("Runbook:"),
        "{out}"
    );

    // A bad version's failures reach the alarm that rolls it back: a message the
    // payments function cannot read fails its record (no Lambda error), and the
    // failure is counted under the very name the function's rollback alarm watches.
    let (code, out, _) = operator(&stack, &["alarms", "--json"]).await;
    assert_eq!(code, 0);
    let alarms: Vec<Value> = serde_json::from_str(&out).unwrap();
    let watched_name = |alarm: &str| -> String {
        let watches = alarms
            .iter()
            .find(|a| a["name"].as_str().unwrap().ends_with(alarm))
            .unwrap_or_else(|| panic!("{alarm} in {out}"))["watches"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, rest) = watches
            .split_once("FunctionFailures {Service=functions,FunctionName=")
            .unwrap_or_else(|| panic!("{alarm} adds the function's failures: {watches}"));
        rest.split('}').next().unwrap().to_owned()
    };
    let payments_name = watched_name("PaymentsErrorsAlarm");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .get_queue_url()
        .queue_name(format!("{stack}-PaymentsQueue"))
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(queue.queue_url().unwrap())
        .message_body(r#"{"command":"Charge","orderId":"ord-0"}"#)
        .send()
        .await
        .unwrap();
    let counted = |function: &str| {
        app.metrics
            .lock()
            .unwrap()
            .iter()
            .any(|doc| doc["FunctionFailures"].is_number() && doc["FunctionName"] == function)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !counted(&payments_name) {
        assert!(
            Instant::now() < deadline,
            "no FunctionFailures for {payments_name}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every metric line the functions printed is one of the catalogue the alarms and
    // the dashboard are checked against, in its namespace and with its dimensions.
    // (Fulfilment counts outcomes from the bus, a moment after the order ends.)
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && !app
            .metrics
            .lock()
            .unwrap()
            .iter()
            .any(|doc| doc.get("OrdersCancelled").is_some())
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lines = app.metrics.lock().unwrap().clone();
    let mut names = std::collections::BTreeSet::new();
    for doc in &lines {
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], observability::NAMESPACE, "{doc}");
        let name = declared["Metrics"][0]["Name"].as_str().unwrap();
        let metric = observability::Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{name} is not in the catalogue: {doc}"));
        assert_eq!(
            declared["Dimensions"][0],
            json!(metric.dimensions()),
            "{doc}"
        );
        for dimension in metric.dimensions() {
            assert!(
                doc[*dimension].is_string(),
                "{dimension} has a value: {doc}"
            );
        }
        assert_eq!(doc["Service"], metric.service(), "{doc}");
        names.insert(name.to_owned());
    }
    let declines = lines
        .iter()
        .filter(|doc| doc.get("PaymentDeclines").is_some())
        .count();
    assert_eq!(
        declines, 1,
        "the smoke test's declined card, and nothing else"
    );
    for expected in ["OrdersPlaced", "OrdersConfirmed", "OrdersCancelled"] {
        assert!(names.contains(expected), "{expected} among {names:?}");
    }

    // A seed that fails says why, down to AWS's answer: the catalog table is gone.
    aws_sdk_dynamodb::Client::new(&sdk)
        .delete_table()
        .table_name(format!("{stack}-CatalogTable"))
        .send()
        .await
        .unwrap();
    let (code, _, err) = operator(&stack, &["seed", seed_file.to_str().unwrap()]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("catalog.") && err.contains("ResourceNotFoundException"),
        "the port's operation and AWS's error: {err}"
    );
    // The orders API answers a shopper 5xx without a Lambda error; its rollback alarm
    // counts it all the same.
    let (status, _, _) = call(
        "POST",
        &format!("{api}/v1/orders"),
        Some(order("MUG", 1, "pm_card_visa")),
        &[bb],
    )
    .await;
    assert!(status >= 500, "{status}");
    let api_name = watched_name("OrdersApiErrorsAlarm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !counted(&api_name) {
        assert!(
            Instant::now() < deadline,
            "no FunctionFailures for {api_name}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop(app).await;
}

/// `shop trace ORDER --local`: exactly one trace holding the API, intake, inventory,
/// payments, fulfilment and the saga's states, no span without its parent, parents
/// before children and siblings in time order; and the waterfall names each.
async fn assert_one_trace(stack: &str, order: &str) {
    // Fulfilment takes the order's final event after the order has ended: its spans
    // arrive a moment later.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (out, trace) = loop {
        let (code, out, err) = operator(stack, &["trace", order, "--json"]).await;
        assert_eq!(code, 0, "{out}{err}");
        let trace: Value = serde_json::from_str(&out).unwrap();
        let fulfilled = trace["rows"].as_array().unwrap().iter().any(|r| {
            r["service"]
                .as_str()
                .is_some_and(|s| s.ends_with("FulfilmentFunction"))
        });
        if fulfilled || Instant::now() > deadline {
            break (out, trace);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(trace["orphans"], 0, "{out}");
    let rows = trace["rows"].as_array().unwrap();
    let trace_id = trace["traceId"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32);
    assert!(rows.iter().all(|r| r["traceId"] == trace_id));
    for expected in [
        "OrdersApiFunction",
        "OrderIntakeFunction",
        "InventoryFunction",
        "PaymentsFunction",
        "FulfilmentFunction",
        "step-functions",
    ] {
        assert!(
            rows.iter()
                .any(|r| r["service"].as_str().unwrap().ends_with(expected)),
            "{expected} in {out}"
        );
    }
    assert!(
        rows.iter().any(|r| r["name"] == "AuthorizePayment"),
        "{out}"
    );
    assert_eq!(rows[0]["depth"], 0, "{out}");
    assert!(
        rows[0]["service"]
            .as_str()
            .is_some_and(|s| s.ends_with("OrdersApiFunction")),
        "{out}"
    );
    // Parents before children; a child starts no earlier than its parent.
    let mut open: Vec<(u64, f64)> = Vec::new();
    for row in rows {
        let depth = row["depth"].as_u64().unwrap();
        let offset = row["offsetMs"].as_f64().unwrap();
        open.truncate(depth as usize);
        if let Some((_, parent)) = open.last() {
            assert!(offset + 1.0 >= *parent, "{row} before its parent");
        }
        open.push((depth, offset));
    }
    let (code, text, _) = operator(stack, &["trace", order]).await;
    assert_eq!(code, 0);
    assert!(
        text.starts_with(&format!("order {order}  trace {trace_id}")),
        "{text}"
    );
    for name in ["OrderIntakeFunction", "ReserveStock", "(waited "] {
        assert!(text.contains(name), "{name} in {text}");
    }
}

/// Runs `shop <args> --local` against the stack `shop local` started.
async fn operator(stack: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--local", "--local-stack", stack, "--state-dir"]);
    shop_cli(&all, &[root().join(".shop")]).await
}

/// Runs the `shop` binary: exit code, stdout, stderr.
async fn shop_cli(args: &[&str], paths: &[PathBuf]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(args)
        .args(paths)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_under_cargo_lambda_watch_run_inside_the_local_wiring() {
    let invoke_port = free_port();
    let stack = format!("wt{}", std::process::id());
    let app = shop_local(
        &stack,
        &["--invoke-url", &format!("http://127.0.0.1:{invoke_port}")],
    )
    .await;
    let mut watch = Command::new("cargo")
        .args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &invoke_port.to_string(),
            "--env-file",
        ])
        .arg(root().join(format!(".shop/{stack}.env")))
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("cargo lambda watch starts (cargo-lambda comes from scripts/bootstrap.sh)");
    // Its start runs `cargo metadata`, which waits for cargo's package cache while
    // another cargo holds it (the test command's `sam build` runs alongside).
    let deadline = Instant::now() + Duration::from_secs(240);
    while std::net::TcpStream::connect(("127.0.0.1", invoke_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch did not listen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The first invocation of each function compiles it; allow for that.
    let bearer = app.bearer("watcher").await;
    let (status, _, placed) = call(
        "POST",
        &format!("{}/v1/orders", app.api),
        Some(order("TEE", 1, "pm_card_visa")),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 202, "{placed}");
    let done = wait_terminal(
        &app.api,
        &bearer,
        placed["orderId"].as_str().unwrap(),
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(done["status"], "CONFIRMED");

    // cargo lambda watch runs the functions as its children, in the process group
    // created for it above: stop that whole group, and never our own.
    let watcher = Pid::from_raw(watch.id().unwrap() as i32);
    let group = unistd::getpgid(Some(watcher)).ok();
    if group == Some(watcher) && group != unistd::getpgid(None).ok() {
        // By system call, not the `kill` program: procps-ng 4.0.2's `kill` took
        // `-TERM -<pgid>` as `kill(-1)`, which signals every process the user owns.
        signal::killpg(watcher, Signal::SIGTERM).unwrap();
    } else {
        watch.start_kill().unwrap();
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), watch.wait()).await;
    stop(app).await;
}

/// Claims for a hand-made token: what the local issuer would sign for `sub`, changed
/// by `change`.
fn claims(issuer: &str, change: impl FnOnce(&mut Value)) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = json!({"iss": issuer, "sub": "mallory", "aud": local_runtime::oidc_issuer::LOCAL_AUDIENCE,
                       "iat": now, "nbf": now, "exp": now + 300});
    change(&mut c);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoppers_see_only_their_own_orders_behind_the_jwt_authorizer() {
    use local_runtime::oidc_issuer::{IssuerKey, LocalIssuer};
    let app = shop_local(&format!("id{}", std::process::id()), &[]).await;
    let api = &app.api;
    let (alice, bob) = (app.bearer("alice").await, app.bearer("bob").await);
    let orders = format!("{api}/v1/orders");

    // GIVEN both shoppers send the same Idempotency-Key and body: two orders.
    let key = ("idempotency-key", "checkout-1");
    let (status, headers, placed) = call(
        "POST",
        &orders,
        Some(order("MUG", 1, "pm_card_visa")),
        &[key, ("authorization", &alice)],
    )
    .await;
    assert_eq!(status, 202, "{placed}");
    let (status, bob_headers, bobs) = call(
        "POST",
        &orders,
        Some(order("MUG", 1, "pm_card_visa")),
        &[key, ("authorization", &bob)],
    )
    .await;
    assert_eq!(status, 202, "{bobs}");
    assert_ne!(placed["orderId"], bobs["orderId"]);
    assert!(!bob_headers.contains_key("idempotent-replayed"));

    // The Location of Alice's order, followed as a client would, answers 200.
    let location = headers["location"].to_str().unwrap().to_owned();
    let (status, _, read) = call(
        "GET",
        &format!("{api}{location}"),
        None,
        &[("authorization", &alice)],
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["orderId"], placed["orderId"]);
    assert_eq!(read["customerId"], "alice");

    // Bob reading or cancelling Alice's order gets exactly an unknown id's answer.
    let id = placed["orderId"].as_str().unwrap();
    for (method, path) in [
        ("GET", format!("{orders}/{id}")),
        ("POST", format!("{orders}/{id}/cancel")),
    ] {
        let (status, headers, problem) =
            call(method, &path, None, &[("authorization", &bob)]).await;
        assert_eq!(status, 404, "{method} {path}: {problem}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(
            problem["type"],
            "https://order-saga.example/problems/order-not-found"
        );
    }
    let done = wait_terminal(api, &alice, id, Duration::from_secs(60)).await;
    assert_eq!(
        done["status"], "CONFIRMED",
        "Bob's cancel changed nothing: {done}"
    );

    // Alice pages through more orders than a page holds: no duplicates, no gaps.
    let mut mine = vec![id.to_owned()];
    for _ in 0..4 {
        let (status, _, more) = call(
            "POST",
            &orders,
            Some(order("TEE", 1, "pm_card_visa")),
            &[("authorization", &alice)],
        )
        .await;
        assert_eq!(status, 202);
        mine.push(more["orderId"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut next = Some("/v1/orders?limit=2".to_owned());
    let mut pages = 0;
    while let Some(link) = next {
        let (status, _, page) = call(
            "GET",
            &format!("{api}{link}"),
            None,
            &[("authorization", &alice)],
        )
        .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(
            page["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["orderId"].as_str().unwrap().to_owned()),
        );
        next = page["links"]["next"].as_str().map(str::to_owned);
    }
    mine.reverse();
    assert_eq!(seen, mine, "newest first, each once");
    assert_eq!(pages, 3);
    let (_, _, bobs_list) = call("GET", &orders, None, &[("authorization", &bob)]).await;
    assert_eq!(bobs_list["orders"].as_array().unwrap().len(), 1);
    let (status, _, problem) = call(
        "GET",
        &format!("{orders}?limit=500"),
        None,
        &[("authorization", &bob)],
    )
    .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (
            400,
            Some("https://order-saga.example/problems/invalid-query")
        )
    );

    // No token, an expired one, another key's, another issuer's, another audience's:
    // API Gateway's 401, and nothing reaches the function.
    let stack_file: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(format!(".shop/{}.stack.json", app.stack))).unwrap(),
    )
    .unwrap();
    let issuer_url = stack_file["issuer"]["url"].as_str().unwrap().to_owned();
    let key = IssuerKey::load_or_create(&root().join(".shop/local-issuer.pem")).unwrap();
    let ours = LocalIssuer::new(issuer_url.clone(), "unused", key);
    let stranger = LocalIssuer::new(issuer_url.clone(), "unused", IssuerKey::generate().unwrap());
    let now = claims(&issuer_url, |_| {})["iat"].as_i64().unwrap();
    let cases = [
        (None, "no token"),
        (
            Some(
                ours.sign(&claims(&issuer_url, |c| c["exp"] = json!(now - 5)))
                    .unwrap(),
            ),
            "expired",
        ),
        (
            Some(stranger.sign(&claims(&issuer_url, |_| {})).unwrap()),
            "another key",
        ),
        (
            Some(
                ours.sign(&claims(&issuer_url, |c| {
                    c["iss"] = json!("http://127.0.0.1:9")
                }))
                .unwrap(),
            ),
            "another issuer",
        ),
        (
            Some(
                ours.sign(&claims(&issuer_url, |c| c["aud"] = json!("another-api")))
                    .unwrap(),
            ),
            "another audience",
        ),
        (Some("not-a-jwt".to_owned()), "garbage"),
    ];
    for (token, case) in cases {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        let (status, h, body) = call(
            "POST",
            &orders,
            Some(order("MUG", 1, "pm_card_visa")),
            &headers,
        )
        .await;
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(body, json!({"message": "Unauthorized"}), "{case}");
        if case != "no token" {
            let challenge = h["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
                "{case}: {challenge}"
            );
        }
    }
    // A valid token without the route's scope, such as an ID token (no `scope` at
    // all), is API Gateway's 403, and nothing reaches the function; a read-only
    // token reads but does not place or cancel.
    let scoped = |scope: Option<&str>, token_use: &str| {
        let scope = scope.map(str::to_owned);
        let token_use = token_use.to_owned();
        format!(
            "Bearer {}",
            ours.sign(&claims(&issuer_url, |c| {
                c["token_use"] = json!(token_use);
                if let Some(scope) = scope {
                    c["scope"] = json!(scope);
                }
            }))
            .unwrap()
        )
    };
    let id_token = scoped(None, "id");
    let read_only = scoped(Some("orders/read"), "access");
    for (bearer, method, path, case) in [
        (&id_token, "GET", orders.clone(), "an ID token lists"),
        (&id_token, "POST", orders.clone(), "an ID token places"),
        (
            &read_only,
            "POST",
            orders.clone(),
            "a read-only token places",
        ),
        (
            &read_only,
            "POST",
            format!("{orders}/{id}/cancel"),
            "a read-only token cancels",
        ),
    ] {
        let body = (method == "POST").then(|| order("MUG", 1, "pm_card_visa"));
        let (status, h, answer) = call(method, &path, body, &[("authorization", bearer)]).await;
        assert_eq!(status, 403, "{case}: {answer}");
        assert_eq!(answer, json!({"message": "Forbidden"}), "{case}");
        let challenge = h["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("insufficient_scope"),
            "{case}: {challenge}"
        );
    }
    let (status, _, listed) = call("GET", &orders, None, &[("authorization", &read_only)]).await;
    assert_eq!(
        (status, listed["orders"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    // The same token with both scopes is accepted: the refusals were about the token.
    let good = scoped(Some("orders/read orders/write"), "access");
    let (status, _, _) = call("GET", &orders, None, &[("authorization", &good)]).await;
    assert_eq!(status, 200);
    let (_, _, all) = call(
        "GET",
        &format!("{orders}?limit=100"),
        None,
        &[("authorization", &alice)],
    )
    .await;
    assert_eq!(
        all["orders"].as_array().unwrap().len(),
        5,
        "no refused request placed an order"
    );

    // `shop token` refuses what it cannot sign.
    let (code, _, err) = shop_cli(
        &[
            "token",
            "--customer",
            "",
            "--local-stack",
            &app.stack,
            "--state-dir",
        ],
        &[root().join(".shop")],
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("--customer"), "{err}");
    let (code, _, err) = shop_cli(
        &[
            "token",
            "--customer",
            "x",
            "--local-stack",
            "no-such-stack",
            "--state-dir",
        ],
        &[root().join(".shop")],
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("shop local"), "{err}");

    stop(app).await;
}

/// Seeds the running stack with one SKU sold in every currency, `stock` on hand, as an
/// operator does (`shop seed`).
async fn seed_one(stack: &str, sku: &str, stock: u32) {
    let seed = std::env::temp_dir().join(format!("{stack}-seed.json"));
    std::fs::write(
        &seed,
        json!({"catalog": [{"sku": sku, "name": sku,
            "prices": {"EUR": 3900, "USD": 4200, "GBP": 3400}, "stock": stock}]})
        .to_string(),
    )
    .unwrap();
    let (code, out, err) = operator(stack, &["seed", seed.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
}

/// A sale's rush on one hot item, as `shop load` makes it against `shop local` with
/// the provider's latency and DynamoDB's transaction conflicts on: 300 orders from 30
/// shoppers for 100 units, placed much faster than a card provider answering in 1 s
/// (p50) to 4 s (p99) through two payments workers can drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rush_on_one_hot_item_sells_out_exactly_and_every_order_ends_as_the_shop_expects() {
    let stack = format!("rush{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let app = shop_local(
        &stack,
        &[
            "--payment-latency",
            "1s,4s",
            "--parameter",
            "MaxOrderWaitSeconds=600",
            "--parameter",
            "PaymentProvider=sandbox",
        ],
    )
    .await;
    seed_one(&stack, "RUSH", 100).await;
    let (code, out, err) = operator(
        &stack,
        &[
            "load",
            "--orders",
            "300",
            "--shoppers",
            "30",
            "--sku",
            "RUSH",
            "--within",
            "5m",
            "--json",
        ],
    )
    .await;
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("a JSON report: {out}{err}"));
    let report: Value = serde_json::Deserializer::from_str(&out[start..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(code, 0, "{report:#}\n{err}");
    assert_eq!(report["accepted"], 300, "{report:#}");
    assert_eq!(report["confirmed"], 100, "exactly the stock: {report:#}");
    assert_eq!(
        report["cancelled"],
        json!({"OutOfStock": 200}),
        "{report:#}"
    );
    assert_eq!(report["never_ended"], 0);
    assert_eq!(report["oversold"], json!({}));
    // The charges queued longer than the old step's 20 s heartbeat (the payment stage
    // is the payments queue's wait and the charge), and no order failed for it.
    assert!(
        report["stage_time"]["payment"]["max_ms"].as_u64().unwrap() > 20_000,
        "{report:#}"
    );
    stop(app).await;
}

/// A provider's bad minute: 10 cards that never answer placed together with 30 healthy
/// ones. The healthy ones are charged while the hanging ones time out (a breaker that
/// counts the rate, not only the failures, stays closed for them); once only hanging
/// charges are left the breaker opens, and the refunds of the expired orders meet it
/// open: the saga waits them out instead of escalating, and a refund's probe closes it.
/// Time is scaled down: orders may wait 90 s, a compensation is sent again every 2 s
/// (production: 15 min, every minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_outage_is_waited_out_and_nothing_reaches_the_human_queue() {
    let stack = format!("outage{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let app = shop_local(
        &stack,
        &[
            "--parameter",
            "PaymentProvider=sandbox",
            "--parameter",
            "MaxOrderWaitSeconds=90",
            "--parameter",
            "CompensationRetrySeconds=2",
            "--parameter",
            "PaymentProviderTimeoutMs=1000",
        ],
    )
    .await;
    seed_one(&stack, "KETTLE", 100).await;
    let bearer = app.bearer("outage").await;
    // One card in four never answers, mixed in among the healthy ones.
    let cards = (0..40).map(|i| {
        if i % 4 == 0 {
            "tok_timeout"
        } else {
            "pm_card_visa"
        }
    });
    let placing = cards.map(|card| {
        let (api, bearer) = (app.api.clone(), bearer.clone());
        async move {
            let (status, _, placed) = call(
                "POST",
                &format!("{api}/v1/orders"),
                Some(order("KETTLE", 1, card)),
                &[("authorization", &bearer)],
            )
            .await;
            assert_eq!(status, 202, "{placed}");
            (card, placed["orderId"].as_str().unwrap().to_owned())
        }
    });
    let placed = futures::future::join_all(placing).await;
    let mut ends = Vec::new();
    for (card, id) in &placed {
        let end = wait_terminal(&app.api, &bearer, id, Duration::from_secs(240)).await;
        ends.push((*card, id.clone(), end));
    }
    for (card, id, end) in &ends {
        match *card {
            "pm_card_visa" => assert_eq!(end["status"], "CONFIRMED", "{id}: {end}"),
            _ => {
                assert_eq!(end["status"], "CANCELLED", "{id}: {end}");
                assert_eq!(end["cancelReason"], "OrderExpired", "{id}: {end}");
            }
        }
    }
    // The breaker opened and closed again, as the EMF metrics show.
    let changes: Vec<String> = app
        .metrics
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.get("PaymentCircuitStateChanges").is_some())
        .map(|m| m["State"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(changes.iter().any(|s| s == "open"), "{changes:?}");
    assert_eq!(
        changes.last().map(String::as_str),
        Some("closed"),
        "{changes:?}"
    );
    // Nothing for a human, and each hanging order's records agree: stock back, no
    // money kept, no broken invariant.
    let (code, out, err) = operator(&stack, &["saga", "compensations", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([]),
        "{out}"
    );
    for (_, id, _) in ends.iter().filter(|(card, ..)| *card == "tok_timeout") {
        let (code, out, err) = operator(&stack, &["saga", "show", id, "--json"]).await;
        assert_eq!(code, 0, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["violations"], json!([]), "{id}: {report:#}");
        assert!(
            matches!(
                report["ledger"]["status"].as_str(),
                Some("VOIDED" | "REFUNDED")
            ),
            "{id}: {}",
            report["ledger"]
        );
        assert_eq!(report["reservation"]["status"], "RELEASED", "{id}");
    }
    let sdk = local_runtime::emulator::emulator_sdk(&app.emulator).await;
    let stock = DynamoStockStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        format!("{stack}-InventoryTable"),
    );
    let kettle = stock.level(&Sku("KETTLE".into())).await.unwrap().unwrap();
    assert_eq!((kettle.available, kettle.reserved), (70, 30));
    stop(app).await;
}

/// A storefront served on its own origin: `GET /` answers the page set in `page`,
/// and the page `POST`s what it saw to `/result`, which arrives on `seen`.
struct Storefront {
    origin: String,
    page: std::sync::Arc<std::sync::Mutex<String>>,
    seen: tokio::sync::mpsc::Receiver<Value>,
    server: tokio::task::JoinHandle<()>,
}

async fn storefront() -> Storefront {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let page = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let html = page.clone();
    let (tx, seen) = tokio::sync::mpsc::channel(4);
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let mut head_end = None;
            while head_end.is_none() {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                head_end = request
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|at| at + 4);
            }
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while request.len() < head_end + length {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let answer = if head.starts_with("post /result ") {
                let report = serde_json::from_slice(&request[head_end..]).unwrap_or(Value::Null);
                let _ = tx.send(report).await;
                "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_owned()
            } else if head.starts_with("get / ") {
                let html = html.lock().unwrap().clone();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    Storefront {
        origin,
        page,
        seen,
        server,
    }
}

impl Storefront {
    /// Opens the storefront in headless Chromium (Debian's `chromium`, which
    /// scripts/bootstrap.sh installs) with `page` until the page reports what it saw.
    async fn open_in_browser(&mut self, page: String) -> Value {
        *self.page.lock().unwrap() = page;
        let profile = std::env::temp_dir().join(format!(
            "chromium-{}-{}",
            std::process::id(),
            self.origin.rsplit(':').next().unwrap()
        ));
        let mut browser = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("{}/", self.origin))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium runs (scripts/bootstrap.sh installs it)");
        let seen = tokio::time::timeout(Duration::from_secs(60), self.seen.recv())
            .await
            .expect("the page reported within 60 s")
            .expect("a report");
        let _ = browser.kill().await;
        let _ = std::fs::remove_dir_all(&profile);
        seen
    }
}

/// What a storefront's page does: places an order with the shopper's token and an
/// `Idempotency-Key` (a request the browser preflights), reads the answer's `Location`
/// (an exposed header), and reports what it saw, or the error the browser gave it.
fn storefront_page(api: &str, bearer: &str, key: &str) -> String {
    format!(
        r#"<!doctype html><title>storefront</title><script>
(async () => {{
  let seen;
  try {{
    const r = await fetch("{api}/v1/orders", {{
      method: "POST",
      headers: {{"authorization": "{bearer}", "content-type": "application/json", "idempotency-key": "{key}"}},
      body: JSON.stringify({order}),
    }});
    const body = await r.json();
    seen = {{status: r.status, location: r.headers.get("location"), orderId: body.orderId}};
  }} catch (e) {{
    seen = {{error: String(e)}};
  }}
  await fetch("/result", {{method: "POST", body: JSON.stringify(seen)}});
}})();
</script>"#,
        order = order("MUG", 1, "pm_card_visa")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_on_another_origin_places_an_order_from_a_browser() {
    // GIVEN a stack that allows one storefront's origin, and another storefront
    let stack = format!("cc{}", std::process::id());
    let mut allowed = storefront().await;
    let mut elsewhere = storefront().await;
    let app = shop_local(
        &stack,
        &[
            "--parameter",
            &format!("CorsAllowedOrigins={}", allowed.origin),
        ],
    )
    .await;
    let api = app.api.clone();
    let bearer = app.bearer("cc").await;

    // WHEN each asks to place an order as a browser asks first
    let preflight = |origin: String| {
        let api = api.clone();
        async move {
            call(
                "OPTIONS",
                &format!("{api}/v1/orders"),
                None,
                &[
                    ("origin", origin.as_str()),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "authorization,content-type,idempotency-key",
                    ),
                ],
            )
            .await
        }
    };
    // THEN the allowed one gets the configuration (no token needed: API Gateway
    // answers before the authorizer), the other nothing a browser accepts
    let (status, headers, _) = preflight(allowed.origin.clone()).await;
    assert_eq!(status, 204);
    assert_eq!(
        headers["access-control-allow-origin"],
        allowed.origin.as_str()
    );
    assert_eq!(headers["access-control-allow-methods"], "GET,POST");
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization,content-type,idempotency-key,x-correlation-id"
    );
    assert_eq!(headers["access-control-max-age"], "600");
    let (status, headers, _) = preflight(elsewhere.origin.clone()).await;
    assert_eq!(status, 204);
    assert!(
        headers
            .keys()
            .all(|h| !h.as_str().starts_with("access-control-")),
        "{headers:?}"
    );

    // AND a real browser on the allowed origin places the order and reads Location
    let seen = allowed
        .open_in_browser(storefront_page(&api, &bearer, "browser-1"))
        .await;
    assert_eq!(seen["status"], 202, "{seen}");
    let id = seen["orderId"]
        .as_str()
        .expect("the page read the body")
        .to_owned();
    assert_eq!(seen["location"], format!("/v1/orders/{id}"), "{seen}");
    let confirmed = wait_terminal(&api, &bearer, &id, Duration::from_secs(60)).await;
    assert_eq!(confirmed["status"], "CONFIRMED");

    // AND the browser on the other origin is refused before anything is sent
    let refused = elsewhere
        .open_in_browser(storefront_page(&api, &bearer, "browser-2"))
        .await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{refused}"
    );
    let (_, _, mine) = call(
        "GET",
        &format!("{api}/v1/orders"),
        None,
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(
        mine["orders"].as_array().map(Vec::len),
        Some(1),
        "only the allowed storefront's order: {mine}"
    );
    allowed.server.abort();
    elsewhere.server.abort();
    stop(app).await;
}
