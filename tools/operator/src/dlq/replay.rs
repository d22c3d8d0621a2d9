//! Replaying a dead-letter queue. Each message is decided first (`disposition`), then
//! moved: sent, journaled, deleted, in that order, so an interrupted replay loses
//! nothing and a re-run sends nothing twice.

use super::browse::Browser;
use super::{DeadLetter, Source, queue_counts, sources};
use crate::OpsError;
use crate::audit::{AuditRecord, Journal};
use crate::filter::Filter;
use crate::stack::{Ops, StackQueue};
use aws_sdk_sqs::types::MessageAttributeValue;
use indicatif::ProgressBar;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// What a replay does with one dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// An earlier, interrupted run sent it: delete it without sending it again.
    AlreadySent,
    /// Not JSON: nothing can route or filter it; it stays in the DLQ.
    Unreadable,
    /// The filter does not select it; it stays in the DLQ.
    Filtered,
    /// A dry run: it would move.
    WouldMove,
    /// Send it back, journal it, then delete it.
    Move,
}

/// Decides a dead letter's fate before anything is sent. Pure, so every case is
/// unit-tested; `already_sent` is what the journal says.
fn disposition(letter: &DeadLetter, options: &ReplayOptions, already_sent: bool) -> Disposition {
    if already_sent && !options.dry_run {
        Disposition::AlreadySent
    } else if letter.json.is_none() {
        Disposition::Unreadable
    } else if !letter.selected_by(options.filter.as_ref()) {
        Disposition::Filtered
    } else if options.dry_run {
        Disposition::WouldMove
    } else {
        Disposition::Move
    }
}

impl ReplaySummary {
    /// Messages moved or, in a dry run, that would move: what `--max` counts.
    fn handled(&self) -> usize {
        self.moved + self.would_move.len()
    }

    fn audit(&self, dlq: &StackQueue, options: &ReplayOptions, aborted: bool) -> AuditRecord {
        let mut record = AuditRecord::new("dlq replay", &dlq.key);
        record.destination = Some(self.destination.clone());
        record.filter = options.filter.as_ref().map(ToString::to_string);
        record.dry_run = options.dry_run;
        record.count = self.moved;
        record.skipped = self.skipped_by_filter;
        record.failed = self
            .failed
            .iter()
            .map(|(id, why)| format!("{id}: {why}"))
            .collect();
        record.interrupted = self.interrupted || aborted;
        record
    }
}

/// SQS's own move task does a whole replay when nothing asks for more than "all of it
/// back to a standard source queue". Returns whether it took the replay.
async fn try_move_task(
    ops: &Ops,
    dlq: &StackQueue,
    destination: &Destination,
    options: &ReplayOptions,
    depth: u64,
    summary: &mut ReplaySummary,
) -> Result<bool, OpsError> {
    let Destination::Queue(source) = destination else {
        return Ok(false);
    };
    if options.manual
        || options.dry_run
        || options.filter.is_some()
        || options.max.is_some()
        || source.is_fifo()
        || dlq.is_fifo()
    {
        return Ok(false);
    }
    match start_move_task(ops, dlq, source, options.rate).await {
        Ok(handle) => {
            summary.move_task = Some(handle);
            summary.moved = usize::try_from(depth).unwrap_or(usize::MAX);
            let mut record = AuditRecord::new("dlq replay (SQS move task)", &dlq.key);
            record.destination = Some(summary.destination.clone());
            record.count = summary.moved;
            record.append(&ops.files)?;
            Ok(true)
        }
        Err(why) => {
            summary.move_task_refused = Some(why);
            Ok(false)
        }
    }
}

/// Sends one dead letter back, journals it, deletes it; the reason when it stays.
async fn move_one(
    ops: &Ops,
    dlq: &StackQueue,
    destination: &Destination,
    journal: &mut Journal,
    browser: &mut Browser<'_>,
    letter: &DeadLetter,
) -> Result<(), String> {
    send_back(ops, dlq, destination, letter).await?;
    journal
        .record_sent(&dlq.url, &letter.message_id, &destination.to_string())
        .map_err(|e| e.to_string())?;
    browser.delete(letter).await.map_err(|e| {
        format!("sent, but not deleted ({e}); a re-run deletes it without sending it again")
    })
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
    if try_move_task(ops, &dlq, &destination, options, depth, &mut summary).await? {
        return Ok(summary);
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
                if summary.handled() >= limit {
                    break 'run;
                }
                if stop.load(Ordering::SeqCst) {
                    summary.interrupted = true;
                    break 'run;
                }
                let sent = journal.was_sent(&dlq.url, &letter.message_id);
                match disposition(&letter, options, sent) {
                    Disposition::AlreadySent => {
                        browser.delete(&letter).await?;
                        summary.moved += 1;
                        summary.resumed += 1;
                        progress.inc(1);
                    }
                    Disposition::Unreadable => summary.failed.push((
                        letter.message_id.clone(),
                        "the body is not JSON; left in the DLQ".into(),
                    )),
                    Disposition::Filtered => summary.skipped_by_filter += 1,
                    Disposition::WouldMove => {
                        summary.would_move.push(letter.message_id.clone());
                        progress.inc(1);
                    }
                    Disposition::Move => {
                        match move_one(ops, &dlq, &destination, &mut journal, &mut browser, &letter)
                            .await
                        {
                            Ok(()) => {
                                summary.moved += 1;
                                progress.inc(1);
                                if let Some(pause) = pause {
                                    tokio::time::sleep(pause).await;
                                }
                            }
                            Err(reason) => summary.failed.push((letter.message_id.clone(), reason)),
                        }
                    }
                }
            }
        }
        Ok::<_, OpsError>(())
    }
    .await;
    let released = browser.release().await;
    summary
        .audit(&dlq, options, result.is_err())
        .append(&ops.files)?;
    result?;
    released?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(body: &str) -> DeadLetter {
        DeadLetter {
            json: serde_json::from_str(body).ok(),
            body: body.to_owned(),
            ..DeadLetter::default()
        }
    }

    #[test]
    fn each_dead_letter_is_moved_kept_or_resumed_for_a_reason() {
        let all = ReplayOptions::default();
        let dry = ReplayOptions {
            dry_run: true,
            ..ReplayOptions::default()
        };
        let only_b = ReplayOptions {
            filter: Some("command=B".parse().unwrap()),
            ..ReplayOptions::default()
        };
        let a = letter(r#"{"command":"A"}"#);
        assert_eq!(disposition(&a, &all, false), Disposition::Move);
        assert_eq!(disposition(&a, &all, true), Disposition::AlreadySent);
        assert_eq!(disposition(&a, &dry, true), Disposition::WouldMove);
        assert_eq!(disposition(&a, &only_b, false), Disposition::Filtered);
        assert_eq!(
            disposition(&letter("not json"), &all, false),
            Disposition::Unreadable
        );
    }
}
