//! Domain events published on the custom bus. Each detail type has a versioned JSON
//! Schema in `schemas/events/`; contract tests validate what the code emits.

use crate::order::{Currency, Order, OrderId, OrderLine};
use serde::Serialize;
use serde_json::{Value, json};

/// Version of every detail schema below; bump with a new schema file when a field's
/// meaning changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Event source of the orders service.
pub const SOURCE_ORDERS: &str = "shop.orders";
/// Event source of the inventory service.
pub const SOURCE_INVENTORY: &str = "shop.inventory";
/// Event source of the payments service.
pub const SOURCE_PAYMENTS: &str = "shop.payments";

/// One event ready for the bus.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainEvent {
    /// `shop.<service>`.
    pub source: &'static str,
    /// Detail type, e.g. `OrderConfirmed`.
    pub detail_type: &'static str,
    /// The detail document, valid against its schema.
    pub detail: Value,
}

fn base(order_id: &OrderId, correlation_id: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("schemaVersion".into(), json!(SCHEMA_VERSION));
    m.insert("orderId".into(), json!(order_id));
    m.insert("correlationId".into(), json!(correlation_id));
    m.insert("occurredAt".into(), json!(crate::now_rfc3339()));
    m
}

fn event(
    source: &'static str,
    detail_type: &'static str,
    mut detail: serde_json::Map<String, Value>,
    extra: Value,
) -> DomainEvent {
    if let Value::Object(extra) = extra {
        detail.extend(extra);
    }
    DomainEvent {
        source,
        detail_type,
        detail: Value::Object(detail),
    }
}

impl DomainEvent {
    /// The saga for an accepted order has started.
    pub fn order_placed(order: &Order) -> Self {
        event(
            SOURCE_ORDERS,
            "OrderPlaced",
            base(&order.order_id, &order.correlation_id),
            json!({
                "customerId": order.customer_id,
                "lines": order.lines,
                "total": order.total,
                "currency": order.currency,
            }),
        )
    }

    /// The order was cancelled outside its saga (the orphan sweep); the saga's own
    /// cancellations are published by the state machine with the same shape.
    pub fn order_cancelled(order: &Order, reason: &str) -> Self {
        event(
            SOURCE_ORDERS,
            "OrderCancelled",
            base(&order.order_id, &order.correlation_id),
            json!({ "reason": reason }),
        )
    }

    /// Stock is held for every line of the order.
    pub fn stock_reserved(order_id: &OrderId, correlation_id: &str, lines: &[OrderLine]) -> Self {
        event(
            SOURCE_INVENTORY,
            "StockReserved",
            base(order_id, correlation_id),
            json!({ "lines": lines }),
        )
    }

    /// Held stock went back to available.
    pub fn stock_released(order_id: &OrderId, correlation_id: &str, lines: &[OrderLine]) -> Self {
        event(
            SOURCE_INVENTORY,
            "StockReleased",
            base(order_id, correlation_id),
            json!({ "lines": lines }),
        )
    }

    /// The provider captured the order total.
    pub fn payment_captured(
        order_id: &OrderId,
        correlation_id: &str,
        charge_id: &str,
        amount: u64,
        currency: Currency,
    ) -> Self {
        event(
            SOURCE_PAYMENTS,
            "PaymentCaptured",
            base(order_id, correlation_id),
            json!({ "chargeId": charge_id, "amount": amount, "currency": currency }),
        )
    }

    /// The provider refused the card.
    pub fn payment_declined(order_id: &OrderId, correlation_id: &str, reason: &str) -> Self {
        event(
            SOURCE_PAYMENTS,
            "PaymentDeclined",
            base(order_id, correlation_id),
            json!({ "reason": reason }),
        )
    }

    /// Part or all of a capture was given back: `amount` is what this refund gave.
    pub fn payment_refunded(
        order_id: &OrderId,
        correlation_id: &str,
        charge_id: &str,
        amount: u64,
        currency: Currency,
    ) -> Self {
        event(
            SOURCE_PAYMENTS,
            "PaymentRefunded",
            base(order_id, correlation_id),
            json!({ "chargeId": charge_id, "amount": amount, "currency": currency }),
        )
    }
}
