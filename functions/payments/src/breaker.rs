//! The payment provider behind a circuit breaker: after repeated transient failures
//! the function stops calling the provider for a cool-down and fails fast with a
//! transient error, which the saga retries with backoff; then one probe decides.

use async_trait::async_trait;
use circuit_breaker::{CircuitBreaker, Clock, Config, State, SystemClock};
use shop_domain::payment::{
    Authentication, Authorization, ChargeRequest, PartRefund, ProviderError, Released,
};
use shop_domain::ports::PaymentProvider;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

fn report(from: State, to: State) {
    tracing::warn!(
        from = from.as_str(),
        to = to.as_str(),
        "payment provider circuit changed state"
    );
    observability::emit(
        observability::Metric::PaymentCircuitStateChanges,
        1.0,
        &[to.as_str()],
    );
}

/// A provider guarded by a breaker. Only transient failures and timeouts count
/// against the provider; a decline is a healthy answer.
pub struct GuardedProvider<C: Clock = SystemClock> {
    inner: Arc<dyn PaymentProvider>,
    breaker: CircuitBreaker<C>,
}

impl GuardedProvider<SystemClock> {
    /// Guards `inner` with a breaker configured by `config`.
    pub fn new(inner: Arc<dyn PaymentProvider>, config: Config) -> Self {
        Self::with_clock(inner, config, SystemClock)
    }
}

impl<C: Clock> GuardedProvider<C> {
    /// Guards `inner` with a breaker on the given clock.
    pub fn with_clock(inner: Arc<dyn PaymentProvider>, config: Config, clock: C) -> Self {
        Self {
            inner,
            breaker: CircuitBreaker::new(config, clock, Box::new(report)),
        }
    }

    /// The breaker's state.
    pub fn state(&self) -> State {
        self.breaker.state()
    }

    fn observe<T>(&self, result: &Result<T, ProviderError>) {
        match result {
            Err(ProviderError::Transient(_) | ProviderError::Timeout(_)) => {
                self.breaker.on_failure()
            }
            _ => self.breaker.on_success(),
        }
    }

    /// The answer while the circuit is open, counted per call
    /// (`PaymentCircuitRejections`), so "open for minutes" is a metric an alarm can
    /// watch: rejections in every minute of a few while charges keep coming.
    fn open() -> ProviderError {
        observability::emit(observability::Metric::PaymentCircuitRejections, 1.0, &[]);
        ProviderError::Transient(
            "circuit open: provider calls paused after repeated failures".into(),
        )
    }
}

/// The guarded provider as one invocation uses it: no call outlives `until`. A call
/// cut short answers [`ProviderError::Timeout`], counted by the breaker like any slow
/// answer, so the saga retries it with the same idempotency key.
pub struct Bounded<'a, C: Clock = SystemClock> {
    guarded: &'a GuardedProvider<C>,
    until: SystemTime,
}

impl<C: Clock> GuardedProvider<C> {
    /// The provider for an invocation whose provider calls must end by `until`.
    pub fn until(&self, until: SystemTime) -> Bounded<'_, C> {
        Bounded {
            guarded: self,
            until,
        }
    }
}

impl<C: Clock> Bounded<'_, C> {
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        if !self.guarded.breaker.allow() {
            return Err(GuardedProvider::<C>::open());
        }
        let left = self
            .until
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let result = tokio::time::timeout(left, call)
            .await
            .unwrap_or(Err(ProviderError::Timeout(left)));
        self.guarded.observe(&result);
        result
    }
}

#[async_trait]
impl<C: Clock> PaymentProvider for Bounded<'_, C> {
    async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError> {
        self.call(self.guarded.inner.authorize(request)).await
    }

    async fn authentication(&self, payment_id: &str) -> Result<Authentication, ProviderError> {
        self.call(self.guarded.inner.authentication(payment_id))
            .await
    }

    async fn capture(&self, id: &str, request: &ChargeRequest) -> Result<(), ProviderError> {
        self.call(self.guarded.inner.capture(id, request)).await
    }

    async fn release(
        &self,
        id: Option<&str>,
        request: &ChargeRequest,
    ) -> Result<Released, ProviderError> {
        self.call(self.guarded.inner.release(id, request)).await
    }

    async fn refund_part(&self, id: &str, part: &PartRefund) -> Result<(), ProviderError> {
        self.call(self.guarded.inner.refund_part(id, part)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_domain::Currency;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    /// A deadline no test call reaches.
    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(60)
    }

    #[derive(Clone)]
    struct FakeClock(Arc<Mutex<Instant>>);
    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    /// Fails transiently while `down` is set; counts calls.
    struct Flaky {
        down: Mutex<bool>,
        calls: AtomicU32,
    }

    #[async_trait]
    impl PaymentProvider for Flaky {
        async fn authorize(&self, _: &ChargeRequest) -> Result<Authorization, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if *self.down.lock().unwrap() {
                Err(ProviderError::Transient("503".into()))
            } else {
                Ok(Authorization::Held("pi_1".into()))
            }
        }
        async fn capture(&self, _: &str, _: &ChargeRequest) -> Result<(), ProviderError> {
            Ok(())
        }
        async fn release(
            &self,
            _: Option<&str>,
            _: &ChargeRequest,
        ) -> Result<Released, ProviderError> {
            Ok(Released::Voided)
        }
    }

    fn request() -> ChargeRequest {
        let order_id = shop_domain::OrderId::generate();
        ChargeRequest {
            idempotency_key: shop_domain::payment::charge_key(&order_id),
            order_id,
            amount: 100,
            currency: Currency::EUR,
            payment_token: "tok".into(),
        }
    }

    #[tokio::test]
    async fn stops_calling_a_failing_provider_then_probes_and_recovers() {
        let flaky = Arc::new(Flaky {
            down: Mutex::new(true),
            calls: AtomicU32::new(0),
        });
        let clock = FakeClock(Arc::new(Mutex::new(Instant::now())));
        let config = Config {
            failure_threshold: 3,
            failure_percent: 50,
            window: Duration::from_secs(30),
            cool_down: Duration::from_secs(20),
        };
        let guarded = GuardedProvider::with_clock(flaky.clone(), config, clock.clone());
        for _ in 0..3 {
            assert!(guarded.until(later()).authorize(&request()).await.is_err());
        }
        // Open: fails fast without calling the provider.
        let err = guarded
            .until(later())
            .authorize(&request())
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Transient(ref m) if m.contains("circuit open")));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        // After the cool-down a probe goes through and closes the breaker.
        *flaky.down.lock().unwrap() = false;
        *clock.0.lock().unwrap() += Duration::from_secs(20);
        assert_eq!(
            guarded.until(later()).authorize(&request()).await.unwrap(),
            Authorization::Held("pi_1".into())
        );
        assert_eq!(guarded.state(), State::Closed);
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn no_call_outlives_the_invocation_deadline() {
        // GIVEN a provider that answers after 10 s and an invocation with 50 ms left
        struct Slow;
        #[async_trait]
        impl PaymentProvider for Slow {
            async fn authorize(&self, _: &ChargeRequest) -> Result<Authorization, ProviderError> {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(Authorization::Held("pi_late".into()))
            }
            async fn capture(&self, _: &str, _: &ChargeRequest) -> Result<(), ProviderError> {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            }
            async fn release(
                &self,
                _: Option<&str>,
                _: &ChargeRequest,
            ) -> Result<Released, ProviderError> {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(Released::Refunded)
            }
        }
        let guarded =
            GuardedProvider::new(Arc::new(Slow), crate::tests::config(&[]).unwrap().breaker);
        let bounded = guarded.until(SystemTime::now() + Duration::from_millis(50));
        // WHEN it authorizes and releases
        let started = Instant::now();
        let charge = bounded.authorize(&request()).await;
        let refund = bounded.release(None, &request()).await;
        // THEN both answer a timeout at the deadline, not the provider's 10 s
        assert!(
            matches!(charge, Err(ProviderError::Timeout(_))),
            "{charge:?}"
        );
        assert!(
            matches!(refund, Err(ProviderError::Timeout(_))),
            "{refund:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_outage_reaches_the_provider_at_most_environments_times_threshold_per_window() {
        // GIVEN the template's breaker (5 failures in 30 s) in each of 1, 2 and 4
        // execution environments (PaymentsConcurrency), and a provider that is down
        for environments in [1u32, 2, 4] {
            let flaky = Arc::new(Flaky {
                down: Mutex::new(true),
                calls: AtomicU32::new(0),
            });
            let config = crate::tests::config(&[]).unwrap().breaker;
            let clock = FakeClock(Arc::new(Mutex::new(Instant::now())));
            let guarded: Vec<_> = (0..environments)
                .map(|_| GuardedProvider::with_clock(flaky.clone(), config, clock.clone()))
                .collect();
            // WHEN 100 charges per environment arrive within the window
            for _ in 0..100 {
                for environment in &guarded {
                    let _ = environment.until(later()).authorize(&request()).await;
                }
            }
            // THEN the provider saw exactly environments x 5 of them, and every
            // breaker is open
            assert_eq!(
                flaky.calls.load(Ordering::SeqCst),
                environments * config.failure_threshold
            );
            assert!(guarded.iter().all(|g| g.state() == State::Open));
        }
    }
}
