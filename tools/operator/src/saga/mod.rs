//! `shop saga`: list executions, show one order's saga beside its data, redrive a
//! failed run, and work through the compensation queue.
//!
//! Step Functions' RedriveExecution re-runs the failed state. A run that ended in the
//! saga's `CompensationFailed` state (after escalating) would fail again there, and the
//! emulator has no RedriveExecution, so those runs restart under a new name
//! (`<orderId>-redrive-<n>`) with their last state and a `resume` field the state
//! machine's first state routes on: `compensate` (refund, release, cancel) or
//! `publish-confirmed`. The saga's tombstones and conditional updates make a repeated
//! step harmless.

mod compensations;
mod redrive;
mod timeline;

pub use compensations::{CompensationCase, compensations, replay_compensations};
pub use redrive::{RedriveOutcome, RedrivePlan, plan, redrive};
pub use timeline::Step;

use crate::stack::Ops;
use crate::{OpsError, aws};
use aws_sdk_sfn::types::ExecutionStatus;
use serde::Serialize;
use shop_aws::ledger::DynamoLedger;
use shop_aws::orders::DynamoOrderStore;
use shop_aws::saga::execution_arn;
use shop_aws::stock::{DynamoStockStore, Reservation, ReservationStatus};
use shop_domain::invariants::{OrderFacts, check_order};
use shop_domain::payment::LedgerRecord;
use shop_domain::ports::{OrderStore, PaymentLedger};
use shop_domain::{Order, OrderId};
use timeline::{failing_state, history, stamp, timeline};

/// The name a status has on the wire (`PAYMENT_PENDING`).
pub fn wire_name(status: &impl Serialize) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Where a saga execution stands, as Step Functions reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// In progress.
    Running,
    /// Finished.
    Succeeded,
    /// Failed (for this saga: a compensation kept failing, or an unexpected error).
    Failed,
    /// Hit the state machine's timeout.
    TimedOut,
    /// Stopped by someone.
    Aborted,
    /// Being redriven by Step Functions.
    PendingRedrive,
}

impl RunStatus {
    /// The name Step Functions gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
            Self::PendingRedrive => "PENDING_REDRIVE",
        }
    }

    fn from_sdk(status: &ExecutionStatus) -> Option<Self> {
        Some(match status {
            ExecutionStatus::Running => Self::Running,
            ExecutionStatus::Succeeded => Self::Succeeded,
            ExecutionStatus::Failed => Self::Failed,
            ExecutionStatus::TimedOut => Self::TimedOut,
            ExecutionStatus::Aborted => Self::Aborted,
            ExecutionStatus::PendingRedrive => Self::PendingRedrive,
            _ => return None,
        })
    }
}

/// One saga execution.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// Execution name (the order id, or `<orderId>-redrive-<n>`).
    pub name: String,
    /// Execution ARN.
    pub arn: String,
    /// The order it runs for.
    pub order_id: String,
    /// Where it stands.
    pub status: RunStatus,
    /// Start time.
    pub started: String,
    /// End time.
    pub stopped: Option<String>,
    /// Error name of a failed run.
    pub error: Option<String>,
    /// Cause of a failed run.
    pub cause: Option<String>,
    /// The state that failed (or, while running, the current state).
    pub state: Option<String>,
    #[serde(skip)]
    pub(super) input: Option<String>,
}

fn order_of(name: &str) -> String {
    name.split_once("-redrive-")
        .map_or(name, |(order, _)| order)
        .to_owned()
}

/// Describes one execution and folds its history; `None` if it does not exist. The
/// history of a succeeded run is read only when `timeline_wanted` (`list` needs
/// it only to name a failing or current state).
async fn execution(
    ops: &Ops,
    arn: &str,
    timeline_wanted: bool,
) -> Result<Option<(Execution, Vec<Step>)>, OpsError> {
    let out = match ops.sfn.describe_execution().execution_arn(arn).send().await {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_does_not_exist()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(aws("states:DescribeExecution")(e)),
    };
    let steps = if timeline_wanted || out.status != ExecutionStatus::Succeeded {
        timeline(&history(ops, arn).await?)
    } else {
        Vec::new()
    };
    let name = out.name.clone().unwrap_or_default();
    let state = match out.status {
        ExecutionStatus::Succeeded => None,
        ExecutionStatus::Running => steps.last().map(|s| s.state.clone()),
        _ => failing_state(&steps).map(|s| s.state.clone()),
    };
    Ok(Some((
        Execution {
            order_id: order_of(&name),
            name,
            arn: arn.to_owned(),
            status: RunStatus::from_sdk(&out.status).ok_or_else(|| OpsError::Aws {
                operation: "states:DescribeExecution",
                message: format!("unknown execution status {}", out.status.as_str()),
            })?,
            started: stamp(&out.start_date),
            stopped: out.stop_date.as_ref().map(stamp),
            error: out.error,
            cause: out.cause,
            state,
            input: out.input,
        },
        steps,
    )))
}

/// `shop saga list`: executions, newest first, optionally by status and start time.
pub async fn list(
    ops: &Ops,
    status: Option<RunStatus>,
    since: Option<time::OffsetDateTime>,
) -> Result<Vec<Execution>, OpsError> {
    let machine = ops.outputs.get("StateMachineArn")?;
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let out = ops
            .sfn
            .list_executions()
            .state_machine_arn(machine)
            .set_status_filter(status.map(|s| ExecutionStatus::from(s.as_str())))
            .set_next_token(token)
            .send()
            .await
            .map_err(aws("states:ListExecutions"))?;
        for e in &out.executions {
            let started = e.start_date().secs();
            if since.is_none_or(|s| started >= s.unix_timestamp()) {
                arns.push((started, e.execution_arn().to_owned()));
            }
        }
        token = out.next_token;
        if token.is_none() {
            break;
        }
    }
    arns.sort_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    for (_, arn) in arns {
        if let Some((e, _)) = execution(ops, &arn, false).await? {
            out.push(e);
        }
    }
    Ok(out)
}

/// One order's saga runs beside its order, reservation and ledger entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaReport {
    /// The order.
    pub order_id: String,
    /// Every run for the order, oldest first, with its timeline.
    pub runs: Vec<(Execution, Vec<Step>)>,
    /// The order as stored.
    pub order: Option<Order>,
    /// The stock reservation or its tombstone.
    pub reservation: Option<Reservation>,
    /// The ledger entry.
    pub ledger: Option<LedgerRecord>,
    /// Broken invariants; empty when the order is consistent.
    pub violations: Vec<String>,
}

/// The invariants one order's records can show (`shop_domain::invariants`), as an
/// operator reads them.
pub fn check_invariants(
    order: Option<&Order>,
    reservation: Option<&Reservation>,
    ledger: Option<&LedgerRecord>,
    running: bool,
) -> Vec<String> {
    check_order(&OrderFacts {
        order,
        stock_held: reservation.is_some_and(|r| r.status == ReservationStatus::Reserved),
        ledger: ledger.map(|l| l.status),
        refunded_in_parts: ledger.map_or(0, LedgerRecord::refunded),
        saga_running: running,
    })
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// `shop saga show`: every run of the order with its timeline, and the order's data.
pub async fn show(ops: &Ops, order_id: &str) -> Result<SagaReport, OpsError> {
    let id = OrderId::parse(order_id)
        .ok_or_else(|| OpsError::Refused(format!("{order_id:?} is not an order id (ord-…)")))?;
    let machine = ops.outputs.get("StateMachineArn")?;
    let mut runs = Vec::new();
    let mut name = order_id.to_owned();
    while let Some(run) = execution(ops, &execution_arn(machine, &name), true).await? {
        runs.push(run);
        name = format!("{order_id}-redrive-{}", runs.len());
    }
    let order = DynamoOrderStore::new(ops.dynamodb.clone(), ops.outputs.get("OrdersTableName")?)
        .get(&id)
        .await?;
    let reservation =
        DynamoStockStore::new(ops.dynamodb.clone(), ops.outputs.get("InventoryTableName")?)
            .reservation(&id)
            .await?;
    let ledger = DynamoLedger::new(ops.dynamodb.clone(), ops.outputs.get("PaymentsTableName")?)
        .get(&id)
        .await?;
    let running = runs.iter().any(|(e, _)| e.status == RunStatus::Running);
    let violations = check_invariants(
        order.as_ref(),
        reservation.as_ref(),
        ledger.as_ref(),
        running,
    );
    Ok(SagaReport {
        order_id: order_id.to_owned(),
        runs,
        order,
        reservation,
        ledger,
        violations,
    })
}

#[cfg(test)]
mod tests {
    use super::timeline::ESCALATE;
    use super::*;
    use serde_json::{Value, json};
    use shop_domain::OrderStatus;

    fn run(status: RunStatus, error: Option<&str>, state: Option<&str>, input: Value) -> Execution {
        Execution {
            name: "ord-x".into(),
            arn: "arn:aws:states:us-east-1:1:execution:m:ord-x".into(),
            order_id: "ord-x".into(),
            status,
            started: String::new(),
            stopped: None,
            error: error.map(str::to_owned),
            cause: None,
            state: state.map(str::to_owned),
            input: Some(input.to_string()),
        }
    }

    fn step(state: &str, input: Value) -> Step {
        Step {
            state: state.into(),
            entered: String::new(),
            duration_ms: Some(1),
            outcome: "ok".into(),
            error: None,
            retries: 0,
            input: Some(input.to_string()),
            entered_ms: 0,
            scheduled: 1,
            succeeded: true,
        }
    }

    fn report(runs: Vec<(Execution, Vec<Step>)>, status: Option<OrderStatus>) -> SagaReport {
        SagaReport {
            order_id: "ord-x".into(),
            runs,
            order: status.map(|s| Order {
                order_id: OrderId::parse("ord-00000000000000000000000000000000").unwrap(),
                customer_id: shop_domain::CustomerId("c".into()),
                lines: vec![],
                currency: shop_domain::Currency::EUR,
                total: 0,
                status: s,
                history: vec![],
                payment_token: String::new(),
                payment_action: None,
                correlation_id: String::new(),
                created_at: "2026-12-03T10:00:00.000Z".into(),
                express: false,
            }),
            reservation: None,
            ledger: None,
            violations: vec![],
        }
    }

    #[test]
    fn a_failed_compensation_resumes_compensating_from_the_escalated_state() {
        let state = json!({"orderId": "ord-x", "failure": {"Error": "PaymentDeclined"}, "compensationFailure": {"Error": "X"}});
        let r = report(
            vec![(
                run(
                    RunStatus::Failed,
                    Some("CompensationFailed"),
                    Some("ReleaseStock"),
                    json!({}),
                ),
                vec![step("ReleaseStock", json!({})), step(ESCALATE, state)],
            )],
            Some(OrderStatus::PaymentPending),
        );
        let RedrivePlan::Restart { name, input } = plan(&r) else {
            panic!("{:?}", plan(&r))
        };
        assert_eq!(name, "ord-x-redrive-1");
        assert_eq!(input["resume"], "compensate");
        assert_eq!(
            input["failure"]["Error"], "PaymentDeclined",
            "the original reason is kept"
        );
        assert!(input.get("compensationFailure").is_none());
    }

    #[test]
    fn a_failed_confirmation_publish_resumes_publishing() {
        let state = json!({"orderId": "ord-x", "payment": {"chargeId": "ch"}});
        let r = report(
            vec![(
                run(
                    RunStatus::Failed,
                    Some("CompensationFailed"),
                    Some("PublishOrderConfirmed"),
                    json!({}),
                ),
                vec![step(ESCALATE, state)],
            )],
            Some(OrderStatus::Confirmed),
        );
        let RedrivePlan::Restart { input, .. } = plan(&r) else {
            panic!()
        };
        assert_eq!(input["resume"], "publish-confirmed");
        assert_eq!(input["payment"]["chargeId"], "ch");
    }

    #[test]
    fn interrupted_runs_redrive_natively_and_fall_back_by_order_status() {
        let original = json!({"orderId": "ord-x", "lines": []});
        let cases = [
            (OrderStatus::Pending, None),
            (OrderStatus::Reserved, Some("compensate")),
            (OrderStatus::PaymentPending, Some("compensate")),
            (OrderStatus::PaymentActionRequired, Some("compensate")),
        ];
        for (status, resume) in cases {
            let r = report(
                vec![(
                    run(
                        RunStatus::Aborted,
                        None,
                        Some("AuthorizePayment"),
                        original.clone(),
                    ),
                    vec![],
                )],
                Some(status),
            );
            let RedrivePlan::Native { fallback, .. } = plan(&r) else {
                panic!()
            };
            let RedrivePlan::Restart { input, .. } = *fallback else {
                panic!()
            };
            assert_eq!(input["resume"].as_str(), resume);
            assert_eq!(input["orderId"], "ord-x");
            // A run from before orders had a deadline gets the one the intake gives,
            // from the order's placing; a run that has one keeps it.
            assert_eq!(input["deadline"], "2026-12-03T10:15:00.000Z");
            assert_eq!(input["stepTimeoutSeconds"], 960);
            // AND one from before orders were traced gets a trace context of its own
            let traceparent = input["traceparent"].as_str().unwrap();
            assert!(
                observability::traces::parse(traceparent).is_some(),
                "{traceparent}"
            );
        }
        let kept = report(
            vec![(
                run(
                    RunStatus::Aborted,
                    None,
                    Some("ReserveStock"),
                    json!({"orderId": "ord-x", "deadline": "2026-12-03T10:01:00.000Z", "stepTimeoutSeconds": 70}),
                ),
                vec![],
            )],
            Some(OrderStatus::Pending),
        );
        let RedrivePlan::Native { fallback, .. } = plan(&kept) else {
            panic!()
        };
        let RedrivePlan::Restart { input, .. } = *fallback else {
            panic!()
        };
        assert_eq!(
            (
                input["deadline"].as_str(),
                input["stepTimeoutSeconds"].as_u64()
            ),
            (Some("2026-12-03T10:01:00.000Z"), Some(70))
        );
        let done = report(
            vec![(run(RunStatus::TimedOut, None, None, original), vec![])],
            Some(OrderStatus::Confirmed),
        );
        let RedrivePlan::Native { fallback, .. } = plan(&done) else {
            panic!()
        };
        assert!(matches!(*fallback, RedrivePlan::Nothing { .. }));
    }

    #[test]
    fn running_or_succeeded_runs_are_left_alone() {
        for status in [RunStatus::Running, RunStatus::Succeeded] {
            let r = report(vec![(run(status, None, None, json!({})), vec![])], None);
            assert!(matches!(plan(&r), RedrivePlan::Nothing { .. }));
        }
        assert!(matches!(
            plan(&report(vec![], None)),
            RedrivePlan::Nothing { .. }
        ));
    }

    #[test]
    fn invariants_name_what_is_inconsistent() {
        let r = report(vec![], Some(OrderStatus::Confirmed));
        let v = check_invariants(r.order.as_ref(), None, None, false);
        assert_eq!(v.len(), 2, "{v:?}");
        let r = report(vec![], Some(OrderStatus::Reserved));
        assert_eq!(
            check_invariants(r.order.as_ref(), None, None, true),
            Vec::<String>::new()
        );
        assert_eq!(
            check_invariants(r.order.as_ref(), None, None, false).len(),
            1
        );
        assert_eq!(check_invariants(None, None, None, false).len(), 1);
    }
}
