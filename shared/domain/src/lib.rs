//! The order saga's business rules, free of AWS types so they can be tested with
//! in-memory fakes and reused by every function and tool.
#![warn(missing_docs)]

pub mod commands;
pub mod events;
pub mod listing;
pub mod order;
pub mod orphans;
pub mod payment;
pub mod ports;
pub mod request;
pub mod services;
pub mod stock;

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;

#[cfg(test)]
mod tests;

pub use order::{Currency, CustomerId, Order, OrderId, OrderLine, OrderStatus, Sku, StatusChange};

/// Current time as RFC 3339, the one timestamp format used in records and events.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}
