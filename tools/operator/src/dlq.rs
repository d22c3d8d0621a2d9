//! `shop dlq`: list the stack's dead-letter queues, peek at their messages, move them
//! back where they came from, purge them.
//!
//! Replays send first and delete after the send is confirmed and journaled, so an
//! interrupted replay loses nothing and a re-run sends nothing twice. Messages a run does
//! not move (filtered out, undecodable, failed) are made visible again when it ends.

use super::audit::{AuditRecord, Journal};
use super::filter::Filter;
use super::stack::{Ops, StackQueue};
use super::{OpsError, aws};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName,
};
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Seconds a message stays hidden while a command holds it.
const HOLD_SECONDS: i32 = 120;

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
#[derive(Debug, Clone, Serialize)]
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

/// Receives a queue's messages in batches while holding what it received, and makes
/// whatever it still holds visible again when asked.
struct Browser<'a> {
    ops: &'a Ops,
    queue: &'a StackQueue,
    seen: HashSet<String>,
    held: HashMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(ops: &'a Ops, queue: &'a StackQueue) -> Self {
        Self {
            ops,
            queue,
            seen: HashSet::new(),
            held: HashMap::new(),
        }
    }

    /// The next batch of messages not seen before; empty when the queue has no more.
    async fn next(&mut self) -> Result<Vec<DeadLetter>, OpsError> {
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

    async fn delete(&mut self, letter: &DeadLetter) -> Result<(), OpsError> {
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
    async fn release(&mut self) -> Result<(), OpsError> {
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

/// What `shop dlq replay` should do.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Destination queue instead of the DLQ's source.
    pub to: Option<String>,
    /// Only messages the filter selects.
    pub filter: Option<Filter>,
    /// At most this many messages.
    pub max: Option<usize>,
    /// At most this many messages per second.
    pub rate: Option<f64>,
    /// Decide everything, move nothing.
    pub dry_run: bool,
    /// Move message by message even where SQS's own move task would do.
    pub manual: bool,
}

/// How a replay ended.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplaySummary {
    /// Where messages went.
    pub destination: String,
    /// Messages sent back and deleted (including ones an earlier run had sent).
    pub moved: usize,
    /// Messages an earlier, interrupted run had sent; deleted now without sending again.
    pub resumed: usize,
    /// Messages the filter did not select; left in the DLQ.
    pub skipped_by_filter: usize,
    /// Messages left in the DLQ because they could not be moved, with the reason.
    pub failed: Vec<(String, String)>,
    /// With `--dry-run`: the ids that would move.
    pub would_move: Vec<String>,
    /// Whether the run was stopped before the DLQ was drained.
    pub interrupted: bool,
    /// When SQS's own move task does the work: its handle (it runs on after `replay`
    /// returns; `moved` is then the DLQ's depth when it started).
    pub move_task: Option<String>,
    /// Why SQS's move task was not used, when it was tried and refused.
    pub move_task_refused: Option<String>,
}

/// Where a replay sends messages.
#[derive(Debug, Clone)]
enum Destination {
    Queue(StackQueue),
    Bus(String),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Queue(q) => write!(f, "queue {}", q.name),
            Self::Bus(b) => write!(f, "bus {b}"),
        }
    }
}

async fn destination(
    ops: &Ops,
    dlq: &StackQueue,
    to: Option<&str>,
) -> Result<Destination, OpsError> {
    if let Some(to) = to {
        return Ok(Destination::Queue(ops.queue(to)?));
    }
    let sources = sources(ops, dlq).await?;
    match sources.as_slice() {
        [Source::Queue { url, .. }] => Ok(Destination::Queue(
            ops.queue(url).unwrap_or_else(|_| StackQueue::from_url(url)),
        )),
        [Source::RuleTarget { bus, .. }] => Ok(Destination::Bus(bus.clone())),
        [] => Err(OpsError::Refused(format!(
            "no queue or rule target sends to {}; say where to replay with --to",
            dlq.key
        ))),
        many => Err(OpsError::Refused(format!(
            "{} has several sources ({}); choose one with --to",
            dlq.key,
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A FIFO deduplication id that is the same every time the same dead letter is sent
/// back, so a re-run inside the deduplication window cannot duplicate it.
fn dedup_id(dlq: &StackQueue, letter: &DeadLetter) -> String {
    let digest = Sha256::digest(format!("{}\n{}", dlq.url, letter.message_id));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

async fn send_back(
    ops: &Ops,
    dlq: &StackQueue,
    destination: &Destination,
    letter: &DeadLetter,
) -> Result<(), String> {
    match destination {
        Destination::Queue(queue) => {
            let attributes: HashMap<String, MessageAttributeValue> = letter
                .attributes
                .iter()
                .filter_map(|(k, v)| {
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(v)
                        .build()
                        .ok()
                        .map(|a| (k.clone(), a))
                })
                .collect();
            let mut send = ops
                .sqs
                .send_message()
                .queue_url(&queue.url)
                .message_body(&letter.body)
                .set_message_attributes((!attributes.is_empty()).then_some(attributes));
            if queue.is_fifo() {
                let group = letter.group_id.clone().ok_or_else(|| {
                    "a FIFO destination needs a message group id and this message has none"
                        .to_owned()
                })?;
                send = send
                    .message_group_id(group)
                    .message_deduplication_id(dedup_id(dlq, letter));
            }
            send.send()
                .await
                .map(|_| ())
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
        }
        Destination::Bus(bus) => {
            let event = letter.json.as_ref().ok_or("the body is not JSON")?;
            let text = |key: &str| {
                event[key]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("not an EventBridge event: no {key:?}"))
            };
            let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name(bus)
                .source(text("source")?)
                .detail_type(text("detail-type")?)
                .detail(event["detail"].to_string())
                .set_resources(event["resources"].as_array().map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                }))
                .build();
            let out = ops
                .events
                .put_events()
                .entries(entry)
                .send()
                .await
                .map_err(|e| aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string())?;
            match out.entries().first() {
                Some(e) if e.error_code().is_some() => Err(format!(
                    "PutEvents refused the entry: {} {}",
                    e.error_code().unwrap_or_default(),
                    e.error_message().unwrap_or_default()
                )),
                _ if out.failed_entry_count() > 0 => Err("PutEvents refused the entry".into()),
                _ => Ok(()),
            }
        }
    }
}

/// Starts SQS's own redrive of a standard DLQ to its source queue, which keeps every
/// attribute and runs server-side. Emulators without it answer with an error, and the
/// caller moves the messages itself.
async fn start_move_task(
    ops: &Ops,
    dlq: &StackQueue,
    source: &StackQueue,
    rate: Option<f64>,
) -> Result<String, String> {
    let dlq_arn = ops.queue_arn(dlq).await.map_err(|e| e.to_string())?;
    let source_arn = ops.queue_arn(source).await.map_err(|e| e.to_string())?;
    let out = ops
        .sqs
        .start_message_move_task()
        .source_arn(dlq_arn)
        .destination_arn(source_arn)
        .set_max_number_of_messages_per_second(rate.map(|r| r.ceil() as i32))
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
    out.task_handle
        .ok_or_else(|| "the move task started without a handle".to_owned())
}

/// `shop dlq replay`: moves dead letters back to their source (or `--to`), at most
/// `max`, at most `rate` per second, until the DLQ has no more or `stop` is set. Every
/// run appends an audit record.
pub async fn replay(
    ops: &Ops,
    queue: &str,
    options: &ReplayOptions,
    progress: &ProgressBar,
    stop: &AtomicBool,
) -> Result<ReplaySummary, OpsError> {
    let dlq = ops.queue(queue)?;
    let destination = destination(ops, &dlq, options.to.as_deref()).await?;
    if let Destination::Queue(q) = &destination
        && q.url == dlq.url
    {
        return Err(OpsError::Refused(
            "the destination is the dead-letter queue itself".into(),
        ));
    }
    let mut summary = ReplaySummary {
        destination: destination.to_string(),
        ..ReplaySummary::default()
    };
    let (depth, _) = queue_counts(ops, &dlq).await?;
    if let Destination::Queue(source) = &destination
        && !options.manual
        && !options.dry_run
        && options.filter.is_none()
        && options.max.is_none()
        && !source.is_fifo()
        && !dlq.is_fifo()
    {
        match start_move_task(ops, &dlq, source, options.rate).await {
            Ok(handle) => {
                summary.move_task = Some(handle);
                summary.moved = usize::try_from(depth).unwrap_or(usize::MAX);
                let mut record = AuditRecord::new("dlq replay (SQS move task)", &dlq.key);
                record.destination = Some(summary.destination.clone());
                record.count = summary.moved;
                record.append(&ops.files)?;
                return Ok(summary);
            }
            Err(why) => summary.move_task_refused = Some(why),
        }
    }
    progress.set_length(options.max.map_or(depth, |m| depth.min(m as u64)));
    let mut journal = Journal::open(&ops.files);
    let mut browser = Browser::new(ops, &dlq);
    let pause = options
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let limit = options.max.unwrap_or(usize::MAX);
    let result = async {
        'run: loop {
            let batch = browser.next().await?;
            if batch.is_empty() {
                break;
            }
            for letter in batch {
                let done = summary.moved + summary.would_move.len();
                if done >= limit {
                    break 'run;
                }
                if stop.load(Ordering::SeqCst) {
                    summary.interrupted = true;
                    break 'run;
                }
                if !options.dry_run && journal.was_sent(&dlq.url, &letter.message_id) {
                    browser.delete(&letter).await?;
                    summary.moved += 1;
                    summary.resumed += 1;
                    progress.inc(1);
                    continue;
                }
                if letter.json.is_none() {
                    summary.failed.push((
                        letter.message_id.clone(),
                        "the body is not JSON; left in the DLQ".into(),
                    ));
                    continue;
                }
                if !letter.selected_by(options.filter.as_ref()) {
                    summary.skipped_by_filter += 1;
                    continue;
                }
                if options.dry_run {
                    summary.would_move.push(letter.message_id.clone());
                    progress.inc(1);
                    continue;
                }
                if let Err(reason) = send_back(ops, &dlq, &destination, &letter).await {
                    summary.failed.push((letter.message_id.clone(), reason));
                    continue;
                }
                journal.record_sent(&dlq.url, &letter.message_id, &summary.destination)?;
                if let Err(e) = browser.delete(&letter).await {
                    summary.failed.push((
                        letter.message_id.clone(),
                        format!("sent, but not deleted ({e}); a re-run deletes it without sending it again"),
                    ));
                    continue;
                }
                summary.moved += 1;
                progress.inc(1);
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        Ok::<_, OpsError>(())
    }
    .await;
    let released = browser.release().await;
    let mut record = AuditRecord::new("dlq replay", &dlq.key);
    record.destination = Some(summary.destination.clone());
    record.filter = options.filter.as_ref().map(ToString::to_string);
    record.dry_run = options.dry_run;
    record.count = summary.moved;
    record.skipped = summary.skipped_by_filter;
    record.failed = summary
        .failed
        .iter()
        .map(|(id, why)| format!("{id}: {why}"))
        .collect();
    record.interrupted = summary.interrupted || result.is_err();
    record.append(&ops.files)?;
    result?;
    released?;
    Ok(summary)
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
