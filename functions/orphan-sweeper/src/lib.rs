//! The orphan sweep, run on a schedule: finds orders stored as pending whose saga
//! never started (the orders API stopped between storing and enqueueing them),
//! cancels them and announces it. See `shop_domain::orphans` for why they are
//! cancelled rather than resumed.
#![warn(missing_docs)]

use serde::Serialize;
use shop_aws::{ConfigError, Settings};
use shop_domain::orphans::{OrphanSweep, SweepReport, cutoff};
use shop_domain::ports::{EventPublisher, OrderStore, PendingOrders, PortError, SagaRuns};
use std::sync::Arc;
use std::time::Duration;

/// Orders examined per invocation; the rest wait for the next scheduled run, so one
/// invocation stays well inside its timeout whatever the backlog.
pub const SWEEP_LIMIT: usize = 200;

/// Default age, in seconds, after which a pending order with no saga is stranded.
pub const DEFAULT_ORPHAN_AFTER_SECONDS: u64 = 900;

/// What an invocation returns (and logs): the counts of the sweep.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    /// Orders listed as pending and older than the cutoff.
    pub examined: usize,
    /// Ids of the orders cancelled by this sweep.
    pub cancelled: Vec<String>,
    /// Pending orders whose saga exists and will move them.
    pub running: usize,
    /// Orders that were no longer pending and left the index.
    pub settled: usize,
}

impl From<SweepReport> for SweepSummary {
    fn from(r: SweepReport) -> Self {
        Self {
            examined: r.examined,
            cancelled: r
                .cancelled
                .iter()
                .map(|id| id.as_str().to_owned())
                .collect(),
            running: r.running,
            settled: r.settled,
        }
    }
}

/// What the function reads from its environment, parsed once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): what its failures are counted
    /// under ([`observability::Metric::FunctionFailures`]).
    pub function_name: String,
    /// `ORDERS_TABLE`: the orders and their pending index.
    pub orders_table: String,
    /// `STATE_MACHINE_ARN`: the saga whose executions tell a stranded order.
    pub state_machine_arn: String,
    /// `EVENT_BUS_NAME`: where the cancellations are announced.
    pub event_bus_name: String,
    /// `ORPHAN_AFTER_SECONDS` (default 900, at least 60): how long a pending order
    /// with no saga waits before it counts as stranded.
    pub orphan_after: Duration,
}

impl Config {
    /// Reads every setting, naming the first that is missing or malformed.
    pub fn from_env(env: Settings<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            function_name: env.function_name()?,
            orders_table: env.required("ORDERS_TABLE")?,
            state_machine_arn: env.required("STATE_MACHINE_ARN")?,
            event_bus_name: env.required("EVENT_BUS_NAME")?,
            orphan_after: Duration::from_secs(env.parsed(
                "ORPHAN_AFTER_SECONDS",
                DEFAULT_ORPHAN_AFTER_SECONDS,
                "a whole number of seconds of at least 60",
                |s| *s >= 60,
            )?),
        })
    }
}

/// The ports the sweeper works through. A test replaces one to inject a fault.
#[derive(Clone)]
pub struct Ports {
    /// The index of orders stored as pending.
    pub pending: Arc<dyn PendingOrders>,
    /// The orders, cancelled conditionally.
    pub orders: Arc<dyn OrderStore>,
    /// Whether an order's saga was ever started.
    pub runs: Arc<dyn SagaRuns>,
    /// Announces the cancellations.
    pub events: Arc<dyn EventPublisher>,
}

impl Ports {
    /// The AWS adapters, with clients built once.
    pub fn aws(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let sdk = &shop_aws::for_function(sdk, "orphan-sweeper");
        let store = Arc::new(shop_aws::orders::DynamoOrderStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            config.orders_table.clone(),
        ));
        Self {
            pending: store.clone(),
            orders: store,
            runs: Arc::new(shop_aws::saga::SfnSagaStarter::new(
                aws_sdk_sfn::Client::new(sdk),
                config.state_machine_arn.clone(),
            )),
            events: Arc::new(shop_aws::events::EventBridgePublisher::new(
                aws_sdk_eventbridge::Client::new(sdk),
                config.event_bus_name.clone(),
            )),
        }
    }
}

/// The sweeper with its ports.
pub struct OrphanSweeper {
    /// Lambda's name of the function, its failures are counted under.
    function_name: String,
    ports: Ports,
    after: Duration,
}

impl OrphanSweeper {
    /// Wires the sweeper to its ports; orders pending longer than the configured age
    /// with no saga are cancelled.
    pub fn new(config: &Config, ports: Ports) -> Self {
        Self {
            function_name: config.function_name.clone(),
            ports,
            after: config.orphan_after,
        }
    }

    /// One scheduled run. The schedule's event carries nothing the sweep needs. A
    /// failure is returned so the invocation counts as an error (and alarms); what
    /// was done before it stays done, and the next run picks up the rest.
    pub async fn handle(&self) -> Result<SweepSummary, PortError> {
        let report = OrphanSweep {
            pending: self.ports.pending.as_ref(),
            orders: self.ports.orders.as_ref(),
            runs: self.ports.runs.as_ref(),
            events: self.ports.events.as_ref(),
        }
        .sweep(
            &cutoff(self.after),
            SWEEP_LIMIT,
            &shop_domain::now_rfc3339(),
        )
        .await
        .inspect_err(|_| observability::count_failures(&self.function_name, 1))?;
        for order_id in &report.cancelled {
            tracing::warn!(order_id = %order_id, "cancelled an order no saga ever started");
        }
        if !report.cancelled.is_empty() {
            observability::emit(
                observability::Metric::OrdersOrphaned,
                report.cancelled.len() as f64,
                &[],
            );
        }
        let summary = SweepSummary::from(report);
        tracing::info!(
            examined = summary.examined,
            cancelled = summary.cancelled.len(),
            running = summary.running,
            settled = summary.settled,
            "sweep done"
        );
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_domain::OrderStatus;
    use shop_domain::fakes::{FakeEvents, FakeOrders, FakePendingIndex, FakeRuns, pending_order};

    fn sweep_config() -> Config {
        Config {
            function_name: "shop-OrphanSweeperFunction".into(),
            orders_table: "orders".into(),
            state_machine_arn: "saga".into(),
            event_bus_name: "bus".into(),
            orphan_after: Duration::from_secs(900),
        }
    }

    #[tokio::test]
    async fn a_run_cancels_only_orders_older_than_its_setting() {
        let orders = Arc::new(FakeOrders::default());
        let pending = Arc::new(FakePendingIndex::default());
        let mut old = pending_order("MUG", 1, 100);
        old.created_at = cutoff(Duration::from_secs(3600));
        let mut fresh = pending_order("MUG", 1, 100);
        fresh.created_at = shop_domain::now_rfc3339();
        for order in [&old, &fresh] {
            pending.add(order);
            orders.insert(order).await.unwrap();
        }
        let events = Arc::new(FakeEvents::default());
        let config = sweep_config();
        let sweeper = OrphanSweeper::new(
            &config,
            Ports {
                pending,
                orders: orders.clone(),
                runs: Arc::new(FakeRuns::default()),
                events: events.clone(),
            },
        );
        let summary = sweeper.handle().await.unwrap();
        assert_eq!(summary.cancelled, [old.order_id.as_str()]);
        assert_eq!(summary.examined, 1);
        let status = |id| orders.0.lock().unwrap()[id].status;
        assert_eq!(status(&old.order_id), OrderStatus::Cancelled);
        assert_eq!(status(&fresh.order_id), OrderStatus::Pending);
        assert_eq!(events.detail_types(), ["OrderCancelled"]);
    }

    #[tokio::test]
    async fn a_sweep_is_a_timer_invocation_with_no_parent() {
        use observability::traces::testing::{attribute, invoke, named};
        let config = sweep_config();
        let sweeper = OrphanSweeper::new(
            &config,
            Ports {
                pending: Arc::new(FakePendingIndex::default()),
                orders: Arc::new(FakeOrders::default()),
                runs: Arc::new(FakeRuns::default()),
                events: Arc::new(FakeEvents::default()),
            },
        );
        let (summary, spans) = invoke(
            "shop-OrphanSweeperFunction",
            serde_json::json!({"source": "aws.scheduler"}),
            |_| sweeper.handle(),
        )
        .await;
        assert_eq!(summary.unwrap().examined, 0);
        let invocation = named(&spans, "shop-OrphanSweeperFunction");
        assert_eq!(
            attribute(invocation, "faas.trigger").as_deref(),
            Some("timer")
        );
        assert_eq!(
            invocation.parent_span_id,
            opentelemetry::trace::SpanId::INVALID
        );
    }

    #[test]
    fn refuses_an_orphan_age_below_a_minute() {
        let env = |name: &str| match name {
            "ORPHAN_AFTER_SECONDS" => Some("5".to_owned()),
            _ => Some("x".to_owned()),
        };
        assert!(matches!(
            Config::from_env(Settings::new(&env)),
            Err(ConfigError::Invalid { name: "ORPHAN_AFTER_SECONDS", value, .. }) if value == "5"
        ));
    }
}
