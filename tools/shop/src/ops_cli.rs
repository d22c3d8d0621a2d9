//! The `shop dlq`, `shop saga`, `shop payments` and other operator subcommands:
//! argument parsing and console output over the `shop_ops` library.

use clap::{Args, Subcommand, ValueEnum};

/// `println!` that ignores a closed stdout (`shop dlq list | head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! say_inline {
    ($($arg:tt)*) => {{
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
use indicatif::{ProgressBar, ProgressStyle};
use local_runtime::emulator::emulator_sdk;
use shop_ops::OpsError;
use shop_ops::audit::{AuditRecord, OpsFiles};
use shop_ops::dlq::{self, DeadLetter, ReplayOptions};
use shop_ops::filter::Filter;
use shop_ops::payments::PartRefundOutcome;
use shop_ops::saga::{self, RedrivePlan};
use shop_ops::stack::{LocalStackFile, Ops, StackOutputs};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which stack the operator commands act on.
#[derive(Args, Debug)]
pub struct StackArgs {
    /// CloudFormation stack whose outputs name the resources (region, profile and
    /// AWS_ENDPOINT_URL come from the usual AWS configuration).
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "local")]
    stack: Option<String>,
    /// Act on the app `shop local` is running.
    #[arg(long, global = true)]
    local: bool,
    /// With --local: the --stack-name `shop local` was started with.
    #[arg(long, global = true, value_name = "NAME", default_value = "shop")]
    local_stack: String,
    /// Folder of the audit log, the replay journal and `shop local`'s stack file.
    #[arg(long, global = true, default_value = ".shop")]
    state_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

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

/// `shop payments …`
#[derive(Subcommand, Debug)]
pub enum PaymentsCommand {
    /// Give back part of a captured order's payment (a returned item), once per
    /// reference, never more than the order still holds; waits for the ledger.
    Refund {
        /// The order id.
        order_id: String,
        /// Amount in minor units of the order's currency (1250 is 12.50).
        #[arg(long)]
        amount: u64,
        /// Your reference for this refund (a return or ticket number; letters, digits,
        /// '-' and '_'): the same reference refunds once.
        #[arg(long)]
        reference: String,
        /// How long to wait for the payments function to record it.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
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

async fn connect(args: &StackArgs) -> Result<Ops, OpsError> {
    let files = OpsFiles::in_dir(&args.state_dir);
    match (&args.stack, args.local) {
        (Some(stack), _) => {
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let outputs = StackOutputs::from_cloudformation(
                &aws_sdk_cloudformation::Client::new(&sdk),
                stack,
            )
            .await?;
            Ok(Ops::new(&sdk, outputs, files))
        }
        (None, true) => {
            let local =
                LocalStackFile::read(&LocalStackFile::path(&args.state_dir, &args.local_stack))?;
            let sdk = emulator_sdk(&local.endpoint).await;
            Ok(Ops::new(&sdk, local.outputs, files))
        }
        (None, false) => Err(OpsError::Refused(
            "say which stack: --stack NAME (deployed with SAM) or --local (shop local)".into(),
        )),
    }
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

fn print_json(value: &impl serde::Serialize) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
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

fn confirm(prompt: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    say_inline!("{prompt} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        crate::wait_for_stop().await;
        eprintln!("stopping after the current message…");
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

/// Runs `shop seed FILE`: the catalog and its stock into the stack, idempotently.
pub async fn seed(args: StackArgs, file: PathBuf) -> Result<ExitCode, OpsError> {
    let seed = shop_ops::seed::Seed::load(&file)?;
    let ops = connect(&args).await?;
    let catalog = shop_aws::catalog::DynamoCatalog::new(
        ops.dynamodb.clone(),
        ops.outputs.get("CatalogTableName")?,
    );
    let stock = shop_aws::stock::DynamoStockStore::new(
        ops.dynamodb.clone(),
        ops.outputs.get("InventoryTableName")?,
    );
    let added = seed.apply(&catalog, &stock).await?;
    let units: u64 = added.iter().map(|(_, n)| u64::from(*n)).sum();
    let mut record = AuditRecord::new("seed", &file.display().to_string());
    record.count = usize::try_from(units).unwrap_or(usize::MAX);
    record.append(&ops.files)?;
    if args.json {
        print_json(&added);
    } else {
        for (sku, n) in &added {
            say!(
                "{sku:<12} {} {n} units",
                if *n > 0 {
                    "restocked"
                } else {
                    "already stocked,"
                }
            );
        }
        say!(
            "{} catalog items written, {units} units restocked",
            added.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `shop payments …`.
pub async fn payments(args: StackArgs, command: PaymentsCommand) -> Result<ExitCode, OpsError> {
    let ops = connect(&args).await?;
    let PaymentsCommand::Refund {
        order_id,
        amount,
        reference,
        wait,
    } = command;
    let outcome =
        shop_ops::payments::refund_part(&ops, &order_id, amount, &reference, wait).await?;
    let mut record = AuditRecord::new("payments refund", &order_id);
    record.destination = Some(format!("{reference}: {amount}"));
    record.count = usize::from(matches!(outcome, PartRefundOutcome::Refunded { .. }));
    record.append(&ops.files)?;
    if args.json {
        print_json(&outcome);
    } else {
        match &outcome {
            PartRefundOutcome::Refunded { amount, remaining } => {
                say!("refunded {amount} of {order_id} under {reference}; {remaining} left")
            }
            PartRefundOutcome::AlreadyRefunded { amount, remaining } => say!(
                "{reference} already refunded {amount} of {order_id}; nothing sent; {remaining} left"
            ),
            PartRefundOutcome::Sent { correlation_id } => say!(
                "sent, but not recorded within {}: the payments function logs its answer under correlation id {correlation_id}",
                humantime::format_duration(wait)
            ),
        }
    }
    Ok(match outcome {
        PartRefundOutcome::Sent { .. } => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// Runs `shop token`: prints a token the local stack's issuer signed for `customer`.
pub fn token(
    args: StackArgs,
    customer: String,
    scopes: Vec<String>,
    lifetime: std::time::Duration,
) -> Result<ExitCode, OpsError> {
    if let Some(stack) = &args.stack {
        return Err(OpsError::Refused(format!(
            "{stack} is a deployed stack: its tokens come from its identity provider \
             (its Cognito user pool's managed sign-in for shoppers, its ShopSmokeClient \
             for operators, or the issuer it was given); see README, Deploying to AWS"
        )));
    }
    let mut request = local_runtime::oidc_issuer::TokenRequest::shopper(customer, lifetime);
    if !scopes.is_empty() {
        request.scopes = scopes;
    }
    let token = crate::token::local_token(&args.state_dir, &args.local_stack, &request)?;
    say!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Runs `shop smoke`: a confirmed order and a compensated one through the public API,
/// followed to their end, invariants checked. Exits 1 naming the step that failed.
pub async fn smoke(
    args: StackArgs,
    token: Option<String>,
    sku: String,
    within: std::time::Duration,
) -> Result<ExitCode, OpsError> {
    let ops = connect(&args).await?;
    let token = match (token, &args.stack) {
        (Some(token), _) => token,
        (None, None) => crate::token::local_token(
            &args.state_dir,
            &args.local_stack,
            &local_runtime::oidc_issuer::TokenRequest::shopper(
                format!("smoke-{}", uuid::Uuid::new_v4().simple()),
                within * 3,
            ),
        )?,
        (None, Some(stack)) => {
            return Err(OpsError::Refused(format!(
                "{stack} is a deployed stack: pass a shopper's access token with --token \
                 (or SHOP_SMOKE_TOKEN); README, Identity, shows how to get one"
            )));
        }
    };
    let options = crate::smoke::SmokeOptions {
        api: ops.outputs.get("ApiUrl")?.to_owned(),
        bearer: format!("Bearer {}", token.trim_start_matches("Bearer ")),
        sku,
        within,
    };
    let steps = crate::smoke::run(&ops, &options).await;
    let failed = steps.iter().find(|s| !s.ok).map(|s| s.name.clone());
    if args.json {
        print_json(&steps);
    } else {
        for step in &steps {
            say!(
                "{} {:<60} {}",
                if step.ok { "ok  " } else { "FAIL" },
                step.name,
                step.detail
            );
        }
    }
    Ok(match failed {
        Some(step) => {
            eprintln!("shop smoke: failed at: {step}");
            ExitCode::from(1)
        }
        None => {
            say!("smoke: every step held");
            ExitCode::SUCCESS
        }
    })
}

/// What `shop load` was asked for, besides the stack.
pub struct LoadArgs {
    /// Orders to place.
    pub orders: usize,
    /// Shoppers placing them.
    pub shoppers: usize,
    /// SKUs, in turn.
    pub skus: Vec<String>,
    /// Orders a second, or as fast as admitted.
    pub rate: Option<f64>,
    /// The card.
    pub card: String,
    /// How long orders may take to end.
    pub within: std::time::Duration,
    /// Requests in flight.
    pub in_flight: usize,
    /// Tokens for a deployed stack.
    pub tokens: Vec<String>,
}

/// Runs `shop load` and prints its report; exits 1 when the rush did not end as a
/// shop owner expects ([`crate::load::LoadReport::failures`]).
pub async fn load(args: StackArgs, load: LoadArgs) -> Result<ExitCode, OpsError> {
    if load.orders == 0 || load.shoppers == 0 || load.in_flight == 0 || load.skus.is_empty() {
        return Err(OpsError::Refused(
            "--orders, --shoppers and --in-flight must be above 0, with at least one --sku".into(),
        ));
    }
    if load.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(OpsError::Refused(
            "--rate must be above 0 orders a second".into(),
        ));
    }
    let ops = connect(&args).await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let tokens = match (&args.stack, load.tokens.is_empty()) {
        (_, false) => load.tokens.clone(),
        (None, true) => (0..load.shoppers)
            .map(|i| {
                crate::token::local_token(
                    &args.state_dir,
                    &args.local_stack,
                    &local_runtime::oidc_issuer::TokenRequest::shopper(
                        format!("load-{}-{i}", &run_id[..8]),
                        load.within * 3 + std::time::Duration::from_secs(3600),
                    ),
                )
            })
            .collect::<Result<_, _>>()?,
        (Some(stack), true) => {
            return Err(OpsError::Refused(format!(
                "{stack} is a deployed stack: pass shoppers' access tokens with --token                  (or SHOP_LOAD_TOKENS, comma-separated)"
            )));
        }
    };
    let options = crate::load::LoadOptions {
        api: ops.outputs.get("ApiUrl")?.to_owned(),
        bearers: tokens
            .iter()
            .map(|t| format!("Bearer {}", t.trim_start_matches("Bearer ")))
            .collect(),
        orders: load.orders,
        skus: load.skus,
        rate: load.rate,
        card: load.card,
        within: load.within,
        in_flight: load.in_flight,
    };
    let progress = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    let report = crate::load::run(&ops, &options, &progress).await?;
    progress.finish_and_clear();
    let failures = report.failures();
    if args.json {
        print_json(&report);
    } else {
        let p = |p: &crate::load::Percentiles| {
            format!(
                "p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
                p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms
            )
        };
        say!(
            "accepted          {} ({:.1}/s), {} answers 429",
            report.accepted,
            report.accepted_per_second,
            report.throttled
        );
        say!("confirmed         {}", report.confirmed);
        for (reason, n) in &report.cancelled {
            say!("cancelled         {n} {reason}");
        }
        say!("never ended       {}", report.never_ended);
        say!(
            "oversold units    {}",
            report.oversold.values().sum::<u64>()
        );
        say!("time to accepted  {}", p(&report.time_to_accepted));
        say!("time to final     {}", p(&report.time_to_final));
        for (queue, depth) in &report.queue_peak_depth {
            say!("peak depth        {queue}: {depth}");
        }
        for (stage, time) in &report.stage_time {
            say!("in stage {stage:<8} {}", p(time));
        }
    }
    Ok(if failures.is_empty() {
        say!("load: every order ended as the shop expects");
        ExitCode::SUCCESS
    } else {
        eprintln!("shop load: {}", failures.join("; "));
        ExitCode::from(1)
    })
}

/// Runs `shop alarms`: every alarm of the stack, its state, what it watches and its
/// runbook. Exits 1 when one is in ALARM, so a script can wait on it.
pub async fn alarms(args: StackArgs) -> Result<ExitCode, OpsError> {
    let ops = connect(&args).await?;
    let all = shop_ops::alarms::list(&ops).await?;
    let firing = all.iter().any(|a| a.state == "ALARM");
    if args.json {
        print_json(&all);
    } else {
        for alarm in &all {
            say!("{:<17} {}", alarm.state, alarm.name);
            say!("{:<17} watches {}", "", alarm.watches);
            say!("{:<17} {}", "", alarm.description);
        }
        say!(
            "{} alarms, {} in ALARM",
            all.len(),
            all.iter().filter(|a| a.state == "ALARM").count()
        );
    }
    Ok(if firing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
