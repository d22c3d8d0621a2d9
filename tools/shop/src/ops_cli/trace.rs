//! `shop trace ORDER_ID`: the order's whole path as a waterfall.

use super::{StackArgs, print_json};
use shop_ops::OpsError;
use shop_ops::stack::LocalStackFile;
use std::io::Write;
use std::process::ExitCode;

/// Prints the order's trace; exits 1 when a span names a parent the trace lacks.
pub async fn trace(args: StackArgs, order_id: String) -> Result<ExitCode, OpsError> {
    if !args.local {
        return Err(OpsError::Refused(
            "shop trace reads the spans shop local received (--local); a deployed stack's \
             traces are in CloudWatch (Application Signals, Transaction Search): search \
             spans by attributes.order.id, docs/operating.md \"Tracing an order\""
                .into(),
        ));
    }
    let local = LocalStackFile::read(&LocalStackFile::path(&args.state_dir, &args.local_stack))?;
    let traces = local.traces.clone().ok_or_else(|| {
        OpsError::Refused("this shop local session keeps no traces (restart it)".into())
    })?;
    let ops = super::connect(&args).await?;
    let trace = shop_ops::trace::local(&ops, &traces, &order_id).await?;
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
