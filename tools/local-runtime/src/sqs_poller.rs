//! Lambda's SQS event source mapping: long-polls a queue, hands batches to the
//! function and deletes what succeeded. With `ReportBatchItemFailures` only the
//! reported records stay; they reappear after the visibility timeout, and the
//! queue's redrive policy moves them to the DLQ after `maxReceiveCount`, as on AWS.

use crate::invoke::Invoker;
use crate::provision::{FunctionSpec, QueueInfo, SqsSource, Stack};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts `MaximumConcurrency` pollers per SQS event source of every function (each
/// invokes one batch at a time, so that is the source's concurrency, as on AWS). They
/// stop when `shutdown` turns true.
pub fn spawn_all(
    stack: Arc<Stack>,
    sqs: aws_sdk_sqs::Client,
    invoker: Arc<dyn Invoker>,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    for function in stack.functions.values() {
        for source in &function.sqs_sources {
            let Some(queue) = stack.queue(&source.queue).cloned() else {
                continue;
            };
            let poller = Poller {
                sqs: sqs.clone(),
                invoker: invoker.clone(),
                function: function.clone(),
                source: source.clone(),
                queue,
                region: stack.region.clone(),
            };
            for _ in 1..source.max_concurrency.max(1) {
                handles.push(tokio::spawn(poller.clone().run(shutdown.clone())));
            }
            handles.push(tokio::spawn(poller.run(shutdown.clone())));
        }
    }
    handles
}

#[derive(Clone)]
struct Poller {
    sqs: aws_sdk_sqs::Client,
    invoker: Arc<dyn Invoker>,
    function: FunctionSpec,
    source: SqsSource,
    queue: QueueInfo,
    region: String,
}

impl Poller {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            tokio::select! {
                _ = shutdown.changed() => break,
                batch = self.receive_batch() => match batch {
                    Ok(messages) if messages.is_empty() => {}
                    Ok(messages) => self.deliver(messages).await,
                    Err(e) => {
                        tracing::warn!(queue = %self.queue.name, error = %e, "receive failed; backing off");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
    }

    async fn receive(&self, max: i32, wait: i32) -> Result<Vec<Message>, String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn receive_batch(&self) -> Result<Vec<Message>, String> {
        let mut messages = self.receive(self.source.batch_size, 1).await?;
        if messages.is_empty() || self.source.window_seconds == 0 {
            return Ok(messages);
        }
        let deadline = Instant::now() + Duration::from_secs(self.source.window_seconds);
        while (messages.len() as i32) < self.source.batch_size && Instant::now() < deadline {
            let more = self
                .receive(self.source.batch_size - messages.len() as i32, 0)
                .await?;
            if more.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            messages.extend(more);
        }
        Ok(messages)
    }

    fn to_record(&self, m: &Message) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = m.message_id.clone();
        r.receipt_handle = m.receipt_handle.clone();
        r.body = m.body.clone();
        r.md5_of_body = m.md5_of_body.clone();
        r.md5_of_message_attributes = m.md5_of_message_attributes.clone();
        r.attributes = m
            .attributes
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        r.message_attributes = m
            .message_attributes
            .iter()
            .flatten()
            .map(|(k, v)| {
                let mut a = SqsMessageAttribute::default();
                a.string_value = v.string_value.clone();
                a.data_type = Some(v.data_type.clone());
                (k.clone(), a)
            })
            .collect();
        r.event_source = Some("aws:sqs".into());
        r.event_source_arn = Some(self.queue.arn.clone());
        r.aws_region = Some(self.region.clone());
        r
    }

    async fn deliver(&self, messages: Vec<Message>) {
        let started = Instant::now();
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| self.to_record(m)).collect();
        let order_ids = order_ids(&event.records);
        let correlation_ids = correlation_ids(&event.records);
        let payload = match serde_json::to_value(&event) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize SQS event");
                return;
            }
        };
        let failed: Option<HashSet<String>> = match self
            .invoker
            .invoke(&self.function, payload)
            .await
        {
            Ok(answer) if self.source.report_failures => {
                let ids: Vec<String> = answer
                    .get("batchItemFailures")
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| {
                                i.get("itemIdentifier")
                                    .and_then(Value::as_str)
                                    .map(str::to_owned)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let known: HashSet<&str> = messages
                    .iter()
                    .filter_map(|m| m.message_id.as_deref())
                    .collect();
                // Lambda treats an unknown or empty identifier as a failure of the whole batch.
                if ids.iter().any(|id| !known.contains(id.as_str())) {
                    None
                } else {
                    Some(ids.into_iter().collect())
                }
            }
            Ok(_) => Some(HashSet::new()),
            Err(e) => {
                tracing::warn!(function = %self.function.name, error = %e, "invocation failed; batch will be redelivered");
                None
            }
        };
        let done: Vec<&Message> = match &failed {
            Some(failed) => messages
                .iter()
                .filter(|m| !m.message_id.as_ref().is_some_and(|id| failed.contains(id)))
                .collect(),
            None => Vec::new(),
        };
        let failed_count = messages.len() - done.len();
        tracing::info!(
            function = %self.function.name,
            queue = %self.queue.name,
            records = messages.len(),
            failed = failed_count,
            outcome = if failed_count == 0 { "ok" } else if done.is_empty() { "failed" } else { "partial" },
            duration_ms = started.elapsed().as_millis() as u64,
            order_id = %order_ids.join(","),
            correlation_id = %correlation_ids.join(","),
            "invocation"
        );
        for chunk in done.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                        .build()
                        .ok()
                })
                .collect();
            if let Err(e) = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed; messages will be redelivered");
            }
        }
    }
}

fn body_field(record: &SqsMessage, pointers: &[&str]) -> Option<String> {
    let body: Value = serde_json::from_str(record.body.as_deref()?).ok()?;
    pointers
        .iter()
        .find_map(|p| body.pointer(p).and_then(Value::as_str).map(str::to_owned))
}

fn order_ids(records: &[SqsMessage]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| body_field(r, &["/orderId", "/detail/orderId"]))
        .collect()
}

fn correlation_ids(records: &[SqsMessage]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| body_field(r, &["/correlationId", "/detail/correlationId"]))
        .collect()
}
