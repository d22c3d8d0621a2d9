//! The sandbox payment provider: an adapter that behaves like a real provider in test
//! mode (deterministic test tokens that approve, decline, time out or fail
//! transiently; idempotency keys; refunds and voids). It runs behind the payments
//! function locally, in the tests and in a sandbox deployment; a real provider plugs
//! in behind the same `PaymentProvider` port.
#![warn(missing_docs)]

use async_trait::async_trait;
use shop_domain::OrderId;
use shop_domain::payment::{ChargeRequest, ProviderError, charge_key};
use shop_domain::ports::PaymentProvider;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
enum SandboxCharge {
    Captured { charge_id: String, amount: u64 },
    Refunded { charge_id: String, amount: u64 },
    Voided,
}

/// A payment provider that behaves like a real one in test mode: deterministic test
/// tokens, idempotency keys, refunds and voids. State is per process, like a
/// provider's test-mode account seen from one client.
///
/// Tokens: `tok_decline…` declines; `tok_flaky…` fails transiently on the first two
/// attempts per key, then approves; `tok_unavailable…` always fails transiently;
/// `tok_timeout…` never answers within the client deadline; anything else approves.
#[derive(Debug)]
pub struct SandboxProvider {
    deadline: Duration,
    key: ProviderKey,
    state: Mutex<SandboxState>,
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

#[derive(Debug, Default)]
struct SandboxState {
    charges: HashMap<String, SandboxCharge>,
    attempts: HashMap<String, u32>,
    next_id: u64,
}

impl SandboxProvider {
    /// A sandbox account reached with `key`, whose calls time out after `deadline`,
    /// as a real client would.
    pub fn new(deadline: Duration, key: ProviderKey) -> Self {
        Self {
            deadline,
            key,
            state: Mutex::new(SandboxState::default()),
        }
    }

    /// The key this client authenticates with.
    pub fn key(&self) -> &ProviderKey {
        &self.key
    }

    /// Net amount captured under a key (captures minus refunds), for invariant checks.
    pub fn net_captured(&self, charge_key_for: &OrderId) -> u64 {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.charges.get(&charge_key(charge_key_for)) {
            Some(SandboxCharge::Captured { amount, .. }) => *amount,
            _ => 0,
        }
    }

    /// How many charge attempts the provider saw for an order.
    pub fn attempts(&self, order_id: &OrderId) -> u32 {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .attempts
            .get(&charge_key(order_id))
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl PaymentProvider for SandboxProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<String, ProviderError> {
        let token = request.payment_token.as_str();
        if token.starts_with("tok_timeout") {
            tokio::time::sleep(self.deadline).await;
            self.bump(&request.idempotency_key);
            return Err(ProviderError::Timeout(self.deadline));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let attempt = {
            let n = state
                .attempts
                .entry(request.idempotency_key.clone())
                .or_insert(0);
            *n += 1;
            *n
        };
        match state.charges.get(&request.idempotency_key) {
            Some(SandboxCharge::Captured { charge_id, .. }) => return Ok(charge_id.clone()),
            Some(SandboxCharge::Refunded { .. } | SandboxCharge::Voided) => {
                return Err(ProviderError::Voided);
            }
            None => {}
        }
        if token.starts_with("tok_decline") {
            return Err(ProviderError::Declined("insufficient_funds".into()));
        }
        if token.starts_with("tok_unavailable") || (token.starts_with("tok_flaky") && attempt <= 2)
        {
            return Err(ProviderError::Transient(format!(
                "attempt {attempt}: 503 from provider"
            )));
        }
        state.next_id += 1;
        let charge_id = format!("ch_sandbox_{:06}", state.next_id);
        state.charges.insert(
            request.idempotency_key.clone(),
            SandboxCharge::Captured {
                charge_id: charge_id.clone(),
                amount: request.amount,
            },
        );
        Ok(charge_id)
    }

    async fn refund(&self, charge_key: &str) -> Result<bool, ProviderError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.charges.get(charge_key).cloned() {
            Some(SandboxCharge::Captured { charge_id, amount }) => {
                state.charges.insert(
                    charge_key.to_owned(),
                    SandboxCharge::Refunded { charge_id, amount },
                );
                Ok(true)
            }
            Some(SandboxCharge::Refunded { .. }) => Ok(true),
            Some(SandboxCharge::Voided) => Ok(false),
            None => {
                state
                    .charges
                    .insert(charge_key.to_owned(), SandboxCharge::Voided);
                Ok(false)
            }
        }
    }
}

impl SandboxProvider {
    fn bump(&self, key: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state.attempts.entry(key.to_owned()).or_insert(0) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_domain::Currency;
    use shop_domain::commands::TaskError;
    use shop_domain::fakes::{FakeEvents, FakeLedger};
    use shop_domain::payment::{LedgerStatus, PaymentService};

    fn sandbox() -> SandboxProvider {
        SandboxProvider::new(
            Duration::from_millis(10),
            ProviderKey::new("sandbox-key-0123456789").unwrap(),
        )
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

    fn payments<'a>(
        ledger: &'a FakeLedger,
        provider: &'a SandboxProvider,
        events: &'a FakeEvents,
    ) -> PaymentService<'a> {
        PaymentService {
            ledger,
            provider,
            events,
        }
    }

    #[tokio::test]
    async fn a_charge_captures_once_however_often_it_is_delivered() {
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let provider = sandbox();
        let service = payments(&ledger, &provider, &events);
        let order = OrderId::generate();
        let first = service
            .charge(&order, "c", 500, Currency::EUR, "tok_visa")
            .await
            .unwrap();
        let again = service
            .charge(&order, "c", 500, Currency::EUR, "tok_visa")
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(provider.net_captured(&order), 500);
        assert_eq!(events.detail_types(), ["PaymentCaptured"]);
    }

    #[tokio::test]
    async fn declines_and_transient_failures_have_their_names() {
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let provider = sandbox();
        let service = payments(&ledger, &provider, &events);
        let declined = OrderId::generate();
        let err = service
            .charge(&declined, "c", 1, Currency::EUR, "tok_decline")
            .await
            .unwrap_err();
        assert_eq!(err.error, TaskError::PaymentDeclined);

        let flaky = OrderId::generate();
        for _ in 0..2 {
            let err = service
                .charge(&flaky, "c", 1, Currency::EUR, "tok_flaky")
                .await
                .unwrap_err();
            assert!(err.is_transient(), "{err}");
        }
        service
            .charge(&flaky, "c", 1, Currency::EUR, "tok_flaky")
            .await
            .unwrap();

        let slow = OrderId::generate();
        let err = service
            .charge(&slow, "c", 1, Currency::EUR, "tok_timeout")
            .await
            .unwrap_err();
        assert_eq!(err.error, TaskError::PaymentTimeout);
    }

    #[tokio::test]
    async fn refund_then_late_charge_is_refused_and_nets_zero() {
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let provider = sandbox();
        let service = payments(&ledger, &provider, &events);
        let order = OrderId::generate();
        service
            .charge(&order, "c", 700, Currency::EUR, "tok_visa")
            .await
            .unwrap();
        assert_eq!(
            service.refund(&order, "c").await.unwrap(),
            LedgerStatus::Refunded
        );
        assert_eq!(
            service.refund(&order, "c").await.unwrap(),
            LedgerStatus::Refunded
        );
        let late = service
            .charge(&order, "c", 700, Currency::EUR, "tok_visa")
            .await
            .unwrap_err();
        assert_eq!(late.error, TaskError::OrderCancelled);
        assert_eq!(provider.net_captured(&order), 0);

        let never_charged = OrderId::generate();
        assert_eq!(
            service.refund(&never_charged, "c").await.unwrap(),
            LedgerStatus::Voided
        );
        let late = service
            .charge(&never_charged, "c", 1, Currency::EUR, "tok_visa")
            .await
            .unwrap_err();
        assert_eq!(late.error, TaskError::OrderCancelled);
        assert_eq!(provider.attempts(&never_charged), 0);
        assert_eq!(
            events.detail_types(),
            ["PaymentCaptured", "PaymentRefunded"]
        );
    }
}
