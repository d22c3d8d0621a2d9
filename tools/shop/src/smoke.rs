//! `shop smoke`: proves a fresh deploy (or a running `shop local`) works end to end,
//! as a shopper and an operator would see it: through the public API with a real
//! token, a Stripe test card that confirms and one that is declined (the sandbox
//! takes both), each order
//! followed to its end and checked with the invariants `shop saga show` uses.

use local_runtime::http_client::HttpClient;
use serde::Serialize;
use serde_json::{Value, json};
use shop_ops::saga;
use shop_ops::stack::Ops;
use std::time::{Duration, Instant};

/// What the smoke test needs besides the stack.
pub struct SmokeOptions {
    /// The API's base URL (the `ApiUrl` output).
    pub api: String,
    /// `Bearer <token>` of the shopper the orders are placed as.
    pub bearer: String,
    /// A SKU the catalog sells in EUR with stock.
    pub sku: String,
    /// How long an order may take to end.
    pub within: Duration,
}

/// One call to the orders API as a shopper makes it: JSON in and out, `bearer` and
/// any `headers` besides; status 0 with the error in the body when no answer came.
pub(crate) async fn call_api(
    client: &HttpClient,
    api: &str,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Value) {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let mut all = vec![("authorization", bearer)];
    all.extend_from_slice(headers);
    match client.send_with_headers(method, &url, bytes, &all).await {
        Ok((status, headers, body)) => (
            status,
            headers,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        ),
        Err(e) => (0, http::HeaderMap::new(), json!({ "error": e })),
    }
}

/// One step and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What was tried.
    pub name: String,
    /// Whether it did what it should.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

struct Run<'a> {
    ops: &'a Ops,
    options: &'a SmokeOptions,
    client: HttpClient,
    steps: Vec<Step>,
}

impl Run<'_> {
    fn record(&mut self, name: &str, ok: bool, detail: String) -> bool {
        self.steps.push(Step {
            name: name.to_owned(),
            ok,
            detail,
        });
        ok
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, http::HeaderMap, Value) {
        call_api(
            &self.client,
            &self.options.api,
            method,
            path,
            &self.options.bearer,
            body.as_ref(),
            &[],
        )
        .await
    }

    /// Places an order paid with `card`, follows its Location to the end, and checks
    /// its invariants. Returns whether every step held.
    async fn order(&mut self, label: &str, card: &str, expect: &str, reason: Option<&str>) -> bool {
        let body = json!({
            "currency": "EUR",
            "paymentToken": card,
            "lines": [{ "sku": self.options.sku, "quantity": 1 }],
        });
        let (status, headers, placed) = self.call("POST", "/v1/orders", Some(body)).await;
        let location = headers
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let ok = status == 202 && location.is_some();
        if !self.record(
            &format!("place {label} ({card})"),
            ok,
            format!("{status} {placed}"),
        ) {
            return false;
        }
        let (location, order_id) = (
            location.unwrap_or_default(),
            placed["orderId"].as_str().unwrap_or_default().to_owned(),
        );
        let deadline = Instant::now() + self.options.within;
        let mut order = Value::Null;
        while Instant::now() < deadline {
            let (status, _, body) = self.call("GET", &location, None).await;
            order = body;
            if status == 200 && matches!(order["status"].as_str(), Some("CONFIRMED" | "CANCELLED"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let ended = order["status"].as_str().unwrap_or("unknown").to_owned();
        let cancel_reason = order["cancelReason"].as_str();
        let as_expected = ended == expect && (reason.is_none() || cancel_reason == reason);
        if !self.record(
            &format!(
                "follow {order_id} to {expect}{}",
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            as_expected,
            format!(
                "{ended}{}",
                cancel_reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
        ) {
            return false;
        }
        // The saga publishes its final event after the order's status moves: wait for
        // the run to end before the invariants, which expect no run in between.
        let mut report = saga::show(self.ops, &order_id).await;
        while Instant::now() < deadline
            && report.as_ref().is_ok_and(|r| {
                r.runs
                    .iter()
                    .any(|(run, _)| run.status == shop_ops::saga::RunStatus::Running)
            })
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            report = saga::show(self.ops, &order_id).await;
        }
        match report {
            Ok(report) => {
                let holds = report.violations.is_empty();
                self.record(
                    &format!("invariants of {order_id}"),
                    holds,
                    if holds {
                        format!("hold over {} run(s)", report.runs.len())
                    } else {
                        report.violations.join("; ")
                    },
                )
            }
            Err(e) => self.record(&format!("invariants of {order_id}"), false, e.to_string()),
        }
    }
}

/// Runs the smoke test; the steps say what held. Stops at the first order that fails.
pub async fn run(ops: &Ops, options: &SmokeOptions) -> Vec<Step> {
    let mut run = Run {
        ops,
        options,
        client: HttpClient::default(),
        steps: Vec::new(),
    };
    if run
        .order("an order", "pm_card_visa", "CONFIRMED", None)
        .await
    {
        run.order(
            "an order that must compensate",
            "pm_card_visa_chargeDeclined",
            "CANCELLED",
            Some("PaymentDeclined"),
        )
        .await;
    }
    run.steps
}
