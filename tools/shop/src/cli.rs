//! The `shop` command line as clap reads it: every subcommand and flag, in one place the
//! binary parses and the docs' command check (tools/shop/tests/docs.rs) parses too.

use crate::ops_cli;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Developer and operator tool for the order saga suite.
#[derive(Parser)]
#[command(name = "shop", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `shop`'s subcommands.
#[derive(Subcommand)]
pub enum Command {
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
    /// One order's whole path as a waterfall: every function's spans and the saga's
    /// states, with offsets, durations, outcomes and queue waits (--local, or --stack
    /// from CloudWatch Transaction Search).
    Trace {
        #[command(flatten)]
        stack: ops_cli::StackArgs,
        /// The order (ord-…).
        #[arg(value_name = "ORDER_ID")]
        order_id: String,
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
