//! In-memory ports for unit tests of the domain and of handlers.

use crate::events::DomainEvent;
use crate::listing::{ListCursor, OrderPage, PageRequest};
use crate::order::{CustomerId, Order, OrderId, OrderLine, OrderStatus, Sku, StatusChange};
use crate::payment::{LedgerRecord, LedgerStatus};
use crate::ports::*;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A `PENDING` order of one line, as the API would have stored it, for tests and
/// benchmarks that need orders without going through the API.
pub fn pending_order(sku: &str, quantity: u32, unit_price: u64) -> Order {
    let at = "2026-11-22T00:00:00Z".to_owned();
    Order {
        order_id: OrderId::generate(),
        customer_id: CustomerId("c".into()),
        lines: vec![OrderLine {
            sku: Sku(sku.into()),
            quantity,
            unit_price,
        }],
        currency: crate::order::Currency::EUR,
        total: u64::from(quantity) * unit_price,
        status: OrderStatus::Pending,
        history: vec![StatusChange {
            status: OrderStatus::Pending,
            at: at.clone(),
            reason: None,
        }],
        payment_token: "tok_visa".into(),
        payment_action: None,
        correlation_id: "corr".into(),
        created_at: at,
        express: false,
    }
}

fn down(operation: &'static str) -> PortError {
    PortError::new(operation, "injected outage")
}

/// Catalog backed by a map.
#[derive(Default)]
pub struct FakeCatalog(pub HashMap<Sku, PriceList>);

#[async_trait]
impl Catalog for FakeCatalog {
    async fn prices(&self, skus: &[Sku]) -> Result<HashMap<Sku, PriceList>, PortError> {
        Ok(skus
            .iter()
            .filter_map(|s| self.0.get(s).map(|p| (s.clone(), p.clone())))
            .collect())
    }
}

/// The pending index as a map from order id to creation time.
#[derive(Default)]
pub struct FakePendingIndex(pub Mutex<BTreeMap<OrderId, String>>);

impl FakePendingIndex {
    /// Indexes an order as the store does when it is inserted.
    pub fn add(&self, order: &Order) {
        lock(&self.0).insert(order.order_id.clone(), order.created_at.clone());
    }
}

#[async_trait]
impl PendingOrders for FakePendingIndex {
    async fn created_before(&self, cutoff: &str, limit: usize) -> Result<Vec<OrderId>, PortError> {
        Ok(lock(&self.0)
            .iter()
            .filter(|(_, at)| at.as_str() < cutoff)
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect())
    }
    async fn forget(&self, order_id: &OrderId) -> Result<(), PortError> {
        lock(&self.0).remove(order_id);
        Ok(())
    }
}

/// The orders whose saga has started, with its state; absent ones never started.
#[derive(Default)]
pub struct FakeRuns(pub Mutex<HashMap<OrderId, RunState>>);

#[async_trait]
impl SagaRuns for FakeRuns {
    async fn run_state(&self, order_id: &OrderId) -> Result<RunState, PortError> {
        Ok(lock(&self.0)
            .get(order_id)
            .copied()
            .unwrap_or(RunState::NeverStarted))
    }
}

/// Orders in a map.
#[derive(Default)]
pub struct FakeOrders(pub Mutex<HashMap<OrderId, Order>>);

#[async_trait]
impl OrderPayments for FakeOrders {
    async fn of_order(&self, order_id: &OrderId) -> Result<Option<String>, PortError> {
        Ok(lock(&self.0).get(order_id).map(|o| o.payment_token.clone()))
    }
    async fn require_action(
        &self,
        order_id: &OrderId,
        client_secret: &str,
        at: &str,
    ) -> Result<bool, PortError> {
        let mut orders = lock(&self.0);
        let Some(order) = orders.get_mut(order_id).filter(|o| {
            matches!(
                o.status,
                OrderStatus::PaymentPending | OrderStatus::PaymentActionRequired
            )
        }) else {
            return Ok(false);
        };
        if order.status == OrderStatus::PaymentPending {
            order.status = OrderStatus::PaymentActionRequired;
            order.history.push(StatusChange {
                status: OrderStatus::PaymentActionRequired,
                at: at.to_owned(),
                reason: None,
            });
        }
        order.payment_action = Some(crate::order::PaymentAction {
            client_secret: client_secret.to_owned(),
        });
        Ok(true)
    }
}

#[async_trait]
impl OrderStore for FakeOrders {
    async fn insert(&self, order: &Order) -> Result<(), PortError> {
        lock(&self.0).insert(order.order_id.clone(), order.clone());
        Ok(())
    }
    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, PortError> {
        Ok(lock(&self.0).get(order_id).cloned())
    }
    async fn cancel(
        &self,
        order_id: &OrderId,
        reason: &str,
        at: &str,
        owner: Option<&CustomerId>,
    ) -> Result<CancelOutcome, PortError> {
        let mut orders = lock(&self.0);
        let Some(order) = orders
            .get_mut(order_id)
            .filter(|o| owner.is_none_or(|caller| o.is_owned_by(caller)))
        else {
            return Ok(CancelOutcome::NotFound);
        };
        if !order.status.is_cancellable() {
            return Ok(CancelOutcome::NotCancellable(order.status));
        }
        order.status = OrderStatus::Cancelled;
        order.history.push(StatusChange {
            status: OrderStatus::Cancelled,
            at: at.to_owned(),
            reason: Some(reason.to_owned()),
        });
        Ok(CancelOutcome::Cancelled(Box::new(order.clone())))
    }
    async fn list_by_customer(
        &self,
        customer: &CustomerId,
        page: &PageRequest,
    ) -> Result<OrderPage, PortError> {
        let position = |o: &Order| (o.created_at.clone(), o.order_id.clone());
        let mut mine: Vec<Order> = lock(&self.0)
            .values()
            .filter(|o| o.is_owned_by(customer))
            .filter(|o| {
                page.after.as_ref().is_none_or(|after| {
                    position(o) < (after.created_at.clone(), after.order_id.clone())
                })
            })
            .cloned()
            .collect();
        mine.sort_by_key(|o| std::cmp::Reverse(position(o)));
        let more = mine.len() > page.limit;
        mine.truncate(page.limit);
        let next = more.then(|| mine.last().map(ListCursor::after)).flatten();
        Ok(OrderPage { orders: mine, next })
    }
}

/// Intake queue that records what it was given, or fails when `down` is set.
#[derive(Default)]
pub struct FakeQueue {
    /// Orders enqueued.
    pub sent: Mutex<Vec<OrderId>>,
    /// Simulates an SQS outage.
    pub down: bool,
}

#[async_trait]
impl OrderQueue for FakeQueue {
    async fn enqueue(&self, order: &Order) -> Result<(), PortError> {
        if self.down {
            return Err(down("queue.enqueue"));
        }
        lock(&self.sent).push(order.order_id.clone());
        Ok(())
    }
}

/// Event bus that records events.
#[derive(Default)]
pub struct FakeEvents(pub Mutex<Vec<DomainEvent>>);

impl FakeEvents {
    /// Detail types published so far, in order.
    pub fn detail_types(&self) -> Vec<&'static str> {
        lock(&self.0).iter().map(|e| e.detail_type).collect()
    }
}

#[async_trait]
impl EventPublisher for FakeEvents {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), PortError> {
        lock(&self.0).extend_from_slice(events);
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reservation {
    Held(Vec<OrderLine>),
    Released,
}

/// Stock with the same all-or-nothing semantics as the DynamoDB transaction.
#[derive(Default)]
pub struct FakeStock {
    levels: Mutex<HashMap<Sku, StockLevel>>,
    reservations: Mutex<HashMap<OrderId, Reservation>>,
}

impl FakeStock {
    /// Stock with the given available units.
    pub fn with(levels: &[(&str, u64)]) -> Self {
        let s = Self::default();
        lock(&s.levels).extend(levels.iter().map(|(sku, n)| {
            (
                Sku((*sku).into()),
                StockLevel {
                    available: *n,
                    reserved: 0,
                },
            )
        }));
        s
    }
}

#[async_trait]
impl StockStore for FakeStock {
    async fn reserve(
        &self,
        order_id: &OrderId,
        lines: &[OrderLine],
    ) -> Result<ReserveOutcome, PortError> {
        let mut res = lock(&self.reservations);
        match res.get(order_id) {
            Some(Reservation::Held(_)) => return Ok(ReserveOutcome::AlreadyReserved),
            Some(Reservation::Released) => return Ok(ReserveOutcome::Tombstoned),
            None => {}
        }
        let mut levels = lock(&self.levels);
        let short: Vec<Sku> = lines
            .iter()
            .filter(|l| {
                levels
                    .get(&l.sku)
                    .is_none_or(|s| s.available < u64::from(l.quantity))
            })
            .map(|l| l.sku.clone())
            .collect();
        if !short.is_empty() {
            return Ok(ReserveOutcome::OutOfStock(short));
        }
        for l in lines {
            if let Some(s) = levels.get_mut(&l.sku) {
                s.available -= u64::from(l.quantity);
                s.reserved += u64::from(l.quantity);
            }
        }
        res.insert(order_id.clone(), Reservation::Held(lines.to_vec()));
        Ok(ReserveOutcome::Reserved)
    }

    async fn release(
        &self,
        order_id: &OrderId,
        _lines: &[OrderLine],
    ) -> Result<ReleaseOutcome, PortError> {
        let mut res = lock(&self.reservations);
        match res.insert(order_id.clone(), Reservation::Released) {
            Some(Reservation::Held(held)) => {
                let mut levels = lock(&self.levels);
                for l in held {
                    if let Some(s) = levels.get_mut(&l.sku) {
                        s.available += u64::from(l.quantity);
                        s.reserved -= u64::from(l.quantity);
                    }
                }
                Ok(ReleaseOutcome::Released)
            }
            Some(Reservation::Released) => Ok(ReleaseOutcome::AlreadyReleased),
            None => Ok(ReleaseOutcome::NothingHeld),
        }
    }

    async fn restock(&self, sku: &Sku, quantity: u32) -> Result<StockLevel, PortError> {
        let mut levels = lock(&self.levels);
        let s = levels.entry(sku.clone()).or_default();
        s.available += u64::from(quantity);
        Ok(*s)
    }

    async fn level(&self, sku: &Sku) -> Result<Option<StockLevel>, PortError> {
        Ok(lock(&self.levels).get(sku).copied())
    }
}

/// Ledger with conditional transitions.
#[derive(Default)]
pub struct FakeLedger(pub Mutex<HashMap<OrderId, LedgerRecord>>);

#[async_trait]
impl PaymentLedger for FakeLedger {
    async fn get(&self, order_id: &OrderId) -> Result<Option<LedgerRecord>, PortError> {
        Ok(lock(&self.0).get(order_id).cloned())
    }
    async fn transition(
        &self,
        order_id: &OrderId,
        from: Option<LedgerStatus>,
        to: &LedgerRecord,
    ) -> Result<bool, PortError> {
        let mut ledger = lock(&self.0);
        if ledger.get(order_id).map(|r| r.status) != from {
            return Ok(false);
        }
        ledger.insert(order_id.clone(), to.clone());
        Ok(true)
    }
    async fn amend(&self, current: &LedgerRecord, to: &LedgerRecord) -> Result<bool, PortError> {
        let mut ledger = lock(&self.0);
        let unchanged = ledger
            .get(&current.order_id)
            .is_some_and(|r| r.status == current.status && r.refunds == current.refunds);
        if unchanged {
            ledger.insert(current.order_id.clone(), to.clone());
        }
        Ok(unchanged)
    }
}

/// Task callbacks that record answers.
#[derive(Default)]
pub struct FakeCallbacks {
    /// Successful answers: token and output.
    pub succeeded: Mutex<Vec<(String, Value)>>,
    /// Failures: token and error name.
    pub failed: Mutex<Vec<(String, String)>>,
    /// Heartbeats, by token.
    pub heartbeats: Mutex<Vec<String>>,
    /// Tokens whose step timed out: Step Functions refuses every call on them.
    pub timed_out: Mutex<Vec<String>>,
}

#[async_trait]
impl TaskCallbacks for FakeCallbacks {
    async fn succeed(&self, task_token: &str, output: &Value) -> Result<bool, PortError> {
        lock(&self.succeeded).push((task_token.to_owned(), output.clone()));
        Ok(true)
    }
    async fn fail(&self, task_token: &str, error: &str, _cause: &str) -> Result<bool, PortError> {
        lock(&self.failed).push((task_token.to_owned(), error.to_owned()));
        Ok(true)
    }
    /// Refused, as by Step Functions, once the token's step timed out or was answered.
    async fn heartbeat(&self, task_token: &str) -> Result<bool, PortError> {
        lock(&self.heartbeats).push(task_token.to_owned());
        let answered = lock(&self.succeeded).iter().any(|(t, _)| t == task_token)
            || lock(&self.failed).iter().any(|(t, _)| t == task_token);
        Ok(!answered && !lock(&self.timed_out).iter().any(|t| t == task_token))
    }
}
