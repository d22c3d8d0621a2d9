//! `shop trace ORDER_ID`: the order's whole path as a waterfall.

use super::{StackArgs, print_json};
use shop_ops::OpsError;
use shop_ops::stack::LocalStackFile;
use std::io::Write;
use std::process::ExitCode;

/// Prints the order's trace; exits 1 when a span names a parent the trace lacks.
pub async fn trace(args: StackArgs, order_id: String) -> Result<ExitCode, OpsError> {
    let trace = if args.local {
        let local =
            LocalStackFile::read(&LocalStackFile::path(&args.state_dir, &args.local_stack))?;
        let traces = local.traces.clone().ok_or_else(|| {
            OpsError::Refused("this shop local session keeps no traces (restart it)".into())
        })?;
        let ops = super::connect(&args).await?;
        shop_ops::trace::local(&ops, &traces, &order_id).await?
    } else {
        shop_ops::trace::deployed(&super::connect(&args).await?, &order_id).await?
    };
    if args.json {
        print_json(&trace);
    } else {
        say_inline!("{}", shop_ops::trace::render(&trace));
    }
    Ok(if trace.orphans == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
