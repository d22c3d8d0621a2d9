//! SQS batch processing with partial batch failures, built once for every function.
//!
//! Lambda deletes a whole batch when the handler succeeds and redelivers all of it
//! when it fails. With `ReportBatchItemFailures` only the records reported here come
//! back, so one poison message no longer drags its neighbours to the DLQ. A record
//! whose processing panics fails alone. On FIFO queues, once a record of a message
//! group fails, the group's later records are failed too, so order is kept.
#![warn(missing_docs)]

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::FutureExt;
use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use tracing::Instrument;

/// How one record ended.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record failed and should be retried by redelivery.
    #[error("{0}")]
    Retry(String),
    /// The handler panicked on this record.
    #[error("handler panicked: {0}")]
    Panicked(String),
    /// Skipped because an earlier record of the same FIFO message group failed.
    #[error("earlier message of group {0} failed")]
    GroupBlocked(String),
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

fn is_fifo(message: &SqsMessage) -> bool {
    message
        .event_source_arn
        .as_deref()
        .is_some_and(|arn| arn.ends_with(".fifo"))
}

/// Runs `handler` on one record inside the record's span ([`observability::traces::record`]),
/// which the failure marks with its cause chain.
async fn run_one<F, Fut, E>(
    message: SqsMessage,
    batch_size: usize,
    handler: &F,
) -> Result<(), RecordError>
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    let span = observability::traces::record(
        message.message_id.as_deref().unwrap_or(""),
        message.body.as_deref().unwrap_or(""),
        batch_size,
    );
    let run = AssertUnwindSafe(handler(message).instrument(span.clone()));
    match run.catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            observability::traces::fail(&span, &e);
            Err(RecordError::Retry(
                observability::ErrorChain(&e).to_string(),
            ))
        }
        Err(payload) => {
            let error = RecordError::Panicked(panic_message(payload));
            observability::traces::fail(&span, &error);
            Err(error)
        }
    }
}

/// Runs `handler` on every record and reports the ones to redeliver. Records of a
/// standard queue run concurrently; FIFO records run in order.
pub async fn process_batch<F, Fut, E>(event: SqsEvent, handler: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    let fifo = event.records.first().is_some_and(is_fifo);
    let batch_size = event.records.len();
    let mut failures = Vec::new();
    let mut fail = |message_id: Option<String>, error: RecordError| {
        tracing::warn!(message_id = message_id.as_deref().unwrap_or("?"), error = %error, "record failed");
        failures.push(message_id.unwrap_or_default());
    };
    if fifo {
        let mut blocked: HashSet<String> = HashSet::new();
        for message in event.records {
            let group = message
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_default();
            let id = message.message_id.clone();
            if blocked.contains(&group) {
                fail(id, RecordError::GroupBlocked(group));
                continue;
            }
            if let Err(e) = run_one(message, batch_size, &handler).await {
                blocked.insert(group);
                fail(id, e);
            }
        }
    } else {
        let ids: Vec<_> = event.records.iter().map(|m| m.message_id.clone()).collect();
        let results = futures::future::join_all(
            event
                .records
                .into_iter()
                .map(|m| run_one(m, batch_size, &handler)),
        )
        .await;
        for (id, result) in ids.into_iter().zip(results) {
            if let Err(e) = result {
                fail(id, e);
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|item_identifier| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = item_identifier;
            f
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn message(id: &str, body: &str, group: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        if let Some(g) = group {
            m.event_source_arn = Some("arn:aws:sqs:us-east-1:1:q.fifo".into());
            m.attributes = HashMap::from([("MessageGroupId".to_string(), g.to_string())]);
        } else {
            m.event_source_arn = Some("arn:aws:sqs:us-east-1:1:q".into());
        }
        m
    }

    fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = messages;
        e
    }

    async fn handle(m: SqsMessage) -> Result<(), std::fmt::Error> {
        match m.body.as_deref() {
            Some("panic") => panic!("boom"),
            Some("fail") => Err(std::fmt::Error),
            _ => Ok(()),
        }
    }

    fn failed(r: &SqsBatchResponse) -> Vec<&str> {
        r.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn a_panicking_record_fails_only_itself() {
        // A standard queue has no order to keep: the records after a failure still run.
        let event = batch(vec![
            message("1", "ok", None),
            message("2", "panic", None),
            message("3", "fail", None),
            message("4", "ok", None),
        ]);
        let response = process_batch(event, handle).await;
        assert_eq!(failed(&response), ["2", "3"]);
    }

    #[test]
    fn a_panic_is_logged_with_its_message() {
        assert_eq!(panic_message(Box::new("boom")), "boom");
        assert_eq!(panic_message(Box::new(String::from("bang"))), "bang");
        assert_eq!(panic_message(Box::new(7_u8)), "non-string panic payload");
    }

    #[tokio::test]
    async fn fifo_stops_a_group_after_its_first_failure_only() {
        let event = batch(vec![
            message("a1", "ok", Some("a")),
            message("a2", "fail", Some("a")),
            message("b1", "ok", Some("b")),
            message("a3", "ok", Some("a")),
            message("b2", "ok", Some("b")),
        ]);
        let response = process_batch(event, handle).await;
        assert_eq!(failed(&response), ["a2", "a3"]);
    }

    #[tokio::test]
    async fn an_empty_batch_reports_nothing() {
        assert!(
            process_batch(batch(vec![]), handle)
                .await
                .batch_item_failures
                .is_empty()
        );
    }
}
