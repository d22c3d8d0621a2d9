//! `shop`, the developer's and operator's tool: `shop local` runs the whole app on one
//! machine; the other subcommands act on a running or deployed stack through AWS APIs
//! (the `shop_ops` library) or read the repository (`shop capacity`).

pub mod cli;

mod capacity;
mod load;
mod local;
mod ops_cli;
mod smoke;
mod token;

use cli::{Cli, Command};
use local_app::{LocalApp, LocalOptions};
use std::process::ExitCode;

/// Runs one parsed command line to its exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Local {
            port,
            issuer_port,
            endpoint,
            invoke_url,
            seed,
            stack_name,
            root,
            demo: run_demo,
            parameters,
            payment_latency,
        } => {
            let options = LocalOptions {
                root,
                endpoint,
                port,
                issuer_port,
                invoke_url,
                seed,
                stack_name,
                parameters: parameters.into_iter().collect(),
                payment_latency,
                ..LocalOptions::default()
            };
            let app = match LocalApp::start(options).await {
                Ok(app) => app,
                Err(e) => {
                    eprintln!("shop local: {}", observability::ErrorChain(&e));
                    return ExitCode::FAILURE;
                }
            };
            println!("{}", app.describe());
            let code = if run_demo {
                if local::demo(&app).await {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            } else {
                println!("Press Ctrl-C to stop.");
                wait_for_stop().await;
                ExitCode::SUCCESS
            };
            app.stop().await;
            code
        }
        Command::Dlq { stack, command } => finish(ops_cli::dlq(stack, command).await, "dlq"),
        Command::Saga { stack, command } => finish(ops_cli::saga(stack, command).await, "saga"),
        Command::Trace { stack, order_id } => {
            finish(ops_cli::trace(stack, order_id).await, "trace")
        }
        Command::Payments { stack, command } => {
            finish(ops_cli::payments(stack, command).await, "payments")
        }
        Command::Alarms { stack } => finish(ops_cli::alarms(stack).await, "alarms"),
        Command::Capacity { root, write } => match capacity::from_files(&root) {
            Ok(report) if write => match std::fs::write(root.join("docs/capacity.md"), report) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shop capacity: docs/capacity.md: {e}");
                    ExitCode::from(2)
                }
            },
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shop capacity: {e}");
                ExitCode::from(2)
            }
        },
        Command::Seed { stack, file } => finish(ops_cli::seed(stack, file).await, "seed"),
        Command::Smoke {
            stack,
            token,
            sku,
            within,
        } => finish(ops_cli::smoke(stack, token, sku, within).await, "smoke"),
        Command::Load {
            stack,
            orders,
            shoppers,
            sku,
            rate,
            card,
            within,
            in_flight,
            tokens,
        } => finish(
            ops_cli::load(
                stack,
                ops_cli::LoadArgs {
                    orders,
                    shoppers,
                    skus: sku,
                    rate,
                    card,
                    within,
                    in_flight,
                    tokens,
                },
            )
            .await,
            "load",
        ),
        Command::Token {
            stack,
            customer,
            scopes,
            expires,
        } => finish(ops_cli::token(stack, customer, scopes, expires), "token"),
    }
}

fn finish(result: Result<ExitCode, shop_ops::OpsError>, what: &str) -> ExitCode {
    result.unwrap_or_else(|e| {
        // The whole chain: the port's operation, the adapter's error, AWS's answer.
        eprintln!("shop {what}: {}", observability::ErrorChain(&e));
        ExitCode::from(2)
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_stop() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
