//! `shop dlq …`: dead-letter queues listed, peeked, replayed and purged.

use super::{StackArgs, connect, print_json};
use super::{confirm, stop_on_signal};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use shop_ops::OpsError;
use shop_ops::audit::AuditRecord;
use shop_ops::dlq::{self, DeadLetter, ReplayOptions};
use shop_ops::filter::Filter;
use std::io::Write;
use std::process::ExitCode;

/// `shop dlq …`
#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Every dead-letter queue of the stack: depth, oldest message, source, alarm state.
    List,
    /// Decoded messages, left in the queue.
    Peek {
        /// Queue: short name (PaymentsDLQ), queue name or URL.
        queue: String,
        /// At most this many messages.
        #[arg(long, default_value_t = 10)]
        max: usize,
        /// Only messages matching PATH, PATH=VALUE, PATH!=VALUE or PATH~TEXT; PATH is a
        /// dotted path into the JSON body (detail.orderId) or attr.NAME.
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
    },
    /// Move messages back to their source queue or event bus: send, then delete.
    Replay {
        /// Queue: short name (PaymentsDLQ), queue name or URL.
        queue: String,
        /// Send to this queue of the stack instead of the DLQ's source.
        #[arg(long, value_name = "QUEUE")]
        to: Option<String>,
        /// Only messages matching the expression (see `peek --help`).
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
        /// At most this many messages.
        #[arg(long)]
        max: Option<usize>,
        /// At most this many messages per second (e.g. 5/s).
        #[arg(long, value_name = "N/s")]
        rate: Option<String>,
        /// Show what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Move message by message even where SQS's own move task would do.
        #[arg(long)]
        manual: bool,
    },
    /// Delete every message of a queue (asks first, unless --yes).
    Purge {
        /// Queue: short name (PaymentsDLQ), queue name or URL.
        queue: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

fn parse_filter(expr: Option<&str>) -> Result<Option<Filter>, OpsError> {
    expr.map(str::parse).transpose()
}

fn parse_rate(rate: &str) -> Result<f64, OpsError> {
    rate.trim_end_matches("/s")
        .parse::<f64>()
        .ok()
        .filter(|r| *r > 0.0 && r.is_finite())
        .ok_or_else(|| {
            OpsError::Refused(format!(
                "--rate {rate:?}: write a positive number per second, e.g. 5/s"
            ))
        })
}

fn age(seconds: Option<u64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

fn print_letter(letter: &DeadLetter) {
    say!(
        "── {}  received {}×  first received {}  sent {}{}",
        letter.message_id,
        letter.receive_count,
        letter.first_receive.as_deref().unwrap_or("-"),
        letter.sent.as_deref().unwrap_or("-"),
        letter
            .group_id
            .as_ref()
            .map(|g| format!("  group {g}"))
            .unwrap_or_default()
    );
    say!("   reason: {}", letter.reason);
    if let Some(f) = &letter.delivery_failure {
        say!(
            "   delivery failed: {} {} (rule {}, target {})",
            f.code,
            f.message,
            f.rule_arn,
            f.target_arn
        );
    }
    let attributes: Vec<String> = letter
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !attributes.is_empty() {
        say!("   attributes: {}", attributes.join(", "));
    }
    match &letter.json {
        Some(json) => {
            for line in serde_json::to_string_pretty(json)
                .unwrap_or_default()
                .lines()
            {
                say!("   {line}");
            }
        }
        None => say!("   (not JSON) {}", letter.body),
    }
}

/// Runs a `shop dlq` command.
pub async fn dlq(args: StackArgs, command: DlqCommand) -> Result<ExitCode, OpsError> {
    let ops = connect(&args).await?;
    match command {
        DlqCommand::List => {
            let all = dlq::list(&ops).await?;
            if args.json {
                print_json(&all);
                return Ok(ExitCode::SUCCESS);
            }
            say!(
                "{:<18} {:>6} {:>9} {:>7}  {:<20} SOURCE",
                "DLQ",
                "DEPTH",
                "IN FLIGHT",
                "OLDEST",
                "ALARM"
            );
            for q in all {
                let alarm = q
                    .alarms
                    .iter()
                    .map(|(_, state)| state.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                let sources = q
                    .sources
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                say!(
                    "{:<18} {:>6} {:>9} {:>7}  {:<20} {}",
                    q.key,
                    q.depth,
                    q.in_flight,
                    age(q.oldest_age_seconds),
                    if alarm.is_empty() { "-" } else { &alarm },
                    if sources.is_empty() { "-" } else { &sources }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Peek { queue, max, filter } => {
            let filter = parse_filter(filter.as_deref())?;
            let letters = dlq::peek(&ops, &queue, max, filter.as_ref()).await?;
            if args.json {
                print_json(&letters);
            } else {
                letters.iter().for_each(print_letter);
                say!("{} message(s) shown; all left in the queue", letters.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay {
            queue,
            to,
            filter,
            max,
            rate,
            dry_run,
            manual,
        } => {
            let options = ReplayOptions {
                manual,
                to,
                filter: parse_filter(filter.as_deref())?,
                max,
                rate: rate.as_deref().map(parse_rate).transpose()?,
                dry_run,
            };
            let progress = if args.json {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(0).with_style(
                    ProgressStyle::with_template("{bar:40} {pos}/{len} moved {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                )
            };
            let stop = stop_on_signal();
            let summary = dlq::replay(&ops, &queue, &options, &progress, &stop).await?;
            progress.finish_and_clear();
            if args.json {
                print_json(&summary);
            } else {
                if let Some(handle) = &summary.move_task {
                    say!(
                        "SQS move task {handle} is moving {} message(s) to {}",
                        summary.moved,
                        summary.destination
                    );
                } else if dry_run {
                    say!(
                        "dry run: {} message(s) would move to {}",
                        summary.would_move.len(),
                        summary.destination
                    );
                } else {
                    if let Some(why) = &summary.move_task_refused {
                        say!("SQS move task not available ({why}); moved message by message");
                    }
                    say!(
                        "moved {} to {} ({} finished from an earlier run)",
                        summary.moved,
                        summary.destination,
                        summary.resumed
                    );
                }
                say!("skipped by filter: {}", summary.skipped_by_filter);
                say!("failed: {}", summary.failed.len());
                for (id, why) in &summary.failed {
                    say!("  {id}: {why}");
                }
                if summary.interrupted {
                    say!("interrupted: run the same command again to finish");
                }
            }
            Ok(if summary.failed.is_empty() && !summary.interrupted {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DlqCommand::Purge { queue, yes } => {
            let (queue, count) = dlq::depth(&ops, &queue).await?;
            if !yes && !confirm(&format!("Delete all {count} message(s) of {}?", queue.key)) {
                say!("nothing purged (pass --yes, or answer y at a terminal)");
                let mut record = AuditRecord::new("dlq purge refused", &queue.key);
                record.dry_run = true;
                record.append(&ops.files)?;
                return Ok(ExitCode::FAILURE);
            }
            dlq::purge(&ops, &queue, count).await?;
            say!("purged {count} message(s) from {}", queue.key);
            Ok(ExitCode::SUCCESS)
        }
    }
}
