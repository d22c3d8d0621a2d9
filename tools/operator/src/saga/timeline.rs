//! A run's history folded into one step per state, and the state to blame.

use crate::stack::Ops;
use crate::{OpsError, aws};
use aws_sdk_sfn::primitives::{DateTime, DateTimeFormat};
use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType};
use serde::Serialize;

/// The state a run escalates from when a compensation keeps failing.
pub(super) const ESCALATE: &str = "EscalateCompensation";

/// RFC 3339 with milliseconds, so timeline columns line up.
pub(super) fn stamp(t: &DateTime) -> String {
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
    pub(crate) input: Option<String>,
    #[serde(skip)]
    pub(crate) entered_ms: i64,
    #[serde(skip)]
    pub(super) scheduled: u32,
    #[serde(skip)]
    pub(super) succeeded: bool,
}

/// Folds an execution history into one step per state entered.
pub(super) fn timeline(events: &[HistoryEvent]) -> Vec<Step> {
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
pub(super) fn failing_state(steps: &[Step]) -> Option<&Step> {
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

pub(super) async fn history(ops: &Ops, arn: &str) -> Result<Vec<HistoryEvent>, OpsError> {
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
