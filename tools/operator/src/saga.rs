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

use super::audit::AuditRecord;
use super::dlq::{DeadLetter, take_each};
use super::stack::Ops;
use super::{OpsError, aws};
use aws_sdk_sfn::primitives::{DateTime, DateTimeFormat};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use serde::Serialize;
use serde_json::{Value, json};
use shop_aws::ledger::DynamoLedger;
use shop_aws::orders::DynamoOrderStore;
use shop_aws::saga::execution_arn;
use shop_aws::stock::{DynamoStockStore, Reservation, ReservationStatus};
use shop_domain::invariants::{OrderFacts, check_order};
use shop_domain::payment::LedgerRecord;
use shop_domain::ports::{OrderStore, PaymentLedger};
use shop_domain::{Order, OrderId, OrderStatus};

/// The state a run escalates from when a compensation keeps failing.
const ESCALATE: &str = "EscalateCompensation";

/// RFC 3339 with milliseconds, so timeline columns line up.
fn stamp(t: &DateTime) -> String {
    let format = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z",
    );
    let at = t.to_millis().ok().and_then(|ms| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
    });
    match (at, format) {
        (Some(at), Ok(format)) => at.format(&format).unwrap_or_default(),
        _ => t.fmt(DateTimeFormat::DateTime).unwrap_or_default(),
    }
}

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
    input: Option<String>,
}

/// One state of a run's timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// State name.
    pub state: String,
    /// When it was entered.
    pub entered: String,
    /// Milliseconds from entering to leaving, when it left.
    pub duration_ms: Option<i64>,
    /// `ok`, `caught` (failed, handled by a Catch), `failed`, `aborted`, `timed out`,
    /// `running`.
    pub outcome: String,
    /// The last error inside the state.
    pub error: Option<String>,
    /// Attempts after the first.
    pub retries: u32,
    #[serde(skip)]
    input: Option<String>,
    #[serde(skip)]
    entered_ms: i64,
    #[serde(skip)]
    scheduled: u32,
    #[serde(skip)]
    succeeded: bool,
}

/// Folds an execution history into one step per state entered.
fn timeline(events: &[HistoryEvent]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for e in events {
        let at = e.timestamp().to_millis().unwrap_or_default();
        if let Some(d) = e.state_entered_event_details() {
            steps.push(Step {
                state: d.name().to_owned(),
                entered: stamp(e.timestamp()),
                duration_ms: None,
                outcome: "running".into(),
                error: None,
                retries: 0,
                input: d.input().map(str::to_owned),
                entered_ms: at,
                scheduled: 0,
                succeeded: false,
            });
            continue;
        }
        if let Some(d) = e.state_exited_event_details() {
            if let Some(step) = steps
                .iter_mut()
                .rev()
                .find(|s| s.state == d.name() && s.duration_ms.is_none())
            {
                step.duration_ms = Some(at - step.entered_ms);
                step.outcome = if step.error.is_some() && !step.succeeded {
                    "caught".into()
                } else {
                    "ok".into()
                };
                step.retries = step.scheduled.saturating_sub(1);
            }
            continue;
        }
        let Some(current) = steps.last_mut() else {
            continue;
        };
        match e.r#type() {
            HistoryEventType::TaskScheduled => {
                current.scheduled += 1;
                current.succeeded = false;
            }
            HistoryEventType::TaskSucceeded => current.succeeded = true,
            _ => {}
        }
        if let Some(d) = e.task_failed_event_details() {
            current.error = Some(format!(
                "{}: {}",
                d.error().unwrap_or("error"),
                d.cause().unwrap_or_default()
            ));
        } else if let Some(d) = e.task_timed_out_event_details() {
            current.error = Some(d.error().unwrap_or("States.Timeout").to_owned());
        }
        let end = match e.r#type() {
            HistoryEventType::ExecutionFailed => Some("failed"),
            HistoryEventType::ExecutionAborted => Some("aborted"),
            HistoryEventType::ExecutionTimedOut => Some("timed out"),
            _ => None,
        };
        if let Some(end) = end {
            for step in steps.iter_mut().filter(|s| s.duration_ms.is_none()) {
                step.outcome = end.into();
                step.retries = step.scheduled.saturating_sub(1);
            }
        }
    }
    steps
}

/// The state to blame: the one a run escalated from, else the last one with an error,
/// else the last one entered.
fn failing_state(steps: &[Step]) -> Option<&Step> {
    let before_escalation = steps
        .iter()
        .position(|s| s.state == ESCALATE)
        .unwrap_or(steps.len());
    steps[..before_escalation]
        .iter()
        .rev()
        .find(|s| s.error.is_some())
        .or_else(|| steps.last())
}

async fn history(ops: &Ops, arn: &str) -> Result<Vec<HistoryEvent>, OpsError> {
    let mut events = Vec::new();
    let mut token = None;
    loop {
        let out = ops
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .set_next_token(token)
            .max_results(1000)
            .send()
            .await
            .map_err(aws("states:GetExecutionHistory"))?;
        events.extend(out.events);
        token = out.next_token;
        if token.is_none() {
            return Ok(events);
        }
    }
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
    let port = |e: shop_domain::ports::PortError| OpsError::Aws {
        operation: "dynamodb:GetItem",
        message: e.to_string(),
    };
    let order = DynamoOrderStore::new(ops.dynamodb.clone(), ops.outputs.get("OrdersTableName")?)
        .get(&id)
        .await
        .map_err(port)?;
    let reservation =
        DynamoStockStore::new(ops.dynamodb.clone(), ops.outputs.get("InventoryTableName")?)
            .reservation(&id)
            .await
            .map_err(port)?;
    let ledger = DynamoLedger::new(ops.dynamodb.clone(), ops.outputs.get("PaymentsTableName")?)
        .get(&id)
        .await
        .map_err(port)?;
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

/// What `shop saga redrive` does for an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum RedrivePlan {
    /// Nothing to redrive, and why.
    Nothing {
        /// Why.
        reason: String,
    },
    /// Step Functions RedriveExecution; if the service refuses, `fallback`.
    Native {
        /// The run to redrive.
        execution_arn: String,
        /// What to do when RedriveExecution is refused or unavailable.
        fallback: Box<RedrivePlan>,
    },
    /// A new execution with this input.
    Restart {
        /// Its name.
        name: String,
        /// Its input.
        input: Value,
    },
}

/// What `shop saga redrive` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveOutcome {
    /// The plan.
    pub plan: RedrivePlan,
    /// The execution now running (none for a dry run or nothing to do).
    pub started: Option<String>,
    /// Why RedriveExecution was not used, when the fallback ran.
    pub native_refused: Option<String>,
}

fn resume_input(mut state: Value, resume: &str, failure: Option<Value>) -> Value {
    if let Some(map) = state.as_object_mut() {
        for transient in ["compensationFailure", "alreadyCancelled", "resume"] {
            map.remove(transient);
        }
        if let Some(failure) = failure
            && !map.contains_key("failure")
        {
            map.insert("failure".into(), failure);
        }
        map.insert("resume".into(), json!(resume));
    }
    state
}

/// Decides how to redrive an order's latest run (pure, so every case is unit-tested).
pub fn plan(report: &SagaReport) -> RedrivePlan {
    let nothing = |reason: String| RedrivePlan::Nothing { reason };
    let Some((latest, steps)) = report.runs.last() else {
        return nothing("no saga run exists for this order".into());
    };
    let name = format!("{}-redrive-{}", report.order_id, report.runs.len());
    match latest.status {
        RunStatus::Running => return nothing(format!("{} is still running", latest.name)),
        RunStatus::Succeeded => return nothing(format!("{} succeeded", latest.name)),
        _ => {}
    }
    if latest.error.as_deref() == Some("CompensationFailed")
        && let Some(state) = steps
            .iter()
            .rev()
            .find(|s| s.state == ESCALATE)
            .and_then(|s| serde_json::from_str::<Value>(s.input.as_deref()?).ok())
    {
        let resume = if latest.state.as_deref() == Some("PublishOrderConfirmed") {
            "publish-confirmed"
        } else {
            "compensate"
        };
        let failure = json!({"Error": "OperatorRedrive", "Cause": "redriven by an operator"});
        return RedrivePlan::Restart {
            name,
            input: resume_input(state, resume, Some(failure)),
        };
    }
    let original = report
        .runs
        .first()
        .and_then(|(e, _)| serde_json::from_str::<Value>(e.input.as_deref()?).ok())
        .unwrap_or(Value::Null);
    let fallback = match report.order.as_ref().map(|o| &o.status) {
        None => nothing("the order is not stored; nothing to resume".into()),
        Some(OrderStatus::Pending) => RedrivePlan::Restart {
            name,
            input: original,
        },
        Some(OrderStatus::Reserved | OrderStatus::PaymentPending) => {
            let failure = json!({
                "Error": "SagaInterrupted",
                "Cause": format!("the run ended {} and an operator redrove it", latest.status.as_str()),
            });
            RedrivePlan::Restart {
                name,
                input: resume_input(original, "compensate", Some(failure)),
            }
        }
        Some(status) => nothing(format!("the order is already {}", wire_name(status))),
    };
    RedrivePlan::Native {
        execution_arn: latest.arn.clone(),
        fallback: Box::new(fallback),
    }
}

async fn start(ops: &Ops, name: &str, input: &Value) -> Result<String, OpsError> {
    let machine = ops.outputs.get("StateMachineArn")?;
    match ops
        .sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(name)
        .input(input.to_string())
        .send()
        .await
    {
        Ok(out) => Ok(out.execution_arn),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_already_exists()) =>
        {
            Ok(execution_arn(machine, name))
        }
        Err(e) => Err(aws("states:StartExecution")(e)),
    }
}

/// `shop saga redrive`: plans, and unless `dry_run`, acts and audits.
pub async fn redrive(ops: &Ops, order_id: &str, dry_run: bool) -> Result<RedriveOutcome, OpsError> {
    let report = show(ops, order_id).await?;
    let plan = plan(&report);
    let mut outcome = RedriveOutcome {
        plan: plan.clone(),
        started: None,
        native_refused: None,
    };
    if dry_run {
        return Ok(outcome);
    }
    let mut todo = plan;
    if let RedrivePlan::Native {
        execution_arn,
        fallback,
    } = todo
    {
        match ops
            .sfn
            .redrive_execution()
            .execution_arn(&execution_arn)
            .send()
            .await
        {
            Ok(_) => {
                outcome.started = Some(execution_arn);
                todo = RedrivePlan::Nothing {
                    reason: String::new(),
                };
            }
            Err(e) => {
                outcome.native_refused =
                    Some(aws_sdk_sfn::error::DisplayErrorContext(&e).to_string());
                todo = *fallback;
            }
        }
    }
    if let RedrivePlan::Restart { name, input } = &todo {
        outcome.started = Some(start(ops, name, input).await?);
    }
    let mut record = AuditRecord::new("saga redrive", order_id);
    record.destination = outcome.started.clone();
    record.count = usize::from(outcome.started.is_some());
    record.append(&ops.files)?;
    Ok(outcome)
}

/// A case on the compensation work queue.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompensationCase {
    /// SQS message id.
    pub message_id: String,
    /// The order.
    pub order_id: String,
    /// The run that escalated.
    pub execution_id: String,
    /// The compensation error that kept failing.
    pub failure: Value,
    /// When the run escalated.
    pub escalated_at: String,
}

fn case(letter: &DeadLetter) -> Option<CompensationCase> {
    let body = letter.json.as_ref()?;
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
    Some(CompensationCase {
        message_id: letter.message_id.clone(),
        order_id: body["orderId"].as_str()?.to_owned(),
        execution_id: text("executionId"),
        failure: body["failure"].clone(),
        escalated_at: text("escalatedAt"),
    })
}

/// `shop saga compensations`: the cases waiting on the compensation queue.
pub async fn compensations(ops: &Ops, max: usize) -> Result<Vec<CompensationCase>, OpsError> {
    Ok(super::dlq::peek(ops, "CompensationQueue", max, None)
        .await?
        .iter()
        .filter_map(case)
        .collect())
}

/// `shop saga compensations --replay`: redrives each case's order and removes the case
/// once a run is going (or nothing is left to do); a case that fails stays queued.
pub async fn replay_compensations(
    ops: &Ops,
    dry_run: bool,
) -> Result<Vec<(CompensationCase, Result<RedriveOutcome, String>)>, OpsError> {
    let queue = ops.queue("CompensationQueue")?;
    let mut done = Vec::new();
    take_each(ops, &queue, async |letter: &DeadLetter| {
        let Some(case) = case(letter) else {
            return false;
        };
        let result = redrive(ops, &case.order_id, dry_run)
            .await
            .map_err(|e| e.to_string());
        let settled = !dry_run
            && result.as_ref().is_ok_and(|o| {
                o.started.is_some() || matches!(o.plan, RedrivePlan::Nothing { .. })
            });
        done.push((case, result));
        settled
    })
    .await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                correlation_id: String::new(),
                created_at: String::new(),
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
        ];
        for (status, resume) in cases {
            let r = report(
                vec![(
                    run(
                        RunStatus::Aborted,
                        None,
                        Some("ChargePayment"),
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
        }
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
