//! The long chaos run behind `scripts/chaos.sh`: the scenario of the chaos test with
//! as many orders as asked (10,000 by default), then the table of orders, faults by
//! kind and violations. Exits non-zero when an invariant is broken.

use clap::Parser;
use e2e::chaos::{ChaosConfig, ChaosReport, quiet_injected_panics, run};
use std::time::Duration;

/// Drives many orders through the saga on moto while injecting faults.
#[derive(Parser)]
struct Args {
    /// Orders to place.
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// Seed for the requests and the fault plan (printed; pass it to replay a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Orders in flight at once, per stack.
    #[arg(long, default_value_t = 25)]
    in_flight: usize,
    /// Stacks run side by side, each on its own emulator with seed `seed + i` and
    /// its share of the orders: one emulator is one Python process, so a second one
    /// uses the second core.
    #[arg(long, default_value_t = 1)]
    stacks: u64,
    /// Probability of each kind of fault per order.
    #[arg(long, default_value_t = 0.06)]
    fault_rate: f64,
    /// Minutes the system may take to become quiet after the last order.
    #[arg(long, default_value_t = 15)]
    quiet_minutes: u64,
    /// Pay through the Stripe adapter against the wrapped localstripe (with Stripe's
    /// latency and injected 429/5xx) instead of the sandbox.
    #[arg(long)]
    stripe: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    quiet_injected_panics();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    });
    eprintln!(
        "chaos seed {seed}: {} orders on {} stack(s)",
        args.orders, args.stacks
    );
    let stacks = args.stacks.max(1);
    let configs: Vec<ChaosConfig> = (0..stacks)
        .map(|i| ChaosConfig {
            seed: seed + i,
            orders: args.orders / stacks as usize
                + usize::from((i as usize) < args.orders % stacks as usize),
            in_flight: args.in_flight,
            fault_rate: args.fault_rate,
            quiet_within: Duration::from_secs(args.quiet_minutes * 60),
            stripe: args.stripe,
        })
        .collect();
    let reports = futures::future::join_all(configs.iter().map(run)).await;
    let Some(report) = ChaosReport::merge(reports) else {
        return;
    };
    println!("{}", report.table());
    if !report.violations.is_empty() || !report.refused.is_empty() {
        std::process::exit(1);
    }
}
