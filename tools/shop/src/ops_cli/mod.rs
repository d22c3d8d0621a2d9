//! The operator subcommands, one file per group as the `shop_ops` library is: argument
//! parsing and console output over that library. Here: which stack they act on, and
//! what every group shares.

use clap::Args;

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

mod dlq;
mod payments;
mod saga;
mod stack;
mod trace;

pub use dlq::{DlqCommand, dlq};
pub use payments::{PaymentsCommand, payments};
pub use saga::{SagaCommand, saga};
pub use stack::{LoadArgs, alarms, load, seed, smoke, token};
pub use trace::trace;

use local_runtime::emulator::emulator_sdk;
use shop_ops::OpsError;
use shop_ops::audit::OpsFiles;
use shop_ops::stack::{LocalStackFile, Ops, StackOutputs};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
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

impl StackArgs {
    /// The flags that name this stack on a command line, for the next command a
    /// command's output suggests.
    fn as_flags(&self) -> String {
        let mut flags = match &self.stack {
            Some(stack) => format!("--stack {stack}"),
            None => "--local".into(),
        };
        if self.stack.is_none() && self.local_stack != "shop" {
            flags.push_str(&format!(" --local-stack {}", self.local_stack));
        }
        if self.state_dir != Path::new(".shop") {
            flags.push_str(&format!(" --state-dir {}", self.state_dir.display()));
        }
        flags
    }
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

fn print_json(value: &impl serde::Serialize) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
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
