//! What moves money, as the ports speak of it: the request a payment provider is asked
//! to capture, how a provider call fails, and the ledger's record of an order's
//! payment. A leaf of the domain: the ports and the payment service both use it.

use crate::order::{Currency, OrderId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Ledger state of one order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerStatus {
    /// A charge attempt started; its outcome may be unknown.
    Charging,
    /// Money captured.
    Captured,
    /// The provider refused the card.
    Declined,
    /// Captured, then refunded in full.
    Refunded,
    /// Compensated before any capture: a late charge is refused.
    Voided,
}

impl LedgerStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charging => "CHARGING",
            Self::Captured => "CAPTURED",
            Self::Declined => "DECLINED",
            Self::Refunded => "REFUNDED",
            Self::Voided => "VOIDED",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Charging,
            Self::Captured,
            Self::Declined,
            Self::Refunded,
            Self::Voided,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// The ledger record of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerRecord {
    /// Order paid for.
    pub order_id: OrderId,
    /// Where the payment stands.
    pub status: LedgerStatus,
    /// Amount in minor units (0 for a void without a charge command).
    pub amount: u64,
    /// Currency of the amount.
    pub currency: Option<Currency>,
    /// Provider's id of the capture.
    pub charge_id: Option<String>,
    /// When this status was entered.
    pub updated_at: String,
}

/// What the provider is asked to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The order paid for, sent as the charge's metadata, so the provider's own books
    /// can be read per order whatever key a capture was made under.
    pub order_id: OrderId,
    /// Provider idempotency key: the same key never captures twice.
    pub idempotency_key: String,
    /// Amount in minor units.
    pub amount: u64,
    /// Currency.
    pub currency: Currency,
    /// Payment method token.
    pub payment_token: String,
}

/// How a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The card was refused; retrying cannot help.
    #[error("card declined: {0}")]
    Declined(String),
    /// The provider failed in a way a retry with the same key may fix.
    #[error("provider unavailable: {0}")]
    Transient(String),
    /// No answer in time; the outcome is unknown until retried with the same key.
    #[error("provider did not answer within {0:?}")]
    Timeout(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_status_is_stored_by_its_serde_name_and_read_back() {
        for status in [
            LedgerStatus::Charging,
            LedgerStatus::Captured,
            LedgerStatus::Declined,
            LedgerStatus::Refunded,
            LedgerStatus::Voided,
        ] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                status.as_str(),
                "the adapter's conditions and the records agree"
            );
            assert_eq!(LedgerStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(LedgerStatus::parse("captured"), None);
        assert_eq!(LedgerStatus::parse(""), None);
    }
}
