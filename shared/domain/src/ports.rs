//! One small trait per capability the domain needs from the world. Each function is
//! granted IAM permissions for exactly the ports it is built with.

use crate::events::DomainEvent;
use crate::listing::{OrderPage, PageRequest};
use crate::money::{
    Authentication, Authorization, ChargeRequest, LedgerRecord, LedgerStatus, PartRefund,
    ProviderError, Released,
};
use crate::order::{Currency, CustomerId, Order, OrderId, OrderLine, Sku};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;

/// Boxed error from an adapter, kept as the source of a [`PortError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An adapter call failed for a reason the domain cannot act on except by retrying
/// later (throttling, network, an unavailable service).
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed")]
pub struct PortError {
    /// What was being attempted, e.g. `orders.insert`.
    pub operation: &'static str,
    /// The adapter's error.
    #[source]
    pub source: BoxError,
}

impl PortError {
    /// Wraps an adapter error.
    pub fn new(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            operation,
            source: source.into(),
        }
    }
}

/// Unit prices, in minor units, keyed by currency code.
pub type PriceList = HashMap<Currency, u64>;

/// Read access to the product catalog.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Prices of the given SKUs; unknown SKUs are absent from the answer.
    async fn prices(&self, skus: &[Sku]) -> Result<HashMap<Sku, PriceList>, PortError>;
}

/// What happened to a shopper's cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The order is now cancelled.
    Cancelled(Box<Order>),
    /// No such order.
    NotFound,
    /// Too late: the order is in this status.
    NotCancellable(crate::OrderStatus),
}

/// Durable order records.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Stores a new order; fails if the id exists.
    async fn insert(&self, order: &Order) -> Result<(), PortError>;
    /// Reads an order.
    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, PortError>;
    /// Cancels if the status still allows it, appending to the history atomically.
    /// With `owner`, only an order of that customer is cancelled; another's answers
    /// [`CancelOutcome::NotFound`], in the same conditional write, so no race lets a
    /// shopper cancel an order that is not theirs.
    async fn cancel(
        &self,
        order_id: &OrderId,
        reason: &str,
        at: &str,
        owner: Option<&CustomerId>,
    ) -> Result<CancelOutcome, PortError>;
    /// A customer's orders, newest first, one page at a time.
    async fn list_by_customer(
        &self,
        customer: &CustomerId,
        page: &PageRequest,
    ) -> Result<OrderPage, PortError>;
}

/// The index of orders stored as pending, which the orphan sweep reads. An order
/// enters it when stored and leaves it when its saga marks it reserved or cancelled,
/// or when the sweep forgets it.
#[async_trait]
pub trait PendingOrders: Send + Sync {
    /// Orders in the index created before `cutoff` (RFC 3339), at most `limit`.
    async fn created_before(&self, cutoff: &str, limit: usize) -> Result<Vec<OrderId>, PortError>;
    /// Takes an order out of the index.
    async fn forget(&self, order_id: &OrderId) -> Result<(), PortError>;
}

/// Where an order's saga execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// No execution was ever started for the order.
    NeverStarted,
    /// The execution is running and will move the order.
    Running,
    /// The execution ended (succeeded, failed, timed out or was aborted).
    Ended,
}

/// Whether an order's saga was ever started, and whether it still runs.
#[async_trait]
pub trait SagaRuns: Send + Sync {
    /// The state of the order's execution.
    async fn run_state(&self, order_id: &OrderId) -> Result<RunState, PortError>;
}

/// The queue that feeds order intake.
#[async_trait]
pub trait OrderQueue: Send + Sync {
    /// Hands an accepted order to intake.
    async fn enqueue(&self, order: &Order) -> Result<(), PortError>;
}

/// Whether a saga execution was started by this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// A new execution.
    Started,
    /// An execution with this name exists already (a redelivered message).
    AlreadyExists,
}

/// Starts saga executions.
#[async_trait]
pub trait SagaStarter: Send + Sync {
    /// Starts the execution named after the order.
    async fn start(&self, order_id: &OrderId, input: &Value) -> Result<StartOutcome, PortError>;
}

/// Publishes events to the bus. Implementations must check every entry's result.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes all events or fails.
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), PortError>;
}

/// Result of a reservation attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Every line is now held.
    Reserved,
    /// This order already held its stock (a retried or redelivered command).
    AlreadyReserved,
    /// Nothing was held: these SKUs lack stock.
    OutOfStock(Vec<Sku>),
    /// The order was compensated already; the late command is refused.
    Tombstoned,
}

/// Result of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Held stock went back to available.
    Released,
    /// Released before, nothing to do.
    AlreadyReleased,
    /// Nothing was held; a tombstone now refuses a late reserve.
    NothingHeld,
}

/// Units of one SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StockLevel {
    /// Free to reserve.
    pub available: u64,
    /// Held by orders in flight.
    pub reserved: u64,
}

/// Stock and per-order reservations.
#[async_trait]
pub trait StockStore: Send + Sync {
    /// Holds every line or none, once per order.
    async fn reserve(
        &self,
        order_id: &OrderId,
        lines: &[OrderLine],
    ) -> Result<ReserveOutcome, PortError>;
    /// Gives held stock back, or tombstones an order that held none.
    async fn release(
        &self,
        order_id: &OrderId,
        lines: &[OrderLine],
    ) -> Result<ReleaseOutcome, PortError>;
    /// Adds units of a SKU.
    async fn restock(&self, sku: &Sku, quantity: u32) -> Result<StockLevel, PortError>;
    /// Current level of a SKU.
    async fn level(&self, sku: &Sku) -> Result<Option<StockLevel>, PortError>;
}

/// The payments ledger: one record per order, conditional transitions only.
#[async_trait]
pub trait PaymentLedger: Send + Sync {
    /// Reads the order's record.
    async fn get(&self, order_id: &OrderId) -> Result<Option<LedgerRecord>, PortError>;
    /// Moves the record from `from` (None: absent) to `to`. Returns false if the
    /// record was not in `from`, so a concurrent compensation wins.
    async fn transition(
        &self,
        order_id: &OrderId,
        from: Option<LedgerStatus>,
        to: &LedgerRecord,
    ) -> Result<bool, PortError>;
    /// Replaces `current` by `to` when the stored record still has `current`'s status
    /// and its part refunds. Returns false if it changed, so two part refunds made at
    /// once cannot both count against the same remainder.
    async fn amend(&self, current: &LedgerRecord, to: &LedgerRecord) -> Result<bool, PortError>;
}

/// What the payments function reads and writes of a stored order: its payment method
/// (so no queue, saga input or event ever carries it) and the action its shopper must
/// take (so no saga input or event carries the client secret either).
#[async_trait]
pub trait OrderPayments: Send + Sync {
    /// The order's payment method, `None` when there is no such order.
    async fn of_order(&self, order_id: &OrderId) -> Result<Option<String>, PortError>;
    /// Moves a `PAYMENT_PENDING` order to `PAYMENT_ACTION_REQUIRED` with the client
    /// secret its owner's browser authenticates with. False when the order was no
    /// longer pending payment (a compensation won).
    async fn require_action(
        &self,
        order_id: &OrderId,
        client_secret: &str,
        at: &str,
    ) -> Result<bool, PortError>;
}

/// Where a payment provider's word that an order's payment changed goes: to the
/// payments function, which looks at the payment itself and settles what waits on it.
#[async_trait]
pub trait PaymentSettlements: Send + Sync {
    /// Asks the payments function to settle the order's payment, for the provider's
    /// event `event_id`.
    async fn settle(&self, order_id: &OrderId, event_id: &str) -> Result<(), PortError>;
}

/// A card processor: authorizes, then captures what it authorized, and gives back by
/// voiding what was not captured or refunding what was. Implemented by the Stripe
/// adapter (`payment-stripe`) and the sandbox (`payment-sandbox`).
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Holds the amount on the payment method without taking it, or says the shopper
    /// must authenticate first. The same idempotency key gives the same authorization
    /// however often it is asked.
    async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError>;
    /// Where a payment that answered [`Authorization::ActionRequired`] stands. A
    /// provider that never asks for authentication is never asked this; by default it
    /// refuses.
    async fn authentication(&self, payment_id: &str) -> Result<Authentication, ProviderError> {
        Err(ProviderError::Refused(format!(
            "payment {payment_id}: this provider asks for no authentication"
        )))
    }
    /// Takes the whole amount authorized as `payment_id` for `request`. Capturing a
    /// captured payment changes nothing.
    async fn capture(&self, payment_id: &str, request: &ChargeRequest)
    -> Result<(), ProviderError>;
    /// Gives back whatever the payment holds: voids an authorization, refunds a
    /// capture. Without a payment id, whatever was authorized under the request's
    /// idempotency key, if anything. Releasing twice changes nothing.
    async fn release(
        &self,
        payment_id: Option<&str>,
        request: &ChargeRequest,
    ) -> Result<Released, ProviderError>;
    /// Gives back part of a captured payment. The same idempotency key refunds once;
    /// more than the payment still holds is refused. A provider without part refunds
    /// refuses.
    async fn refund_part(&self, payment_id: &str, part: &PartRefund) -> Result<(), ProviderError> {
        Err(ProviderError::Refused(format!(
            "payment {payment_id}: this provider gives back no part of a payment ({})",
            part.amount
        )))
    }
}

/// Answers to Step Functions task tokens.
#[async_trait]
pub trait TaskCallbacks: Send + Sync {
    /// SendTaskSuccess. A dead token is reported as `Ok(false)`.
    async fn succeed(&self, task_token: &str, output: &Value) -> Result<bool, PortError>;
    /// SendTaskFailure with a named error. A dead token is reported as `Ok(false)`.
    async fn fail(&self, task_token: &str, error: &str, cause: &str) -> Result<bool, PortError>;
    /// SendTaskHeartbeat: the worker is alive. A dead token is reported as `Ok(false)`.
    async fn heartbeat(&self, task_token: &str) -> Result<bool, PortError>;
}

/// Shipments created for confirmed orders.
#[async_trait]
pub trait ShipmentStore: Send + Sync {
    /// Creates the order's shipment once; returns false if it already existed.
    async fn create(&self, order_id: &OrderId, lines: &[OrderLine]) -> Result<bool, PortError>;
}
