//! Invariants under injected faults: a few hundred orders through the real saga on
//! moto with crashes, duplicate deliveries, a hung worker, provider and PutEvents
//! failures, a poison message and operator replays, then every invariant checked for
//! every order. `scripts/chaos.sh` runs the same scenario with 10,000 orders. Part of
//! the saga test binary so it runs beside the other saga tests, not after them.

use e2e::chaos::{ChaosConfig, Fault, quiet_injected_panics, run};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_invariant_holds_for_every_order_under_random_faults() {
    quiet_injected_panics();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261122);
    println!("chaos seed {seed} (set CHAOS_SEED to replay another)");
    let report = run(&ChaosConfig {
        seed,
        orders: 200,
        in_flight: 20,
        fault_rate: 0.06,
        quiet_within: Duration::from_secs(240),
        stripe: false,
    })
    .await;
    println!("{}", report.table());

    assert!(
        report.refused.is_empty(),
        "valid orders refused: {:?}",
        report.refused
    );
    assert_eq!(report.accepted, 200);
    assert!(report.violations.is_empty(), "{}", report.table());
    // The run must really have exercised the system: most kinds of fault fired, and
    // both outcomes and the operator's replay happened.
    let kinds = Fault::ALL
        .iter()
        .filter(|f| report.faults.get(f).copied().unwrap_or(0) > 0)
        .count();
    assert!(
        kinds >= 10,
        "only {kinds} kinds of fault fired: {:?}",
        report.faults
    );
    assert!(report.outcomes.get("CONFIRMED").copied().unwrap_or(0) > 100);
    assert!(report.outcomes.keys().any(|k| k.starts_with("CANCELLED")));
    assert!(report.events_checked > 400);
    let stranded = report
        .faults
        .get(&Fault::CrashBeforeEnqueue)
        .copied()
        .unwrap_or(0);
    assert!(stranded > 0, "no order was stranded before intake");
    assert_eq!(
        report
            .outcomes
            .get("CANCELLED (intake-never-started)")
            .copied()
            .unwrap_or(0) as u64,
        stranded,
        "every stranded order, and only those, was swept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_invariant_holds_paying_through_stripe_under_random_faults() {
    // The same scenario, smaller, through the Stripe adapter against the wrapped
    // localstripe: Stripe's latency past the provider deadline (timeouts retried
    // under their keys), a 429, 500 or 503 every two seconds, its declining card; the
    // money counted in Stripe's own PaymentIntents and refunds.
    quiet_injected_panics();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261203);
    println!("Stripe chaos seed {seed} (set CHAOS_SEED to replay another)");
    let report = run(&ChaosConfig {
        seed,
        orders: 80,
        in_flight: 16,
        fault_rate: 0.06,
        quiet_within: Duration::from_secs(240),
        stripe: true,
    })
    .await;
    println!("{}", report.table());
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.accepted, 80);
    assert!(report.violations.is_empty(), "{}", report.table());
    assert!(report.outcomes.get("CONFIRMED").copied().unwrap_or(0) > 40);
    assert!(
        report
            .outcomes
            .keys()
            .any(|k| k.starts_with("CANCELLED (PaymentDeclined")),
        "{:?}",
        report.outcomes
    );
    assert!(
        report
            .operator
            .get("Stripe 429/5xx injected")
            .copied()
            .unwrap_or(0)
            > 10
    );
}
