//! Orders and their lifecycle.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies an order; also the saga execution name, so it must be a valid
/// Step Functions name (letters, digits, `-`, `_`, at most 80 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(String);

impl OrderId {
    /// A new, time-ordered id, so listings sort by creation.
    pub fn generate() -> Self {
        Self(format!("ord-{}", uuid::Uuid::now_v7().simple()))
    }

    /// Accepts an id from a path or a message, refusing anything that could not have
    /// been generated here (it ends up in key conditions and execution names).
    pub fn parse(raw: &str) -> Option<Self> {
        let valid = (5..=80).contains(&raw.len())
            && raw.starts_with("ord-")
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A catalog stock-keeping unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sku(pub String);

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shopper who placed the order: the subject (`sub`) of the token the API
/// Gateway authorizer verified, never a value the client chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(pub String);

/// Longest subject accepted as a customer id: identity providers issue subjects of up
/// to 255 characters (OpenID Connect Core, section 2), and the id is a DynamoDB key.
pub const MAX_SUBJECT_LEN: usize = 255;

impl CustomerId {
    /// A token subject as a customer id: 1 to [`MAX_SUBJECT_LEN`] characters with no
    /// control characters (providers use UUIDs, `auth0|…`, e-mail-like forms).
    pub fn from_subject(subject: &str) -> Option<Self> {
        let valid = !subject.is_empty()
            && subject.chars().count() <= MAX_SUBJECT_LEN
            && !subject.chars().any(char::is_control);
        valid.then(|| Self(subject.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Currencies the shop prices in. Amounts are integer minor units (cents), so every
/// supported currency has two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Currency {
    /// Euro.
    EUR,
    /// US dollar.
    USD,
    /// Pound sterling.
    GBP,
}

impl Currency {
    /// Parses an ISO 4217 code this shop supports.
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "EUR" => Some(Self::EUR),
            "USD" => Some(Self::USD),
            "GBP" => Some(Self::GBP),
            _ => None,
        }
    }

    /// The ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Self::EUR => "EUR",
            Self::USD => "USD",
            Self::GBP => "GBP",
        }
    }
}

/// One priced line of an order. The unit price comes from the catalog at the time the
/// order was placed, never from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// What was ordered.
    pub sku: Sku,
    /// How many, 1 to 1000.
    pub quantity: u32,
    /// Catalog price per unit in minor units.
    pub unit_price: u64,
}

/// Where an order is in its saga. Only `Confirmed` and `Cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Accepted by the API, saga not yet past stock reservation.
    Pending,
    /// Stock held for the order.
    Reserved,
    /// The charge is in flight; the shopper can no longer cancel.
    PaymentPending,
    /// The card's issuer asks the shopper to authenticate the payment (3-D Secure):
    /// the order's owner sees the client secret to do it with until the saga's
    /// deadline.
    PaymentActionRequired,
    /// Paid and confirmed.
    Confirmed,
    /// Compensated or cancelled by the shopper.
    Cancelled,
}

impl OrderStatus {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Reserved => "RESERVED",
            Self::PaymentPending => "PAYMENT_PENDING",
            Self::PaymentActionRequired => "PAYMENT_ACTION_REQUIRED",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses a stored status name.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Reserved,
            Self::PaymentPending,
            Self::PaymentActionRequired,
            Self::Confirmed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    /// True once the saga is over for this order.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Confirmed | Self::Cancelled)
    }

    /// The shopper may cancel only before the charge starts; afterwards the saga owns
    /// the outcome.
    pub fn is_cancellable(self) -> bool {
        matches!(self, Self::Pending | Self::Reserved)
    }
}

/// One entry of an order's history, which is how an asynchronous API reports progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    /// The status entered.
    pub status: OrderStatus,
    /// When, RFC 3339.
    pub at: String,
    /// Why, for cancellations and other notable transitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An order as stored and as returned by `GET /v1/orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Order id.
    pub order_id: OrderId,
    /// Who placed it.
    pub customer_id: CustomerId,
    /// Priced lines.
    pub lines: Vec<OrderLine>,
    /// Currency of every amount in the order.
    pub currency: Currency,
    /// Sum of the lines in minor units.
    pub total: u64,
    /// Current status.
    pub status: OrderStatus,
    /// Every status change, oldest first.
    pub history: Vec<StatusChange>,
    /// The payment method the charge will use (a Stripe PaymentMethod id). Kept with
    /// the stored order only: the intake queue, the saga, its commands and the events
    /// carry the order id, and the payments function reads the method from here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub payment_token: String,
    /// What the shopper's browser needs to authenticate the payment, while the order
    /// is `PAYMENT_ACTION_REQUIRED`. Written by the payments function, removed when the
    /// order is confirmed or cancelled, shown to the order's owner only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_action: Option<PaymentAction>,
    /// Ties logs and events of this order together across services.
    pub correlation_id: String,
    /// When the order was accepted, RFC 3339.
    pub created_at: String,
    /// Express orders go through the priority intake lane.
    #[serde(default)]
    pub express: bool,
}

/// The step the shopper must take for a payment to go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentAction {
    /// The PaymentIntent's client secret, which Stripe.js `handleNextAction` takes to
    /// show the issuer's authentication.
    pub client_secret: String,
}

impl Order {
    /// The order as it travels on a queue: everything but its payment method.
    pub fn without_payment_method(&self) -> Order {
        Order {
            payment_token: String::new(),
            payment_action: None,
            ..self.clone()
        }
    }

    /// Whether `caller` may see and cancel this order. Everyone else is told the order
    /// does not exist, so order ids cannot be probed.
    pub fn is_owned_by(&self, caller: &CustomerId) -> bool {
        &self.customer_id == caller
    }

    /// The most recent cancellation reason, if the order was cancelled.
    pub fn cancel_reason(&self) -> Option<&str> {
        self.history
            .iter()
            .rev()
            .find(|c| c.status == OrderStatus::Cancelled)
            .and_then(|c| c.reason.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_id_this_shop_could_have_generated_is_accepted() {
        let id = OrderId::generate();
        assert_eq!(OrderId::parse(id.as_str()), Some(id.clone()));
        assert!(OrderId::parse("ord-1").is_some());
        assert!(OrderId::parse(&format!("ord-{}", "a".repeat(76))).is_some());
        for bad in [
            "ord-".to_owned(),
            format!("ord-{}", "a".repeat(77)),
            "xyz-0193abc".to_owned(),
            "ord-01 3".to_owned(),
            "ord-01#3".to_owned(),
        ] {
            assert_eq!(OrderId::parse(&bad), None, "{bad:?}");
        }
        assert!(
            OrderId::parse("ord-a_b-c").is_some(),
            "dashes and underscores"
        );
        assert_eq!(id.to_string(), id.as_str());
        assert_eq!(Sku("MUG-1".into()).to_string(), "MUG-1");
    }

    #[test]
    fn a_customer_is_a_token_subject_of_1_to_255_printable_characters() {
        for good in ["auth0|5f7c", "a", "ключ@example.org"] {
            let customer = CustomerId::from_subject(good).unwrap();
            assert_eq!(customer.as_str(), good);
            assert_eq!(customer.to_string(), good);
        }
        let longest = "é".repeat(MAX_SUBJECT_LEN);
        assert!(
            CustomerId::from_subject(&longest).is_some(),
            "counted in characters"
        );
        for bad in [
            String::new(),
            "é".repeat(MAX_SUBJECT_LEN + 1),
            "line\nbreak".to_owned(),
            "tab\t".to_owned(),
        ] {
            assert_eq!(CustomerId::from_subject(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_status_is_stored_by_its_serde_name_and_only_two_are_terminal() {
        use OrderStatus::*;
        for status in [Pending, Reserved, PaymentPending, Confirmed, Cancelled] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                status.is_terminal(),
                matches!(status, Confirmed | Cancelled),
                "{status:?}"
            );
        }
        assert_eq!(OrderStatus::parse("confirmed"), None);
    }

    #[test]
    fn every_currency_is_read_by_its_iso_code() {
        for currency in [Currency::EUR, Currency::USD, Currency::GBP] {
            assert_eq!(Currency::parse(currency.code()), Some(currency));
            assert_eq!(serde_json::to_value(currency).unwrap(), currency.code());
        }
        assert_eq!(Currency::parse("eur"), None);
        assert_eq!(Currency::parse("DOGE"), None);
    }
}
