//! DynamoDB persistence for the idempotency library. `expiresAt` is the table's TTL
//! attribute, so expired keys disappear without a sweeper.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use idempotency::{Begin, IdempotencyStore, Record, RecordStatus, StoreError};
use serde_json::Value;
use std::collections::HashMap;

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

/// Idempotency records keyed by `key`.
#[derive(Clone)]
pub struct DynamoIdempotencyStore {
    client: Client,
    table: String,
}

impl DynamoIdempotencyStore {
    /// Store over the given table.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn read(item: &HashMap<String, AttributeValue>) -> Result<Record, StoreError> {
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    let response = match item.get("response").and_then(|v| v.as_s().ok()) {
        Some(raw) => Some(serde_json::from_str::<Value>(raw)?),
        None => None,
    };
    Ok(Record {
        key: text("key"),
        payload_hash: text("payloadHash"),
        status: if text("status") == COMPLETED {
            RecordStatus::Completed
        } else {
            RecordStatus::InProgress
        },
        expires_at: number("expiresAt"),
        lock_expires_at: number("lockExpiresAt"),
        response,
    })
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotencyStore {
    async fn begin(&self, record: &Record, now: u64) -> Result<Begin, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("key", s(&record.key))
            .item("payloadHash", s(&record.payload_hash))
            .item("status", s(IN_PROGRESS))
            .item("expiresAt", n(record.expires_at))
            .item("lockExpiresAt", n(record.lock_expires_at))
            .condition_expression(
                "attribute_not_exists(#k) OR #e < :now OR (#s = :in_progress AND #l < :now)",
            )
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#e", "expiresAt")
            .expression_attribute_names("#l", "lockExpiresAt")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            // The live record comes back with the refusal: no second read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Begin::Acquired),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let existing = match e.into_service_error() {
                    PutItemError::ConditionalCheckFailedException(refusal) => refusal.item,
                    _ => None,
                };
                match existing {
                    Some(item) => Ok(Begin::Existing(read(&item)?)),
                    // DynamoDB returns the item that failed the condition; without one,
                    // treat the key as busy (the claim itself is in progress): the
                    // caller may retry.
                    None => Ok(Begin::Existing(record.clone())),
                }
            }
            Err(e) => Err(Box::new(e)),
        }
    }

    async fn complete(&self, key: &str, response: &Value) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("key", s(key))
            .update_expression("SET #s = :completed, #r = :response")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#r", "response")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":response", s(&response.to_string()))
            .send()
            .await?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("key", s(key))
            .send()
            .await?;
        Ok(())
    }
}
