//! Charging and refunding through a provider, with a ledger that makes every step
//! idempotent and leaves a tombstone when a compensation ran first.

use crate::commands::{TaskError, TaskFailure};
use crate::events::DomainEvent;
use crate::order::{Currency, OrderId};
use crate::ports::{EventPublisher, PaymentLedger, PaymentProvider};
use serde::Serialize;

pub use crate::money::{ChargeRequest, LedgerRecord, LedgerStatus, ProviderError};

/// The provider idempotency key of an order's charge: one per order, so however often
/// a `Charge` is delivered or replayed, the provider captures once.
pub fn charge_key(order_id: &OrderId) -> String {
    format!("charge-{order_id}")
}

fn record(
    order_id: &OrderId,
    status: LedgerStatus,
    amount: u64,
    currency: Option<Currency>,
    charge_id: Option<String>,
) -> LedgerRecord {
    LedgerRecord {
        order_id: order_id.clone(),
        status,
        amount,
        currency,
        charge_id,
        updated_at: crate::now_rfc3339(),
    }
}

/// The ledger, the bus or the provider failed: a transient failure with the cause.
fn unavailable(e: impl std::error::Error + 'static) -> TaskFailure {
    TaskFailure::unavailable(TaskError::PaymentProviderUnavailable, &e)
}

fn tombstoned(order_id: &OrderId) -> TaskFailure {
    TaskFailure::new(
        TaskError::OrderCancelled,
        format!("order {order_id} was compensated; late charge refused"),
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
    /// Provider's capture id.
    pub charge_id: String,
    /// Amount captured.
    pub amount: u64,
}

impl PaymentService<'_> {
    /// Captures the order total once. A retried or redelivered command returns the
    /// first outcome; a command that arrives after a refund or void is refused.
    pub async fn charge(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
        amount: u64,
        currency: Currency,
        payment_token: &str,
    ) -> Result<Captured, TaskFailure> {
        let existing = self.ledger.get(order_id).await.map_err(unavailable)?;
        match existing.map(|r| (r.status, r)) {
            Some((LedgerStatus::Captured, r)) => {
                return Ok(Captured {
                    charge_id: r.charge_id.unwrap_or_default(),
                    amount: r.amount,
                });
            }
            Some((LedgerStatus::Declined, _)) => {
                return Err(TaskFailure::new(
                    TaskError::PaymentDeclined,
                    "card declined earlier for this order",
                ));
            }
            Some((LedgerStatus::Refunded | LedgerStatus::Voided, _)) => {
                return Err(tombstoned(order_id));
            }
            Some((LedgerStatus::Charging, _)) => {}
            None => {
                let claim = record(
                    order_id,
                    LedgerStatus::Charging,
                    amount,
                    Some(currency),
                    None,
                );
                if !self
                    .ledger
                    .transition(order_id, None, &claim)
                    .await
                    .map_err(unavailable)?
                {
                    return Err(TaskFailure::new(
                        TaskError::PaymentProviderUnavailable,
                        "ledger changed concurrently; retry",
                    ));
                }
            }
        }

        let request = ChargeRequest {
            order_id: order_id.clone(),
            idempotency_key: charge_key(order_id),
            amount,
            currency,
            payment_token: payment_token.to_owned(),
        };
        match self.provider.charge(&request).await {
            Ok(charge_id) => {
                let captured = record(
                    order_id,
                    LedgerStatus::Captured,
                    amount,
                    Some(currency),
                    Some(charge_id.clone()),
                );
                let won = self
                    .ledger
                    .transition(order_id, Some(LedgerStatus::Charging), &captured)
                    .await
                    .map_err(unavailable)?;
                if !won {
                    // A compensation voided the order while the provider captured:
                    // give the money back rather than keep an orphan capture.
                    self.provider
                        .refund(&request.idempotency_key)
                        .await
                        .map_err(unavailable)?;
                    return Err(tombstoned(order_id));
                }
                self.publish(DomainEvent::payment_captured(
                    order_id,
                    correlation_id,
                    &charge_id,
                    amount,
                    currency,
                ))
                .await?;
                Ok(Captured { charge_id, amount })
            }
            Err(ProviderError::Declined(reason)) => {
                let declined = record(
                    order_id,
                    LedgerStatus::Declined,
                    amount,
                    Some(currency),
                    None,
                );
                self.ledger
                    .transition(order_id, Some(LedgerStatus::Charging), &declined)
                    .await
                    .map_err(unavailable)?;
                self.publish(DomainEvent::payment_declined(
                    order_id,
                    correlation_id,
                    &reason,
                ))
                .await?;
                Err(TaskFailure::new(TaskError::PaymentDeclined, reason))
            }
            Err(e @ ProviderError::Timeout(_)) => {
                Err(TaskFailure::new(TaskError::PaymentTimeout, e.to_string()))
            }
            Err(e @ ProviderError::Transient(_)) => Err(TaskFailure::new(
                TaskError::PaymentProviderUnavailable,
                e.to_string(),
            )),
        }
    }

    /// Compensation: refunds a capture, or voids the order so that no charge can
    /// happen later. Idempotent.
    pub async fn refund(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
    ) -> Result<LedgerStatus, TaskFailure> {
        for _ in 0..3 {
            let existing = self.ledger.get(order_id).await.map_err(unavailable)?;
            let Some(current) = existing else {
                let void = record(order_id, LedgerStatus::Voided, 0, None, None);
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
                LedgerStatus::Captured | LedgerStatus::Charging => {
                    let refunded = self
                        .provider
                        .refund(&charge_key(order_id))
                        .await
                        .map_err(unavailable)?;
                    let status = if refunded {
                        LedgerStatus::Refunded
                    } else {
                        LedgerStatus::Voided
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
                    if refunded {
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
