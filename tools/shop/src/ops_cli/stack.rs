//! Commands on a whole stack: `shop seed`, `shop token`, `shop smoke`, `shop load` and
//! `shop alarms`.

use super::{StackArgs, connect, print_json};
use shop_ops::OpsError;
use shop_ops::audit::AuditRecord;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
             for operators, or the issuer it was given); see docs/deploying.md"
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
                 (or SHOP_SMOKE_TOKEN); docs/deploying.md shows how to get one"
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
