//! SQS queues, dead-letter queues first so a redrive policy finds its target.

use super::names::LocalNames;
use super::{Active, Clients, ProvisionError, QueueInfo, Scalar, emulator, unsupported};
use crate::ACCOUNT_ID;
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Properties {
    #[serde(default)]
    fifo_queue: Option<bool>,
    #[serde(default)]
    redrive_policy: Option<RedrivePolicy>,
    /// The attributes passed through as declared.
    #[serde(flatten)]
    attributes: HashMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RedrivePolicy {
    dead_letter_target_arn: String,
    max_receive_count: Scalar,
}

/// Attributes of `AWS::SQS::Queue` that are queue attributes of the SQS API.
const ATTRIBUTES: [&str; 6] = [
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize",
    "ContentBasedDeduplication",
];

pub(super) async fn create(
    active: &Active<'_>,
    names: &mut LocalNames<'_>,
    clients: &Clients,
) -> Result<(), ProvisionError> {
    let mut queues: Vec<_> = active.of_type("AWS::SQS::Queue").collect();
    queues.sort_by_key(|(_, r)| r.pointer("/Properties/RedrivePolicy").is_some());
    for (id, resource) in queues {
        let p: Properties = super::properties(id, resource, names)?;
        let fifo = p.fifo_queue.unwrap_or(false);
        let name = format!("{}{}", names.physical(id), if fifo { ".fifo" } else { "" });
        let mut attributes = HashMap::new();
        for key in ATTRIBUTES {
            if let Some(v) = p.attributes.get(key).and_then(super::text) {
                attributes.insert(QueueAttributeName::from(key), v);
            }
        }
        if fifo {
            attributes.insert(QueueAttributeName::FifoQueue, "true".into());
        }
        let mut dead_letter = None;
        let mut max_receive_count = None;
        if let Some(policy) = &p.redrive_policy {
            dead_letter = names
                .queues
                .iter()
                .find(|(_, q)| q.arn == policy.dead_letter_target_arn)
                .map(|(k, _)| k.clone());
            if dead_letter.is_none() {
                return Err(unsupported(
                    id,
                    "redrive policy must target a queue of this template",
                ));
            }
            let count: u32 = policy.max_receive_count.parse().ok_or_else(|| {
                unsupported(
                    id,
                    "Properties.RedrivePolicy.maxReceiveCount: not a whole number",
                )
            })?;
            max_receive_count = Some(count);
            attributes.insert(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({
                    "deadLetterTargetArn": policy.dead_letter_target_arn,
                    "maxReceiveCount": count,
                })
                .to_string(),
            );
        }
        let out = clients
            .sqs
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(attributes))
            .send()
            .await
            .map_err(emulator(id))?;
        let info = QueueInfo {
            arn: format!("arn:aws:sqs:{}:{ACCOUNT_ID}:{name}", names.region),
            url: out.queue_url.unwrap_or_default(),
            name,
            dead_letter,
            max_receive_count,
        };
        names.queues.insert(id.to_owned(), info);
    }
    Ok(())
}
