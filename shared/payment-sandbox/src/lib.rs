//! The sandbox payment provider: an adapter that behaves like a real provider in test
//! mode (deterministic test tokens that approve, decline, time out or fail
//! transiently; idempotency keys; refunds and voids). It runs behind the payments
//! function locally, in the tests and in a sandbox deployment; a real provider plugs
//! in behind the same `PaymentProvider` port.
#![warn(missing_docs)]

use async_trait::async_trait;
use shop_domain::OrderId;
use shop_domain::payment::{
    Authorization, ChargeRequest, PartRefund, ProviderError, ProviderKey, Released,
};
use shop_domain::ports::PaymentProvider;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Where one payment stands at the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The amount is held, not taken.
    Authorized,
    /// Taken.
    Captured,
    /// The hold was cancelled before any capture.
    Voided,
    /// Taken, then given back.
    Refunded,
}

/// What the sandbox holds under one idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SandboxPayment {
    order_id: OrderId,
    payment_id: String,
    amount: u64,
    stage: Stage,
    /// Given back in parts so far, and under which keys.
    refunded: u64,
    part_keys: Vec<String>,
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
/// tokens, idempotency keys, authorizations captured later, refunds and voids. State is per process, like a
/// provider's test-mode account seen from one client.
///
/// Like a real provider it keeps no tombstones of its own: releasing a key it never
/// authorized under changes nothing, so a late charge is refused only by the shop's
/// ledger, and an authorization that loses a race with a compensation is released
/// only by the shop's code.
///
/// Tokens: `tok_decline…` declines, and so do Stripe's decline test payment methods
/// (`pm_card_visa_chargeDeclined…`, `pm_card_chargeDeclined…`,
/// `pm_card_chargeCustomerFail`), so one test card works with either provider;
/// `tok_flaky…` fails transiently on the first two attempts per key, then approves;
/// `tok_unavailable…` always fails transiently; `tok_timeout…` never answers within
/// the client deadline; anything else approves.
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

#[derive(Debug, Default)]
struct SandboxState {
    payments: HashMap<String, SandboxPayment>,
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

    /// How many of an order's authorizations are still held, neither captured nor
    /// voided: none may stay once its order has ended.
    pub fn open_authorizations(&self, order_id: &OrderId) -> usize {
        self.state()
            .payments
            .values()
            .filter(|p| &p.order_id == order_id && p.stage == Stage::Authorized)
            .count()
    }

    /// How many authorization attempts the provider saw for an order.
    pub fn attempts(&self, order_id: &OrderId) -> u32 {
        self.state().attempts.get(order_id).copied().unwrap_or(0)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SandboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl PaymentProvider for SandboxProvider {
    async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError> {
        let answered = self.answer_delay().await;
        let outcome = self.authorize_now(request).await;
        answered.and(outcome).map(Authorization::Held)
    }

    async fn capture(&self, payment_id: &str, _: &ChargeRequest) -> Result<(), ProviderError> {
        let answered = self.answer_delay().await;
        let outcome = self.capture_now(payment_id);
        answered.and(outcome)
    }

    async fn release(
        &self,
        payment_id: Option<&str>,
        request: &ChargeRequest,
    ) -> Result<Released, ProviderError> {
        let answered = self.answer_delay().await;
        let outcome = self.release_now(payment_id, &request.idempotency_key);
        answered.and(outcome)
    }

    async fn refund_part(&self, payment_id: &str, part: &PartRefund) -> Result<(), ProviderError> {
        let answered = self.answer_delay().await;
        let outcome = self.refund_part_now(payment_id, part);
        answered.and(outcome)
    }
}

impl SandboxProvider {
    async fn authorize_now(&self, request: &ChargeRequest) -> Result<String, ProviderError> {
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
        // even after a void or refund: the authorization is not made again.
        if let Some(payment) = state.payments.get(&request.idempotency_key) {
            return Ok(payment.payment_id.clone());
        }
        let stripe_decline = ["pm_card_visa_chargeDeclined", "pm_card_chargeDeclined"]
            .iter()
            .any(|p| token.starts_with(p))
            || token == "pm_card_chargeCustomerFail";
        if token.starts_with("tok_decline") || stripe_decline {
            return Err(ProviderError::Declined("insufficient_funds".into()));
        }
        if token.starts_with("tok_unavailable") || (token.starts_with("tok_flaky") && attempt <= 2)
        {
            return Err(ProviderError::Transient(format!(
                "attempt {attempt}: 503 from provider"
            )));
        }
        state.next_id += 1;
        let payment_id = format!("pay_sandbox_{:06}", state.next_id);
        state.payments.insert(
            request.idempotency_key.clone(),
            SandboxPayment {
                order_id: request.order_id.clone(),
                payment_id: payment_id.clone(),
                amount: request.amount,
                stage: Stage::Authorized,
                refunded: 0,
                part_keys: Vec::new(),
            },
        );
        Ok(payment_id)
    }

    fn capture_now(&self, payment_id: &str) -> Result<(), ProviderError> {
        let mut state = self.state();
        let Some((key, payment)) = state
            .payments
            .iter_mut()
            .find(|(_, p)| p.payment_id == payment_id)
        else {
            return Err(ProviderError::Refused(format!(
                "no such payment: {payment_id}"
            )));
        };
        match payment.stage {
            Stage::Captured | Stage::Refunded => Ok(()),
            Stage::Voided => Err(ProviderError::Refused(format!(
                "payment {payment_id} was cancelled; it cannot be captured"
            ))),
            Stage::Authorized => {
                payment.stage = Stage::Captured;
                let capture = Movement {
                    order_id: payment.order_id.clone(),
                    key: key.clone(),
                    charge_id: payment.payment_id.clone(),
                    direction: Direction::Capture,
                    amount: payment.amount,
                };
                state.books.push(capture);
                Ok(())
            }
        }
    }

    fn release_now(&self, payment_id: Option<&str>, key: &str) -> Result<Released, ProviderError> {
        let mut state = self.state();
        let found = state.payments.iter_mut().find(|(k, p)| match payment_id {
            Some(id) => p.payment_id == id,
            None => k.as_str() == key,
        });
        let Some((key, payment)) = found else {
            return Ok(Released::Voided);
        };
        match payment.stage {
            Stage::Voided => Ok(Released::Voided),
            Stage::Refunded => Ok(Released::Refunded),
            Stage::Authorized => {
                payment.stage = Stage::Voided;
                Ok(Released::Voided)
            }
            Stage::Captured => {
                payment.stage = Stage::Refunded;
                let refund = Movement {
                    order_id: payment.order_id.clone(),
                    key: key.clone(),
                    charge_id: payment.payment_id.clone(),
                    direction: Direction::Refund,
                    amount: payment.amount - payment.refunded,
                };
                state.books.push(refund);
                Ok(Released::Refunded)
            }
        }
    }

    /// Gives back part of a capture once per key, never more than it still holds; the
    /// part that leaves nothing refunds the payment.
    fn refund_part_now(&self, payment_id: &str, part: &PartRefund) -> Result<(), ProviderError> {
        let mut state = self.state();
        let Some(payment) = state
            .payments
            .values_mut()
            .find(|p| p.payment_id == payment_id)
        else {
            return Err(ProviderError::Refused(format!(
                "no such payment: {payment_id}"
            )));
        };
        if payment.part_keys.contains(&part.idempotency_key) {
            return Ok(());
        }
        let left = payment.amount - payment.refunded;
        if payment.stage != Stage::Captured || part.amount > left {
            return Err(ProviderError::Refused(format!(
                "payment {payment_id} holds {left}; {} cannot be refunded",
                part.amount
            )));
        }
        payment.refunded += part.amount;
        payment.part_keys.push(part.idempotency_key.clone());
        if payment.refunded == payment.amount {
            payment.stage = Stage::Refunded;
        }
        let refund = Movement {
            order_id: payment.order_id.clone(),
            key: part.idempotency_key.clone(),
            charge_id: payment.payment_id.clone(),
            direction: Direction::Refund,
            amount: part.amount,
        };
        state.books.push(refund);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_domain::Currency;
    use shop_domain::commands::TaskError;
    use shop_domain::commands::TaskFailure;
    use shop_domain::fakes::{FakeEvents, FakeLedger};
    use shop_domain::payment::{Captured, LedgerStatus, PaymentService};
    use shop_domain::ports::{OrderPayments, PaymentLedger, PortError};
    use std::sync::Mutex;

    /// The payment method of each order the tests store.
    #[derive(Default)]
    struct Methods(Mutex<HashMap<OrderId, String>>);

    impl Methods {
        fn pay(&self, order: &OrderId, method: &str) {
            self.0.lock().unwrap().insert(order.clone(), method.into());
        }
    }

    #[async_trait]
    impl OrderPayments for Methods {
        async fn of_order(&self, order_id: &OrderId) -> Result<Option<String>, PortError> {
            Ok(self.0.lock().unwrap().get(order_id).cloned())
        }
        async fn require_action(&self, _: &OrderId, _: &str, _: &str) -> Result<bool, PortError> {
            Ok(true)
        }
    }

    fn sandbox() -> SandboxProvider {
        SandboxProvider::new(
            Duration::from_millis(10),
            ProviderKey::new("sandbox-key-0123456789").unwrap(),
        )
    }

    fn payments<'a>(
        ledger: &'a FakeLedger,
        provider: &'a dyn PaymentProvider,
        events: &'a FakeEvents,
        orders: &'a Methods,
    ) -> PaymentService<'a> {
        PaymentService {
            ledger,
            provider,
            orders,
            events,
        }
    }

    /// Authorizes, then captures, as the saga's two payment steps do.
    async fn charge(
        service: &PaymentService<'_>,
        methods: &Methods,
        order: &OrderId,
        correlation_id: &str,
        amount: u64,
        currency: Currency,
        method: &str,
    ) -> Result<Captured, TaskFailure> {
        methods.pay(order, method);
        service
            .authorize(order, correlation_id, amount, currency)
            .await?;
        service.capture(order, correlation_id).await
    }

    #[tokio::test]
    async fn a_charge_captures_once_however_often_it_is_delivered() {
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let provider = sandbox();
        let methods = Methods::default();
        let service = payments(&ledger, &provider, &events, &methods);
        let order = OrderId::generate();
        let first = charge(
            &service,
            &methods,
            &order,
            "c",
            500,
            Currency::EUR,
            "tok_visa",
        )
        .await
        .unwrap();
        let again = charge(
            &service,
            &methods,
            &order,
            "c",
            500,
            Currency::EUR,
            "tok_visa",
        )
        .await
        .unwrap();
        assert_eq!(first, again);
        assert_eq!(provider.net_captured(&order), 500);
        assert_eq!(events.detail_types(), ["PaymentCaptured"]);
        // Another order is another key: its own capture, never the first one replayed.
        let other = OrderId::generate();
        let second = charge(
            &service,
            &methods,
            &other,
            "c",
            300,
            Currency::EUR,
            "tok_visa",
        )
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
        let methods = Methods::default();
        let service = payments(&ledger, &provider, &events, &methods);
        let declined = OrderId::generate();
        let err = charge(
            &service,
            &methods,
            &declined,
            "c",
            1,
            Currency::EUR,
            "tok_decline",
        )
        .await
        .unwrap_err();
        assert_eq!(err.error, TaskError::PaymentDeclined);

        let flaky = OrderId::generate();
        for _ in 0..2 {
            let err = charge(
                &service,
                &methods,
                &flaky,
                "c",
                1,
                Currency::EUR,
                "tok_flaky",
            )
            .await
            .unwrap_err();
            assert!(err.error.is_transient(), "{err}");
        }
        charge(
            &service,
            &methods,
            &flaky,
            "c",
            1,
            Currency::EUR,
            "tok_flaky",
        )
        .await
        .unwrap();

        let slow = OrderId::generate();
        let err = charge(
            &service,
            &methods,
            &slow,
            "c",
            1,
            Currency::EUR,
            "tok_timeout",
        )
        .await
        .unwrap_err();
        assert_eq!(err.error, TaskError::PaymentTimeout);
    }

    #[tokio::test]
    async fn refund_then_late_charge_is_refused_and_nets_zero() {
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let provider = sandbox();
        let methods = Methods::default();
        let service = payments(&ledger, &provider, &events, &methods);
        let order = OrderId::generate();
        charge(
            &service,
            &methods,
            &order,
            "c",
            700,
            Currency::EUR,
            "tok_visa",
        )
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
        let late = charge(
            &service,
            &methods,
            &order,
            "c",
            700,
            Currency::EUR,
            "tok_visa",
        )
        .await
        .unwrap_err();
        assert_eq!(late.error, TaskError::OrderCancelled);
        assert_eq!(provider.net_captured(&order), 0);

        let never_charged = OrderId::generate();
        assert_eq!(
            service.refund(&never_charged, "c").await.unwrap(),
            LedgerStatus::Voided
        );
        let late = charge(
            &service,
            &methods,
            &never_charged,
            "c",
            1,
            Currency::EUR,
            "tok_visa",
        )
        .await
        .unwrap_err();
        assert_eq!(late.error, TaskError::OrderCancelled);
        assert_eq!(provider.attempts(&never_charged), 0);
        assert_eq!(
            events.detail_types(),
            ["PaymentCaptured", "PaymentRefunded"]
        );
    }

    #[tokio::test]
    async fn a_compensation_after_authorization_voids_it_and_a_late_capture_is_refused() {
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let provider = sandbox();
        let methods = Methods::default();
        let service = payments(&ledger, &provider, &events, &methods);
        let order = OrderId::generate();
        methods.pay(&order, "tok_visa");
        let held = service
            .authorize(&order, "c", 800, Currency::EUR)
            .await
            .unwrap();
        assert_eq!(
            service
                .authorize(&order, "c", 800, Currency::EUR)
                .await
                .unwrap(),
            held,
            "a redelivered authorization is the first one"
        );
        assert_eq!(provider.open_authorizations(&order), 1);
        assert_eq!(provider.net_captured(&order), 0);
        assert_eq!(
            service.refund(&order, "c").await.unwrap(),
            LedgerStatus::Voided
        );
        assert_eq!(provider.open_authorizations(&order), 0);
        let late = service.capture(&order, "c").await.unwrap_err();
        assert_eq!(late.error, TaskError::OrderCancelled);
        assert!(
            provider.books().is_empty(),
            "never captured, never refunded"
        );
        assert!(
            events.detail_types().is_empty(),
            "{:?}",
            events.detail_types()
        );
        let never = OrderId::generate();
        let refused = service.capture(&never, "c").await.unwrap_err();
        assert_eq!(refused.error, TaskError::PaymentRefused);
    }

    /// Holds a charge at the provider's door until the test lets it through.
    struct HeldAtTheDoor<'a> {
        inner: &'a SandboxProvider,
        arrived: tokio::sync::Notify,
        let_through: tokio::sync::Notify,
    }

    #[async_trait]
    impl PaymentProvider for HeldAtTheDoor<'_> {
        async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError> {
            self.arrived.notify_one();
            self.let_through.notified().await;
            self.inner.authorize(request).await
        }

        async fn capture(&self, id: &str, request: &ChargeRequest) -> Result<(), ProviderError> {
            self.inner.capture(id, request).await
        }

        async fn release(
            &self,
            id: Option<&str>,
            request: &ChargeRequest,
        ) -> Result<Released, ProviderError> {
            self.inner.release(id, request).await
        }
    }

    #[tokio::test]
    async fn an_authorization_that_loses_its_race_with_a_compensation_is_voided() {
        // GIVEN a charge that reached the provider, which has not authorized yet
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let sandbox = sandbox();
        let door = HeldAtTheDoor {
            inner: &sandbox,
            arrived: tokio::sync::Notify::new(),
            let_through: tokio::sync::Notify::new(),
        };
        let methods = Methods::default();
        let service = payments(&ledger, &door, &events, &methods);
        let order = OrderId::generate();
        let charge = charge(
            &service,
            &methods,
            &order,
            "c",
            900,
            Currency::EUR,
            "tok_visa",
        );
        let compensate = async {
            door.arrived.notified().await;
            // WHEN the compensation runs first: the provider holds nothing to release
            let voided = service.refund(&order, "c").await.unwrap();
            door.let_through.notify_one();
            voided
        };
        let (charged, voided) = tokio::join!(charge, compensate);
        // THEN the authorization that lands afterwards is voided by the shop's code,
        // never captured
        assert_eq!(voided, LedgerStatus::Voided);
        assert_eq!(charged.unwrap_err().error, TaskError::OrderCancelled);
        assert!(sandbox.books().is_empty(), "{:?}", sandbox.books());
        assert_eq!(sandbox.open_authorizations(&order), 0);
        assert_eq!(sandbox.attempts(&order), 1);
    }

    /// The amounts of the `PaymentRefunded` events published so far.
    fn refunds_published(events: &FakeEvents) -> Vec<u64> {
        events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.detail_type == "PaymentRefunded")
            .map(|e| e.detail["amount"].as_u64().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn parts_are_refunded_once_per_reference_and_the_compensation_gives_back_the_rest() {
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let provider = sandbox();
        let methods = Methods::default();
        let service = payments(&ledger, &provider, &events, &methods);
        let order = OrderId::generate();
        charge(
            &service,
            &methods,
            &order,
            "c",
            1_000,
            Currency::EUR,
            "tok_visa",
        )
        .await
        .unwrap();
        let first = service
            .refund_part(&order, "c", 250, "RMA-1")
            .await
            .unwrap();
        assert_eq!(
            (first.amount, first.remaining, first.replayed),
            (250, 750, false)
        );
        let again = service
            .refund_part(&order, "c", 250, "RMA-1")
            .await
            .unwrap();
        assert_eq!(
            (again.remaining, again.replayed),
            (750, true),
            "once per reference"
        );
        for (amount, reference, why) in [
            (300, "RMA-1", "the reference gave back 250"),
            (751, "RMA-2", "more than is left"),
        ] {
            let refused = service
                .refund_part(&order, "c", amount, reference)
                .await
                .unwrap_err();
            assert_eq!(refused.error, TaskError::PaymentRefused, "{why}");
        }
        assert_eq!(provider.net_captured(&order), 750);
        // The compensation gives back what is left, and says so.
        assert_eq!(
            service.refund(&order, "c").await.unwrap(),
            LedgerStatus::Refunded
        );
        assert_eq!(provider.net_captured(&order), 0);
        assert_eq!(refunds_published(&events), [250, 750]);
        let after = service
            .refund_part(&order, "c", 1, "RMA-3")
            .await
            .unwrap_err();
        assert_eq!(after.error, TaskError::PaymentRefused);
    }

    #[tokio::test]
    async fn the_part_that_leaves_nothing_refunds_the_payment_and_nothing_is_refunded_uncaptured() {
        let (ledger, events) = (FakeLedger::default(), FakeEvents::default());
        let provider = sandbox();
        let methods = Methods::default();
        let service = payments(&ledger, &provider, &events, &methods);
        let held = OrderId::generate();
        methods.pay(&held, "tok_visa");
        service
            .authorize(&held, "c", 400, Currency::EUR)
            .await
            .unwrap();
        let uncaptured = service
            .refund_part(&held, "c", 100, "R1")
            .await
            .unwrap_err();
        assert_eq!(uncaptured.error, TaskError::PaymentRefused, "{uncaptured}");
        let unknown = service
            .refund_part(&OrderId::generate(), "c", 100, "R1")
            .await
            .unwrap_err();
        assert_eq!(unknown.error, TaskError::PaymentRefused);

        let order = OrderId::generate();
        charge(
            &service,
            &methods,
            &order,
            "c",
            400,
            Currency::EUR,
            "tok_visa",
        )
        .await
        .unwrap();
        service.refund_part(&order, "c", 150, "R1").await.unwrap();
        let last = service.refund_part(&order, "c", 250, "R2").await.unwrap();
        assert_eq!(last.remaining, 0);
        let record = ledger.get(&order).await.unwrap().unwrap();
        assert_eq!(record.status, LedgerStatus::Refunded);
        assert_eq!(record.refunded(), 400);
        // A compensation afterwards gives back nothing more.
        assert_eq!(
            service.refund(&order, "c").await.unwrap(),
            LedgerStatus::Refunded
        );
        assert_eq!(provider.net_captured(&order), 0);
        assert_eq!(refunds_published(&events), [150, 250]);
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
        let first = provider.authorize(&request("charge-a")).await.unwrap();
        assert_eq!(
            provider.authorize(&request("charge-a")).await.unwrap(),
            first
        );
        assert_eq!(
            provider.net_captured(&order),
            0,
            "an authorization takes nothing"
        );
        provider
            .capture(first.payment_id(), &request("charge-a"))
            .await
            .unwrap();
        provider
            .capture(first.payment_id(), &request("charge-a"))
            .await
            .unwrap();
        let second = provider.authorize(&request("charge-b")).await.unwrap();
        provider
            .capture(second.payment_id(), &request("charge-b"))
            .await
            .unwrap();
        assert_eq!(provider.net_captured(&order), 500, "two keys, two captures");
        for _ in 0..2 {
            let released = provider.release(None, &request("charge-a")).await;
            assert_eq!(released, Ok(Released::Refunded));
        }
        assert_eq!(provider.net_captured(&order), 250, "refunded once");
        let never = provider.release(None, &request("charge-never")).await;
        assert_eq!(never, Ok(Released::Voided));
        assert_eq!(provider.books().len(), 3);
        // A voided authorization is never captured.
        let held = provider.authorize(&request("charge-c")).await.unwrap();
        assert_eq!(provider.open_authorizations(&order), 1);
        let voided = provider
            .release(Some(held.payment_id()), &request("charge-c"))
            .await;
        assert_eq!(voided, Ok(Released::Voided));
        assert_eq!(provider.open_authorizations(&order), 0);
        assert!(matches!(
            provider
                .capture(held.payment_id(), &request("charge-c"))
                .await,
            Err(ProviderError::Refused(_))
        ));
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
        let answer = provider.authorize(&request).await;
        assert!(
            matches!(answer, Err(ProviderError::Timeout(_))),
            "{answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered at the 10 ms deadline"
        );
        assert_eq!(
            provider.open_authorizations(&order),
            1,
            "authorized at the provider all the same"
        );
        let quick = sandbox().with_latency(Some(Latency {
            p50: Duration::from_millis(2),
            p99: Duration::from_millis(4),
        }));
        assert!(quick.authorize(&request).await.is_ok());
    }
}
