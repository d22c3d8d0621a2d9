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

/// A stored record that is not one this store writes (a field missing, of another
/// type, an unknown status): refused, never read as defaults, so a damaged record can
/// neither replay an empty answer nor pass as a free key.
#[derive(Debug, thiserror::Error)]
#[error("idempotency record {key:?}: {field} is missing or malformed")]
pub struct MalformedRecord {
    key: String,
    field: &'static str,
}

fn read(item: &HashMap<String, AttributeValue>) -> Result<Record, StoreError> {
    let key = item
        .get("key")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let malformed = |field| MalformedRecord {
        key: key.clone(),
        field,
    };
    let text = |field: &'static str| {
        item.get(field)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| malformed(field))
    };
    let number = |field: &'static str| {
        item.get(field)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| malformed(field))
    };
    let status = match text("status")?.as_str() {
        COMPLETED => RecordStatus::Completed,
        IN_PROGRESS => RecordStatus::InProgress,
        _ => return Err(malformed("status").into()),
    };
    let response = match item.get("response") {
        None if status == RecordStatus::Completed => return Err(malformed("response").into()),
        None => None,
        Some(v) => {
            let raw = v.as_s().map_err(|_| malformed("response"))?;
            Some(serde_json::from_str::<Value>(raw).map_err(|_| malformed("response"))?)
        }
    };
    if key.is_empty() {
        return Err(malformed("key").into());
    }
    Ok(Record {
        payload_hash: text("payloadHash")?,
        status,
        expires_at: number("expiresAt")?,
        lock_expires_at: number("lockExpiresAt")?,
        response,
        // Records written before lock tokens existed hold none; no call holds them.
        lock_token: item
            .get("lockToken")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default(),
        key,
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
            .item("lockToken", s(&record.lock_token))
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

    async fn complete(&self, record: &Record, response: &Value) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key", s(&record.key))
            .update_expression("SET #s = :completed, #r = :response")
            .condition_expression("#t = :token AND #s = :in_progress")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#r", "response")
            .expression_attribute_names("#t", "lockToken")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":response", s(&response.to_string()))
            .expression_attribute_values(":token", s(&record.lock_token))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // The stored record is no longer this call's lock: it was taken over.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Box::new(e)),
        }
    }

    async fn release(&self, record: &Record) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("key", s(&record.key))
            .condition_expression("#t = :token AND #s = :in_progress")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#t", "lockToken")
            .expression_attribute_values(":token", s(&record.lock_token))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // The stored record is no longer this call's lock: it was taken over.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Box::new(e)),
        }
    }
}
