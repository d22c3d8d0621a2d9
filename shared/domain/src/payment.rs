//! Authorizing, capturing and giving back through a provider, with a ledger that makes every step
//! idempotent and leaves a tombstone when a compensation ran first.

use crate::commands::{TaskError, TaskFailure};
use crate::events::DomainEvent;
use crate::order::{Currency, OrderId};
use crate::ports::{EventPublisher, PaymentLedger, PaymentProvider};
use serde::Serialize;

pub use crate::money::{
    ChargeRequest, InvalidProviderKey, LedgerRecord, LedgerStatus, ProviderError, ProviderKey,
    Released,
};

/// The provider idempotency key of an order's charge: one per order, so however often
/// a `Charge` is delivered or replayed, the provider captures once.
pub fn charge_key(order_id: &OrderId) -> String {
    format!("charge-{order_id}")
}

fn record(
    request: &ChargeRequest,
    status: LedgerStatus,
    charge_id: Option<String>,
) -> LedgerRecord {
    LedgerRecord {
        order_id: request.order_id.clone(),
        status,
        amount: request.amount,
        currency: Some(request.currency),
        charge_id,
        payment_method: Some(request.payment_token.clone()),
        decline_code: None,
        updated_at: crate::now_rfc3339(),
    }
}

/// The ledger, the bus or the provider failed: a transient failure with the cause.
fn unavailable(e: impl std::error::Error + 'static) -> TaskFailure {
    TaskFailure::unavailable(TaskError::PaymentProviderUnavailable, &e)
}

/// A provider failure as the saga names it.
fn provider_failure(e: ProviderError) -> TaskFailure {
    match e {
        ProviderError::Declined(code) => TaskFailure::new(TaskError::PaymentDeclined, code),
        ProviderError::Timeout(_) => TaskFailure::new(TaskError::PaymentTimeout, e.to_string()),
        ProviderError::Transient(_) => {
            TaskFailure::new(TaskError::PaymentProviderUnavailable, e.to_string())
        }
        ProviderError::Refused(_) => TaskFailure::new(TaskError::PaymentRefused, e.to_string()),
    }
}

fn tombstoned(order_id: &OrderId) -> TaskFailure {
    TaskFailure::new(
        TaskError::OrderCancelled,
        format!("order {order_id} was compensated; late charge refused"),
    )
}

fn raced() -> TaskFailure {
    TaskFailure::new(
        TaskError::PaymentProviderUnavailable,
        "ledger changed concurrently; retry",
    )
}

/// The ports the payments service works with.
pub struct PaymentService<'a> {
    /// Ledger of payments.
    pub ledger: &'a dyn PaymentLedger,
    /// Card processor.
    pub provider: &'a dyn PaymentProvider,
    /// Event bus.
    pub events: &'a dyn EventPublisher,
}

/// A successful capture, returned to the saga as the task output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Captured {
    /// Provider's id of the payment.
    pub charge_id: String,
    /// Amount captured.
    pub amount: u64,
}

/// An authorization held for an order, returned to the saga as the task output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorized {
    /// Provider's id of the payment.
    pub charge_id: String,
    /// Amount held.
    pub amount: u64,
}

impl PaymentService<'_> {
    /// Holds the order total on `payment_method` once: a retried or redelivered
    /// command returns the first outcome; a command that arrives after a compensation
    /// is refused.
    pub async fn authorize(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
        amount: u64,
        currency: Currency,
        payment_method: &str,
    ) -> Result<Authorized, TaskFailure> {
        let request = ChargeRequest {
            order_id: order_id.clone(),
            idempotency_key: charge_key(order_id),
            amount,
            currency,
            payment_token: payment_method.to_owned(),
        };
        let existing = self.ledger.get(order_id).await.map_err(unavailable)?;
        let payment_id = match existing {
            Some(LedgerRecord {
                status: LedgerStatus::Authorized | LedgerStatus::Captured,
                charge_id: Some(payment_id),
                ..
            }) => payment_id,
            Some(r) if r.status == LedgerStatus::Declined => {
                return Err(TaskFailure::new(
                    TaskError::PaymentDeclined,
                    r.decline_code
                        .unwrap_or_else(|| "card declined earlier for this order".into()),
                ));
            }
            Some(r) if matches!(r.status, LedgerStatus::Refunded | LedgerStatus::Voided) => {
                return Err(tombstoned(order_id));
            }
            Some(_) => self.hold(&request, correlation_id).await?,
            None => {
                let claim = record(&request, LedgerStatus::Charging, None);
                if !self
                    .ledger
                    .transition(order_id, None, &claim)
                    .await
                    .map_err(unavailable)?
                {
                    return Err(raced());
                }
                self.hold(&request, correlation_id).await?
            }
        };
        Ok(Authorized {
            charge_id: payment_id,
            amount,
        })
    }

    /// Takes what was authorized for a confirmed order, once: a capture already made
    /// answers the same; an order with nothing authorized is refused by name.
    pub async fn capture(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
    ) -> Result<Captured, TaskFailure> {
        let existing = self.ledger.get(order_id).await.map_err(unavailable)?;
        match existing {
            Some(r) if r.status == LedgerStatus::Captured => Ok(Captured {
                charge_id: r.charge_id.unwrap_or_default(),
                amount: r.amount,
            }),
            Some(r) if r.status == LedgerStatus::Authorized && r.charge_id.is_some() => {
                let request = r.request();
                let payment_id = r.charge_id.unwrap_or_default();
                self.take(&request, correlation_id, payment_id).await
            }
            Some(r) if matches!(r.status, LedgerStatus::Refunded | LedgerStatus::Voided) => {
                Err(tombstoned(order_id))
            }
            other => Err(TaskFailure::new(
                TaskError::PaymentRefused,
                format!(
                    "order {order_id} has no authorization to capture (ledger: {})",
                    other.map_or("none", |r| r.status.as_str())
                ),
            )),
        }
    }

    /// Asks the provider to hold the amount and records the authorization; a decline
    /// is recorded with its code and published.
    async fn hold(
        &self,
        request: &ChargeRequest,
        correlation_id: &str,
    ) -> Result<String, TaskFailure> {
        let order_id = &request.order_id;
        match self.provider.authorize(request).await {
            Ok(payment_id) => {
                self.advance_or_release(
                    request,
                    LedgerStatus::Charging,
                    LedgerStatus::Authorized,
                    &payment_id,
                )
                .await?;
                Ok(payment_id)
            }
            Err(ProviderError::Declined(code)) => {
                let declined = LedgerRecord {
                    decline_code: Some(code.clone()),
                    ..record(request, LedgerStatus::Declined, None)
                };
                self.ledger
                    .transition(order_id, Some(LedgerStatus::Charging), &declined)
                    .await
                    .map_err(unavailable)?;
                self.publish(DomainEvent::payment_declined(
                    order_id,
                    correlation_id,
                    &code,
                ))
                .await?;
                Err(TaskFailure::new(TaskError::PaymentDeclined, code))
            }
            Err(e) => Err(provider_failure(e)),
        }
    }

    /// Takes the authorized amount and records the capture.
    async fn take(
        &self,
        request: &ChargeRequest,
        correlation_id: &str,
        payment_id: String,
    ) -> Result<Captured, TaskFailure> {
        let order_id = &request.order_id;
        if let Err(e) = self.provider.capture(&payment_id, request).await {
            // A compensation may have voided the authorization meanwhile.
            let now = self.ledger.get(order_id).await.map_err(unavailable)?;
            if now
                .is_some_and(|r| matches!(r.status, LedgerStatus::Voided | LedgerStatus::Refunded))
            {
                return Err(tombstoned(order_id));
            }
            return Err(provider_failure(e));
        }
        self.advance_or_release(
            request,
            LedgerStatus::Authorized,
            LedgerStatus::Captured,
            &payment_id,
        )
        .await?;
        self.publish(DomainEvent::payment_captured(
            order_id,
            correlation_id,
            &payment_id,
            request.amount,
            request.currency,
        ))
        .await?;
        Ok(Captured {
            charge_id: payment_id,
            amount: request.amount,
        })
    }

    /// Records the provider's step (`from` → `to`). When a compensation voided the
    /// order while the provider worked, gives back what the step made (a hold, a
    /// capture) rather than leave it on the shopper's card, and refuses the command.
    async fn advance_or_release(
        &self,
        request: &ChargeRequest,
        from: LedgerStatus,
        to: LedgerStatus,
        payment_id: &str,
    ) -> Result<(), TaskFailure> {
        let next = record(request, to, Some(payment_id.to_owned()));
        if self
            .ledger
            .transition(&request.order_id, Some(from), &next)
            .await
            .map_err(unavailable)?
        {
            return Ok(());
        }
        self.provider
            .release(Some(payment_id), request)
            .await
            .map_err(unavailable)?;
        Err(tombstoned(&request.order_id))
    }

    /// Compensation: gives back whatever the order's payment holds (voids an
    /// authorization, refunds a capture), or voids the order so that no charge can
    /// happen later. Idempotent.
    pub async fn refund(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
    ) -> Result<LedgerStatus, TaskFailure> {
        for _ in 0..3 {
            let existing = self.ledger.get(order_id).await.map_err(unavailable)?;
            let Some(current) = existing else {
                let void = LedgerRecord {
                    order_id: order_id.clone(),
                    status: LedgerStatus::Voided,
                    amount: 0,
                    currency: None,
                    charge_id: None,
                    payment_method: None,
                    decline_code: None,
                    updated_at: crate::now_rfc3339(),
                };
                if self
                    .ledger
                    .transition(order_id, None, &void)
                    .await
                    .map_err(unavailable)?
                {
                    return Ok(LedgerStatus::Voided);
                }
                continue;
            };
            match current.status {
                LedgerStatus::Refunded | LedgerStatus::Voided | LedgerStatus::Declined => {
                    return Ok(current.status);
                }
                LedgerStatus::Charging | LedgerStatus::Authorized | LedgerStatus::Captured => {
                    let released = self
                        .provider
                        .release(current.charge_id.as_deref(), &current.request())
                        .await
                        .map_err(unavailable)?;
                    let status = match released {
                        Released::Refunded => LedgerStatus::Refunded,
                        Released::Voided => LedgerStatus::Voided,
                    };
                    let next = LedgerRecord {
                        status,
                        updated_at: crate::now_rfc3339(),
                        ..current.clone()
                    };
                    if !self
                        .ledger
                        .transition(order_id, Some(current.status), &next)
                        .await
                        .map_err(unavailable)?
                    {
                        continue;
                    }
                    if released == Released::Refunded {
                        self.publish(DomainEvent::payment_refunded(
                            order_id,
                            correlation_id,
                            current.charge_id.as_deref().unwrap_or_default(),
                            current.amount,
                            current.currency.unwrap_or(crate::Currency::EUR),
                        ))
                        .await?;
                    }
                    return Ok(status);
                }
            }
        }
        Err(TaskFailure::new(
            TaskError::PaymentProviderUnavailable,
            "ledger kept changing during refund; retry",
        ))
    }

    async fn publish(&self, event: DomainEvent) -> Result<(), TaskFailure> {
        self.events
            .publish(std::slice::from_ref(&event))
            .await
            .map_err(unavailable)
    }
}
