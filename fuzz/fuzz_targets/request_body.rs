//! `POST /v1/orders` bodies: parsing and validation must answer every input with an
//! order or a field error, never a panic, and what it accepts must be in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shop_domain::CustomerId;
use shop_domain::request::{MAX_LINES, MAX_QUANTITY, parse_place_order};

fuzz_target!(|body: &[u8]| {
    let caller = CustomerId("fuzz".into());
    if let Ok(order) = parse_place_order(body, &caller) {
        assert_eq!(order.customer_id, caller);
        assert!((1..=MAX_LINES).contains(&order.lines.len()));
        assert!(
            order
                .lines
                .iter()
                .all(|(_, q)| (1..=MAX_QUANTITY).contains(&i64::from(*q)))
        );
    }
});
