//! Browsing a queue: receiving its messages in batches while holding them, so a command
//! sees each message once, and making what it did not delete visible again.

use super::DeadLetter;
use crate::stack::{Ops, StackQueue};
use crate::{OpsError, aws};
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};
use std::collections::{HashMap, HashSet};

/// Seconds a message stays hidden while a command holds it.
const HOLD_SECONDS: i32 = 120;

/// Receives a queue's messages in batches while holding what it received, and makes
/// whatever it still holds visible again when asked.
pub(super) struct Browser<'a> {
    ops: &'a Ops,
    queue: &'a StackQueue,
    seen: HashSet<String>,
    held: HashMap<String, String>,
}

impl<'a> Browser<'a> {
    pub(super) fn new(ops: &'a Ops, queue: &'a StackQueue) -> Self {
        Self {
            ops,
            queue,
            seen: HashSet::new(),
            held: HashMap::new(),
        }
    }

    /// The next batch of messages not seen before; empty when the queue has no more.
    pub(super) async fn next(&mut self) -> Result<Vec<DeadLetter>, OpsError> {
        let out = self
            .ops
            .sqs
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(10)
            .visibility_timeout(HOLD_SECONDS)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(aws("sqs:ReceiveMessage"))?;
        let mut fresh = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let letter = DeadLetter::decode(m);
            self.held
                .insert(letter.message_id.clone(), letter.receipt_handle.clone());
            if self.seen.insert(letter.message_id.clone()) {
                fresh.push(letter);
            }
        }
        Ok(fresh)
    }

    pub(super) async fn delete(&mut self, letter: &DeadLetter) -> Result<(), OpsError> {
        self.ops
            .sqs
            .delete_message()
            .queue_url(&self.queue.url)
            .receipt_handle(&letter.receipt_handle)
            .send()
            .await
            .map_err(aws("sqs:DeleteMessage"))?;
        self.held.remove(&letter.message_id);
        Ok(())
    }

    /// Makes every message still held visible again.
    pub(super) async fn release(&mut self) -> Result<(), OpsError> {
        let held: Vec<_> = self.held.drain().collect();
        for chunk in held.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (_, handle))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            self.ops
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(aws("sqs:ChangeMessageVisibilityBatch"))?;
        }
        Ok(())
    }
}
