//! Publishing domain events to the custom bus. PutEvents can accept a request and
//! still reject some entries, so every entry's result is checked and the failed
//! ones are retried with backoff.

use crate::port_error;
use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use shop_domain::events::DomainEvent;
use shop_domain::ports::{EventPublisher, PortError};
use std::time::Duration;

/// Entries per PutEvents call (the service limit).
const MAX_ENTRIES: usize = 10;
const ATTEMPTS: u32 = 4;

/// Publishes to one bus.
#[derive(Clone)]
pub struct EventBridgePublisher {
    client: Client,
    bus_name: String,
}

impl EventBridgePublisher {
    /// Publisher for the given bus.
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        Self {
            client,
            bus_name: bus_name.into(),
        }
    }

    fn entry(&self, event: &DomainEvent) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(event.source)
            .detail_type(event.detail_type)
            .detail(crate::with_traceparent(event.detail.clone()).to_string())
            .build()
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), PortError> {
        for chunk in events.chunks(MAX_ENTRIES) {
            let mut pending: Vec<PutEventsRequestEntry> =
                chunk.iter().map(|e| self.entry(e)).collect();
            let mut last_error = String::new();
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                let out = self
                    .client
                    .put_events()
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| port_error("events.publish", e))?;
                if out.failed_entry_count == 0 {
                    pending.clear();
                    break;
                }
                let results = out.entries.unwrap_or_default();
                let mut retry = Vec::new();
                for (entry, result) in pending.into_iter().zip(results) {
                    if let Some(code) = result.error_code {
                        last_error =
                            format!("{code}: {}", result.error_message.unwrap_or_default());
                        retry.push(entry);
                    }
                }
                tracing::warn!(failed = retry.len(), error = %last_error, "PutEvents rejected entries; retrying them");
                pending = retry;
            }
            if !pending.is_empty() {
                return Err(PortError::new(
                    "events.publish",
                    format!("{} entries still failing: {last_error}", pending.len()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! PutEvents answering 200 with some entries rejected: moto never does, AWS does
    //! (throttling, an internal failure), so these run on replayed answers.
    use super::*;
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use shop_domain::OrderId;

    fn declined(reason: &str) -> DomainEvent {
        DomainEvent::payment_declined(&OrderId::generate(), "c", reason)
    }

    fn rejected() -> PutEventsResultEntry {
        PutEventsResultEntry::builder()
            .error_code("ThrottlingException")
            .error_message("Rate exceeded")
            .build()
    }

    fn accepted() -> PutEventsResultEntry {
        PutEventsResultEntry::builder().event_id("e").build()
    }

    #[tokio::test]
    async fn only_the_rejected_entries_are_sent_again() {
        let first = mock!(Client::put_events)
            .match_requests(|r| r.entries().len() == 3)
            .then_output(|| {
                PutEventsOutput::builder()
                    .failed_entry_count(1)
                    .entries(accepted())
                    .entries(rejected())
                    .entries(accepted())
                    .build()
            });
        let again = mock!(Client::put_events)
            .match_requests(|r| {
                r.entries().len() == 1 && r.entries()[0].detail().is_some_and(|d| d.contains("r1"))
            })
            .then_output(|| {
                PutEventsOutput::builder()
                    .failed_entry_count(0)
                    .entries(accepted())
                    .build()
            });
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::Sequential, [&first, &again]);
        let publisher = EventBridgePublisher::new(client, "bus");
        let events = [declined("r0"), declined("r1"), declined("r2")];
        publisher.publish(&events).await.unwrap();
        assert_eq!((first.num_calls(), again.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_entry_still_rejected_after_every_attempt_is_an_error() {
        let always = mock!(Client::put_events)
            .sequence()
            .output(|| {
                PutEventsOutput::builder()
                    .failed_entry_count(1)
                    .entries(rejected())
                    .build()
            })
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&always]);
        let err = EventBridgePublisher::new(client, "bus")
            .publish(&[declined("r0")])
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("ThrottlingException"),
            "{err:?}"
        );
        assert_eq!(always.num_calls(), ATTEMPTS as usize);
    }
}
