//! What must hold for an order once its saga has settled, written once: `shop saga
//! show` checks one order on AWS or on `shop local`, the chaos run checks every order
//! after thousands of injected faults. `docs/invariants.md` says why each holds.

use crate::order::{Order, OrderStatus, Sku};
use crate::payment::LedgerStatus;
use crate::ports::StockLevel;

/// What the system records about one order, read from its tables and its saga runs.
#[derive(Debug, Clone, Copy)]
pub struct OrderFacts<'a> {
    /// The order as stored, if any.
    pub order: Option<&'a Order>,
    /// Whether its stock reservation holds units (not released, not a tombstone).
    pub stock_held: bool,
    /// Its ledger entry's status, if any.
    pub ledger: Option<LedgerStatus>,
    /// What operators gave back of its capture in parts (the ledger's part refunds).
    pub refunded_in_parts: u64,
    /// Whether one of its saga runs is still running.
    pub saga_running: bool,
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The id names no order.
    #[error("no order is stored under this id")]
    NotStored,
    /// A confirmed order must hold its stock.
    #[error("confirmed, but no stock is reserved for it")]
    ConfirmedWithoutStock,
    /// A confirmed order must have been captured.
    #[error("confirmed, but the ledger shows no capture")]
    ConfirmedWithoutCapture,
    /// A cancelled order must hold no stock.
    #[error("cancelled, but its stock is still reserved")]
    CancelledHoldingStock,
    /// A cancelled order must keep no money.
    #[error("cancelled, but the card is still charged")]
    CancelledStillCharged,
    /// A cancelled order must hold nothing on the shopper's card.
    #[error("cancelled, but its authorization is still held")]
    CancelledAuthorizationHeld,
    /// An ended order must no longer show its shopper a payment to authenticate.
    #[error("ended, but it still shows its shopper a payment to authenticate")]
    PaymentActionLeft,
    /// An ended order must leave no authorization held at the provider.
    #[error("ended, but the provider still holds {0} authorization(s) for it")]
    AuthorizationLeftOpen(usize),
    /// An order between placed and settled must have a saga moving it.
    #[error("{} and no saga is running for it", .0.as_str())]
    StuckWithoutSaga(OrderStatus),
    /// The provider must hold exactly a confirmed order's total, less what operators
    /// gave back.
    #[error("confirmed, but the provider holds {held} where it should keep {kept}")]
    ConfirmedAmountMismatch {
        /// Net captured at the provider (negative if it gave back more than it took).
        held: i128,
        /// The order's total less its part refunds.
        kept: i128,
    },
    /// The provider must hold nothing for a cancelled order.
    #[error("cancelled, but the provider holds {0}")]
    CancelledMoneyKept(i128),
    /// Units are neither created nor lost: what is available plus what is held is what
    /// there was, and what is held is what confirmed orders bought.
    #[error(
        "stock of {sku}: started with {start}, now available {available} + reserved {reserved}, confirmed orders hold {sold}"
    )]
    StockNotConserved {
        /// The SKU.
        sku: String,
        /// Units at the start.
        start: u64,
        /// Units available now.
        available: u64,
        /// Units reserved now.
        reserved: u64,
        /// Units confirmed orders bought.
        sold: u64,
    },
}

/// The invariants one order's records can show: a confirmed order holds its stock and
/// was captured (the capture follows the confirmation in the same run, so only once
/// the run has ended; operators' part refunds may later give all of it back); a cancelled one holds nothing, kept no money and holds no
/// authorization (nor one awaiting the shopper's authentication); an ended order shows
/// no payment action; an order in between has a saga running.
pub fn check_order(facts: &OrderFacts<'_>) -> Vec<Violation> {
    let Some(order) = facts.order else {
        return vec![Violation::NotStored];
    };
    let captured = facts.ledger == Some(LedgerStatus::Captured);
    let mut out = Vec::new();
    match order.status {
        OrderStatus::Confirmed => {
            if !facts.stock_held {
                out.push(Violation::ConfirmedWithoutStock);
            }
            // Operators may give a confirmed order's whole total back, part by part.
            let given_back = facts.ledger == Some(LedgerStatus::Refunded)
                && facts.refunded_in_parts == order.total;
            if !captured && !given_back && !facts.saga_running {
                out.push(Violation::ConfirmedWithoutCapture);
            }
        }
        OrderStatus::Cancelled => {
            if facts.stock_held {
                out.push(Violation::CancelledHoldingStock);
            }
            if captured {
                out.push(Violation::CancelledStillCharged);
            }
            let open = matches!(
                facts.ledger,
                Some(LedgerStatus::Authorized | LedgerStatus::AwaitingAuthentication)
            );
            if open && !facts.saga_running {
                out.push(Violation::CancelledAuthorizationHeld);
            }
        }
        other if !facts.saga_running => out.push(Violation::StuckWithoutSaga(other)),
        _ => {}
    }
    if order.status.is_terminal() && order.payment_action.is_some() && !facts.saga_running {
        out.push(Violation::PaymentActionLeft);
    }
    out
}

/// The money invariant at the provider, which only the provider's books show: a
/// confirmed order's total, less what operators gave back in parts
/// (`refunded_in_parts`, from the ledger), is what the provider holds; a cancelled
/// order keeps nothing, and no ended order leaves an authorization held.
pub fn check_money(
    order: &Order,
    provider_net: i128,
    open_authorizations: usize,
    refunded_in_parts: u64,
) -> Option<Violation> {
    let kept = i128::from(order.total) - i128::from(refunded_in_parts);
    match order.status {
        OrderStatus::Confirmed | OrderStatus::Cancelled if open_authorizations > 0 => {
            Some(Violation::AuthorizationLeftOpen(open_authorizations))
        }
        OrderStatus::Confirmed if provider_net != kept => {
            Some(Violation::ConfirmedAmountMismatch {
                held: provider_net,
                kept,
            })
        }
        OrderStatus::Cancelled if provider_net != 0 => {
            Some(Violation::CancelledMoneyKept(provider_net))
        }
        _ => None,
    }
}

/// The stock invariant of one SKU once every saga has settled.
pub fn check_stock(sku: &Sku, start: u64, now: StockLevel, sold: u64) -> Option<Violation> {
    (now.available + now.reserved != start || now.reserved != sold).then(|| {
        Violation::StockNotConserved {
            sku: sku.0.clone(),
            start,
            available: now.available,
            reserved: now.reserved,
            sold,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::pending_order;

    fn facts(
        order: Option<&Order>,
        stock_held: bool,
        ledger: Option<LedgerStatus>,
    ) -> Vec<Violation> {
        check_order(&OrderFacts {
            order,
            stock_held,
            ledger,
            refunded_in_parts: 0,
            saga_running: false,
        })
    }

    #[test]
    fn a_settled_order_is_consistent_only_with_its_stock_and_money() {
        let mut order = pending_order("MUG", 1, 100);
        order.status = OrderStatus::Confirmed;
        assert_eq!(facts(Some(&order), true, Some(LedgerStatus::Captured)), []);
        assert_eq!(
            facts(Some(&order), false, None),
            [
                Violation::ConfirmedWithoutStock,
                Violation::ConfirmedWithoutCapture
            ]
        );
        // Confirmed, then captured in the same run: authorized only while it runs.
        assert_eq!(
            check_order(&OrderFacts {
                order: Some(&order),
                stock_held: true,
                ledger: Some(LedgerStatus::Authorized),
                refunded_in_parts: 0,
                saga_running: true,
            }),
            []
        );
        assert_eq!(
            facts(Some(&order), true, Some(LedgerStatus::Authorized)),
            [Violation::ConfirmedWithoutCapture]
        );
        assert_eq!(check_money(&order, 100, 0, 0), None);
        assert!(check_money(&order, 200, 0, 0).is_some());
        assert_eq!(
            check_money(&order, 100, 1, 0),
            Some(Violation::AuthorizationLeftOpen(1))
        );
        // Operators gave part of it back: the provider keeps the rest.
        assert_eq!(check_money(&order, 70, 0, 30), None);
        assert_eq!(
            check_money(&order, 100, 0, 30),
            Some(Violation::ConfirmedAmountMismatch {
                held: 100,
                kept: 70
            })
        );
        let given_back = |refunded_in_parts| {
            check_order(&OrderFacts {
                order: Some(&order),
                stock_held: true,
                ledger: Some(LedgerStatus::Refunded),
                refunded_in_parts,
                saga_running: false,
            })
        };
        assert_eq!(given_back(100), [], "all of it, part by part");
        assert_eq!(
            given_back(40),
            [Violation::ConfirmedWithoutCapture],
            "a whole refund of a confirmed order is no operator's"
        );
        order.status = OrderStatus::Cancelled;
        assert_eq!(check_money(&order, 0, 0, 0), None);
        assert_eq!(facts(Some(&order), false, Some(LedgerStatus::Refunded)), []);
        assert_eq!(facts(Some(&order), false, Some(LedgerStatus::Voided)), []);
        assert_eq!(
            facts(Some(&order), false, Some(LedgerStatus::Authorized)),
            [Violation::CancelledAuthorizationHeld]
        );
        assert_eq!(
            facts(
                Some(&order),
                false,
                Some(LedgerStatus::AwaitingAuthentication)
            ),
            [Violation::CancelledAuthorizationHeld],
            "a 3-D Secure payment left open can still be authenticated"
        );
        let mut shown = order.clone();
        shown.payment_action = Some(crate::PaymentAction {
            client_secret: "pi_secret".into(),
        });
        assert_eq!(
            facts(Some(&shown), false, Some(LedgerStatus::Declined)),
            [Violation::PaymentActionLeft]
        );
        assert_eq!(
            facts(Some(&order), true, Some(LedgerStatus::Captured)),
            [
                Violation::CancelledHoldingStock,
                Violation::CancelledStillCharged
            ]
        );
        assert_eq!(
            check_money(&order, 100, 0, 0),
            Some(Violation::CancelledMoneyKept(100))
        );
    }

    #[test]
    fn an_unsettled_order_needs_a_running_saga() {
        let order = pending_order("MUG", 1, 100);
        assert_eq!(
            facts(Some(&order), false, None),
            [Violation::StuckWithoutSaga(OrderStatus::Pending)]
        );
        let running = OrderFacts {
            order: Some(&order),
            stock_held: false,
            ledger: None,
            refunded_in_parts: 0,
            saga_running: true,
        };
        assert_eq!(check_order(&running), []);
        assert_eq!(facts(None, false, None), [Violation::NotStored]);
    }

    #[test]
    fn stock_is_conserved_and_held_only_by_confirmed_orders() {
        let sku = Sku("MUG".into());
        let level = |available, reserved| StockLevel {
            available,
            reserved,
        };
        assert_eq!(check_stock(&sku, 10, level(7, 3), 3), None);
        assert!(
            check_stock(&sku, 10, level(7, 2), 2).is_some(),
            "a unit lost"
        );
        assert!(
            check_stock(&sku, 10, level(6, 4), 3).is_some(),
            "held by no order"
        );
    }
}
