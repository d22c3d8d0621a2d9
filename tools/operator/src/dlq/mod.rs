//! `shop dlq`: list the stack's dead-letter queues, peek at their messages, move them
//! back where they came from, purge them.
//!
//! Replays send first and delete after the send is confirmed and journaled, so an
//! interrupted replay loses nothing and a re-run sends nothing twice. Messages a run does
//! not move (filtered out, undecodable, failed) are made visible again when it ends.

mod browse;
mod replay;

pub use replay::{ReplayOptions, ReplaySummary, replay};

use crate::audit::AuditRecord;
use crate::filter::Filter;
use crate::stack::{Ops, StackQueue};
use crate::{OpsError, aws};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use browse::Browser;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Where a dead-letter queue's messages came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Source {
    /// A queue whose redrive policy targets the DLQ.
    Queue {
        /// Queue name.
        name: String,
        /// Queue URL.
        url: String,
    },
    /// An EventBridge rule target whose dead-letter config targets the DLQ.
    RuleTarget {
        /// Event bus of the rule.
        bus: String,
        /// Rule name.
        rule: String,
        /// Target id.
        target: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Queue { name, .. } => write!(f, "queue {name}"),
            Self::RuleTarget { bus, rule, target } => {
                write!(f, "rule {rule} target {target} on bus {bus}")
            }
        }
    }
}

/// One line of `shop dlq list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqStatus {
    /// Short name (output key).
    pub key: String,
    /// Queue name.
    pub name: String,
    /// Visible messages.
    pub depth: u64,
    /// Messages someone holds right now.
    pub in_flight: u64,
    /// Age of the oldest message among a sample of up to ten (SQS has no exact query).
    pub oldest_age_seconds: Option<u64>,
    /// Where its messages come from.
    pub sources: Vec<Source>,
    /// Alarms on the queue's depth, with their state.
    pub alarms: Vec<(String, String)>,
}

/// The error EventBridge attached when it could not deliver to a target.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryFailure {
    /// `ERROR_CODE`.
    pub code: String,
    /// `ERROR_MESSAGE`.
    pub message: String,
    /// `RULE_ARN`.
    pub rule_arn: String,
    /// `TARGET_ARN`.
    pub target_arn: String,
}

/// A dead letter, decoded.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// SQS message id (kept from the source queue).
    pub message_id: String,
    /// The body as received.
    pub body: String,
    /// The body as JSON, when it is JSON.
    pub json: Option<Value>,
    /// Message attributes (string and number values).
    pub attributes: BTreeMap<String, String>,
    /// How often the message was received, here and at its source.
    pub receive_count: u32,
    /// When it was first received (RFC 3339).
    pub first_receive: Option<String>,
    /// When it was first sent (RFC 3339).
    pub sent: Option<String>,
    /// FIFO message group.
    pub group_id: Option<String>,
    /// For EventBridge target DLQs: why delivery failed.
    pub delivery_failure: Option<DeliveryFailure>,
    /// Why the message is here, as far as SQS and EventBridge record it (`peek` fills
    /// it in; the consumer's own error is in its logs under the message's order id).
    pub reason: String,
    #[serde(skip)]
    receipt_handle: String,
}

fn millis_to_rfc3339(ms: Option<&String>) -> Option<String> {
    let ms: i128 = ms?.parse().ok()?;
    time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

impl DeadLetter {
    fn decode(m: Message) -> Self {
        let system = m.attributes.unwrap_or_default();
        let get = |name: MessageSystemAttributeName| system.get(&name);
        let attributes: BTreeMap<String, String> = m
            .message_attributes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.string_value?)))
            .collect();
        let body = m.body.unwrap_or_default();
        let delivery_failure = attributes.get("ERROR_CODE").map(|code| DeliveryFailure {
            code: code.clone(),
            message: attributes.get("ERROR_MESSAGE").cloned().unwrap_or_default(),
            rule_arn: attributes.get("RULE_ARN").cloned().unwrap_or_default(),
            target_arn: attributes.get("TARGET_ARN").cloned().unwrap_or_default(),
        });
        Self {
            message_id: m.message_id.unwrap_or_default(),
            json: serde_json::from_str(&body).ok(),
            body,
            receive_count: get(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            first_receive: millis_to_rfc3339(get(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
            )),
            sent: millis_to_rfc3339(get(MessageSystemAttributeName::SentTimestamp)),
            group_id: get(MessageSystemAttributeName::MessageGroupId).cloned(),
            attributes,
            delivery_failure,
            reason: String::new(),
            receipt_handle: m.receipt_handle.unwrap_or_default(),
        }
    }

    /// Attributes a filter can match: message attributes plus the receive count.
    fn filterable(&self) -> BTreeMap<String, String> {
        let mut all = self.attributes.clone();
        all.insert(
            "ApproximateReceiveCount".into(),
            self.receive_count.to_string(),
        );
        if let Some(g) = &self.group_id {
            all.insert("MessageGroupId".into(), g.clone());
        }
        all
    }

    /// Whether the filter (if any) selects this message.
    pub fn selected_by(&self, filter: Option<&Filter>) -> bool {
        filter.is_none_or(|f| f.matches(self.json.as_ref(), &self.filterable()))
    }
}

async fn queue_counts(ops: &Ops, queue: &StackQueue) -> Result<(u64, u64), OpsError> {
    let out = ops
        .sqs
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(aws("sqs:GetQueueAttributes"))?;
    let attributes = out.attributes.unwrap_or_default();
    let count = |name| {
        attributes
            .get(&name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

/// Where the messages of a dead-letter queue came from: queues whose redrive policy
/// targets it, and rule targets on the stack's bus whose dead-letter config does.
pub async fn sources(ops: &Ops, dlq: &StackQueue) -> Result<Vec<Source>, OpsError> {
    let mut sources = Vec::new();
    let out = ops
        .sqs
        .list_dead_letter_source_queues()
        .queue_url(&dlq.url)
        .send()
        .await
        .map_err(aws("sqs:ListDeadLetterSourceQueues"))?;
    for url in out.queue_urls {
        let queue = StackQueue::from_url(&url);
        sources.push(Source::Queue {
            name: queue.name,
            url,
        });
    }
    let Ok(bus) = ops.outputs.get("EventBusName") else {
        return Ok(sources);
    };
    let arn = ops.queue_arn(dlq).await?;
    let rules = ops
        .events
        .list_rules()
        .event_bus_name(bus)
        .send()
        .await
        .map_err(aws("events:ListRules"))?;
    for rule in rules.rules() {
        let Some(name) = rule.name() else { continue };
        let targets = ops
            .events
            .list_targets_by_rule()
            .rule(name)
            .event_bus_name(bus)
            .send()
            .await
            .map_err(aws("events:ListTargetsByRule"))?;
        for target in targets.targets() {
            if target.dead_letter_config().and_then(|d| d.arn()) == Some(arn.as_str()) {
                sources.push(Source::RuleTarget {
                    bus: bus.to_owned(),
                    rule: name.to_owned(),
                    target: target.id().to_owned(),
                });
            }
        }
    }
    Ok(sources)
}

async fn alarms(ops: &Ops, queue: &StackQueue) -> Result<Vec<(String, String)>, OpsError> {
    let out = ops
        .cloudwatch
        .describe_alarms_for_metric()
        .namespace("AWS/SQS")
        .metric_name("ApproximateNumberOfMessagesVisible")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("QueueName")
                .value(&queue.name)
                .build(),
        )
        .send()
        .await
        .map_err(aws("cloudwatch:DescribeAlarmsForMetric"))?;
    Ok(out
        .metric_alarms()
        .iter()
        .filter(|a| {
            a.dimensions()
                .iter()
                .any(|d| d.name() == Some("QueueName") && d.value() == Some(queue.name.as_str()))
        })
        .map(|a| {
            (
                a.alarm_name().unwrap_or_default().to_owned(),
                a.state_value()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect())
}

async fn oldest_age(ops: &Ops, queue: &StackQueue) -> Result<Option<u64>, OpsError> {
    let mut browser = Browser::new(ops, queue);
    let sample = browser.next().await?;
    browser.release().await?;
    let now = time::OffsetDateTime::now_utc();
    Ok(sample
        .iter()
        .filter_map(|l| {
            let sent = time::OffsetDateTime::parse(
                l.sent.as_deref()?,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?;
            u64::try_from((now - sent).whole_seconds()).ok()
        })
        .max())
}

/// `shop dlq list`: every DLQ with depth, oldest message, sources and alarm states.
pub async fn list(ops: &Ops) -> Result<Vec<DlqStatus>, OpsError> {
    let mut out = Vec::new();
    for queue in ops.dead_letter_queues() {
        let (depth, in_flight) = queue_counts(ops, &queue).await?;
        let oldest_age_seconds = if depth > 0 {
            oldest_age(ops, &queue).await?
        } else {
            None
        };
        out.push(DlqStatus {
            sources: sources(ops, &queue).await?,
            alarms: alarms(ops, &queue).await?,
            key: queue.key,
            name: queue.name,
            depth,
            in_flight,
            oldest_age_seconds,
        });
    }
    Ok(out)
}

/// Offers each message of a queue to `handle` once; deletes those it accepts (returns
/// `true` for) and makes the rest visible again.
pub(crate) async fn take_each(
    ops: &Ops,
    queue: &StackQueue,
    mut handle: impl AsyncFnMut(&DeadLetter) -> bool,
) -> Result<(), OpsError> {
    let mut browser = Browser::new(ops, queue);
    let result = async {
        loop {
            let batch = browser.next().await?;
            if batch.is_empty() {
                return Ok(());
            }
            for letter in batch {
                if handle(&letter).await {
                    browser.delete(&letter).await?;
                }
            }
        }
    }
    .await;
    browser.release().await?;
    result
}

/// `shop dlq peek`: up to `max` messages the filter selects, decoded; every message is
/// visible again afterwards.
pub async fn peek(
    ops: &Ops,
    queue: &str,
    max: usize,
    filter: Option<&Filter>,
) -> Result<Vec<DeadLetter>, OpsError> {
    let queue = ops.queue(queue)?;
    let from = sources(ops, &queue)
        .await?
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut browser = Browser::new(ops, &queue);
    let mut out = Vec::new();
    let result = async {
        while out.len() < max {
            let batch = browser.next().await?;
            if batch.is_empty() {
                break;
            }
            out.extend(batch.into_iter().filter(|l| l.selected_by(filter)));
        }
        Ok::<_, OpsError>(())
    }
    .await;
    browser.release().await?;
    result?;
    out.truncate(max);
    for letter in &mut out {
        letter.reason = match &letter.delivery_failure {
            Some(f) => format!("EventBridge could not deliver it: {} {}", f.code, f.message),
            None if from.is_empty() => "sent here directly".into(),
            None => format!(
                "its consumer failed it {} time(s) at {from} (redrive policy)",
                letter.receive_count
            ),
        };
    }
    Ok(out)
}

/// How many messages `purge` would delete (for the confirmation prompt).
pub async fn depth(ops: &Ops, queue: &str) -> Result<(StackQueue, u64), OpsError> {
    let queue = ops.queue(queue)?;
    let (visible, in_flight) = queue_counts(ops, &queue).await?;
    Ok((queue, visible + in_flight))
}

/// `shop dlq purge`: deletes every message of the queue, and audits it. The caller
/// confirms first.
pub async fn purge(ops: &Ops, queue: &StackQueue, count: u64) -> Result<(), OpsError> {
    ops.sqs
        .purge_queue()
        .queue_url(&queue.url)
        .send()
        .await
        .map_err(aws("sqs:PurgeQueue"))?;
    let mut record = AuditRecord::new("dlq purge", &queue.key);
    record.count = usize::try_from(count).unwrap_or(usize::MAX);
    record.append(&ops.files)
}
