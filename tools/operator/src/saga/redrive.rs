//! `shop saga redrive`: what to do with an order's latest run (`plan`, pure), and doing
//! it: Step Functions' own redrive, or a new run that resumes where the saga stopped.

use super::timeline::ESCALATE;
use super::{RunStatus, SagaReport, show, wire_name};
use crate::audit::AuditRecord;
use crate::stack::Ops;
use crate::{OpsError, aws};
use serde::Serialize;
use serde_json::{Value, json};
use shop_aws::saga::execution_arn;
use shop_domain::OrderStatus;
use shop_domain::services::{WaitLimits, saga_input};

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

/// A run started before orders had a deadline, or before orders were traced, lacks
/// fields the definition's steps read (`deadline`, `stepTimeoutSeconds`,
/// `compensateUntil`, `compensationRetrySeconds`, `traceparent`: a missing path fails
/// the run with `States.Runtime`). The limits are filled from the stored order as the
/// intake computes them, with the template's default limits (the tool does not know
/// the stack's own); the trace context is a new root, since the run had none.
fn with_current_fields(mut input: Value, report: &SagaReport) -> Value {
    let Some(order) = &report.order else {
        return input;
    };
    let limits = saga_input(order, WaitLimits::DEFAULT);
    if let Some(map) = input.as_object_mut() {
        for field in [
            "deadline",
            "stepTimeoutSeconds",
            "compensateUntil",
            "compensationRetrySeconds",
            "authenticationTimeoutSeconds",
        ] {
            if !map.contains_key(field) {
                map.insert(field.into(), limits[field].clone());
            }
        }
        map.entry("traceparent")
            .or_insert_with(|| observability::traces::traceparent().into());
    }
    input
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
            input: resume_input(with_current_fields(state, report), resume, Some(failure)),
        };
    }
    let original = report
        .runs
        .first()
        .and_then(|(e, _)| serde_json::from_str::<Value>(e.input.as_deref()?).ok())
        .map(|input| with_current_fields(input, report))
        .unwrap_or(Value::Null);
    let fallback = match report.order.as_ref().map(|o| &o.status) {
        None => nothing("the order is not stored; nothing to resume".into()),
        Some(OrderStatus::Pending) => RedrivePlan::Restart {
            name,
            input: original,
        },
        Some(
            OrderStatus::Reserved
            | OrderStatus::PaymentPending
            | OrderStatus::PaymentActionRequired,
        ) => {
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
