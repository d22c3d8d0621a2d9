use clap::{Parser, Subcommand};
use local_app::{LocalApp, LocalOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod capacity;
mod load;
mod ops_cli;
mod smoke;
mod token;

/// Developer and operator tool for the order saga suite.
#[derive(Parser)]
#[command(name = "shop", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole app on this machine: emulator, resources, HTTP API, every function.
    Local {
        /// Port of the HTTP API on 127.0.0.1.
        #[arg(long, default_value_t = 3000)]
        port: u16,
        /// Port of the local token issuer (OpenID Connect discovery and JWKS) on
        /// 127.0.0.1; 0 picks a free one.
        #[arg(long, default_value_t = 3001)]
        issuer_port: u16,
        /// Use an AWS-API emulator that is already running instead of starting moto.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Invoke functions through this Lambda invoke URL (e.g. `cargo lambda watch`'s
        /// http://127.0.0.1:9000) instead of in process.
        #[arg(long, value_name = "URL")]
        invoke_url: Option<String>,
        /// Catalog and stock to start with (default: local/seed.json).
        #[arg(long, value_name = "FILE")]
        seed: Option<PathBuf>,
        /// Prefix of every resource name.
        #[arg(long, default_value = "shop")]
        stack_name: String,
        /// Folder with template.yaml (default: current directory).
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Place three demo orders (confirmed, out of stock, declined), print how each
        /// ended, and exit.
        #[arg(long)]
        demo: bool,
        /// A template parameter instead of its default (repeatable), e.g.
        /// --parameter StandardIntakeConcurrency=2.
        #[arg(long = "parameter", value_name = "KEY=VALUE", value_parser = parse_parameter)]
        parameters: Vec<(String, String)>,
        /// Make the payment provider answer with this latency, P50,P99 (e.g. 300ms,2s;
        /// a log-normal between them), as a card provider does: charges then queue as
        /// in production. Delays the Stripe emulator, or sets the sandbox's
        /// PaymentSandboxLatency parameter.
        #[arg(long, value_name = "P50,P99", value_parser = parse_latency)]
        payment_latency: Option<String>,
    },
    /// Dead-letter queues: list, peek, replay, purge (on AWS with --stack, locally with --local).
    Dlq {
        #[command(flatten)]
        stack: ops_cli::StackArgs,
        #[command(subcommand)]
        command: ops_cli::DlqCommand,
    },
    /// Saga executions: list, show, redrive, compensations (--stack or --local).
    Saga {
        #[command(flatten)]
        stack: ops_cli::StackArgs,
        #[command(subcommand)]
        command: ops_cli::SagaCommand,
    },
    /// Payments: give back part of a captured order's payment (--stack or --local).
    Payments {
        #[command(flatten)]
        stack: ops_cli::StackArgs,
        #[command(subcommand)]
        command: ops_cli::PaymentsCommand,
    },
    /// Load a catalog and its stock (the local/seed.json shape) into the stack
    /// (--stack or --local); a second run changes nothing.
    Seed {
        #[command(flatten)]
        stack: ops_cli::StackArgs,
        /// The seed file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Prove the stack works: a confirmed and a compensated order through the public
    /// API, followed to their end, invariants checked (--stack or --local).
    Smoke {
        #[command(flatten)]
        stack: ops_cli::StackArgs,
        /// A shopper's access token for a deployed stack (locally one is signed).
        #[arg(long, env = "SHOP_SMOKE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A SKU the catalog sells in EUR, with stock.
        #[arg(long, default_value = "MUG")]
        sku: String,
        /// How long each order may take to end, e.g. 2m.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        within: Duration,
    },
    /// A sale's rush: N orders from M shoppers through the API (--local or --stack),
    /// every one followed to its end; reports accepted and throttled, how orders
    /// ended, units oversold, waits (p50/p95/p99) and queue peaks. Exits 1 when an
    /// order ends for a reason other than sold out or declined, never ends, or a unit
    /// is oversold.
    Load {
        #[command(flatten)]
        stack: ops_cli::StackArgs,
        /// Orders to place.
        #[arg(long, default_value_t = 300)]
        orders: usize,
        /// Shoppers placing them (locally each gets a signed token).
        #[arg(long, default_value_t = 30)]
        shoppers: usize,
        /// SKUs to buy, one unit per order, in turn: one SKU is a hot item, several a
        /// catalog mix.
        #[arg(long, value_delimiter = ',', default_value = "MUG")]
        sku: Vec<String>,
        /// Orders a second to start; without it, as fast as the API admits.
        #[arg(long)]
        rate: Option<f64>,
        /// The card every order pays with: a Stripe test payment method
        /// (pm_card_visa, pm_card_visa_chargeDeclined, ...), which the sandbox takes
        /// too, or a sandbox token (tok_flaky, tok_timeout, ...).
        #[arg(long, default_value = "pm_card_visa")]
        card: String,
        /// How long orders may take to end after the last is placed, e.g. 10m.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        within: Duration,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Shoppers' access tokens for a deployed stack (repeatable; shopper i uses
        /// token i modulo their number).
        #[arg(
            long = "token",
            env = "SHOP_LOAD_TOKENS",
            value_delimiter = ',',
            hide_env_values = true
        )]
        tokens: Vec<String>,
    },
    /// What one order costs in each AWS quota and what the stack sustains with its
    /// defaults, from template.yaml and the state machine definition (docs/capacity.md).
    Capacity {
        /// Folder with template.yaml (default: current directory).
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Write docs/capacity.md instead of printing.
        #[arg(long)]
        write: bool,
    },
    /// Every alarm of the stack: state, what it watches, its runbook (--stack or
    /// --local); exits 1 while one is in ALARM.
    Alarms {
        #[command(flatten)]
        stack: ops_cli::StackArgs,
    },
    /// Print a bearer token for a shopper that the running `shop local` accepts
    /// (--local is the default; a --stack's tokens come from its identity provider):
    /// curl -H "Authorization: Bearer $(shop token --customer me)" localhost:3000/v1/orders
    Token {
        #[command(flatten)]
        stack: ops_cli::StackArgs,
        /// The shopper: the token's subject (`sub`), who owns the orders it places.
        #[arg(long)]
        customer: String,
        /// An OAuth scope for the `scope` claim (repeatable); by default orders/read
        /// and orders/write, what the orders API's routes require.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// How long the token is valid, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        expires: Duration,
    },
}

fn parse_latency(raw: &str) -> Result<String, String> {
    raw.parse::<payment_sandbox::Latency>()
        .map(|l| format!("{}ms,{}ms", l.p50.as_millis(), l.p99.as_millis()))
        .map_err(|e| e.to_string())
}

fn parse_parameter(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{raw:?} is not KEY=VALUE"))
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

/// The shopper the demo places its orders as.
const DEMO_CUSTOMER: &str = "demo";

async fn demo(app: &LocalApp) -> bool {
    let cases = [
        ("MUG", 1, "pm_card_visa", "CONFIRMED"),
        ("CAP", 1, "pm_card_visa", "CANCELLED"),
        ("TEE", 1, "pm_card_visa_chargeDeclined", "CANCELLED"),
    ];
    let mut all_as_expected = true;
    println!("\ndemo orders:");
    for (sku, quantity, token, expected) in cases {
        let body = format!(
            r#"{{"currency":"EUR","paymentToken":"{token}","lines":[{{"sku":"{sku}","quantity":{quantity}}}]}}"#
        );
        let Some(placed) = app
            .request(DEMO_CUSTOMER, "POST", "/v1/orders", Some(&body))
            .await
        else {
            println!("  {sku} x{quantity} with {token}: the API did not answer");
            all_as_expected = false;
            continue;
        };
        let id = serde_json::from_str::<Value>(&placed.body)
            .ok()
            .and_then(|v| v["orderId"].as_str().map(str::to_owned));
        let Some(id) = id else {
            println!(
                "  {sku} x{quantity} with {token}: {} {}",
                placed.status, placed.body
            );
            all_as_expected = false;
            continue;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut order = Value::Null;
        while Instant::now() < deadline {
            if let Some(r) = app
                .request(DEMO_CUSTOMER, "GET", &format!("/v1/orders/{id}"), None)
                .await
            {
                order = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                if matches!(order["status"].as_str(), Some("CONFIRMED" | "CANCELLED")) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let status = order["status"].as_str().unwrap_or("UNKNOWN");
        let reason = order["cancelReason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        all_as_expected &= status == expected;
        println!("  {id}  {sku} x{quantity} paid with {token:<12} -> {status}{reason}");
    }
    all_as_expected
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .try_init();
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
                if demo(&app).await {
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
