//! What moves money, as the ports speak of it: the request a payment provider is asked
//! to capture, how a provider call fails, and the ledger's record of an order's
//! payment. A leaf of the domain: the ports and the payment service both use it.

use crate::order::{Currency, OrderId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Ledger state of one order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerStatus {
    /// A charge attempt started; its outcome may be unknown.
    Charging,
    /// The provider asks the shopper to authenticate the payment (3-D Secure) before
    /// it holds anything; the saga's `AwaitAuthentication` token waits in the record.
    AwaitingAuthentication,
    /// The amount is held on the payment method, not yet taken.
    Authorized,
    /// Money captured.
    Captured,
    /// The provider refused the card.
    Declined,
    /// Captured, then refunded in full (at once, or part by part).
    Refunded,
    /// Compensated before any capture (an authorization cancelled, or none made): a
    /// late charge is refused.
    Voided,
}

impl LedgerStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charging => "CHARGING",
            Self::AwaitingAuthentication => "AWAITING_AUTHENTICATION",
            Self::Authorized => "AUTHORIZED",
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
            Self::AwaitingAuthentication,
            Self::Authorized,
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
    /// Provider's id of the payment (the authorization, later captured).
    pub charge_id: Option<String>,
    /// The payment method charged, kept in the payments service's own table only, so
    /// a compensation can ask the provider what a charge of unknown outcome did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    /// Why the provider refused the card (its decline code), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// The task token of the saga's `AwaitAuthentication` step, kept while the shopper
    /// authenticates: whichever learns the outcome first (the step's own command or a
    /// webhook) answers the saga with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_token: Option<String>,
    /// Parts of the capture given back by operators, by their reference, so each
    /// reference refunds once however often its command is delivered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refunds: BTreeMap<String, u64>,
    /// When this status was entered.
    pub updated_at: String,
}

impl LedgerRecord {
    /// The charge this record was made for, as the provider is asked it again.
    pub fn request(&self) -> ChargeRequest {
        ChargeRequest {
            order_id: self.order_id.clone(),
            idempotency_key: charge_key(&self.order_id),
            amount: self.amount,
            currency: self.currency.unwrap_or(Currency::EUR),
            payment_token: self.payment_method.clone().unwrap_or_default(),
        }
    }

    /// What the operators' part refunds gave back so far.
    pub fn refunded(&self) -> u64 {
        self.refunds.values().sum()
    }

    /// What the shop still holds of the capture.
    pub fn unrefunded(&self) -> u64 {
        self.amount.saturating_sub(self.refunded())
    }
}

/// The provider idempotency key of an order's charge: one per order, so however often
/// a `Charge` is delivered or replayed, the provider captures once.
pub fn charge_key(order_id: &OrderId) -> String {
    format!("charge-{order_id}")
}

/// The provider idempotency key of an operator's part refund: one per order and
/// reference, so a redelivered or repeated `RefundPart` gives back once.
pub fn part_refund_key(order_id: &OrderId, reference: &str) -> String {
    format!("refund-{order_id}-{reference}")
}

/// What an authorization request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The amount is held under this payment id.
    Held(String),
    /// Nothing is held yet: the shopper must authenticate the payment in the browser
    /// (3-D Secure), with the client secret, before the provider holds the amount.
    ActionRequired {
        /// Provider's id of the payment.
        payment_id: String,
        /// What the shopper's browser hands the provider's script (Stripe.js
        /// `handleNextAction`); shown to the order's owner only.
        client_secret: String,
    },
}

impl Authorization {
    /// The provider's id of the payment, held or not.
    pub fn payment_id(&self) -> &str {
        match self {
            Self::Held(id) | Self::ActionRequired { payment_id: id, .. } => id,
        }
    }
}

/// Where a payment that asked for authentication stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// The shopper authenticated: the amount is held.
    Held,
    /// The shopper has not answered yet.
    Pending,
    /// The authentication failed or the payment was cancelled: nothing is held. The
    /// provider's reason, kept on the order as a decline code.
    Failed(String),
}

/// What releasing a payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Nothing was taken: the authorization was cancelled, or there was none.
    Voided,
    /// The capture was refunded in full.
    Refunded,
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

/// A part of a captured payment to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRefund {
    /// The order the payment is for, sent as the refund's metadata.
    pub order_id: OrderId,
    /// Provider idempotency key, one per operator reference: the same key never
    /// refunds twice.
    pub idempotency_key: String,
    /// Amount in minor units, at most what the payment still holds.
    pub amount: u64,
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
    /// The provider refused the request as made (not the card): the same request
    /// will be refused again.
    #[error("provider refused the request: {0}")]
    Refused(String),
}

/// The API key the shop authenticates to the payment provider with. It lives in a
/// secret store, is read once at cold start and is held in memory only: its `Debug`
/// and `Display` never show it, so a log line or a panic message cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderKey(String);

/// The secret's value cannot be a provider key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the payment provider key must be 16 to 256 printable ASCII characters without spaces")]
pub struct InvalidProviderKey;

impl ProviderKey {
    /// Checks the shape of a key, so a placeholder or a pasted line with a trailing
    /// newline fails at cold start rather than on the first charge.
    pub fn new(raw: impl Into<String>) -> Result<Self, InvalidProviderKey> {
        let raw = raw.into();
        let printable = raw.bytes().all(|b| b.is_ascii_graphic());
        if printable && (16..=256).contains(&raw.len()) {
            Ok(Self(raw))
        } else {
            Err(InvalidProviderKey)
        }
    }

    /// The key itself, for the provider's `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last four characters, enough for an operator to tell which key a
    /// function loaded after a rotation, too few to use it.
    pub fn hint(&self) -> String {
        let tail = &self.0[self.0.len() - 4..];
        format!("…{tail}")
    }
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderKey({})", self.hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_status_is_stored_by_its_serde_name_and_read_back() {
        for status in [
            LedgerStatus::Charging,
            LedgerStatus::AwaitingAuthentication,
            LedgerStatus::Authorized,
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

    #[test]
    fn a_provider_key_is_checked_at_load_and_never_printed() {
        let key = ProviderKey::new("sk_test_4eC39HqLyjWDarjtT1zdp7dc").unwrap();
        assert_eq!(key.expose(), "sk_test_4eC39HqLyjWDarjtT1zdp7dc");
        assert_eq!(format!("{key:?}"), "ProviderKey(…p7dc)");
        for bad in [
            "",
            "short",
            "sk_test_4eC39HqLyjWDarjtT1zdp7dc\n",
            "sk test 4eC39HqLyjWDarjt",
            "ключ-ключ-ключ-ключ",
        ] {
            assert_eq!(ProviderKey::new(bad), Err(InvalidProviderKey), "{bad:?}");
        }
        assert!(ProviderKey::new("k".repeat(256)).is_ok());
        assert!(ProviderKey::new("k".repeat(257)).is_err());
    }
}
