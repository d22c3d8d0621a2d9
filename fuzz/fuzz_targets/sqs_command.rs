//! SQS message bodies as the inventory, payments and intake functions decode them:
//! any bytes give a command or an error, never a panic, and a decoded command
//! encodes back to JSON that decodes to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shop_domain::Order;
use shop_domain::commands::{Envelope, InventoryCommand, PaymentCommand};

fuzz_target!(|body: &[u8]| {
    let Ok(body) = std::str::from_utf8(body) else {
        return;
    };
    if let Ok(envelope) = Envelope::<InventoryCommand>::decode(body) {
        let again = serde_json::to_string(&envelope).expect("encodes");
        assert_eq!(Envelope::<InventoryCommand>::decode(&again).ok(), Some(envelope));
    }
    if let Ok(envelope) = Envelope::<PaymentCommand>::decode(body) {
        let again = serde_json::to_string(&envelope).expect("encodes");
        assert_eq!(Envelope::<PaymentCommand>::decode(&again).ok(), Some(envelope));
    }
    let _ = serde_json::from_str::<Order>(body);
});
