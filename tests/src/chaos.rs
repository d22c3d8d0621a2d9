//! The chaos run: many orders through the real saga on the emulator while faults are
//! injected through the ports at random, with a seed that fixes which faults each
//! order gets. Once the system is quiet, every invariant of `docs/invariants.md` is checked for
//! every order. `tests/tests/chaos.rs` runs a few hundred orders in the test command;
//! `scripts/chaos.sh` runs 10,000 and prints the same table.

use crate::{App, schema_violations};
use async_trait::async_trait;
use futures::StreamExt;
use local_runtime::provision::FunctionSpec;
use local_runtime::{InvokeError, Invoker};
use payment_sandbox::Movement;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use shop_domain::events::DomainEvent;
use shop_domain::invariants::{check_money, check_stock};
use shop_domain::orphans::ORPHAN_REASON;
use shop_domain::payment::{
    Authentication, Authorization, ChargeRequest, LedgerRecord, ProviderError, Released,
};
use shop_domain::ports::{
    EventPublisher, OrderQueue, PaymentProvider, PortError, ReleaseOutcome, ReserveOutcome,
    SagaStarter, StartOutcome, StockLevel, StockStore, TaskCallbacks,
};
use shop_domain::{Order, OrderId, OrderLine, OrderStatus, Sku};
use shop_ops::dlq::{ReplayOptions, replay};
use shop_ops::saga::{replay_compensations, show};
use shop_ops::stack::Ops;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an order may wait in the chaos run (`MaxOrderWaitSeconds`): two faults
/// and their redeliveries on a loaded machine must not expire an order that is in
/// time for a shop (the tests' default of 20 s expired a third of them in CI).
const ORDER_WAIT_SECONDS: &str = "90";

/// How long a hung inventory worker blocks an order: longer than ReserveStock's
/// timeout in the run (`ORDER_WAIT_SECONDS` plus the tests' `CommandWorkSeconds`, 10),
/// so the saga times the step out and compensates.
const HANG: Duration = Duration::from_secs(110);

/// Deliveries of a poisoned Release that crash: the queue's maxReceiveCount, so the
/// message lands in the DLQ.
const POISON_DELIVERIES: u32 = 5;

/// The SKUs the run buys, with the stock each starts with per 100 orders. TEE runs
/// out part-way, so out-of-stock compensation happens under faults too.
const STOCK_PER_100: [(&str, u32); 3] = [("MUG", 150), ("TEE", 40), ("RARE", 1)];

/// A kind of fault. Each is planned per order with its own probability and fires at
/// most once for that order, at the first call that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The orders API dies after storing an order and before enqueueing it. The
    /// shopper gets an error and retries with its key (a fresh order, once the claim
    /// on the key lapses); the orphan sweep cancels the stranded one.
    CrashBeforeEnqueue,
    /// The intake function dies before StartExecution.
    CrashBeforeStart,
    /// The intake function dies after StartExecution succeeded.
    CrashAfterStart,
    /// The inventory function dies before its reservation transaction.
    CrashBeforeReserve,
    /// The inventory function dies after its reservation transaction.
    CrashAfterReserve,
    /// The inventory function dies before releasing.
    CrashBeforeRelease,
    /// The inventory function dies after releasing.
    CrashAfterRelease,
    /// The payments function dies before calling the provider.
    CrashBeforeCharge,
    /// The payments function dies after the provider captured.
    CrashAfterCharge,
    /// The payments function dies before refunding.
    CrashBeforeRefund,
    /// The payments function dies after the provider refunded.
    CrashAfterRefund,
    /// A worker dies after answering the saga's task token.
    CrashAfterAnswer,
    /// SQS delivers a message twice, at once.
    DuplicateDelivery,
    /// The inventory worker hangs past the step's task timeout.
    TaskTimeout,
    /// The payment provider fails transiently once.
    ProviderTransient,
    /// An EventBridge PutEvents entry fails.
    PublishFails,
    /// The inventory worker crashes on every delivery of the order's Release until
    /// the command is dead-lettered; an operator replays the DLQ and the saga's
    /// compensation work queue.
    PoisonRelease,
}

impl Fault {
    /// Every kind, in report order.
    pub const ALL: [Fault; 17] = [
        Fault::CrashBeforeEnqueue,
        Fault::CrashBeforeStart,
        Fault::CrashAfterStart,
        Fault::CrashBeforeReserve,
        Fault::CrashAfterReserve,
        Fault::CrashBeforeRelease,
        Fault::CrashAfterRelease,
        Fault::CrashBeforeCharge,
        Fault::CrashAfterCharge,
        Fault::CrashBeforeRefund,
        Fault::CrashAfterRefund,
        Fault::CrashAfterAnswer,
        Fault::DuplicateDelivery,
        Fault::TaskTimeout,
        Fault::ProviderTransient,
        Fault::PublishFails,
        Fault::PoisonRelease,
    ];

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::CrashBeforeEnqueue => "crash between storing and enqueueing",
            Fault::CrashBeforeStart => "crash before StartExecution",
            Fault::CrashAfterStart => "crash after StartExecution",
            Fault::CrashBeforeReserve => "crash before reserve",
            Fault::CrashAfterReserve => "crash after reserve",
            Fault::CrashBeforeRelease => "crash before release",
            Fault::CrashAfterRelease => "crash after release",
            Fault::CrashBeforeCharge => "crash before charge",
            Fault::CrashAfterCharge => "crash after charge",
            Fault::CrashBeforeRefund => "crash before refund",
            Fault::CrashAfterRefund => "crash after refund",
            Fault::CrashAfterAnswer => "crash after task answer",
            Fault::DuplicateDelivery => "duplicate delivery",
            Fault::TaskTimeout => "command past its task timeout",
            Fault::ProviderTransient => "transient provider failure",
            Fault::PublishFails => "PutEvents entry failed",
            Fault::PoisonRelease => "poison Release, dead-lettered",
        }
    }

    /// Probability that an order gets this fault. Hangs are rare: each costs the order
    /// half a minute. A poison Release is planned only for declined cards (see
    /// [`Chaos::register`]), whose saga always releases.
    fn probability(self, rate: f64) -> f64 {
        match self {
            Fault::TaskTimeout => rate / 10.0,
            Fault::PoisonRelease => 0.25,
            _ => rate,
        }
    }
}

/// What a chaos run does.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Fixes every order's request and fault plan; printed so a run can be repeated.
    pub seed: u64,
    /// Orders placed.
    pub orders: usize,
    /// Orders in flight at once (placed and not yet terminal).
    pub in_flight: usize,
    /// Probability of each fault kind per order.
    pub fault_rate: f64,
    /// How long the system may take to become quiet after the last order.
    pub quiet_within: Duration,
    /// Pay through the Stripe adapter against the wrapped localstripe (with Stripe's
    /// latency, its 429s and 5xx injected at the emulator, and its declining test
    /// card) instead of the sandbox; the money is then counted in Stripe's books.
    pub stripe: bool,
}

/// Stripe's answer times in the Stripe chaos run: a tail past the tests' provider
/// deadline (`PaymentProviderTimeoutMs`, 200 ms), so some calls time out and are
/// retried under their idempotency keys, as on a slow day at Stripe.
const STRIPE_LATENCY: &str = "40ms,300ms";

/// What the provider holds, order by order, read from its own books at the end of a
/// run.
struct ProviderBooks {
    /// Per order: net taken, authorizations still open, payments captured.
    orders: HashMap<OrderId, (i128, usize, usize)>,
    /// Net taken over every movement the provider made.
    total: i128,
    /// Movements counted (captures and refunds).
    movements: usize,
}

impl ProviderBooks {
    fn of(&self, order: &OrderId) -> (i128, usize, usize) {
        self.orders.get(order).copied().unwrap_or((0, 0, 0))
    }

    /// The sandbox's books.
    fn sandbox(app: &App, orders: &[Placed]) -> Self {
        let sandbox = app.sandbox();
        let books = sandbox.books();
        let orders = orders
            .iter()
            .filter_map(|o| OrderId::parse(&o.order_id))
            .map(|id| {
                let captures = books
                    .iter()
                    .filter(|m| m.order_id == id && m.signed_amount() > 0)
                    .count();
                let entry = (
                    sandbox.net_captured(&id),
                    sandbox.open_authorizations(&id),
                    captures,
                );
                (id, entry)
            })
            .collect();
        Self {
            orders,
            total: books.iter().map(Movement::signed_amount).sum(),
            movements: books.len(),
        }
    }

    /// Stripe's books: every PaymentIntent of the account, by the order in its
    /// metadata: what its charge captured less what was refunded, and whether it still
    /// holds (or may still hold) an authorization.
    async fn stripe(app: &App) -> Self {
        let url = app
            .stripe_url
            .as_deref()
            .expect("the stack pays through Stripe");
        let auth = format!("Bearer {}", local_app::LOCAL_STRIPE_KEY);
        let mut intents = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = match &after {
                Some(id) => format!("{url}/v1/payment_intents?limit=100&starting_after={id}"),
                None => format!("{url}/v1/payment_intents?limit=100"),
            };
            // A 429 or 5xx the run injected last may still be pending: retried, as
            // Stripe asks of its clients.
            let mut tries = 0;
            let body = loop {
                let (status, _, body) = local_runtime::http_client::HttpClient::default()
                    .send_with_headers("GET", &page, Vec::new(), &[("authorization", &auth)])
                    .await
                    .expect("Stripe's books are readable");
                tries += 1;
                match status {
                    200 => break body,
                    429 | 500..=599 if tries < 5 => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    _ => panic!("{status}: {}", String::from_utf8_lossy(&body)),
                }
            };
            let page: Value = serde_json::from_slice(&body).expect("a list");
            let data = page["data"].as_array().cloned().unwrap_or_default();
            after = data
                .last()
                .and_then(|pi| pi["id"].as_str().map(str::to_owned));
            intents.extend(data);
            if page["has_more"] != true || after.is_none() {
                break;
            }
        }
        let mut orders: HashMap<OrderId, (i128, usize, usize)> = HashMap::new();
        let (mut total, mut movements) = (0, 0);
        for pi in &intents {
            let charge = &pi["latest_charge"];
            let captured = charge["captured"] == true;
            let taken = if captured {
                i128::from(charge["amount"].as_u64().unwrap_or(0))
            } else {
                0
            };
            let refunded = i128::from(charge["amount_refunded"].as_u64().unwrap_or(0));
            let net = taken - refunded;
            movements += usize::from(captured) + usize::from(refunded > 0);
            total += net;
            let open = matches!(
                pi["status"].as_str(),
                Some("requires_capture" | "requires_action" | "requires_confirmation")
            );
            let Some(order) = pi["metadata"]["order_id"].as_str().and_then(OrderId::parse) else {
                continue;
            };
            let entry = orders.entry(order).or_default();
            entry.0 += net;
            entry.1 += usize::from(open);
            entry.2 += usize::from(captured);
        }
        Self {
            orders,
            total,
            movements,
        }
    }
}

/// The Stripe payment method standing for a sandbox test token in the Stripe run:
/// Stripe's declining test card for a decline; the plain Visa otherwise (Stripe's own
/// failures and slowness are injected at the emulator, not chosen by the card).
fn stripe_method(token: &str) -> &'static str {
    if token.starts_with("tok_decline") {
        "pm_card_visa_chargeDeclined"
    } else {
        "pm_card_visa"
    }
}

/// What Stripe does on a bad day, at the emulator: one 429, 500 or 503 every couple of
/// seconds, answered before the request reaches it (nothing saved for its key).
async fn stripe_outages(app: &App, stop: &AtomicBool) -> u64 {
    let url = format!(
        "{}/_config/faults",
        app.stripe_url.as_deref().unwrap_or_default()
    );
    let mut injected = 0;
    for status in [429, 503, 500].into_iter().cycle() {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let body = json!({ "status": status, "count": 1 }).to_string();
        let sent = local_runtime::http_client::HttpClient::default()
            .send("POST", &url, body.into_bytes())
            .await;
        if matches!(sent, Ok((200, _, _))) {
            injected += 1;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    injected
}

/// The faults planned and fired, and what the run learned.
pub struct Chaos {
    seed: u64,
    rate: f64,
    plans: Mutex<HashMap<String, HashSet<Fault>>>,
    tokens: Mutex<HashMap<String, String>>,
    hung_until: Mutex<HashMap<String, Instant>>,
    poisoned: Mutex<HashMap<String, u32>>,
    stranded: Mutex<HashMap<usize, String>>,
    fired: Mutex<BTreeMap<Fault, u64>>,
}

impl Chaos {
    /// A run's fault state.
    pub fn new(seed: u64, rate: f64) -> Arc<Self> {
        Arc::new(Self {
            seed,
            rate,
            plans: Mutex::default(),
            tokens: Mutex::default(),
            hung_until: Mutex::default(),
            stranded: Mutex::default(),
            poisoned: Mutex::default(),
            fired: Mutex::default(),
        })
    }

    fn rng(&self, index: usize, stream: u64) -> StdRng {
        StdRng::seed_from_u64(
            self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream << 56,
        )
    }

    /// Plans order `index`'s faults (from the seed alone) under its order id.
    fn register(&self, order_id: &str, index: usize, declined: bool) {
        let mut rng = self.rng(index, 1);
        let plan = Fault::ALL
            .into_iter()
            .filter(|f| rng.random_bool(f.probability(self.rate)))
            .filter(|f| *f != Fault::PoisonRelease || declined)
            .filter(|f| *f != Fault::CrashBeforeEnqueue)
            .collect();
        lock(&self.plans).insert(order_id.to_owned(), plan);
    }

    /// Whether `fault` fires now for the order; each planned fault fires once.
    fn take(&self, order_id: &str, fault: Fault) -> bool {
        let fired = lock(&self.plans)
            .get_mut(order_id)
            .is_some_and(|p| p.remove(&fault));
        if fired {
            *lock(&self.fired).entry(fault).or_default() += 1;
        }
        fired
    }

    /// Dies like a crashed Lambda invocation if the fault fires: the record fails and
    /// comes back after the visibility timeout.
    fn crash(&self, order_id: &str, fault: Fault) {
        if self.take(order_id, fault) {
            panic!("chaos: {} for {order_id}", fault.name());
        }
    }

    /// Dies between storing and enqueueing the first attempt of request `index` if
    /// its plan (drawn from the seed by request, since no order id exists before the
    /// store) says so, remembering the stranded order.
    fn strand(&self, index: usize, order_id: &str) {
        let planned = self
            .rng(index, 4)
            .random_bool(Fault::CrashBeforeEnqueue.probability(self.rate));
        if planned && !lock(&self.stranded).contains_key(&index) {
            lock(&self.stranded).insert(index, order_id.to_owned());
            *lock(&self.fired)
                .entry(Fault::CrashBeforeEnqueue)
                .or_default() += 1;
            panic!("chaos: {} for {order_id}", Fault::CrashBeforeEnqueue.name());
        }
    }

    /// Orders the orders API stored and never enqueued, with their shoppers.
    fn stranded(&self) -> Vec<(String, String)> {
        lock(&self.stranded)
            .iter()
            .map(|(index, order_id)| (shopper(*index), order_id.clone()))
            .collect()
    }

    fn order_of_token(&self, token: &str) -> String {
        lock(&self.tokens).get(token).cloned().unwrap_or_default()
    }

    /// Faults fired so far, by kind.
    pub fn fired(&self) -> BTreeMap<Fault, u64> {
        lock(&self.fired).clone()
    }
}

/// Puts a run's fault injectors in front of the ports the functions are built with:
/// the API's intake queue, intake's saga starter, inventory's stock store, the
/// payment provider (inside the circuit breaker), the task callbacks of inventory and
/// payments, and the event publishers of intake, inventory and payments.
fn inject(chaos: &Arc<Chaos>, ports: &mut crate::AppPorts) {
    let chaos = || chaos.clone();
    ports.orders_api.queue = Arc::new(ChaosQueue {
        inner: ports.orders_api.queue.clone(),
        chaos: chaos(),
    });
    ports.order_intake.saga = Arc::new(ChaosSaga {
        inner: ports.order_intake.saga.clone(),
        chaos: chaos(),
    });
    ports.inventory.stock = Arc::new(ChaosStock {
        inner: ports.inventory.stock.clone(),
        chaos: chaos(),
    });
    ports.payments.provider = Arc::new(ChaosProvider {
        inner: ports.payments.provider.clone(),
        chaos: chaos(),
    });
    for callbacks in [
        &mut ports.inventory.callbacks,
        &mut ports.payments.callbacks,
    ] {
        *callbacks = Arc::new(ChaosCallbacks {
            inner: callbacks.clone(),
            chaos: chaos(),
        });
    }
    for events in [
        &mut ports.order_intake.events,
        &mut ports.inventory.events,
        &mut ports.payments.events,
    ] {
        *events = Arc::new(ChaosEvents {
            inner: events.clone(),
            chaos: chaos(),
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Panics the chaos run injects are expected; only other panics are printed.
pub fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with("chaos: "));
        if !injected {
            default(info);
        }
    }));
}

struct ChaosQueue {
    inner: Arc<dyn OrderQueue>,
    chaos: Arc<Chaos>,
}

#[async_trait]
impl OrderQueue for ChaosQueue {
    async fn enqueue(&self, order: &Order) -> Result<(), PortError> {
        if let Some(index) = order
            .correlation_id
            .strip_prefix(REQUEST_PREFIX)
            .and_then(|i| i.parse().ok())
        {
            self.chaos.strand(index, order.order_id.as_str());
        }
        self.inner.enqueue(order).await
    }
}

struct ChaosSaga {
    inner: Arc<dyn SagaStarter>,
    chaos: Arc<Chaos>,
}

#[async_trait]
impl SagaStarter for ChaosSaga {
    async fn start(&self, order_id: &OrderId, input: &Value) -> Result<StartOutcome, PortError> {
        let id = order_id.to_string();
        self.chaos.crash(&id, Fault::CrashBeforeStart);
        let outcome = self.inner.start(order_id, input).await?;
        self.chaos.crash(&id, Fault::CrashAfterStart);
        Ok(outcome)
    }
}

struct ChaosStock {
    inner: Arc<dyn StockStore>,
    chaos: Arc<Chaos>,
}

#[async_trait]
impl StockStore for ChaosStock {
    async fn reserve(
        &self,
        order_id: &OrderId,
        lines: &[OrderLine],
    ) -> Result<ReserveOutcome, PortError> {
        let id = order_id.to_string();
        if self.chaos.take(&id, Fault::TaskTimeout) {
            lock(&self.chaos.hung_until).insert(id.clone(), Instant::now() + HANG);
        }
        let hung = lock(&self.chaos.hung_until).get(&id).copied();
        if let Some(until) = hung {
            tokio::time::sleep_until(until.into()).await;
        }
        self.chaos.crash(&id, Fault::CrashBeforeReserve);
        let outcome = self.inner.reserve(order_id, lines).await?;
        self.chaos.crash(&id, Fault::CrashAfterReserve);
        Ok(outcome)
    }

    async fn release(
        &self,
        order_id: &OrderId,
        lines: &[OrderLine],
    ) -> Result<ReleaseOutcome, PortError> {
        let id = order_id.to_string();
        if self.chaos.take(&id, Fault::PoisonRelease) {
            lock(&self.chaos.poisoned).insert(id.clone(), POISON_DELIVERIES);
        }
        let poisoned = match lock(&self.chaos.poisoned).get_mut(&id) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        };
        if poisoned {
            panic!("chaos: poison Release for {id}");
        }
        self.chaos.crash(&id, Fault::CrashBeforeRelease);
        let outcome = self.inner.release(order_id, lines).await?;
        self.chaos.crash(&id, Fault::CrashAfterRelease);
        Ok(outcome)
    }

    async fn restock(&self, sku: &Sku, quantity: u32) -> Result<StockLevel, PortError> {
        self.inner.restock(sku, quantity).await
    }

    async fn level(&self, sku: &Sku) -> Result<Option<StockLevel>, PortError> {
        self.inner.level(sku).await
    }
}

struct ChaosProvider {
    inner: Arc<dyn PaymentProvider>,
    chaos: Arc<Chaos>,
}

#[async_trait]
impl PaymentProvider for ChaosProvider {
    async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError> {
        let id = request.order_id.as_str();
        self.chaos.crash(id, Fault::CrashBeforeCharge);
        if self.chaos.take(id, Fault::ProviderTransient) {
            return Err(ProviderError::Transient(
                "chaos: 503 from the provider".into(),
            ));
        }
        self.inner.authorize(request).await
    }

    async fn authentication(&self, payment_id: &str) -> Result<Authentication, ProviderError> {
        self.inner.authentication(payment_id).await
    }
    async fn capture(
        &self,
        payment_id: &str,
        request: &ChargeRequest,
    ) -> Result<(), ProviderError> {
        self.inner.capture(payment_id, request).await?;
        self.chaos
            .crash(request.order_id.as_str(), Fault::CrashAfterCharge);
        Ok(())
    }

    async fn release(
        &self,
        payment_id: Option<&str>,
        request: &ChargeRequest,
    ) -> Result<Released, ProviderError> {
        let id = request.order_id.as_str();
        self.chaos.crash(id, Fault::CrashBeforeRefund);
        let released = self.inner.release(payment_id, request).await?;
        self.chaos.crash(id, Fault::CrashAfterRefund);
        Ok(released)
    }
}

struct ChaosCallbacks {
    inner: Arc<dyn TaskCallbacks>,
    chaos: Arc<Chaos>,
}

#[async_trait]
impl TaskCallbacks for ChaosCallbacks {
    async fn succeed(&self, task_token: &str, output: &Value) -> Result<bool, PortError> {
        let answered = self.inner.succeed(task_token, output).await?;
        let id = self.chaos.order_of_token(task_token);
        self.chaos.crash(&id, Fault::CrashAfterAnswer);
        Ok(answered)
    }

    async fn fail(&self, task_token: &str, error: &str, cause: &str) -> Result<bool, PortError> {
        let answered = self.inner.fail(task_token, error, cause).await?;
        let id = self.chaos.order_of_token(task_token);
        self.chaos.crash(&id, Fault::CrashAfterAnswer);
        Ok(answered)
    }

    async fn heartbeat(&self, task_token: &str) -> Result<bool, PortError> {
        self.inner.heartbeat(task_token).await
    }
}

struct ChaosEvents {
    inner: Arc<dyn EventPublisher>,
    chaos: Arc<Chaos>,
}

#[async_trait]
impl EventPublisher for ChaosEvents {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), PortError> {
        let order = events
            .first()
            .and_then(|e| e.detail["orderId"].as_str())
            .unwrap_or_default();
        if self.chaos.take(order, Fault::PublishFails) {
            return Err(PortError::new(
                "events.publish",
                "chaos: 1 PutEvents entry failed (InternalFailure)",
            ));
        }
        self.inner.publish(events).await
    }
}

/// Sits where Lambda's event source mapping hands records to a function: learns which
/// order each task token belongs to, and delivers a batch twice when an order in it
/// has a planned duplicate delivery.
pub struct ChaosInvoker {
    /// The functions.
    pub inner: Arc<dyn Invoker>,
    /// The run.
    pub chaos: Arc<Chaos>,
}

#[async_trait]
impl Invoker for ChaosInvoker {
    async fn invoke(&self, function: &FunctionSpec, event: Value) -> Result<Value, InvokeError> {
        let mut duplicate = false;
        if let Some(records) = event["Records"].as_array() {
            for record in records {
                let body: Value =
                    serde_json::from_str(record["body"].as_str().unwrap_or("")).unwrap_or_default();
                let (Some(order), token) = (body["orderId"].as_str(), body["taskToken"].as_str())
                else {
                    continue;
                };
                if let Some(token) = token {
                    lock(&self.chaos.tokens).insert(token.to_owned(), order.to_owned());
                }
                duplicate |= self.chaos.take(order, Fault::DuplicateDelivery);
            }
        }
        if duplicate {
            let (first, _) = tokio::join!(
                self.inner.invoke(function, event.clone()),
                self.inner.invoke(function, event)
            );
            first
        } else {
            self.inner.invoke(function, event).await
        }
    }
}

/// One order the driver placed.
#[derive(Debug, Clone)]
struct Placed {
    order_id: String,
    /// Who placed it: only they can read it through the API.
    customer: String,
    lines: Vec<(String, u32)>,
    /// Stored by the orders API and never enqueued: the shopper was never told of it.
    stranded: bool,
}

/// What a chaos run found.
#[derive(Debug)]
pub struct ChaosReport {
    /// The seed (of the first stack when several ran side by side).
    pub seed: u64,
    /// Stacks that ran side by side, each on its own emulator, stack `i` with seed
    /// `seed + i`.
    pub stacks: u64,
    /// Orders placed and accepted (202).
    pub accepted: usize,
    /// Orders the API refused (should be none: every request is valid).
    pub refused: Vec<String>,
    /// Final status counts (`CONFIRMED`, `CANCELLED (reason)`).
    pub outcomes: BTreeMap<String, usize>,
    /// Faults fired, by kind.
    pub faults: BTreeMap<Fault, u64>,
    /// Operator actions taken mid-run and at the end: DLQ messages replayed, sagas
    /// redriven, compensation cases replayed.
    pub operator: BTreeMap<&'static str, u64>,
    /// Events checked against their schemas.
    pub events_checked: usize,
    /// Every broken invariant, with the order's history where there is one.
    pub violations: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl ChaosReport {
    /// The reports of stacks that ran side by side, as one run: counts added up,
    /// violations and refusals kept, wall time the longest.
    pub fn merge(reports: Vec<ChaosReport>) -> Option<ChaosReport> {
        let mut reports = reports.into_iter();
        let mut all = reports.next()?;
        for r in reports {
            all.seed = all.seed.min(r.seed);
            all.stacks += r.stacks;
            all.accepted += r.accepted;
            all.refused.extend(r.refused);
            for (k, n) in r.outcomes {
                *all.outcomes.entry(k).or_default() += n;
            }
            for (k, n) in r.faults {
                *all.faults.entry(k).or_default() += n;
            }
            for (k, n) in r.operator {
                *all.operator.entry(k).or_default() += n;
            }
            all.events_checked += r.events_checked;
            all.violations.extend(r.violations);
            all.elapsed = all.elapsed.max(r.elapsed);
        }
        Some(all)
    }

    /// The table the script prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if self.stacks > 1 {
            let _ = writeln!(
                out,
                "chaos run, seeds {}..={} ({} stacks side by side, each on its own emulator)",
                self.seed,
                self.seed + self.stacks - 1,
                self.stacks
            );
        } else {
            let _ = writeln!(out, "chaos run, seed {}", self.seed);
        }
        let _ = writeln!(out, "{:<40} {:>8}", "orders accepted", self.accepted);
        let _ = writeln!(out, "{:<40} {:>8}", "orders refused", self.refused.len());
        for (outcome, n) in &self.outcomes {
            let _ = writeln!(out, "{:<40} {:>8}", format!("  {outcome}"), n);
        }
        let _ = writeln!(
            out,
            "{:<40} {:>8}",
            "faults injected",
            self.faults.values().sum::<u64>()
        );
        for fault in Fault::ALL {
            let n = self.faults.get(&fault).copied().unwrap_or(0);
            let _ = writeln!(out, "{:<40} {:>8}", format!("  {}", fault.name()), n);
        }
        for (action, n) in &self.operator {
            let _ = writeln!(out, "{:<40} {:>8}", format!("operator: {action}"), n);
        }
        let _ = writeln!(
            out,
            "{:<40} {:>8}",
            "events schema-checked", self.events_checked
        );
        let _ = writeln!(out, "{:<40} {:>8}", "violations", self.violations.len());
        let _ = writeln!(
            out,
            "{:<40} {:>7.1}s",
            "elapsed",
            self.elapsed.as_secs_f64()
        );
        for v in &self.violations {
            let _ = writeln!(out, "\n{v}");
        }
        out
    }
}

/// The request order `index` sends: its lines and payment token, from the seed.
fn request(chaos: &Chaos, index: usize) -> (Vec<(String, u32)>, &'static str, bool) {
    let mut rng = chaos.rng(index, 2);
    let mut lines = vec![("MUG".to_owned(), rng.random_range(1..=3))];
    if rng.random_bool(0.4) {
        lines.push(("TEE".to_owned(), rng.random_range(1..=2)));
    }
    if rng.random_bool(0.02) {
        lines.push(("RARE".to_owned(), 1));
    }
    let token = match rng.random_range(0..100) {
        0..8 => "tok_decline_chaos",
        8..12 => "tok_flaky_chaos",
        12..13 => "tok_timeout_chaos",
        _ => "tok_visa",
    };
    (lines, token, rng.random_bool(0.1))
}

/// Runs the chaos scenario on a fresh stack and checks every invariant.
pub async fn run(config: &ChaosConfig) -> ChaosReport {
    let started = Instant::now();
    let chaos = Chaos::new(config.seed, config.fault_rate);
    let app = Arc::new(App::start_chaos(chaos.clone(), config.stripe).await);
    let ops_dir = std::env::temp_dir().join(format!("order-saga-chaos-{}", app.stack.prefix));
    let ops = Arc::new(app.ops(&ops_dir));

    let store = app.stock_store();
    let mut start_levels = BTreeMap::new();
    for (sku, per_100) in STOCK_PER_100 {
        let wanted = (per_100 as usize * config.orders).div_ceil(100) as u32;
        let have = app.stock(sku).await;
        if wanted as u64 > have.available {
            store
                .restock(&Sku(sku.into()), wanted - have.available as u32)
                .await
                .expect("restock");
        }
        let level = app.stock(sku).await;
        start_levels.insert(sku.to_owned(), level.available + level.reserved);
    }

    let operator = Mutex::new(BTreeMap::<&'static str, u64>::new());
    // Events are taken off the tap queue at every operator pass: a queue that only
    // grows makes every emulator call on it slower.
    let tapped = Mutex::new(Vec::<Value>::new());
    let placed = Arc::new(Mutex::new(Vec::<Placed>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = AtomicBool::new(false);
    let background = async {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for _ in 0..60 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            operator_pass(&app, &ops, &operator).await;
            let events = app.events().await;
            lock(&tapped).extend(events);
        }
    };
    // Stock is read every second while orders run, not only once they settle: a level
    // that dips below zero and comes back is still an oversale.
    let negative_stock = Mutex::new(Vec::<String>::new());
    let watch_stock = async {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (sku, _) in STOCK_PER_100 {
                let (available, reserved) = app.raw_stock(sku).await;
                if available < 0 || reserved < 0 {
                    lock(&negative_stock).push(format!(
                        "stock of {sku} seen negative mid-run: available {available}, reserved {reserved}"
                    ));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let placing = async {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(config.in_flight.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..config.orders {
            let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
            let (app, chaos, placed, refused) =
                (app.clone(), chaos.clone(), placed.clone(), refused.clone());
            let (seed, stripe) = (config.seed, config.stripe);
            tasks.spawn(async move {
                let _permit = permit;
                drive_order(&app, &chaos, seed, index, stripe, &placed, &refused).await;
            });
        }
        while tasks.join_next().await.is_some() {}
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let outages = async {
        if config.stripe {
            stripe_outages(&app, &stop).await
        } else {
            0
        }
    };
    let ((), (), (), stripe_outages) = tokio::join!(placing, background, watch_stock, outages);
    if stripe_outages > 0 {
        lock(&operator).insert("Stripe 429/5xx injected", stripe_outages);
    }

    let accepted = lock(&placed).len();
    let mut placed = lock(&placed).clone();
    placed.extend(
        chaos
            .stranded()
            .into_iter()
            .map(|(customer, order_id)| Placed {
                order_id,
                customer,
                lines: Vec::new(),
                stranded: true,
            }),
    );
    tracing::info!(
        orders = placed.len(),
        "chaos: every order placed; waiting for quiet"
    );
    let mut violations = negative_stock
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    if let Err(noisy) = wait_quiet(&app, &ops, &operator, &placed, config.quiet_within).await {
        violations.push(noisy);
    }

    tracing::info!("chaos: checking invariants");
    let mut outcomes = BTreeMap::new();
    let mut status = HashMap::new();
    let mut sold: BTreeMap<String, u64> = BTreeMap::new();
    // What the provider's books hold for the orders of the run, summed order by order.
    let mut accounted: i128 = 0;
    let books = if config.stripe {
        ProviderBooks::stripe(&app).await
    } else {
        ProviderBooks::sandbox(&app, &placed)
    };
    let reports: Vec<_> = futures::stream::iter(&placed)
        .map(|order| {
            let ops = ops.clone();
            async move { (order, show(&ops, &order.order_id).await) }
        })
        .buffered(8)
        .collect()
        .await;
    for (order, report) in reports {
        let id = OrderId::parse(&order.order_id).expect("order id");
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                violations.push(format!("{}: cannot read it back: {e}", order.order_id));
                continue;
            }
        };
        if let Some(o) = &report.order {
            status.insert(order.order_id.clone(), o.status);
        }
        let mut problems = report.violations.clone();
        let (net, held, captures) = books.of(&id);
        accounted += net;
        if captures > 1 {
            problems.push(format!("captured {captures} times at the provider"));
        }
        if let Some(money) = report.order.as_ref().and_then(|o| {
            let refunded = report.ledger.as_ref().map_or(0, LedgerRecord::refunded);
            check_money(o, net, held, refunded)
        }) {
            problems.push(money.to_string());
        }
        match report.order.as_ref().map(|o| (&o.status, o.history.last())) {
            Some((OrderStatus::Confirmed, _)) => {
                *outcomes.entry("CONFIRMED".to_owned()).or_default() += 1;
                for (sku, q) in &order.lines {
                    *sold.entry(sku.clone()).or_default() += u64::from(*q);
                }
            }
            Some((OrderStatus::Cancelled, last)) => {
                let reason = last.and_then(|c| c.reason.clone()).unwrap_or_default();
                if order.stranded && (reason != ORPHAN_REASON || !report.runs.is_empty()) {
                    problems.push(format!(
                        "stranded before intake, but cancelled as {reason:?} with {} saga runs",
                        report.runs.len()
                    ));
                }
                if !order.stranded && reason == ORPHAN_REASON {
                    problems.push("an accepted order was swept as stranded".into());
                }
                *outcomes.entry(format!("CANCELLED ({reason})")).or_default() += 1;
            }
            Some((other, _)) => problems.push(format!("not terminal: {other:?}")),
            None => {}
        }
        if !problems.is_empty() {
            violations.push(format!(
                "{}: {}\n{}",
                order.order_id,
                problems.join("; "),
                serde_json::to_string_pretty(&json!({
                    "order": report.order,
                    "reservation": report.reservation,
                    "ledger": report.ledger,
                    "runs": report.runs,
                }))
                .unwrap_or_default()
            ));
        }
    }
    violations.extend(unaccounted_money(&books, accounted));
    for (sku, start) in &start_levels {
        let level = app.stock(sku).await;
        let sold = sold.get(sku).copied().unwrap_or(0);
        if let Some(broken) = check_stock(&Sku(sku.clone()), *start, level, sold) {
            violations.push(broken.to_string());
        }
    }
    let mut events = tapped.into_inner().unwrap_or_else(|p| p.into_inner());
    events.extend(app.events().await);
    violations.extend(schema_violations(&events));
    violations.extend(missing_terminal_events(&events, &placed, &status));

    let _ = std::fs::remove_dir_all(&ops_dir);
    ChaosReport {
        seed: config.seed,
        stacks: 1,
        accepted,
        refused: lock(&refused).clone(),
        outcomes,
        faults: chaos.fired(),
        operator: lock(&operator).clone(),
        events_checked: events.len(),
        violations,
        elapsed: started.elapsed(),
    }
}

/// Places order `index` as a shopper would (retrying 5xx with its idempotency key),
/// sometimes cancels it at once, and follows it until it is terminal.
async fn drive_order(
    app: &App,
    chaos: &Chaos,
    seed: u64,
    index: usize,
    stripe: bool,
    placed: &Mutex<Vec<Placed>>,
    refused: &Mutex<Vec<String>>,
) {
    let (lines, sandbox_token, express) = request(chaos, index);
    let token = if stripe {
        stripe_method(sandbox_token)
    } else {
        sandbox_token
    };
    let key = format!("chaos-{seed}-{index}");
    let items: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect();
    let customer = shopper(index);
    let body = json!({
        "currency": "EUR",
        "paymentToken": token,
        "express": express,
        "lines": items,
    })
    .to_string();
    // The request's number travels as its correlation id, so the intake queue's fault
    // wrapper knows which request's plan applies to the order it is handed.
    let correlation = format!("{REQUEST_PREFIX}{index}");
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key.as_str()),
        ("x-correlation-id", correlation.as_str()),
    ];
    // A shopper retries errors and "in progress" with the same key, once a second,
    // for longer than the orders API's claim on a key that crashed mid-request.
    let mut answer = None;
    let give_up = Instant::now() + Duration::from_secs(90);
    while Instant::now() < give_up {
        let r = app
            .http_as(&customer, "POST", "/v1/orders", &headers, Some(&body))
            .await;
        if r.status < 500 && r.status != 409 {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let Some(r) = answer.filter(|r| r.status == 202) else {
        lock(refused).push(format!("order {index}: {body}"));
        return;
    };
    let json: Value = serde_json::from_str(&r.body).unwrap_or_default();
    let order_id = json["orderId"].as_str().unwrap_or_default().to_owned();
    chaos.register(&order_id, index, sandbox_token.starts_with("tok_decline"));
    lock(placed).push(Placed {
        order_id: order_id.clone(),
        customer: customer.clone(),
        lines,
        stranded: false,
    });
    if chaos.rng(index, 3).random_bool(0.05) {
        app.http_as(
            &customer,
            "POST",
            &format!("/v1/orders/{order_id}/cancel"),
            &[],
            None,
        )
        .await;
    }
    app.poll_terminal(&customer, &order_id, Duration::from_secs(90))
        .await;
}

/// The correlation id of request `index` is this prefix and the number.
const REQUEST_PREFIX: &str = "chaos-request-";

/// Shoppers of a chaos run: orders are placed, read and cancelled as one of them, so
/// the run goes through the authorizer and the ownership rules as shoppers do.
const SHOPPERS: usize = 7;

fn shopper(index: usize) -> String {
    format!("chaos-shopper-{}", index % SHOPPERS)
}

/// Every confirmed order announced `OrderConfirmed` and every cancelled one
/// `OrderCancelled` (events may repeat: delivery is at least once).
fn missing_terminal_events(
    events: &[Value],
    placed: &[Placed],
    status: &HashMap<String, OrderStatus>,
) -> Vec<String> {
    let seen: HashSet<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["detail"]["orderId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["detail-type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    placed
        .iter()
        .filter_map(|o| {
            let wanted = match status.get(&o.order_id)? {
                OrderStatus::Confirmed => "OrderConfirmed",
                OrderStatus::Cancelled => "OrderCancelled",
                _ => return None,
            };
            (!seen.contains(&(o.order_id.clone(), wanted.to_owned())))
                .then(|| format!("{}: no {wanted} event was published", o.order_id))
        })
        .collect()
}

/// What an operator on call does when the alarms fire: replays every DLQ to its
/// source and replays the compensation work queue (each case redrives its saga).
async fn operator_pass(app: &App, ops: &Ops, counts: &Mutex<BTreeMap<&'static str, u64>>) {
    let started = Instant::now();
    operator_actions(app, ops, counts).await;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "chaos: operator pass"
    );
}

async fn operator_actions(app: &App, ops: &Ops, counts: &Mutex<BTreeMap<&'static str, u64>>) {
    // The sweep's schedule, compressed: every pass runs it once.
    if let Ok(summary) = app.invoke("OrphanSweeperFunction", json!({})).await {
        *lock(counts)
            .entry("stranded orders cancelled by the sweep")
            .or_default() += summary["cancelled"].as_array().map_or(0, Vec::len) as u64;
    }
    let never = AtomicBool::new(false);
    let hidden = indicatif::ProgressBar::hidden();
    for dlq in ops.dead_letter_queues() {
        if let Ok(summary) = replay(
            ops,
            &dlq.key,
            &ReplayOptions {
                manual: true,
                ..ReplayOptions::default()
            },
            &hidden,
            &never,
        )
        .await
        {
            *lock(counts).entry("DLQ messages replayed").or_default() +=
                (summary.moved + summary.resumed) as u64;
        }
    }
    if let Ok(cases) = replay_compensations(ops, false).await {
        *lock(counts)
            .entry("compensation cases replayed (sagas redriven)")
            .or_default() += cases.len() as u64;
    }
}

/// Money the provider moved that no order of the run accounts for: the sum of every
/// capture and refund in its books against the sum of the orders' nets. A capture
/// made for an order id the run never placed shows here and nowhere else.
fn unaccounted_money(books: &ProviderBooks, accounted: i128) -> Option<String> {
    (books.total != accounted).then(|| {
        format!(
            "the provider's books hold {} over {} movements, the run's orders account for {accounted}",
            books.total, books.movements
        )
    })
}

/// Waits until every placed order is terminal, no saga runs and no queue of the stack
/// holds a message, taking operator passes meanwhile. Reaching `within` first is a
/// violation: what was still moving is named.
async fn wait_quiet(
    app: &App,
    ops: &Ops,
    operator: &Mutex<BTreeMap<&'static str, u64>>,
    placed: &[Placed],
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut open: Vec<&Placed> = placed.iter().collect();
    loop {
        operator_pass(app, ops, operator).await;
        let running = shop_ops::saga::list(ops, Some(shop_ops::saga::RunStatus::Running), None)
            .await
            .map(|r| r.len())
            .map_err(|e| e.to_string());
        let mut queued = BTreeMap::new();
        for queue in ops.queues() {
            match shop_ops::dlq::depth(ops, &queue.key).await {
                Ok((_, 0)) => {}
                Ok((_, n)) => {
                    queued.insert(queue.key, n.to_string());
                }
                Err(e) => {
                    queued.insert(queue.key, format!("unreadable: {e}"));
                }
            }
        }
        let mut still_open = Vec::new();
        for order in open {
            if !app.is_terminal(&order.customer, &order.order_id).await {
                still_open.push(order);
            }
        }
        open = still_open;
        if running == Ok(0) && queued.is_empty() && open.is_empty() {
            return Ok(());
        }
        let pending = open.len();
        if Instant::now() >= deadline {
            return Err(format!(
                "not quiet after {within:?}: sagas running {running:?}, {pending} orders not terminal ({}), messages left in {queued:?}",
                open.iter()
                    .take(5)
                    .map(|o| o.order_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        tracing::info!(?running, ?queued, pending, "chaos: not quiet yet");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

impl App {
    /// A fresh stack whose ports and event source mappings inject `chaos`'s faults.
    /// With `stripe`, it pays through the Stripe adapter against the wrapped
    /// localstripe, answering with [`STRIPE_LATENCY`].
    pub async fn start_chaos(chaos: Arc<Chaos>, stripe: bool) -> App {
        // The shortest orphan age the template allows, so the sweep cancels stranded
        // orders within the run.
        let faults = chaos.clone();
        let mut parameters = vec![
            ("OrphanAfterSeconds", "60"),
            ("MaxOrderWaitSeconds", ORDER_WAIT_SECONDS),
        ];
        if stripe {
            parameters.push(("PaymentProvider", "stripe"));
        }
        Self::start_full(
            Some(Arc::new(move |ports| inject(&faults, ports))),
            &parameters,
            Some(chaos),
            None,
            stripe.then_some(STRIPE_LATENCY),
        )
        .await
    }

    /// Whether `customer`'s order is `CONFIRMED` or `CANCELLED`, as they read it.
    pub async fn is_terminal(&self, customer: &str, order_id: &str) -> bool {
        let r = self
            .http_as(
                customer,
                "GET",
                &format!("/v1/orders/{order_id}"),
                &[],
                None,
            )
            .await;
        let order: Value = serde_json::from_str(&r.body).unwrap_or_default();
        matches!(order["status"].as_str(), Some("CONFIRMED" | "CANCELLED"))
    }

    /// Polls until the order is terminal or `within` passes (no assertion: the chaos
    /// run checks everything once the system is quiet).
    pub async fn poll_terminal(&self, customer: &str, order_id: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && !self.is_terminal(customer, order_id).await {
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
    }
}
