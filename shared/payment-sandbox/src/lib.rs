//! The sandbox payment provider: an adapter that behaves like a real provider in test
//! mode (deterministic test tokens that approve, decline, time out or fail
//! transiently; idempotency keys; refunds and voids). It runs behind the payments
//! function locally, in the tests and in a sandbox deployment; a real provider plugs
//! in behind the same `PaymentProvider` port.
#![warn(missing_docs)]

use async_trait::async_trait;
use shop_domain::OrderId;
use shop_domain::payment::{ChargeRequest, ProviderError};
use shop_domain::ports::PaymentProvider;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What the sandbox holds under one idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SandboxCharge {
    order_id: OrderId,
    charge_id: String,
    amount: u64,
    refunded: bool,
}

/// Which way money moved at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Taken from the card.
    Capture,
    /// Given back to the card.
    Refund,
}

/// One movement of money in the sandbox's books: every capture and every refund it
/// ever made, whatever key it was made under. The invariants read these, not the
/// shop's own ledger, so money the shop's records forget is still counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// The order named in the charge's metadata.
    pub order_id: OrderId,
    /// The idempotency key the charge was made under.
    pub key: String,
    /// The provider's id of the charge.
    pub charge_id: String,
    /// Capture or refund.
    pub direction: Direction,
    /// Amount in minor units.
    pub amount: u64,
}

impl Movement {
    /// The movement's effect on what the shop holds: positive for a capture.
    pub fn signed_amount(&self) -> i128 {
        match self.direction {
            Direction::Capture => i128::from(self.amount),
            Direction::Refund => -i128::from(self.amount),
        }
    }
}

/// A payment provider that behaves like a real one in test mode: deterministic test
/// tokens, idempotency keys, refunds and voids. State is per process, like a
/// provider's test-mode account seen from one client.
///
/// Like a real provider it keeps no tombstones of its own: a refund of a key it never
/// captured under changes nothing, so a late charge is refused only by the shop's
/// ledger, and a capture that loses a race with a compensation is given back only by
/// the shop's code.
///
/// Tokens: `tok_decline…` declines; `tok_flaky…` fails transiently on the first two
/// attempts per key, then approves; `tok_unavailable…` always fails transiently;
/// `tok_timeout…` never answers within the client deadline; anything else approves.
#[derive(Debug)]
pub struct SandboxProvider {
    deadline: Duration,
    key: ProviderKey,
    latency: Option<Latency>,
    state: Mutex<SandboxState>,
}

/// How long the sandbox takes to answer a call: a log-normal distribution through
/// its median and its 99th percentile, the long-tailed shape a card provider's
/// latency has. Off by default; on, local runs form the backlogs production forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Half the calls answer faster than this.
    pub p50: Duration,
    /// All but one call in a hundred answer faster than this.
    pub p99: Duration,
}

/// A latency setting that is not `P50,P99` with `P50 <= P99`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("payment latency {0:?}: expected P50,P99 such as 300ms,2s with P50 at most P99")]
pub struct InvalidLatency(String);

impl std::str::FromStr for Latency {
    type Err = InvalidLatency;

    /// Reads `P50,P99` (`300ms,2s`; humantime units).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidLatency(text.to_owned());
        let (p50, p99) = text.split_once(',').ok_or_else(invalid)?;
        let read = |d: &str| humantime::parse_duration(d.trim()).map_err(|_| invalid());
        let latency = Self {
            p50: read(p50)?,
            p99: read(p99)?,
        };
        (latency.p50 > Duration::ZERO && latency.p50 <= latency.p99)
            .then_some(latency)
            .ok_or_else(invalid)
    }
}

/// The standard normal's 99th percentile.
const Z99: f64 = 2.326_347_874_040_841;

impl Latency {
    /// One call's latency, drawn with `rng`.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> Duration {
        let mu = self.p50.as_secs_f64().ln();
        let sigma = (self.p99.as_secs_f64().ln() - mu) / Z99;
        // Box-Muller: a standard normal from two uniforms in (0, 1].
        let (u1, u2) = (1.0 - rng.f64(), rng.f64());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        Duration::from_secs_f64((mu + sigma * z).exp().min(86_400.0))
    }
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
    books: Vec<Movement>,
    attempts: HashMap<OrderId, u32>,
    next_id: u64,
    rng: fastrand::Rng,
}

impl SandboxProvider {
    /// A sandbox account reached with `key`, whose calls time out after `deadline`,
    /// as a real client would.
    pub fn new(deadline: Duration, key: ProviderKey) -> Self {
        Self {
            deadline,
            key,
            latency: None,
            state: Mutex::new(SandboxState::default()),
        }
    }

    /// The same account answering every call after a delay drawn from `latency`. A
    /// call slower than the client deadline is answered `Timeout` at the deadline, and
    /// what it asked still happens at the provider, as with a real one.
    pub fn with_latency(self, latency: Option<Latency>) -> Self {
        Self { latency, ..self }
    }

    /// Waits out one call's latency: `Err(Timeout)` when it is longer than the client
    /// deadline (the call's effect still happens).
    async fn answer_delay(&self) -> Result<(), ProviderError> {
        let Some(latency) = self.latency else {
            return Ok(());
        };
        let delay = latency.sample(&mut self.state().rng);
        tokio::time::sleep(delay.min(self.deadline)).await;
        if delay > self.deadline {
            Err(ProviderError::Timeout(self.deadline))
        } else {
            Ok(())
        }
    }

    /// The key this client authenticates with.
    pub fn key(&self) -> &ProviderKey {
        &self.key
    }

    /// Every capture and refund the sandbox made, in order.
    pub fn books(&self) -> Vec<Movement> {
        self.state().books.clone()
    }

    /// Net amount the shop holds for an order (its captures minus its refunds, under
    /// any key), for invariant checks.
    pub fn net_captured(&self, order_id: &OrderId) -> i128 {
        self.state()
            .books
            .iter()
            .filter(|m| &m.order_id == order_id)
            .map(Movement::signed_amount)
            .sum()
    }

    /// How many charge attempts the provider saw for an order.
    pub fn attempts(&self, order_id: &OrderId) -> u32 {
        self.state().attempts.get(order_id).copied().unwrap_or(0)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SandboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl PaymentProvider for SandboxProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<String, ProviderError> {
        let answered = self.answer_delay().await;
        let outcome = self.charge_now(request).await;
        answered.and(outcome)
    }

    async fn refund(&self, charge_key: &str) -> Result<bool, ProviderError> {
        let answered = self.answer_delay().await;
        let outcome = self.refund_now(charge_key);
        answered.and(outcome)
    }
}

impl SandboxProvider {
    async fn charge_now(&self, request: &ChargeRequest) -> Result<String, ProviderError> {
        let token = request.payment_token.as_str();
        if token.starts_with("tok_timeout") {
            tokio::time::sleep(self.deadline).await;
            *self
                .state()
                .attempts
                .entry(request.order_id.clone())
                .or_insert(0) += 1;
            return Err(ProviderError::Timeout(self.deadline));
        }
        let mut state = self.state();
        let attempt = {
            let n = state.attempts.entry(request.order_id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        // The same key replays the first answer, as a provider's idempotency does,
        // even after a refund: the capture happened, it is not made again.
        if let Some(charge) = state.charges.get(&request.idempotency_key) {
            return Ok(charge.charge_id.clone());
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
            SandboxCharge {
                order_id: request.order_id.clone(),
                charge_id: charge_id.clone(),
                amount: request.amount,
                refunded: false,
            },
        );
        state.books.push(Movement {
            order_id: request.order_id.clone(),
            key: request.idempotency_key.clone(),
            charge_id: charge_id.clone(),
            direction: Direction::Capture,
            amount: request.amount,
        });
        Ok(charge_id)
    }

    fn refund_now(&self, charge_key: &str) -> Result<bool, ProviderError> {
        let mut state = self.state();
        let Some(charge) = state.charges.get_mut(charge_key) else {
            return Ok(false);
        };
        if !charge.refunded {
            charge.refunded = true;
            let refund = Movement {
                order_id: charge.order_id.clone(),
                key: charge_key.to_owned(),
                charge_id: charge.charge_id.clone(),
                direction: Direction::Refund,
                amount: charge.amount,
            };
            state.books.push(refund);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_domain::Currency;
    use shop_domain::commands::TaskError;
    use shop_domain::fakes::{FakeEvents, FakeLedger};
    use shop_domain::payment::{LedgerStatus, PaymentService};
    use shop_domain::ports::PaymentLedger;

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
        provider: &'a dyn PaymentProvider,
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
        // Another order is another key: its own capture, never the first one replayed.
        let other = OrderId::generate();
        let second = service
            .charge(&other, "c", 300, Currency::EUR, "tok_visa")
            .await
            .unwrap();
        assert_ne!(second.charge_id, first.charge_id);
        assert_eq!(provider.net_captured(&other), 300);
        assert_eq!(provider.net_captured(&order), 500);
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
            assert!(err.error.is_transient(), "{err}");
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
        let captured_at = ledger.get(&order).await.unwrap().unwrap().updated_at;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            service.refund(&order, "c").await.unwrap(),
            LedgerStatus::Refunded
        );
        let refunded = ledger.get(&order).await.unwrap().unwrap();
        assert!(
            refunded.updated_at > captured_at,
            "the refund's time is recorded: {refunded:?}"
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

    /// Holds a charge at the provider's door until the test lets it through.
    struct HeldAtTheDoor<'a> {
        inner: &'a SandboxProvider,
        arrived: tokio::sync::Notify,
        let_through: tokio::sync::Notify,
    }

    #[async_trait]
    impl PaymentProvider for HeldAtTheDoor<'_> {
        async fn charge(&self, request: &ChargeRequest) -> Result<String, ProviderError> {
            self.arrived.notify_one();
            self.let_through.notified().await;
            self.inner.charge(request).await
        }

        async fn refund(&self, charge_key: &str) -> Result<bool, ProviderError> {
            self.inner.refund(charge_key).await
        }
    }

    #[tokio::test]
    async fn a_capture_that_loses_its_race_with_a_compensation_is_given_back() {
        // GIVEN a charge that reached the provider, which has not captured yet
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let sandbox = sandbox();
        let door = HeldAtTheDoor {
            inner: &sandbox,
            arrived: tokio::sync::Notify::new(),
            let_through: tokio::sync::Notify::new(),
        };
        let service = payments(&ledger, &door, &events);
        let order = OrderId::generate();
        let charge = service.charge(&order, "c", 900, Currency::EUR, "tok_visa");
        let compensate = async {
            door.arrived.notified().await;
            // WHEN the compensation runs first: the provider holds nothing to refund
            let voided = service.refund(&order, "c").await.unwrap();
            door.let_through.notify_one();
            voided
        };
        let (charged, voided) = tokio::join!(charge, compensate);
        // THEN the capture that lands afterwards is refunded by the shop's code
        assert_eq!(voided, LedgerStatus::Voided);
        assert_eq!(charged.unwrap_err().error, TaskError::OrderCancelled);
        let books = sandbox.books();
        assert_eq!(
            books.iter().map(|m| m.direction).collect::<Vec<_>>(),
            [Direction::Capture, Direction::Refund]
        );
        assert_eq!(sandbox.net_captured(&order), 0);
    }

    #[tokio::test]
    async fn the_books_count_every_capture_whatever_its_key() {
        let provider = sandbox();
        let order = OrderId::generate();
        let request = |key: &str| ChargeRequest {
            order_id: order.clone(),
            idempotency_key: key.to_owned(),
            amount: 250,
            currency: Currency::EUR,
            payment_token: "tok_visa".into(),
        };
        let first = provider.charge(&request("charge-a")).await.unwrap();
        assert_eq!(provider.charge(&request("charge-a")).await.unwrap(), first);
        provider.charge(&request("charge-b")).await.unwrap();
        assert_eq!(provider.net_captured(&order), 500, "two keys, two captures");
        assert!(provider.refund("charge-a").await.unwrap());
        assert!(provider.refund("charge-a").await.unwrap());
        assert_eq!(provider.net_captured(&order), 250, "refunded once");
        assert!(!provider.refund("charge-never").await.unwrap());
        assert_eq!(provider.books().len(), 3);
    }

    #[test]
    fn a_latency_is_two_percentiles_and_its_samples_have_them() {
        let latency = "300ms, 2s".parse::<Latency>().unwrap();
        assert_eq!(
            latency,
            Latency {
                p50: Duration::from_millis(300),
                p99: Duration::from_secs(2)
            }
        );
        for bad in ["300ms", "2s,300ms", "0s,1s", "fast,slow"] {
            assert_eq!(bad.parse::<Latency>(), Err(InvalidLatency(bad.into())));
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let mut samples: Vec<Duration> = (0..20_000).map(|_| latency.sample(&mut rng)).collect();
        samples.sort();
        let (p50, p99) = (samples[10_000], samples[19_800]);
        assert!(
            (Duration::from_millis(280)..Duration::from_millis(320)).contains(&p50),
            "{p50:?}"
        );
        assert!(
            (Duration::from_millis(1800)..Duration::from_millis(2200)).contains(&p99),
            "{p99:?}"
        );
    }

    #[tokio::test]
    async fn a_call_slower_than_the_client_deadline_times_out_but_still_happens() {
        let provider = sandbox().with_latency(Some(Latency {
            p50: Duration::from_secs(5),
            p99: Duration::from_secs(5),
        }));
        let order = OrderId::generate();
        let request = ChargeRequest {
            order_id: order.clone(),
            idempotency_key: "charge-slow".into(),
            amount: 700,
            currency: Currency::EUR,
            payment_token: "tok_visa".into(),
        };
        let started = std::time::Instant::now();
        let answer = provider.charge(&request).await;
        assert!(
            matches!(answer, Err(ProviderError::Timeout(_))),
            "{answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered at the 10 ms deadline"
        );
        assert_eq!(
            provider.net_captured(&order),
            700,
            "captured at the provider all the same"
        );
        let quick = sandbox().with_latency(Some(Latency {
            p50: Duration::from_millis(2),
            p99: Duration::from_millis(4),
        }));
        assert!(quick.charge(&request).await.is_ok());
    }
}
