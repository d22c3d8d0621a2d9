//! The order saga's business rules, free of AWS types so they can be tested with
//! in-memory fakes and reused by every function and tool.
#![warn(missing_docs)]

pub mod commands;
pub mod events;
pub mod invariants;
pub mod lines;
pub mod listing;
pub mod money;
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

pub use order::{
    Currency, CustomerId, Order, OrderId, OrderLine, OrderStatus, PaymentAction, Sku, StatusChange,
};

/// Current time as RFC 3339, the one timestamp format used in records and events.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// A time as every record, event and answer writes it: RFC 3339 in UTC with
/// milliseconds, `2026-11-29T04:12:49.094Z`, the format Step Functions gives the saga's
/// own timestamps. Fixed width, so two timestamps compare as text as they do in time
/// (the orders table's indexes sort and filter on it).
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Any RFC 3339 timestamp (the emulator writes the saga's as `…367183+00:00`) in the
/// one format of [`rfc3339`]; `None` if it is not RFC 3339.
pub fn normalize_timestamp(raw: &str) -> Option<String> {
    parse_rfc3339(raw).map(rfc3339)
}

/// Any RFC 3339 timestamp as a time; `None` if it is not RFC 3339.
pub fn parse_rfc3339(raw: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod timestamp_tests {
    use super::*;

    #[test]
    fn one_fixed_width_utc_format_that_sorts_as_text() {
        let at = time::macros::datetime!(2026-11-29 05:12:49.7 +01:00);
        assert_eq!(rfc3339(at), "2026-11-29T04:12:49.700Z");
        assert_eq!(
            normalize_timestamp("2026-11-29T04:12:50.367183+00:00").as_deref(),
            Some("2026-11-29T04:12:50.367Z")
        );
        assert_eq!(
            normalize_timestamp("2026-11-29T04:12:49.094678914Z").as_deref(),
            Some("2026-11-29T04:12:49.094Z")
        );
        assert_eq!(normalize_timestamp("yesterday"), None);
        // 0.7 s and 0.71 s: variable-width fractions sorted 0.7 after 0.71.
        let (early, late) = (
            rfc3339(time::macros::datetime!(2026-11-29 04:12:49.7 UTC)),
            rfc3339(time::macros::datetime!(2026-11-29 04:12:49.71 UTC)),
        );
        assert!(early < late, "{early} < {late}");
        assert_eq!(now_rfc3339().len(), "2026-11-29T04:12:49.094Z".len());
    }
}
