//! `shop local --demo`: three orders through the running app, each followed to its end.

use local_app::LocalApp;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The shopper the demo places its orders as.
const DEMO_CUSTOMER: &str = "demo";

pub(crate) async fn demo(app: &LocalApp) -> bool {
    let cases = [
        ("MUG", 1, "pm_card_visa", "CONFIRMED"),
        ("CAP", 1, "pm_card_visa", "CANCELLED"),
        ("TEE", 1, "pm_card_visa_chargeDeclined", "CANCELLED"),
    ];
    let mut all_as_expected = true;
    println!("\ndemo orders:");
    for (sku, quantity, token, expected) in cases {
        let body = format!(
            r#"{{"currency":"EUR","paymentToken":"{token}","lines":[{{"sku":"{sku}","quantity":{quantity}}}]}}"#
        );
        let Some(placed) = app
            .request(DEMO_CUSTOMER, "POST", "/v1/orders", Some(&body))
            .await
        else {
            println!("  {sku} x{quantity} with {token}: the API did not answer");
            all_as_expected = false;
            continue;
        };
        let id = serde_json::from_str::<Value>(&placed.body)
            .ok()
            .and_then(|v| v["orderId"].as_str().map(str::to_owned));
        let Some(id) = id else {
            println!(
                "  {sku} x{quantity} with {token}: {} {}",
                placed.status, placed.body
            );
            all_as_expected = false;
            continue;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut order = Value::Null;
        while Instant::now() < deadline {
            if let Some(r) = app
                .request(DEMO_CUSTOMER, "GET", &format!("/v1/orders/{id}"), None)
                .await
            {
                order = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                if matches!(order["status"].as_str(), Some("CONFIRMED" | "CANCELLED")) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let status = order["status"].as_str().unwrap_or("UNKNOWN");
        let reason = order["cancelReason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        all_as_expected &= status == expected;
        println!("  {id}  {sku} x{quantity} paid with {token:<12} -> {status}{reason}");
    }
    all_as_expected
}
