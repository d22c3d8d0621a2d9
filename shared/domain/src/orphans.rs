//! Orders that were stored but never reached a saga. The orders API stores an order
//! and then hands it to intake; a crash or timeout between the two leaves a pending
//! order no saga will ever move. The caller was never told the order was accepted
//! (it got an error or no answer and retries with its idempotency key, which places a
//! fresh order), so the stranded one is cancelled, never resumed: resuming it could
//! charge a shopper twice for one purchase.

use crate::events::DomainEvent;
use crate::order::{OrderId, OrderStatus};
use crate::ports::{
    CancelOutcome, EventPublisher, OrderStore, PendingOrders, PortError, RunState, SagaRuns,
};

/// Cancellation reason of an order no saga ever started.
pub const ORPHAN_REASON: &str = "intake-never-started";

/// The creation time before which a pending order with no saga counts as stranded:
/// `after` before now, RFC 3339 like every stored timestamp so the two compare as text.
pub fn cutoff(after: std::time::Duration) -> String {
    crate::rfc3339(time::OffsetDateTime::now_utc() - after)
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Orders the pending index listed.
    pub examined: usize,
    /// Orders cancelled because no saga ever started for them.
    pub cancelled: Vec<OrderId>,
    /// Still pending, but their saga runs and will move them.
    pub running: usize,
    /// No longer pending, or left pending by a saga that ended (a failed
    /// compensation, which the compensation queue reports to operators); taken out of
    /// the index.
    pub settled: usize,
}

/// The ports a sweep needs.
pub struct OrphanSweep<'a> {
    /// The index of orders stored as pending.
    pub pending: &'a dyn PendingOrders,
    /// Order records.
    pub orders: &'a dyn OrderStore,
    /// Saga executions.
    pub runs: &'a dyn SagaRuns,
    /// The bus, for the cancellation event.
    pub events: &'a dyn EventPublisher,
}

impl OrphanSweep<'_> {
    /// Examines up to `limit` orders stored as pending before `cutoff` (RFC 3339).
    /// An order whose saga runs is left to it; one whose saga ended is the
    /// operators' (it leaves the index). One with no saga is cancelled with
    /// [`ORPHAN_REASON`] and an `OrderCancelled` event; it leaves the index only once
    /// that event is out, so a failed publish is retried by the next sweep. Orders no
    /// longer pending (a shopper cancelled one before its saga ran) leave the index.
    pub async fn sweep(
        &self,
        cutoff: &str,
        limit: usize,
        now: &str,
    ) -> Result<SweepReport, PortError> {
        let mut report = SweepReport::default();
        for order_id in self.pending.created_before(cutoff, limit).await? {
            report.examined += 1;
            let Some(order) = self.orders.get(&order_id).await? else {
                self.pending.forget(&order_id).await?;
                report.settled += 1;
                continue;
            };
            let orphan = match order.status {
                OrderStatus::Pending => match self.runs.run_state(&order_id).await? {
                    RunState::Running => {
                        report.running += 1;
                        continue;
                    }
                    RunState::Ended => None,
                    RunState::NeverStarted => {
                        match self
                            .orders
                            .cancel(&order_id, ORPHAN_REASON, now, None)
                            .await?
                        {
                            CancelOutcome::Cancelled(order) => Some(*order),
                            CancelOutcome::NotFound | CancelOutcome::NotCancellable(_) => None,
                        }
                    }
                },
                OrderStatus::Cancelled if order.cancel_reason() == Some(ORPHAN_REASON) => {
                    Some(order)
                }
                _ => None,
            };
            match orphan {
                Some(order) => {
                    self.events
                        .publish(&[DomainEvent::order_cancelled(&order, ORPHAN_REASON)])
                        .await?;
                    report.cancelled.push(order_id.clone());
                }
                None => report.settled += 1,
            }
            self.pending.forget(&order_id).await?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{FakeEvents, FakeOrders, FakePendingIndex, FakeRuns, pending_order};
    use crate::order::Order;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Fails its first publish, then behaves like [`FakeEvents`].
    #[derive(Default)]
    struct FlakyEvents {
        failed_once: AtomicBool,
        inner: FakeEvents,
    }

    #[async_trait]
    impl EventPublisher for FlakyEvents {
        async fn publish(&self, events: &[DomainEvent]) -> Result<(), PortError> {
            if !self.failed_once.swap(true, Ordering::SeqCst) {
                return Err(PortError::new("events.publish", "injected failure"));
            }
            self.inner.publish(events).await
        }
    }

    #[derive(Default)]
    struct World {
        orders: FakeOrders,
        pending: FakePendingIndex,
        runs: FakeRuns,
        events: FlakyEvents,
    }

    impl World {
        /// Orders stored as pending at the given times; publishing works from the start.
        fn with(created: &[&str]) -> (Self, Vec<OrderId>) {
            let world = World::default();
            world.events.failed_once.store(true, Ordering::SeqCst);
            let ids = created.iter().map(|at| world.store(at)).collect();
            (world, ids)
        }

        fn store(&self, created_at: &str) -> OrderId {
            let mut order = pending_order("MUG", 1, 100);
            order.created_at = created_at.into();
            self.pending.add(&order);
            let id = order.order_id.clone();
            self.orders.0.lock().unwrap().insert(id.clone(), order);
            id
        }

        async fn sweep(&self, cutoff: &str) -> Result<SweepReport, PortError> {
            OrphanSweep {
                pending: &self.pending,
                orders: &self.orders,
                runs: &self.runs,
                events: &self.events,
            }
            .sweep(cutoff, 100, "2026-11-22T12:00:00Z")
            .await
        }

        fn saga(&self, id: &OrderId, state: RunState) {
            self.runs.0.lock().unwrap().insert(id.clone(), state);
        }

        fn order(&self, id: &OrderId) -> Order {
            self.orders.0.lock().unwrap()[id].clone()
        }

        fn published(&self) -> Vec<DomainEvent> {
            self.events.inner.0.lock().unwrap().clone()
        }
    }

    const CUTOFF: &str = "2026-11-22T11:45:00Z";

    #[test]
    fn the_cutoff_is_the_given_age_before_now_in_the_stored_format() {
        let before = crate::now_rfc3339();
        let cutoff = cutoff(std::time::Duration::ZERO);
        assert!(
            before <= cutoff && cutoff <= crate::now_rfc3339(),
            "{cutoff}"
        );
        let hour_ago = super::cutoff(std::time::Duration::from_secs(3_600));
        assert_eq!(
            crate::normalize_timestamp(&hour_ago),
            Some(hour_ago.clone())
        );
        assert!(hour_ago < before, "{hour_ago} is before {before}");
    }

    #[tokio::test]
    async fn cancels_an_old_pending_order_with_no_saga_and_announces_it_once() {
        let (world, ids) = World::with(&["2026-11-22T10:00:00Z", "2026-11-22T11:59:00Z"]);
        let report = world.sweep(CUTOFF).await.unwrap();
        assert_eq!(report.examined, 1, "the younger order is not listed");
        assert_eq!(report.cancelled, [ids[0].clone()]);
        let old = world.order(&ids[0]);
        assert_eq!(old.status, OrderStatus::Cancelled);
        assert_eq!(old.cancel_reason(), Some(ORPHAN_REASON));
        assert_eq!(world.order(&ids[1]).status, OrderStatus::Pending);
        let published = world.published();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].detail_type, "OrderCancelled");
        assert_eq!(published[0].detail["reason"], ORPHAN_REASON);
        assert_eq!(published[0].detail["orderId"], ids[0].as_str());

        let again = world.sweep(CUTOFF).await.unwrap();
        assert_eq!(
            again,
            SweepReport::default(),
            "the cancelled order left the index"
        );
        assert_eq!(world.published().len(), 1);
    }

    #[tokio::test]
    async fn leaves_a_pending_order_whose_saga_runs_to_the_saga() {
        let (world, ids) = World::with(&["2026-11-22T10:00:00Z"]);
        world.saga(&ids[0], RunState::Running);
        let report = world.sweep(CUTOFF).await.unwrap();
        assert_eq!(report.running, 1);
        assert!(report.cancelled.is_empty());
        assert_eq!(world.order(&ids[0]).status, OrderStatus::Pending);
        assert_eq!(
            world.sweep(CUTOFF).await.unwrap().running,
            1,
            "still watched"
        );
    }

    #[tokio::test]
    async fn an_order_whose_saga_ended_is_left_as_it_is_and_leaves_the_index() {
        let (world, ids) = World::with(&["2026-11-22T10:00:00Z"]);
        world.saga(&ids[0], RunState::Ended);
        let report = world.sweep(CUTOFF).await.unwrap();
        assert_eq!(report.settled, 1);
        assert_eq!(
            world.order(&ids[0]).status,
            OrderStatus::Pending,
            "not cancelled"
        );
        assert!(world.published().is_empty());
        assert_eq!(world.sweep(CUTOFF).await.unwrap().examined, 0);
    }

    #[tokio::test]
    async fn forgets_orders_that_are_no_longer_pending_without_touching_them() {
        let (world, ids) = World::with(&["2026-11-22T10:00:00Z", "2026-11-22T10:01:00Z"]);
        {
            let mut orders = world.orders.0.lock().unwrap();
            orders.get_mut(&ids[0]).unwrap().status = OrderStatus::Confirmed;
            orders.remove(&ids[1]);
        }
        let report = world.sweep(CUTOFF).await.unwrap();
        assert_eq!(report.settled, 2);
        assert_eq!(world.order(&ids[0]).status, OrderStatus::Confirmed);
        assert!(world.published().is_empty());
        assert_eq!(world.sweep(CUTOFF).await.unwrap().examined, 0);
    }

    #[tokio::test]
    async fn an_order_the_shopper_cancelled_is_not_announced_as_stranded() {
        let (world, ids) = World::with(&["2026-11-22T10:00:00Z"]);
        world
            .orders
            .cancel(&ids[0], "CancelledByCustomer", "2026-11-22T10:05:00Z", None)
            .await
            .unwrap();
        let report = world.sweep(CUTOFF).await.unwrap();
        assert_eq!((report.settled, report.cancelled.len()), (1, 0));
        assert!(world.published().is_empty());
        assert_eq!(
            world.order(&ids[0]).cancel_reason(),
            Some("CancelledByCustomer")
        );
    }

    #[tokio::test]
    async fn a_failed_announcement_is_retried_by_the_next_sweep() {
        let world = World::default();
        let id = world.store("2026-11-22T10:00:00Z");
        assert!(world.sweep(CUTOFF).await.is_err());
        assert_eq!(world.order(&id).status, OrderStatus::Cancelled);
        assert!(world.published().is_empty());

        let report = world.sweep(CUTOFF).await.unwrap();
        assert_eq!(report.cancelled, [id]);
        assert_eq!(world.published().len(), 1);
    }
}
