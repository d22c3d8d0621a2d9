//! Part refunds: an operator gives back part of a captured order's payment (a returned
//! item, a goodwill gesture). The operator never holds the provider's key: the command
//! goes on the payments queue, and the payments function moves the money and records
//! it in the ledger, which this reads before (to refuse what would be refused) and
//! after (to say what happened).

use crate::OpsError;
use crate::stack::Ops;
use serde::Serialize;
use shop_aws::ledger::DynamoLedger;
use shop_domain::OrderId;
use shop_domain::commands::{Command, Envelope, PaymentCommand};
use shop_domain::payment::{LedgerRecord, LedgerStatus};
use shop_domain::ports::PaymentLedger;
use std::time::Duration;

/// How often the ledger is read while the payments function works.
const POLL: Duration = Duration::from_millis(250);

/// What became of a part refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum PartRefundOutcome {
    /// The ledger records the refund; `remaining` is what the order still holds.
    Refunded {
        /// Amount given back.
        amount: u64,
        /// What the payment still holds.
        remaining: u64,
    },
    /// The reference was refunded before, with the same amount: nothing was sent.
    AlreadyRefunded {
        /// Amount given back then.
        amount: u64,
        /// What the payment still holds.
        remaining: u64,
    },
    /// Sent, but the ledger did not record it within the wait: the payments function
    /// logs its answer under the correlation id.
    Sent {
        /// The command's correlation id, to find it in the logs.
        correlation_id: String,
    },
}

/// Gives `amount` (minor units) of `order_id`'s captured payment back under the
/// operator's `reference`, waiting up to `wait` for the ledger to record it. Refused
/// before anything is sent when the ledger says the payments function would refuse it
/// (no capture, more than is left, a reference used for another amount).
pub async fn refund_part(
    ops: &Ops,
    order_id: &str,
    amount: u64,
    reference: &str,
    wait: Duration,
) -> Result<PartRefundOutcome, OpsError> {
    let order_id = &OrderId::parse(order_id)
        .ok_or_else(|| OpsError::Refused(format!("{order_id:?} is not an order id (ord-…)")))?;
    let command = PaymentCommand::RefundPart {
        order_id: order_id.clone(),
        amount,
        reference: reference.to_owned(),
    };
    if let Some(why) = command.invalid() {
        return Err(OpsError::Refused(why));
    }
    let ledger = DynamoLedger::new(ops.dynamodb.clone(), ops.outputs.get("PaymentsTableName")?);
    let Some(record) = ledger.get(order_id).await? else {
        return Err(OpsError::Refused(format!(
            "order {order_id} has no payment in the ledger"
        )));
    };
    if let Some(&done) = record.refunds.get(reference) {
        return if done == amount {
            Ok(PartRefundOutcome::AlreadyRefunded {
                amount,
                remaining: record.unrefunded(),
            })
        } else {
            Err(OpsError::Refused(format!(
                "reference {reference:?} already gave back {done} of order {order_id}; use another reference"
            )))
        };
    }
    refusable(&record, amount)?;
    let correlation_id = format!("ops-{}", uuid::Uuid::new_v4());
    let envelope = Envelope {
        task_token: None,
        correlation_id: Some(correlation_id.clone()),
        deadline: None,
        compensate_until: None,
        command,
    };
    let body = serde_json::to_string(&envelope).map_err(|e| OpsError::Refused(e.to_string()))?;
    ops.sqs
        .send_message()
        .queue_url(ops.outputs.get("PaymentsQueueUrl")?)
        .message_body(body)
        .send()
        .await
        .map_err(crate::aws("sqs.SendMessage"))?;
    let until = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(POLL).await;
        if let Some(now) = ledger.get(order_id).await?
            && now.refunds.contains_key(reference)
        {
            return Ok(PartRefundOutcome::Refunded {
                amount,
                remaining: now.unrefunded(),
            });
        }
    }
    Ok(PartRefundOutcome::Sent { correlation_id })
}

/// What the payments function would refuse, said before the command is sent.
fn refusable(record: &LedgerRecord, amount: u64) -> Result<(), OpsError> {
    if record.status != LedgerStatus::Captured {
        return Err(OpsError::Refused(format!(
            "order {}'s payment is {}: only a captured payment is refunded in part{}",
            record.order_id,
            record.status.as_str(),
            if record.status == LedgerStatus::Authorized {
                " (an authorization is voided whole by cancelling the order)"
            } else {
                ""
            }
        )));
    }
    if amount > record.unrefunded() {
        return Err(OpsError::Refused(format!(
            "{amount} is more than the {} order {} still holds",
            record.unrefunded(),
            record.order_id
        )));
    }
    Ok(())
}
