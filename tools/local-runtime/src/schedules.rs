//! EventBridge schedules of the template's functions (`Type: Schedule` events with a
//! `rate(...)` expression): each function is invoked with a `Scheduled Event` once
//! per period, the first time one period after start, as a new rule would.

use crate::ACCOUNT_ID;
use crate::invoke::Invoker;
use crate::provision::Stack;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts one timer per schedule of every function. They stop when `shutdown` turns
/// true. A failed invocation is logged; the next period runs regardless, as on AWS.
pub fn spawn_all(
    stack: Arc<Stack>,
    invoker: Arc<dyn Invoker>,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    for function in stack.functions.values() {
        for period in &function.schedules {
            let (function, period) = (function.clone(), *period);
            let (invoker, region, mut shutdown) =
                (invoker.clone(), stack.region.clone(), shutdown.clone());
            handles.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = ticks.tick() => {}
                    }
                    if *shutdown.borrow() {
                        break;
                    }
                    let event = json!({
                        "version": "0",
                        "id": uuid::Uuid::new_v4().to_string(),
                        "detail-type": "Scheduled Event",
                        "source": "aws.events",
                        "account": ACCOUNT_ID,
                        "time": now(),
                        "region": region,
                        "resources": [format!("arn:aws:events:{region}:{ACCOUNT_ID}:rule/{}-schedule", function.name)],
                        "detail": {}
                    });
                    if let Err(e) = invoker.invoke(&function, event).await {
                        tracing::warn!(function = %function.logical_id, error = %e, "scheduled invocation failed");
                    }
                }
            }));
        }
    }
    handles
}

/// Now as EventBridge writes an event's `time`: RFC 3339 to the second, in UTC.
fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
