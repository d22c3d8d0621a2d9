//! Authorizing, capturing and giving back through a provider, with a ledger that makes every step
//! idempotent and leaves a tombstone when a compensation ran first.

use crate::commands::{TaskError, TaskFailure};
use crate::events::DomainEvent;
use crate::order::{Currency, OrderId};
use crate::ports::{EventPublisher, OrderPayments, PaymentLedger, PaymentProvider};
use serde::Serialize;

pub use crate::money::{
    Authentication, Authorization, ChargeRequest, InvalidProviderKey, LedgerRecord, LedgerStatus,
    PartRefund, ProviderError, ProviderKey, Released, charge_key, part_refund_key,
};

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
        authentication_token: None,
        refunds: Default::default(),
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

fn nothing_to_authenticate(order_id: &OrderId, ledger: &str) -> TaskFailure {
    TaskFailure::new(
        TaskError::PaymentRefused,
        format!("order {order_id} has no payment awaiting authentication (ledger: {ledger})"),
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
    /// The stored orders: their payment methods, their shoppers' actions.
    pub orders: &'a dyn OrderPayments,
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

/// A part of an order's capture given back: the answer to an operator's `RefundPart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartRefunded {
    /// Amount given back under the reference.
    pub amount: u64,
    /// What the shop still holds of the capture.
    pub remaining: u64,
    /// The reference was refunded before: nothing moved this time.
    pub replayed: bool,
}

/// A saga task token and the answer it is owed.
pub type Answer = (String, Result<serde_json::Value, TaskFailure>);

impl PaymentService<'_> {
    /// Holds the order total on the order's stored payment method once: a retried or
    /// redelivered command returns the first outcome; a command that arrives after a
    /// compensation is refused. When the issuer asks the shopper to authenticate, the
    /// order shows its owner the client secret and the answer is
    /// [`TaskError::PaymentActionRequired`], on which the saga waits for the shopper.
    pub async fn authorize(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
        amount: u64,
        currency: Currency,
    ) -> Result<Authorized, TaskFailure> {
        let existing = self.ledger.get(order_id).await.map_err(unavailable)?;
        let held = |payment_id: String| Authorized {
            charge_id: payment_id,
            amount,
        };
        match existing {
            Some(LedgerRecord {
                status: LedgerStatus::Authorized | LedgerStatus::Captured,
                charge_id: Some(payment_id),
                ..
            }) => Ok(held(payment_id)),
            Some(r) if r.status == LedgerStatus::Declined => Err(TaskFailure::new(
                TaskError::PaymentDeclined,
                r.decline_code
                    .unwrap_or_else(|| "card declined earlier for this order".into()),
            )),
            Some(r) if matches!(r.status, LedgerStatus::Refunded | LedgerStatus::Voided) => {
                Err(tombstoned(order_id))
            }
            Some(r) => {
                let request = self.request(order_id, amount, currency).await?;
                self.hold(&request, r.status, correlation_id).await
            }
            None => {
                let request = self.request(order_id, amount, currency).await?;
                let claim = record(&request, LedgerStatus::Charging, None);
                if !self
                    .ledger
                    .transition(order_id, None, &claim)
                    .await
                    .map_err(unavailable)?
                {
                    return Err(raced());
                }
                self.hold(&request, LedgerStatus::Charging, correlation_id)
                    .await
            }
        }
    }

    /// The authorization request for an order, with the payment method read from the
    /// stored order: a missing one is a request the provider would refuse, so the saga
    /// gives back what it holds.
    async fn request(
        &self,
        order_id: &OrderId,
        amount: u64,
        currency: Currency,
    ) -> Result<ChargeRequest, TaskFailure> {
        let method = self.orders.of_order(order_id).await.map_err(unavailable)?;
        let Some(method) = method.filter(|m| !m.is_empty()) else {
            return Err(TaskFailure::new(
                TaskError::PaymentRefused,
                format!("order {order_id} has no payment method"),
            ));
        };
        Ok(ChargeRequest {
            order_id: order_id.clone(),
            idempotency_key: charge_key(order_id),
            amount,
            currency,
            payment_token: method,
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

    /// Asks the provider to hold the amount and records the authorization (or that the
    /// shopper must authenticate it), moving the ledger from `from`, the status it was
    /// read in; a decline is recorded with its code and published. Asked again for a
    /// payment awaiting authentication, the provider replays its answer under the same
    /// key, and the order's action is written again if it was not.
    async fn hold(
        &self,
        request: &ChargeRequest,
        from: LedgerStatus,
        correlation_id: &str,
    ) -> Result<Authorized, TaskFailure> {
        let order_id = &request.order_id;
        match self.provider.authorize(request).await {
            Ok(Authorization::Held(payment_id)) => {
                self.advance_or_release(request, from, LedgerStatus::Authorized, &payment_id)
                    .await?;
                Ok(Authorized {
                    charge_id: payment_id,
                    amount: request.amount,
                })
            }
            Ok(Authorization::ActionRequired {
                payment_id,
                client_secret,
            }) => {
                if from != LedgerStatus::AwaitingAuthentication {
                    self.advance_or_release(
                        request,
                        from,
                        LedgerStatus::AwaitingAuthentication,
                        &payment_id,
                    )
                    .await?;
                }
                let asked = self
                    .orders
                    .require_action(order_id, &client_secret, &crate::now_rfc3339())
                    .await
                    .map_err(unavailable)?;
                if !asked {
                    tracing::warn!(
                        "the order no longer waits for payment; its shopper is not asked to authenticate"
                    );
                }
                Err(TaskFailure::new(
                    TaskError::PaymentActionRequired,
                    format!(
                        "payment {payment_id}: the card's issuer asks the shopper to authenticate"
                    ),
                ))
            }
            Err(ProviderError::Declined(code)) => {
                self.decline(request, from, None, &code, correlation_id)
                    .await?;
                Err(TaskFailure::new(TaskError::PaymentDeclined, code))
            }
            Err(e) => Err(provider_failure(e)),
        }
    }

    /// Records a decline with its code (from `from`) and publishes it.
    async fn decline(
        &self,
        request: &ChargeRequest,
        from: LedgerStatus,
        previous: Option<&LedgerRecord>,
        code: &str,
        correlation_id: &str,
    ) -> Result<bool, TaskFailure> {
        let declined = LedgerRecord {
            decline_code: Some(code.to_owned()),
            charge_id: previous.and_then(|r| r.charge_id.clone()),
            authentication_token: previous.and_then(|r| r.authentication_token.clone()),
            ..record(request, LedgerStatus::Declined, None)
        };
        let moved = self
            .ledger
            .transition(&request.order_id, Some(from), &declined)
            .await
            .map_err(unavailable)?;
        if moved {
            self.publish(DomainEvent::payment_declined(
                &request.order_id,
                correlation_id,
                code,
            ))
            .await?;
        }
        Ok(moved)
    }

    /// The saga's `AwaitAuthentication` step: keeps its task token with the payment,
    /// then looks at the payment once, in case the shopper answered before the token
    /// arrived. The answer the token is owed now, or `None` while the shopper has not
    /// answered (a webhook settles it then).
    pub async fn await_authentication(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
        task_token: &str,
    ) -> Result<Option<Answer>, TaskFailure> {
        for _ in 0..3 {
            let Some(current) = self.ledger.get(order_id).await.map_err(unavailable)? else {
                return Err(nothing_to_authenticate(order_id, "none"));
            };
            match current.status {
                LedgerStatus::AwaitingAuthentication
                    if current.authentication_token.as_deref() != Some(task_token) =>
                {
                    let next = LedgerRecord {
                        authentication_token: Some(task_token.to_owned()),
                        updated_at: crate::now_rfc3339(),
                        ..current.clone()
                    };
                    if self
                        .ledger
                        .transition(order_id, Some(current.status), &next)
                        .await
                        .map_err(unavailable)?
                    {
                        return self.settle_with(next, correlation_id).await;
                    }
                }
                LedgerStatus::AwaitingAuthentication
                | LedgerStatus::Authorized
                | LedgerStatus::Declined => {
                    let with_token = LedgerRecord {
                        authentication_token: Some(task_token.to_owned()),
                        ..current
                    };
                    return self.settle_with(with_token, correlation_id).await;
                }
                LedgerStatus::Refunded | LedgerStatus::Voided => {
                    return Err(tombstoned(order_id));
                }
                other => return Err(nothing_to_authenticate(order_id, other.as_str())),
            }
        }
        Err(raced())
    }

    /// A webhook said something happened to the order's payment: if the saga waits for
    /// its authentication, the answer its token is owed. The provider is asked, not the
    /// webhook believed, and the ledger's conditional transition lets one settlement
    /// change anything however often, and in whatever order, events arrive.
    pub async fn settle_authentication(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
    ) -> Result<Option<Answer>, TaskFailure> {
        match self.ledger.get(order_id).await.map_err(unavailable)? {
            Some(current) if current.authentication_token.is_some() => {
                self.settle_with(current, correlation_id).await
            }
            _ => Ok(None),
        }
    }

    /// Settles a payment whose record holds the waiting token: a pending one waits, an
    /// authenticated one is recorded authorized, a failed one declined; a record settled
    /// before (whose answer may not have reached the saga) is answered again.
    async fn settle_with(
        &self,
        current: LedgerRecord,
        correlation_id: &str,
    ) -> Result<Option<Answer>, TaskFailure> {
        let Some(token) = current.authentication_token.clone() else {
            return Ok(None);
        };
        let payment_id = current.charge_id.clone().unwrap_or_default();
        let held =
            |r: &LedgerRecord| serde_json::json!({ "chargeId": r.charge_id, "amount": r.amount });
        let declined = |r: &LedgerRecord| {
            TaskFailure::new(
                TaskError::PaymentDeclined,
                r.decline_code
                    .clone()
                    .unwrap_or_else(|| "authentication failed".into()),
            )
        };
        match current.status {
            LedgerStatus::Authorized => return Ok(Some((token, Ok(held(&current))))),
            LedgerStatus::Declined => return Ok(Some((token, Err(declined(&current))))),
            LedgerStatus::AwaitingAuthentication => {}
            _ => return Ok(None),
        }
        let request = current.request();
        match self
            .provider
            .authentication(&payment_id)
            .await
            .map_err(provider_failure)?
        {
            Authentication::Pending => Ok(None),
            Authentication::Held => {
                let next = LedgerRecord {
                    status: LedgerStatus::Authorized,
                    updated_at: crate::now_rfc3339(),
                    ..current.clone()
                };
                if !self
                    .ledger
                    .transition(&request.order_id, Some(current.status), &next)
                    .await
                    .map_err(unavailable)?
                {
                    return Box::pin(self.settle_authentication(&request.order_id, correlation_id))
                        .await;
                }
                Ok(Some((token, Ok(held(&next)))))
            }
            Authentication::Failed(code) => {
                // Nothing is held, but the shopper's browser could still confirm the
                // payment with another card: it is cancelled before the saga hears.
                self.provider
                    .release(Some(&payment_id), &request)
                    .await
                    .map_err(provider_failure)?;
                if !self
                    .decline(
                        &request,
                        current.status,
                        Some(&current),
                        &code,
                        correlation_id,
                    )
                    .await?
                {
                    return Box::pin(self.settle_authentication(&request.order_id, correlation_id))
                        .await;
                }
                Ok(Some((
                    token,
                    Err(TaskFailure::new(TaskError::PaymentDeclined, code)),
                )))
            }
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
                    authentication_token: None,
                    refunds: Default::default(),
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
                LedgerStatus::Charging
                | LedgerStatus::AwaitingAuthentication
                | LedgerStatus::Authorized
                | LedgerStatus::Captured => {
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
                    // Conditional on the part refunds too: one made meanwhile is
                    // read again, so the event says what this refund gave back.
                    if !self
                        .ledger
                        .amend(&current, &next)
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
                            current.unrefunded(),
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

    /// An operator's part refund of a captured order: gives `amount` back once per
    /// `reference` (the same reference again answers what it did, nothing moves),
    /// never more than the payment still holds. The last part that leaves nothing
    /// marks the payment refunded, so a later compensation gives back nothing more.
    pub async fn refund_part(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
        amount: u64,
        reference: &str,
    ) -> Result<PartRefunded, TaskFailure> {
        let refused = |why: String| TaskFailure::new(TaskError::PaymentRefused, why);
        for _ in 0..3 {
            let Some(current) = self.ledger.get(order_id).await.map_err(unavailable)? else {
                return Err(refused(format!("order {order_id} has no payment")));
            };
            if let Some(&done) = current.refunds.get(reference) {
                return if done == amount {
                    Ok(PartRefunded {
                        amount,
                        remaining: current.unrefunded(),
                        replayed: true,
                    })
                } else {
                    Err(refused(format!(
                        "reference {reference:?} already gave back {done} of order {order_id}, not {amount}"
                    )))
                };
            }
            let (LedgerStatus::Captured, Some(payment_id)) =
                (current.status, current.charge_id.clone())
            else {
                return Err(refused(format!(
                    "order {order_id}'s payment is {}: only a captured payment is refunded in part",
                    current.status.as_str()
                )));
            };
            if amount > current.unrefunded() {
                return Err(refused(format!(
                    "{amount} is more than the {} order {order_id} still holds",
                    current.unrefunded()
                )));
            }
            let part = PartRefund {
                order_id: order_id.clone(),
                idempotency_key: part_refund_key(order_id, reference),
                amount,
            };
            self.provider
                .refund_part(&payment_id, &part)
                .await
                .map_err(provider_failure)?;
            let mut next = LedgerRecord {
                updated_at: crate::now_rfc3339(),
                ..current.clone()
            };
            next.refunds.insert(reference.to_owned(), amount);
            if next.unrefunded() == 0 {
                next.status = LedgerStatus::Refunded;
            }
            if !self
                .ledger
                .amend(&current, &next)
                .await
                .map_err(unavailable)?
            {
                continue;
            }
            self.publish(DomainEvent::payment_refunded(
                order_id,
                correlation_id,
                &payment_id,
                amount,
                current.currency.unwrap_or(crate::Currency::EUR),
            ))
            .await?;
            return Ok(PartRefunded {
                amount,
                remaining: next.unrefunded(),
                replayed: false,
            });
        }
        Err(raced())
    }

    async fn publish(&self, event: DomainEvent) -> Result<(), TaskFailure> {
        self.events
            .publish(std::slice::from_ref(&event))
            .await
            .map_err(unavailable)
    }
}
