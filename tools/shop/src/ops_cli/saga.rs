//! `shop saga …`: saga runs listed, shown as timelines, redriven; the compensation work
//! queue.

use super::{StackArgs, connect, print_json};
use clap::{Subcommand, ValueEnum};
use shop_ops::OpsError;
use shop_ops::saga::{self, RedrivePlan};
use std::io::Write;
use std::process::ExitCode;

/// Execution status filter.
#[derive(ValueEnum, Clone, Copy, Debug)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Failed runs.
    Failed,
    /// Runs that hit the state machine timeout.
    TimedOut,
    /// Runs in progress.
    Running,
    /// Stopped runs.
    Aborted,
    /// Finished runs.
    Succeeded,
}

impl From<Status> for saga::RunStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Failed => Self::Failed,
            Status::TimedOut => Self::TimedOut,
            Status::Running => Self::Running,
            Status::Aborted => Self::Aborted,
            Status::Succeeded => Self::Succeeded,
        }
    }
}

/// `shop saga …`
#[derive(Subcommand, Debug)]
pub enum SagaCommand {
    /// Saga executions with order id, status, failing state and error.
    List {
        /// Only runs with this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Only runs started within this long (30m, 2h, 7d) or since an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
    /// One order's runs as a timeline, beside its order, reservation and ledger entry.
    Show {
        /// The order id.
        order_id: String,
    },
    /// Redrive the order's failed run (RedriveExecution, or a safe restart).
    Redrive {
        /// The order id.
        order_id: String,
        /// Show what would happen; do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cases on the compensation work queue; --replay redrives each.
    Compensations {
        /// Redrive every case and remove the ones now in hand.
        #[arg(long)]
        replay: bool,
        /// With --replay: show what would happen; do nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most this many cases listed.
        #[arg(long, default_value_t = 50)]
        max: usize,
    },
}

fn parse_since(since: &str) -> Result<time::OffsetDateTime, OpsError> {
    if let Ok(t) =
        time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
    {
        return Ok(t);
    }
    let ago = humantime::parse_duration(since).map_err(|e| {
        OpsError::Refused(format!(
            "--since {since:?}: {e} (write 30m, 2h, 7d or an RFC 3339 time)"
        ))
    })?;
    Ok(time::OffsetDateTime::now_utc() - ago)
}

fn print_plan(plan: &RedrivePlan) {
    match plan {
        RedrivePlan::Nothing { reason } => say!("nothing to redrive: {reason}"),
        RedrivePlan::Native {
            execution_arn,
            fallback,
        } => {
            say!("RedriveExecution {execution_arn}");
            say_inline!("  if refused: ");
            print_plan(fallback);
        }
        RedrivePlan::Restart { name, input } => say!(
            "start {name}{}",
            input["resume"]
                .as_str()
                .map(|r| format!(" resuming at {r:?}"))
                .unwrap_or_else(|| " from the beginning".into())
        ),
    }
}

/// Runs a `shop saga` command.
pub async fn saga(args: StackArgs, command: SagaCommand) -> Result<ExitCode, OpsError> {
    let ops = connect(&args).await?;
    match command {
        SagaCommand::List { status, since } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let runs = saga::list(&ops, status.map(Into::into), since).await?;
            if args.json {
                print_json(&runs);
                return Ok(ExitCode::SUCCESS);
            }
            say!(
                "{:<48} {:<10} {:<22} {:<28} STARTED",
                "EXECUTION",
                "STATUS",
                "STATE",
                "ERROR"
            );
            for r in runs {
                say!(
                    "{:<48} {:<10} {:<22} {:<28} {}",
                    r.name,
                    r.status.as_str(),
                    r.state.as_deref().unwrap_or("-"),
                    r.error.as_deref().unwrap_or("-"),
                    r.started
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SagaCommand::Show { order_id } => {
            let report = saga::show(&ops, &order_id).await?;
            if args.json {
                print_json(&report);
                return Ok(ExitCode::SUCCESS);
            }
            say!("order {}", report.order_id);
            match &report.order {
                Some(o) => {
                    say!(
                        "  status   {}  total {} {}  placed {}",
                        saga::wire_name(&o.status),
                        o.total,
                        saga::wire_name(&o.currency),
                        o.created_at
                    );
                    for change in &o.history {
                        say!(
                            "           {} at {}{}",
                            saga::wire_name(&change.status),
                            change.at,
                            change
                                .reason
                                .as_ref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        );
                    }
                }
                None => say!("  status   (no order stored)"),
            }
            match &report.reservation {
                Some(r) => say!(
                    "  stock    {} ({} line(s))",
                    r.status.as_str(),
                    r.lines.len()
                ),
                None => say!("  stock    no reservation"),
            }
            match &report.ledger {
                Some(l) => say!(
                    "  ledger   {} {} {}",
                    saga::wire_name(&l.status),
                    l.amount,
                    l.charge_id.as_deref().unwrap_or("")
                ),
                None => say!("  ledger   no entry"),
            }
            for (run, steps) in &report.runs {
                say!(
                    "run {}  {}{}",
                    run.name,
                    run.status.as_str(),
                    run.error
                        .as_ref()
                        .map(|e| format!("  {e}: {}", run.cause.as_deref().unwrap_or("")))
                        .unwrap_or_default()
                );
                for s in steps {
                    say!(
                        "  {}  {:<24} {:<9} {:>8}  {}{}",
                        s.entered,
                        s.state,
                        s.outcome,
                        s.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                        if s.retries > 0 {
                            format!("retries {}  ", s.retries)
                        } else {
                            String::new()
                        },
                        s.error.as_deref().unwrap_or("")
                    );
                }
            }
            say!(
                "where the time went: shop trace {} {}",
                report.order_id,
                args.as_flags()
            );
            if report.violations.is_empty() {
                say!("invariants: hold");
                Ok(ExitCode::SUCCESS)
            } else {
                for v in &report.violations {
                    say!("invariant broken: {v}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
        SagaCommand::Redrive { order_id, dry_run } => {
            let outcome = saga::redrive(&ops, &order_id, dry_run).await?;
            if args.json {
                print_json(&outcome);
                return Ok(ExitCode::SUCCESS);
            }
            if dry_run {
                say_inline!("dry run: ");
            }
            print_plan(&outcome.plan);
            if let Some(why) = &outcome.native_refused {
                say!("RedriveExecution was refused ({why}); used the fallback");
            }
            if let Some(arn) = &outcome.started {
                say!("running: {arn}");
            }
            Ok(ExitCode::SUCCESS)
        }
        SagaCommand::Compensations {
            replay,
            dry_run,
            max,
        } => {
            if !replay {
                let cases = saga::compensations(&ops, max).await?;
                if args.json {
                    print_json(&cases);
                } else {
                    for c in &cases {
                        say!(
                            "{}  escalated {}  {}",
                            c.order_id,
                            c.escalated_at,
                            c.failure
                        );
                    }
                    say!("{} case(s)", cases.len());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let done = saga::replay_compensations(&ops, dry_run).await?;
            let mut failed = false;
            for (case, result) in &done {
                match result {
                    Ok(o) => {
                        say_inline!("{}: ", case.order_id);
                        print_plan(&o.plan);
                    }
                    Err(e) => {
                        failed = true;
                        say!("{}: {e} (case left on the queue)", case.order_id);
                    }
                }
            }
            say!("{} case(s) handled", done.len());
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
