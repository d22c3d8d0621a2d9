//! The compensation work queue: cases a compensation could not finish, and replaying
//! them by redriving their orders.

use super::redrive::{RedriveOutcome, RedrivePlan, redrive};
use crate::OpsError;
use crate::dlq::{self, DeadLetter, take_each};
use crate::stack::Ops;
use serde::Serialize;
use serde_json::Value;

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
    Ok(dlq::peek(ops, "CompensationQueue", max, None)
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
