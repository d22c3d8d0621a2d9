//! Test harness: one fresh stack per test, each on its own moto server, started by
//! the builder `shop local` uses (`local_app`): the template's resources, every
//! function built as its `main.rs` builds it, the same SQS pollers, schedules, HTTP
//! API and token issuer.

pub mod chaos;

use async_trait::async_trait;
use local_app::{InvokerLayer, LocalApp, LocalOptions, PortEdit};
use local_runtime::http_api::HttpResponse;
use local_runtime::oidc_issuer::TokenRequest;
use local_runtime::provision::{FunctionSpec, Stack};
use local_runtime::{InvokeError, Invoker, Template};
use payment_sandbox::SandboxProvider;
use serde_json::{Value, json};
use shop_aws::ledger::DynamoLedger;
use shop_aws::stock::DynamoStockStore;
use shop_domain::payment::LedgerRecord;
use shop_domain::ports::{
    PaymentLedger, PortError, ReleaseOutcome, ReserveOutcome, StockLevel, StockStore,
};
use shop_domain::{OrderId, OrderLine, Sku};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// The shopper [`App::http`] speaks for.
pub const SHOPPER: &str = "cust-42";

/// The ports of every function; a test replaces one to inject a fault.
pub use local_app::functions::AppPorts;

/// Delays every reservation, so a test can act while an order is still `PENDING`.
pub fn slow_reservations(delay: Duration) -> impl Fn(&mut AppPorts) + Send + Sync + 'static {
    move |ports| {
        ports.inventory.stock = Arc::new(SlowStock {
            inner: ports.inventory.stock.clone(),
            delay,
        })
    }
}

/// Records the body of every SQS record each function receives, for contract checks.
pub struct Recording {
    inner: Arc<dyn Invoker>,
    bodies: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl Invoker for Recording {
    async fn invoke(&self, function: &FunctionSpec, event: Value) -> Result<Value, InvokeError> {
        if let Some(records) = event.get("Records").and_then(Value::as_array) {
            let mut bodies = self.bodies.lock().unwrap();
            for r in records {
                bodies.push((
                    function.logical_id.clone(),
                    r["body"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        self.inner.invoke(function, event).await
    }
}

/// A running stack: `shop local`'s own, started by the same builder, with every event
/// published on the bus copied to a queue the test reads.
pub struct App {
    /// The stack as `shop local` runs it: its resources (`stack`), SDK configuration
    /// (`sdk`), token issuer (`issuer`) and HTTP API (`http`).
    local: LocalApp,
    /// Every SQS body delivered to a function.
    pub recording: Arc<Recording>,
    tap_queue: String,
}

impl std::ops::Deref for App {
    type Target = LocalApp;

    fn deref(&self) -> &LocalApp {
        &self.local
    }
}

struct SlowStock {
    inner: Arc<dyn StockStore>,
    delay: Duration,
}

#[async_trait]
impl StockStore for SlowStock {
    async fn reserve(&self, o: &OrderId, l: &[OrderLine]) -> Result<ReserveOutcome, PortError> {
        tokio::time::sleep(self.delay).await;
        self.inner.reserve(o, l).await
    }
    async fn release(&self, o: &OrderId, l: &[OrderLine]) -> Result<ReleaseOutcome, PortError> {
        self.inner.release(o, l).await
    }
    async fn restock(&self, s: &Sku, q: u32) -> Result<StockLevel, PortError> {
        self.inner.restock(s, q).await
    }
    async fn level(&self, s: &Sku) -> Result<Option<StockLevel>, PortError> {
        self.inner.level(s).await
    }
}

impl App {
    /// A fresh stack with no faults.
    pub async fn start() -> App {
        Self::start_full(None, &[], None, None, None).await
    }

    /// A fresh stack whose ports `faults` replaces.
    pub async fn start_with(faults: impl Fn(&mut AppPorts) + Send + Sync + 'static) -> App {
        Self::start_configured(faults, &[]).await
    }

    /// A stack with faults and template parameters besides the test defaults.
    pub async fn start_configured(
        faults: impl Fn(&mut AppPorts) + Send + Sync + 'static,
        parameters: &[(&str, &str)],
    ) -> App {
        Self::start_full(Some(Arc::new(faults)), parameters, None, None, None).await
    }

    /// A stack whose HTTP API is served on the named `stage` instead of the template's
    /// `$default`, as a deployment that renamed its stage would be.
    pub async fn start_on_stage(stage: &str) -> App {
        Self::start_full(None, &[], None, Some(stage), None).await
    }

    /// A stack with faults in its ports and, with `chaos`, in its event source
    /// mappings (duplicate deliveries); its payment provider answering with
    /// `payment_latency` (`shop local --payment-latency`).
    async fn start_full(
        faults: Option<PortEdit>,
        parameters: &[(&str, &str)],
        chaos: Option<Arc<chaos::Chaos>>,
        stage: Option<&str>,
        payment_latency: Option<&str>,
    ) -> App {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                std::env::var("RUST_LOG")
                    .unwrap_or_else(|_| "warn,local_runtime=info,e2e=info".into()),
            )
            .try_init();
        let mut template =
            Template::load(&repo_root().join("template.yaml")).expect("template loads");
        if let Some(stage) = stage {
            template
                .resources
                .get_mut("HttpApiStage")
                .expect("the stage")["Properties"]["StageName"] = json!(stage);
        }
        // A short provider deadline and visibility timeout keep the timeout and
        // poison-message scenarios quick.
        // The order's wait (20 s) and a command's work (10 s) are scaled down from the
        // template's 900 s and 60 s, so timed-out and expired orders end within a test.
        // The sandbox provider, whose test tokens inject faults; the Stripe tests name
        // PaymentProvider=stripe.
        let mut overrides = BTreeMap::from([
            ("PaymentProvider".to_owned(), "sandbox".to_owned()),
            ("PaymentProviderTimeoutMs".to_owned(), "200".to_owned()),
            ("QueueVisibilityTimeout".to_owned(), "4".to_owned()),
            ("MaxOrderWaitSeconds".to_owned(), "20".to_owned()),
            ("CommandWorkSeconds".to_owned(), "10".to_owned()),
            ("CompensationRetrySeconds".to_owned(), "1".to_owned()),
            ("CompensationPatienceSeconds".to_owned(), "5".to_owned()),
        ]);
        for (k, v) in parameters {
            overrides.insert((*k).to_owned(), (*v).to_owned());
        }
        let recording: Arc<Mutex<Option<Arc<Recording>>>> = Arc::default();
        let recorded = recording.clone();
        let layer: InvokerLayer = Arc::new(move |functions| {
            let functions = match &chaos {
                Some(chaos) => Arc::new(chaos::ChaosInvoker {
                    inner: functions,
                    chaos: chaos.clone(),
                }) as Arc<dyn Invoker>,
                None => functions,
            };
            let recording = Arc::new(Recording {
                inner: functions,
                bodies: Mutex::default(),
            });
            *recorded.lock().unwrap() = Some(recording.clone());
            recording
        });
        // One moto server per test: moto shares state between threads without
        // locking everywhere, and concurrent sagas of unrelated tests in one server
        // occasionally fail inside the emulator. A private server per stack removes
        // that interference (about a second to start).
        let local = LocalApp::start(LocalOptions {
            root: repo_root(),
            state_dir: Some(std::env::temp_dir().join("order-saga-e2e")),
            template: Some(template),
            stack_name: format!("e2e{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            parameters: overrides,
            ports: faults,
            invoker: Some(layer),
            payment_latency: payment_latency.map(str::to_owned),
            ..LocalOptions::default()
        })
        .await
        .expect("the local stack starts (scripts/bootstrap.sh installs moto)");
        let recording = recording
            .lock()
            .unwrap()
            .take()
            .expect("the invoker layer ran");
        let tap_queue = tap_every_event(&local.sdk, &local.stack).await;
        App {
            recording,
            tap_queue,
            local,
        }
    }

    /// The sandbox payment provider the payments function uses (the test default;
    /// a stack started with PaymentProvider=stripe has none).
    pub fn sandbox(&self) -> &SandboxProvider {
        self.local
            .sandbox
            .as_deref()
            .expect("a stack paying through the sandbox, in process")
    }

    /// A shopper's bearer token of `customer` from the stack's issuer, with the scopes
    /// the routes require, valid for ten minutes.
    pub fn token(&self, customer: &str) -> String {
        self.issuer
            .mint(&TokenRequest::shopper(customer, Duration::from_secs(600)))
            .expect("token signs")
    }

    /// Sends an HTTP request as [`SHOPPER`] through the template's routes.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        self.http_as(SHOPPER, method, path, headers, body).await
    }

    /// Sends an HTTP request with `customer`'s token through the template's routes
    /// and authorizer.
    pub async fn http_as(
        &self,
        customer: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        let bearer = format!("Bearer {}", self.token(customer));
        let mut all = vec![("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.http_raw(method, path, &all, body).await
    }

    /// Sends an HTTP request with exactly these headers (no token unless given).
    pub async fn http_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.http
            .serve(method, path, &headers, body.map(str::to_owned))
            .await
            .expect("http invoke")
    }

    /// Places an order for `lines` paid with `token`; returns the order id.
    pub async fn place(
        &self,
        lines: &[(&str, u32)],
        token: &str,
        idempotency_key: Option<&str>,
    ) -> (HttpResponse, Value) {
        let body = json!({
            "currency": "EUR",
            "paymentToken": token,
            "lines": lines.iter().map(|(s, q)| json!({"sku": s, "quantity": q})).collect::<Vec<_>>(),
        })
        .to_string();
        let mut headers = vec![("content-type", "application/json")];
        if let Some(k) = idempotency_key {
            headers.push(("idempotency-key", k));
        }
        let r = self.http("POST", "/v1/orders", &headers, Some(&body)).await;
        let json: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        (r, json)
    }

    /// Invokes a function of the stack directly, as its schedule or `aws lambda
    /// invoke` would.
    pub async fn invoke(&self, logical_id: &str, event: Value) -> Result<Value, InvokeError> {
        self.recording
            .invoke(&self.stack.functions[logical_id], event)
            .await
    }

    /// Operator commands against this stack, keeping their audit log and journal in `dir`.
    pub fn ops(&self, dir: &Path) -> shop_ops::stack::Ops {
        shop_ops::stack::Ops::new(
            &self.sdk,
            shop_ops::stack::StackOutputs(self.stack.outputs.clone()),
            shop_ops::audit::OpsFiles::in_dir(dir),
        )
    }

    /// Polls `GET /v1/orders/{id}` until the order is terminal, then waits for its saga to
    /// finish, so the events its last states publish are there to be read, and returns
    /// the order as its saga left it.
    pub async fn wait_terminal(&self, order_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self
                .http("GET", &format!("/v1/orders/{order_id}"), &[], None)
                .await;
            let order: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            if matches!(order["status"].as_str(), Some("CONFIRMED" | "CANCELLED")) {
                self.wait_execution(order_id, deadline.saturating_duration_since(Instant::now()))
                    .await;
                // A confirmed order is captured after its confirmation, and cancelled
                // if the capture is refused: read it again once the run has ended.
                let r = self
                    .http("GET", &format!("/v1/orders/{order_id}"), &[], None)
                    .await;
                return serde_json::from_str(&r.body).unwrap_or(order);
            }
            assert!(
                Instant::now() < deadline,
                "order {order_id} not terminal in {within:?}: {order}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The saga execution of an order: status and error.
    async fn try_execution(&self, order_id: &str) -> Option<(String, Option<String>)> {
        let arn = self.execution_arn(order_id);
        match aws_sdk_sfn::Client::new(&self.sdk)
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
        {
            Ok(out) => Some((out.status.as_str().to_owned(), out.error)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_does_not_exist()) =>
            {
                None
            }
            Err(e) => panic!("describe execution: {e:?}"),
        }
    }

    /// Waits until the order's execution leaves RUNNING.
    pub async fn wait_execution(
        &self,
        order_id: &str,
        within: Duration,
    ) -> (String, Option<String>) {
        let deadline = Instant::now() + within;
        loop {
            if let Some((status, error)) = self.try_execution(order_id).await
                && status != "RUNNING"
            {
                return (status, error);
            }
            assert!(
                Instant::now() < deadline,
                "execution for {order_id} still running after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn execution_arn(&self, order_id: &str) -> String {
        shop_aws::saga::execution_arn(&self.stack.state_machines["OrderSaga"], order_id)
    }

    /// Executions of the saga, by name.
    pub async fn execution_names(&self) -> Vec<String> {
        let out = aws_sdk_sfn::Client::new(&self.sdk)
            .list_executions()
            .state_machine_arn(&self.stack.state_machines["OrderSaga"])
            .send()
            .await
            .expect("list executions");
        out.executions.into_iter().map(|e| e.name).collect()
    }

    /// Stock of a SKU.
    pub async fn stock(&self, sku: &str) -> StockLevel {
        self.stock_store()
            .level(&Sku(sku.into()))
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// A SKU's counters as stored, signed: the adapter reads them as unsigned, so a
    /// level below zero would be a read error there instead of the number it is.
    pub async fn raw_stock(&self, sku: &str) -> (i64, i64) {
        let item = aws_sdk_dynamodb::Client::new(&self.sdk)
            .get_item()
            .table_name(&self.stack.tables["InventoryTable"])
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("SKU#{sku}")),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("read stock")
            .item
            .unwrap_or_default();
        let counter = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .map_or(0, |n| n.parse().expect("a stock counter is an integer"))
        };
        (counter("available"), counter("reserved"))
    }

    /// The inventory adapter of this stack.
    pub fn stock_store(&self) -> DynamoStockStore {
        DynamoStockStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            self.stack.tables["InventoryTable"].clone(),
        )
    }

    /// The order's ledger record.
    pub async fn ledger(&self, order_id: &str) -> Option<LedgerRecord> {
        DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            self.stack.tables["PaymentsTable"].clone(),
        )
        .get(&OrderId::parse(order_id).unwrap())
        .await
        .unwrap()
    }

    /// Whether fulfilment created a shipment for the order.
    pub async fn shipment_exists(&self, order_id: &str) -> bool {
        aws_sdk_dynamodb::Client::new(&self.sdk)
            .get_item()
            .table_name(&self.stack.tables["ShipmentsTable"])
            .key(
                "orderId",
                aws_sdk_dynamodb::types::AttributeValue::S(order_id.into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .is_some()
    }

    /// Sends a raw message to a queue of the stack.
    pub async fn send(&self, queue: &str, body: &str) {
        aws_sdk_sqs::Client::new(&self.sdk)
            .send_message()
            .queue_url(&self.stack.queues[queue].url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Receives what is waiting on a queue without processing it (DLQs, work queue).
    pub async fn drain(&self, queue: &str) -> Vec<Value> {
        self.drain_messages(queue)
            .await
            .iter()
            .map(|m| serde_json::from_str(m.body.as_deref().unwrap_or("")).unwrap_or(Value::Null))
            .collect()
    }

    /// Receives and deletes every message waiting on a queue (logical id or URL), with
    /// system attributes, in the order SQS hands them out.
    pub async fn drain_messages(&self, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = self
            .stack
            .queues
            .get(queue)
            .map(|q| q.url.clone())
            .unwrap_or_else(|| queue.to_owned());
        let mut out = Vec::new();
        loop {
            let r = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = r.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                out.push(m.clone());
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle.unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Every event published on the bus so far (EventBridge envelopes).
    pub async fn events(&self) -> Vec<Value> {
        self.drain(&self.tap_queue.clone()).await
    }

    /// Events for one order: (detail type, detail).
    pub fn for_order<'a>(events: &'a [Value], order_id: &str) -> Vec<(&'a str, &'a Value)> {
        events
            .iter()
            .filter(|e| e["detail"]["orderId"] == order_id)
            .map(|e| (e["detail-type"].as_str().unwrap_or(""), &e["detail"]))
            .collect()
    }
}

/// A test-only rule that copies every `shop.*` event to a queue, so tests can see and
/// schema-check everything the system emits.
async fn tap_every_event(sdk: &aws_config::SdkConfig, stack: &Stack) -> String {
    let bus = stack.buses.values().next().expect("a bus");
    local_runtime::provision::tap_events(
        &local_runtime::provision::Clients::new(sdk),
        bus,
        &format!("{}-tap", stack.prefix),
    )
    .await
    .expect("tap the bus")
}

/// Validates every event against its versioned schema; returns the failures.
pub fn schema_violations(events: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut validators: HashMap<String, jsonschema::Validator> = HashMap::new();
    for event in events {
        let detail_type = event["detail-type"].as_str().unwrap_or("?").to_owned();
        let validator = validators.entry(detail_type.clone()).or_insert_with(|| {
            let path = repo_root().join(format!("schemas/events/{detail_type}.v1.json"));
            let schema: Value = serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .unwrap_or_else(|_| panic!("no schema {}", path.display())),
            )
            .unwrap();
            jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap()
        });
        for error in validator.iter_errors(&event["detail"]) {
            problems.push(format!(
                "{detail_type} {}: {error} at {}",
                event["detail"]["orderId"],
                error.instance_path()
            ));
        }
    }
    problems
}

impl App {
    /// Bodies of the SQS records a function has received so far.
    pub fn recording_bodies(&self, function: &str) -> Vec<String> {
        self.recording
            .bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|(f, _)| f == function)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Waits until a function has received a record containing `needle`, then a
    /// moment for it to finish.
    pub async fn wait_consumed(&self, function: &str, needle: &str) {
        for _ in 0..100 {
            if self
                .recording_bodies(function)
                .iter()
                .any(|b| b.contains(needle))
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{function} never received a record containing {needle}");
    }
}

/// Validates command bodies (as delivered to the inventory and payments functions)
/// against `schemas/commands`; returns the failures.
pub fn command_violations(schema_name: &str, bodies: &[String]) -> Vec<String> {
    let path = repo_root().join(format!("schemas/commands/{schema_name}.v1.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    bodies
        .iter()
        .flat_map(|b| {
            let body: Value = serde_json::from_str(b).unwrap_or(Value::Null);
            validator
                .iter_errors(&body)
                .map(|e| format!("{schema_name}: {e} in {b}"))
                .collect::<Vec<_>>()
        })
        .collect()
}
