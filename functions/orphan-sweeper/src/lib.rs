//! The orphan sweep, run on a schedule: finds orders stored as pending whose saga
//! never started (the orders API stopped between storing and enqueueing them),
//! cancels them and announces it. See `shop_domain::orphans` for why they are
//! cancelled rather than resumed.
#![warn(missing_docs)]

use serde::Serialize;
use shop_aws::ConfigError;
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

/// The sweeper's settings or an adapter are wrong; the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A required variable is missing.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `ORPHAN_AFTER_SECONDS` is not a whole number of seconds of at least 60.
    #[error("ORPHAN_AFTER_SECONDS must be a whole number of seconds >= 60, got {0:?}")]
    OrphanAfter(String),
}

/// The sweeper with its ports.
pub struct OrphanSweeper {
    pending: Arc<dyn PendingOrders>,
    orders: Arc<dyn OrderStore>,
    runs: Arc<dyn SagaRuns>,
    events: Arc<dyn EventPublisher>,
    after: Duration,
}

impl OrphanSweeper {
    /// Wires the sweeper to its ports; orders pending longer than `after` with no
    /// saga are cancelled.
    pub fn new(
        pending: Arc<dyn PendingOrders>,
        orders: Arc<dyn OrderStore>,
        runs: Arc<dyn SagaRuns>,
        events: Arc<dyn EventPublisher>,
        after: Duration,
    ) -> Self {
        Self {
            pending,
            orders,
            runs,
            events,
            after,
        }
    }

    /// Builds the AWS adapters from the function's environment.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, InitError> {
        let sdk = &shop_aws::for_function(sdk, "orphan-sweeper");
        let after = match env("ORPHAN_AFTER_SECONDS") {
            None => DEFAULT_ORPHAN_AFTER_SECONDS,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|s| *s >= 60)
                .ok_or(InitError::OrphanAfter(text))?,
        };
        let store = Arc::new(shop_aws::orders::DynamoOrderStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            shop_aws::required(env, "ORDERS_TABLE")?,
        ));
        Ok(Self::new(
            store.clone(),
            store,
            Arc::new(shop_aws::saga::SfnSagaStarter::new(
                aws_sdk_sfn::Client::new(sdk),
                shop_aws::required(env, "STATE_MACHINE_ARN")?,
            )),
            Arc::new(shop_aws::events::EventBridgePublisher::from_env(sdk, env)?),
            Duration::from_secs(after),
        ))
    }

    /// One scheduled run. The schedule's event carries nothing the sweep needs. A
    /// failure is returned so the invocation counts as an error (and alarms); what
    /// was done before it stays done, and the next run picks up the rest.
    pub async fn handle(&self) -> Result<SweepSummary, PortError> {
        let report = OrphanSweep {
            pending: self.pending.as_ref(),
            orders: self.orders.as_ref(),
            runs: self.runs.as_ref(),
            events: self.events.as_ref(),
        }
        .sweep(
            &cutoff(self.after),
            SWEEP_LIMIT,
            &shop_domain::now_rfc3339(),
        )
        .await?;
        for order_id in &report.cancelled {
            tracing::warn!(order_id = %order_id, "cancelled an order no saga ever started");
        }
        if !report.cancelled.is_empty() {
            observability::emit(
                observability::Metric::OrdersOrphaned,
                report.cancelled.len() as f64,
                &["orders"],
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
        let sweeper = OrphanSweeper::new(
            pending,
            orders.clone(),
            Arc::new(FakeRuns::default()),
            events.clone(),
            Duration::from_secs(900),
        );
        let summary = sweeper.handle().await.unwrap();
        assert_eq!(summary.cancelled, [old.order_id.as_str()]);
        assert_eq!(summary.examined, 1);
        let status = |id| orders.0.lock().unwrap()[id].status;
        assert_eq!(status(&old.order_id), OrderStatus::Cancelled);
        assert_eq!(status(&fresh.order_id), OrderStatus::Pending);
        assert_eq!(events.detail_types(), ["OrderCancelled"]);
    }

    #[test]
    fn refuses_an_orphan_age_below_a_minute() {
        let sdk = aws_config::SdkConfig::builder().build();
        let env = |name: &str| match name {
            "ORPHAN_AFTER_SECONDS" => Some("5".to_owned()),
            _ => Some("x".to_owned()),
        };
        assert!(matches!(
            OrphanSweeper::from_env(&sdk, &env),
            Err(InitError::OrphanAfter(v)) if v == "5"
        ));
    }
}
