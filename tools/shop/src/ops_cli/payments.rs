//! `shop payments …`: part refunds of captured orders.

use super::{StackArgs, connect, print_json};
use clap::Subcommand;
use shop_ops::OpsError;
use shop_ops::audit::AuditRecord;
use shop_ops::payments::PartRefundOutcome;
use std::io::Write;
use std::process::ExitCode;

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
