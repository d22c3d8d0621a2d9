//! A circuit breaker for calls to a dependency that can fail for a while (a payment
//! provider). When, within `window`, at least `failure_threshold` calls failed and
//! they are at least `failure_percent` of the calls, it opens: calls fail fast for
//! `cool_down`, so a struggling dependency is not hammered and callers retry later
//! with their own backoff. Then one probe call is let through (half-open): its
//! success closes the breaker, its failure opens it again.
//!
//! The rate matters as much as the count: at a hundred charges a second, five
//! timeouts in thirty seconds are a healthy provider's noise, and a breaker that
//! opened on them would refuse every shopper for a cool-down; a few cards that never
//! answer among many that do must not stop the others either.
//!
//! The state lives in one process (one Lambda instance); time comes from a [`Clock`]
//! so tests drive it without sleeping.
#![warn(missing_docs)]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Failures within `window` that open the breaker (with the rate below).
    pub failure_threshold: u32,
    /// Share of the calls within `window`, in percent, that must have failed too.
    pub failure_percent: u8,
    /// How far back failures count.
    pub window: Duration,
    /// How long the breaker stays open before a probe.
    pub cool_down: Duration,
}

/// The breaker's state, as reported on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls flow.
    Closed,
    /// Calls fail fast.
    Open,
    /// One probe call is in flight.
    HalfOpen,
}

impl State {
    /// Name for logs and metric dimensions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    /// The outcomes within the window, oldest first (when, and whether it failed),
    /// and how many of them failed, kept as they come and go rather than counted on
    /// every call.
    Closed {
        outcomes: VecDeque<(Instant, bool)>,
        failures: usize,
    },
    Open {
        until: Instant,
    },
    /// A probe went out at `since`. A probe that never reports (its caller panicked
    /// or was cancelled) must not hold the breaker half-open for ever: after one more
    /// cool-down the next call becomes the probe.
    HalfOpen {
        since: Instant,
    },
}

impl Inner {
    fn closed() -> Self {
        Self::Closed {
            outcomes: VecDeque::new(),
            failures: 0,
        }
    }

    fn state(&self) -> State {
        match self {
            Self::Closed { .. } => State::Closed,
            Self::Open { .. } => State::Open,
            Self::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

/// Called with (from, to) on every state change.
pub type Observer = Box<dyn Fn(State, State) + Send + Sync>;

/// The breaker.
pub struct CircuitBreaker<C: Clock = SystemClock> {
    config: Config,
    clock: C,
    inner: Mutex<Inner>,
    observer: Observer,
}

impl<C: Clock> CircuitBreaker<C> {
    /// A closed breaker; `observer` hears every state change (for logs and metrics).
    pub fn new(config: Config, clock: C, observer: Observer) -> Self {
        Self {
            config,
            clock,
            inner: Mutex::new(Inner::closed()),
            observer,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.lock().state()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn change(&self, inner: &mut Inner, next: Inner) {
        let (from, to) = (inner.state(), next.state());
        *inner = next;
        if from != to {
            (self.observer)(from, to);
        }
    }

    /// Whether a call may go out now. In the open state, the first call after the
    /// cool-down is the probe and is allowed; others fail fast until it reports.
    pub fn allow(&self) -> bool {
        let now = self.clock.now();
        let mut inner = self.lock();
        match &*inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } if now >= *until => {
                self.change(&mut inner, Inner::HalfOpen { since: now });
                true
            }
            Inner::HalfOpen { since } if now.duration_since(*since) >= self.config.cool_down => {
                *inner = Inner::HalfOpen { since: now };
                true
            }
            Inner::Open { .. } | Inner::HalfOpen { .. } => false,
        }
    }

    /// Reports a call that succeeded.
    pub fn on_success(&self) {
        self.record(false);
    }

    /// Reports a call that failed in a way that says the dependency is unhealthy.
    pub fn on_failure(&self) {
        self.record(true);
    }

    fn record(&self, failed: bool) {
        let now = self.clock.now();
        let mut inner = self.lock();
        let open = Inner::Open {
            until: now + self.config.cool_down,
        };
        match &mut *inner {
            Inner::Closed { outcomes, failures } => {
                outcomes.push_back((now, failed));
                *failures += usize::from(failed);
                while let Some(&(at, old_failed)) = outcomes.front()
                    && now.duration_since(at) > self.config.window
                {
                    outcomes.pop_front();
                    *failures -= usize::from(old_failed);
                }
                let percent = *failures * 100 / outcomes.len();
                if failed
                    && *failures as u32 >= self.config.failure_threshold
                    && percent >= usize::from(self.config.failure_percent)
                {
                    self.change(&mut inner, open);
                }
            }
            Inner::HalfOpen { .. } if failed => self.change(&mut inner, open),
            Inner::HalfOpen { .. } => self.change(&mut inner, Inner::closed()),
            Inner::Open { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone)]
    struct FakeClock(Arc<Mutex<Instant>>);

    impl FakeClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    type Changes = Arc<Mutex<Vec<(State, State)>>>;

    fn breaker() -> (CircuitBreaker<FakeClock>, FakeClock, Changes) {
        let clock = FakeClock(Arc::new(Mutex::new(Instant::now())));
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = changes.clone();
        let config = Config {
            failure_threshold: 3,
            failure_percent: 50,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(30),
        };
        let b = CircuitBreaker::new(
            config,
            clock.clone(),
            Box::new(move |f, t| seen.lock().unwrap().push((f, t))),
        );
        (b, clock, changes)
    }

    #[test]
    fn opens_after_repeated_failures_then_probes_and_closes() {
        let (b, clock, changes) = breaker();
        // GIVEN three failures within the window
        for _ in 0..3 {
            assert!(b.allow());
            b.on_failure();
        }
        // THEN calls fail fast during the cool-down
        assert_eq!(b.state(), State::Open);
        assert!(!b.allow());
        clock.advance(Duration::from_secs(29));
        assert!(!b.allow());
        // WHEN the cool-down is over, one probe goes out and others still wait
        clock.advance(Duration::from_secs(1));
        assert!(b.allow());
        assert_eq!(b.state(), State::HalfOpen);
        assert!(!b.allow());
        // AND its success closes the breaker
        b.on_success();
        assert!(b.allow());
        assert_eq!(
            *changes.lock().unwrap(),
            [
                (State::Closed, State::Open),
                (State::Open, State::HalfOpen),
                (State::HalfOpen, State::Closed)
            ]
        );
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_a_full_cool_down() {
        let (b, clock, _) = breaker();
        for _ in 0..3 {
            b.on_failure();
        }
        clock.advance(Duration::from_secs(30));
        assert!(b.allow());
        b.on_failure();
        assert_eq!(b.state(), State::Open);
        clock.advance(Duration::from_secs(29));
        assert!(!b.allow());
        clock.advance(Duration::from_secs(1));
        assert!(b.allow());
    }

    #[test]
    fn a_probe_that_never_reports_gives_way_to_another_after_a_cool_down() {
        // Found by the chaos run: a worker that crashed during the probe left the
        // breaker half-open, failing every later call of that instance fast.
        let (b, clock, _) = breaker();
        for _ in 0..3 {
            b.on_failure();
        }
        clock.advance(Duration::from_secs(30));
        assert!(b.allow(), "the probe goes out, and its caller dies");
        clock.advance(Duration::from_secs(29));
        assert!(!b.allow());
        clock.advance(Duration::from_secs(1));
        assert!(b.allow(), "a new probe after one more cool-down");
        b.on_success();
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_open_it() {
        let (b, clock, changes) = breaker();
        for _ in 0..5 {
            b.on_failure();
            clock.advance(Duration::from_secs(6));
        }
        assert_eq!(b.state(), State::Closed);
        assert!(changes.lock().unwrap().is_empty());
    }

    #[test]
    fn failures_among_many_successes_do_not_open_it() {
        let (b, _, changes) = breaker();
        // GIVEN three failures, enough by count, among four successes (43 %)
        for failed in [false, true, false, true, false, false, true] {
            if failed {
                b.on_failure()
            } else {
                b.on_success()
            }
        }
        assert_eq!(b.state(), State::Closed);
        // WHEN failures become half the calls, it opens
        b.on_failure();
        assert_eq!(b.state(), State::Open);
        assert_eq!(*changes.lock().unwrap(), [(State::Closed, State::Open)]);
    }
}
