//! Placing and cancelling orders: the orders API's rules.

use crate::order::{CustomerId, Order, OrderId, OrderLine, OrderStatus, StatusChange};
use crate::ports::{CancelOutcome, Catalog, OrderQueue, OrderStore, PortError};
use crate::request::{FieldError, PlaceOrderRequest};
use serde_json::{Value, json};

/// Why an order could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    /// Some lines name SKUs the catalog does not sell in the requested currency.
    #[error("unknown SKUs")]
    UnknownSkus(Vec<FieldError>),
    /// The total does not fit in the amount type.
    #[error("order total is too large")]
    TotalOverflow,
    /// A dependency failed; nothing was accepted.
    #[error(transparent)]
    Unavailable(#[from] PortError),
}

/// The ports placing an order needs.
pub struct OrderService<'a> {
    /// Prices.
    pub catalog: &'a dyn Catalog,
    /// Order records.
    pub orders: &'a dyn OrderStore,
    /// Intake queue.
    pub queue: &'a dyn OrderQueue,
}

impl OrderService<'_> {
    /// Prices the request from the catalog, stores the order as pending and hands it
    /// to intake. If intake cannot take it, the stored order is cancelled so that no
    /// order the caller was not told about stays pending.
    pub async fn place(
        &self,
        request: PlaceOrderRequest,
        correlation_id: &str,
    ) -> Result<Order, PlaceOrderError> {
        let skus: Vec<_> = request.lines.iter().map(|(sku, _)| sku.clone()).collect();
        let prices = self.catalog.prices(&skus).await?;
        let mut unknown = Vec::new();
        let mut lines = Vec::with_capacity(request.lines.len());
        for (i, (sku, quantity)) in request.lines.into_iter().enumerate() {
            match prices.get(&sku).and_then(|p| p.get(&request.currency)) {
                Some(&unit_price) => lines.push(OrderLine {
                    sku,
                    quantity,
                    unit_price,
                }),
                None => unknown.push(FieldError {
                    field: format!("lines[{i}].sku"),
                    detail: format!("{sku} is not sold in {}", request.currency.code()),
                }),
            }
        }
        if !unknown.is_empty() {
            return Err(PlaceOrderError::UnknownSkus(unknown));
        }
        let total = lines
            .iter()
            .try_fold(0u64, |acc, l| {
                l.unit_price
                    .checked_mul(u64::from(l.quantity))
                    .and_then(|v| acc.checked_add(v))
            })
            .ok_or(PlaceOrderError::TotalOverflow)?;
        let now = crate::now_rfc3339();
        let order = Order {
            order_id: OrderId::generate(),
            customer_id: request.customer_id,
            lines,
            currency: request.currency,
            total,
            status: OrderStatus::Pending,
            history: vec![StatusChange {
                status: OrderStatus::Pending,
                at: now.clone(),
                reason: None,
            }],
            payment_token: request.payment_token,
            payment_action: None,
            correlation_id: correlation_id.to_owned(),
            created_at: now,
            express: request.express,
        };
        self.orders.insert(&order).await?;
        if let Err(e) = self.queue.enqueue(&order).await {
            // Best effort: if this fails too the order stays pending (the orphan sweep
            // cancels it) and the caller still gets an error, so it retries with its
            // idempotency key.
            if let Err(cancel) = self
                .orders
                .cancel(
                    &order.order_id,
                    "intake-unavailable",
                    &crate::now_rfc3339(),
                    None,
                )
                .await
            {
                tracing::warn!(
                    order_id = %order.order_id,
                    error = %observability::ErrorChain(&cancel),
                    "could not cancel an order the intake queue refused; the orphan sweep will"
                );
            }
            return Err(e.into());
        }
        Ok(order)
    }

    /// Shopper cancellation, allowed only before the charge starts and only for the
    /// shopper's own order.
    pub async fn cancel(
        &self,
        order_id: &OrderId,
        caller: &CustomerId,
    ) -> Result<CancelOutcome, PortError> {
        self.orders
            .cancel(
                order_id,
                "cancelled-by-customer",
                &crate::now_rfc3339(),
                Some(caller),
            )
            .await
    }
}

/// How long an order may wait for its stock and its charge (the shop's promise to a
/// shopper, not a step's technical timeout), and how patiently its compensation
/// waits out an unavailable provider or table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimits {
    /// `MaxOrderWaitSeconds`: from the order's placing, how long its saga may wait
    /// for a Reserve or Charge to be picked up. A command picked up later is answered
    /// `OrderExpired` and the order is cancelled, never charged.
    pub max_order_wait_seconds: u64,
    /// `CommandWorkSeconds`: how long a command may work once picked up (at least the
    /// slowest consumer's Lambda timeout), so one picked up just before the deadline
    /// is answered before its step times out.
    pub command_work_seconds: u64,
    /// `CompensationRetrySeconds`: how long the saga waits before sending again a
    /// refund or release that failed for a transient reason.
    pub compensation_retry_seconds: u64,
    /// `CompensationPatienceSeconds`: how long after the order's forward steps could
    /// have ended at the latest (a step timeout and a retry delay after the deadline)
    /// its compensation keeps being retried before a human is asked.
    pub compensation_patience_seconds: u64,
    /// `PaymentAuthenticationTimeoutSeconds`: how long the shopper has to authenticate
    /// a payment their card's issuer asks 3-D Secure for (`AwaitAuthentication`'s
    /// timeout).
    pub authentication_timeout_seconds: u64,
}

impl WaitLimits {
    /// The template's defaults: 15 minutes of waiting, a minute of work; a failed
    /// compensation sent again every minute for a day.
    pub const DEFAULT: Self = Self {
        max_order_wait_seconds: 900,
        command_work_seconds: 60,
        compensation_retry_seconds: 60,
        compensation_patience_seconds: 86_400,
        authentication_timeout_seconds: 600,
    };
}

/// The longest wait between two attempts of a forward step (the definition's largest
/// `MaxDelaySeconds` there; a contract test holds it): a charge retried until the
/// deadline may start its last attempt this long after the one before.
pub const FORWARD_RETRY_MAX_DELAY_SECONDS: u64 = 30;

/// The saga execution input for an order: everything the state machine needs so it
/// never reads the order back. The same order always gives the same input (the
/// deadline counts from when it was placed), so a redelivered intake message starts
/// nothing new. `stepTimeoutSeconds` is every callback step's `TimeoutSecondsPath`:
/// the whole wait plus the work, so a queue's backlog never times a step out while
/// the order is still in time. `compensationRetrySeconds` is the compensation's
/// wait between attempts (`SecondsPath`), `compensateUntil` when it stops trying,
/// `authenticationTimeoutSeconds` how long the shopper has for 3-D Secure.
pub fn saga_input(order: &Order, limits: WaitLimits) -> Value {
    let placed =
        crate::parse_rfc3339(&order.created_at).unwrap_or_else(time::OffsetDateTime::now_utc);
    let after = |seconds: u64| {
        placed.saturating_add(time::Duration::seconds(
            i64::try_from(seconds).unwrap_or(i64::MAX),
        ))
    };
    let wait = limits.max_order_wait_seconds;
    let step_timeout = wait.saturating_add(limits.command_work_seconds);
    // The forward steps end at the latest a retry delay and a step timeout after the
    // deadline; the compensation's patience counts from there.
    let compensate_until = after(
        step_timeout
            .saturating_add(FORWARD_RETRY_MAX_DELAY_SECONDS)
            .saturating_add(limits.compensation_patience_seconds),
    );
    json!({
        "deadline": crate::rfc3339(after(wait)),
        "stepTimeoutSeconds": step_timeout,
        "compensationRetrySeconds": limits.compensation_retry_seconds,
        "compensateUntil": crate::rfc3339(compensate_until),
        "authenticationTimeoutSeconds": limits.authentication_timeout_seconds,
        "orderId": order.order_id,
        "customerId": order.customer_id,
        "lines": order.lines,
        "total": order.total,
        "currency": order.currency,
        "correlationId": order.correlation_id,
    })
}
