//! `shop load`: a sale's rush, as shoppers make it. Places orders through the public
//! API from many shoppers (at a target rate, or as fast as the API admits, retrying a
//! 429 as a browser would), follows every accepted order to its end, and reports what
//! a shop owner asks after a rush: how many were accepted and throttled, how each
//! ended, whether any unit was sold twice, how long shoppers waited, and how deep the
//! queues got.

use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use local_runtime::http_client::HttpClient;
use serde::Serialize;
use serde_json::{Value, json};
use shop_aws::stock::DynamoStockStore;
use shop_domain::Sku;
use shop_domain::ports::StockStore;
use shop_ops::OpsError;
use shop_ops::stack::Ops;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Reasons an order may end cancelled in a healthy rush: the business said no.
pub const BUSINESS_REASONS: [&str; 2] = ["OutOfStock", "PaymentDeclined"];

/// How the rush is made.
pub struct LoadOptions {
    /// The API's base URL (the `ApiUrl` output).
    pub api: String,
    /// One `Bearer <token>` per shopper; order `i` is placed by shopper `i % len`.
    pub bearers: Vec<String>,
    /// Orders to place.
    pub orders: usize,
    /// SKUs to buy, one unit per order, taken in turn (one SKU: a hot item).
    pub skus: Vec<String>,
    /// Orders a second to start; `None`: as fast as the API admits.
    pub rate: Option<f64>,
    /// The card every order pays with.
    pub card: String,
    /// How long every order may take to end after the last is accepted.
    pub within: Duration,
    /// Requests in flight at once.
    pub in_flight: usize,
}

/// Percentiles of a duration, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: u64,
    /// 95th percentile.
    pub p95_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Slowest.
    pub max_ms: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50_ms: h.value_at_quantile(0.50),
            p95_ms: h.value_at_quantile(0.95),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        }
    }
}

/// What the rush did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Orders placed (202).
    pub accepted: usize,
    /// 429 answers seen (each was retried).
    pub throttled: usize,
    /// Orders never accepted, by the last HTTP status seen (0: no answer).
    pub refused: BTreeMap<u16, usize>,
    /// Orders that ended `CONFIRMED`.
    pub confirmed: usize,
    /// Orders that ended `CANCELLED`, by reason.
    pub cancelled: BTreeMap<String, usize>,
    /// Accepted orders that had not ended when the wait ran out.
    pub never_ended: usize,
    /// Units confirmed beyond the stock on hand before the rush, by SKU.
    pub oversold: BTreeMap<String, u64>,
    /// From the first request to the 202.
    pub time_to_accepted: Percentiles,
    /// From the order's placing to its end (the order's own timestamps).
    pub time_to_final: Percentiles,
    /// Accepted orders a second over the placing phase.
    pub accepted_per_second: f64,
    /// The deepest each command and intake queue got (visible plus in flight),
    /// sampled every half second.
    pub queue_peak_depth: BTreeMap<String, u64>,
    /// How long orders spent in each stage, from their own history: `stock` from
    /// placing to stock held (the intake and inventory queues' wait and work),
    /// `payment` from payment pending to the end (the payments queue's wait and the
    /// charge). Its maximum is the age the oldest command reached in those queues,
    /// which SQS's API does not give (CloudWatch's ApproximateAgeOfOldestMessage does,
    /// by the minute).
    pub stage_time: BTreeMap<String, Percentiles>,
}

impl LoadReport {
    /// Why the rush did not end as a shop owner expects, if it did not: an order that
    /// ended for a reason other than the business ones, never ended, was never
    /// accepted, or a unit sold twice.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for (reason, n) in &self.cancelled {
            if !BUSINESS_REASONS.contains(&reason.as_str()) {
                failures.push(format!("{n} cancelled for {reason}"));
            }
        }
        if self.never_ended > 0 {
            failures.push(format!("{} never ended", self.never_ended));
        }
        for (status, n) in &self.refused {
            failures.push(format!("{n} never accepted (last answer {status})"));
        }
        for (sku, units) in &self.oversold {
            failures.push(format!("{units} units of {sku} oversold"));
        }
        failures
    }
}

/// A histogram of milliseconds up to a day, to three significant figures.
fn histogram() -> Result<Histogram<u64>, OpsError> {
    Histogram::new_with_bounds(1, 86_400_000, 3)
        .map_err(|e| OpsError::Refused(format!("histogram: {e}")))
}

struct Placed {
    order_id: String,
    bearer: String,
    accepted_after: Duration,
}

enum Placing {
    Accepted(Placed),
    Refused(u16),
}

struct Client {
    http: HttpClient,
    api: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        let (status, _, answer) =
            crate::smoke::call_api(&self.http, &self.api, method, path, bearer, body, &headers)
                .await;
        (status, answer)
    }

    /// Places one order, retrying a 429 (and a lost answer) with the same
    /// idempotency key after a jittered, growing pause, as a shopper's browser does.
    async fn place(
        &self,
        bearer: &str,
        sku: &str,
        card: &str,
        throttled: &std::sync::atomic::AtomicUsize,
    ) -> Placing {
        let body = json!({"currency": "EUR", "paymentToken": card, "lines": [{"sku": sku, "quantity": 1}]});
        let key = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let mut last = 0;
        for attempt in 0..30u32 {
            let (status, answer) = self
                .call("POST", "/v1/orders", bearer, Some(&body), Some(&key))
                .await;
            match (status, answer["orderId"].as_str()) {
                (202, Some(id)) => {
                    return Placing::Accepted(Placed {
                        order_id: id.to_owned(),
                        bearer: bearer.to_owned(),
                        accepted_after: started.elapsed(),
                    });
                }
                (429, _) | (0, _) | (503, _) => {
                    if status == 429 {
                        throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    last = status;
                    let ceiling = Duration::from_millis(100 * 2u64.pow(attempt.min(5)));
                    tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
                }
                _ => return Placing::Refused(status),
            }
        }
        Placing::Refused(last)
    }

    /// Polls the order until it is `CONFIRMED` or `CANCELLED`, or `until`.
    async fn follow(&self, placed: &Placed, until: Instant) -> Option<Value> {
        loop {
            let (status, order) = self
                .call(
                    "GET",
                    &format!("/v1/orders/{}", placed.order_id),
                    &placed.bearer,
                    None,
                    None,
                )
                .await;
            if status == 200 && matches!(order["status"].as_str(), Some("CONFIRMED" | "CANCELLED"))
            {
                return Some(order);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// From the order's placing to its end, by its own timestamps.
fn time_to_final(order: &Value) -> Option<Duration> {
    let end = order["history"].as_array()?.last()?;
    let placed = shop_domain::parse_rfc3339(order["createdAt"].as_str()?)?;
    let ended = shop_domain::parse_rfc3339(end["at"].as_str()?)?;
    Duration::try_from(ended - placed).ok()
}

/// Milliseconds an order spent in each stage it went through, by its history.
fn stage_times(order: &Value) -> Vec<(&'static str, u64)> {
    let at = |status: &str| {
        order["history"]
            .as_array()?
            .iter()
            .find(|h| h["status"] == status)
            .and_then(|h| shop_domain::parse_rfc3339(h["at"].as_str()?))
    };
    let end = order["history"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|h| shop_domain::parse_rfc3339(h["at"].as_str()?));
    let placed = order["createdAt"]
        .as_str()
        .and_then(shop_domain::parse_rfc3339);
    let between = |from: Option<time::OffsetDateTime>, to: Option<time::OffsetDateTime>| {
        Duration::try_from(to? - from?)
            .ok()
            .map(|d| d.as_millis() as u64)
    };
    [
        ("stock", between(placed, at("RESERVED"))),
        ("payment", between(at("PAYMENT_PENDING"), end)),
    ]
    .into_iter()
    .filter_map(|(stage, ms)| ms.map(|ms| (stage, ms)))
    .collect()
}

/// Samples every non-DLQ queue's depth until `stop`, keeping each one's peak.
async fn watch_queues(ops: &Ops, stop: &AtomicBool) -> BTreeMap<String, u64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let queues: Vec<_> = ops
        .queues()
        .into_iter()
        .filter(|q| !q.key.ends_with("DLQ"))
        .collect();
    let mut peaks = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        for queue in &queues {
            let Ok(out) = ops
                .sqs
                .get_queue_attributes()
                .queue_url(&queue.url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
            else {
                continue;
            };
            let depth: u64 = [
                A::ApproximateNumberOfMessages,
                A::ApproximateNumberOfMessagesNotVisible,
            ]
            .iter()
            .filter_map(|a| {
                out.attributes()
                    .and_then(|m| m.get(a))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum();
            let peak = peaks.entry(queue.key.clone()).or_insert(0);
            *peak = (*peak).max(depth);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    peaks
}

/// Runs the rush and reports it; `progress` counts orders as they end.
pub async fn run(
    ops: &Ops,
    options: &LoadOptions,
    progress: &ProgressBar,
) -> Result<LoadReport, OpsError> {
    let stock = DynamoStockStore::new(ops.dynamodb.clone(), ops.outputs.get("InventoryTableName")?);
    let mut on_hand = BTreeMap::new();
    for sku in &options.skus {
        let level = stock
            .level(&Sku(sku.clone()))
            .await
            .map_err(|e| OpsError::Refused(format!("reading the stock of {sku}: {e}")))?;
        on_hand.insert(sku.clone(), level.map_or(0, |l| l.available));
    }
    let client = Arc::new(Client {
        http: HttpClient::default(),
        api: options.api.clone(),
    });
    let stop = AtomicBool::new(false);
    let throttled = std::sync::atomic::AtomicUsize::new(0);
    progress.set_length(options.orders as u64 * 2);

    let rush = async {
        let started = Instant::now();
        let placings: Vec<Placing> = futures::stream::iter(0..options.orders)
            .map(|i| {
                let client = client.clone();
                let bearer = &options.bearers[i % options.bearers.len()];
                let sku = &options.skus[i % options.skus.len()];
                let throttled = &throttled;
                async move {
                    if let Some(rate) = options.rate {
                        tokio::time::sleep_until(
                            (started + Duration::from_secs_f64(i as f64 / rate)).into(),
                        )
                        .await;
                    }
                    let placing = client.place(bearer, sku, &options.card, throttled).await;
                    progress.inc(1);
                    placing
                }
            })
            .buffer_unordered(options.in_flight)
            .collect()
            .await;
        let placing_took = started.elapsed();
        let until = Instant::now() + options.within;
        let mut accepted = Vec::new();
        let mut report = LoadReport::default();
        for placing in placings {
            match placing {
                Placing::Accepted(p) => accepted.push(p),
                Placing::Refused(status) => *report.refused.entry(status).or_insert(0) += 1,
            }
        }
        report.accepted = accepted.len();
        report.accepted_per_second = accepted.len() as f64 / placing_took.as_secs_f64().max(0.001);
        let ended: Vec<(usize, Option<Value>)> = futures::stream::iter(accepted.iter().enumerate())
            .map(|(i, placed)| {
                let client = client.clone();
                async move {
                    let order = client.follow(placed, until).await;
                    progress.inc(1);
                    (i, order)
                }
            })
            .buffer_unordered(options.in_flight)
            .collect()
            .await;
        stop.store(true, Ordering::Relaxed);
        (report, accepted, ended)
    };
    let ((mut report, accepted, ended), peaks) = tokio::join!(rush, watch_queues(ops, &stop));
    report.throttled = throttled.load(Ordering::Relaxed);
    report.queue_peak_depth = peaks;

    let mut to_accepted = histogram()?;
    for placed in &accepted {
        to_accepted.saturating_record(placed.accepted_after.as_millis() as u64);
    }
    let mut to_final = histogram()?;
    let mut stages: BTreeMap<&str, Histogram<u64>> = BTreeMap::new();
    let mut confirmed_units: BTreeMap<String, u64> = BTreeMap::new();
    for (_, order) in &ended {
        let Some(order) = order else {
            report.never_ended += 1;
            continue;
        };
        if let Some(took) = time_to_final(order) {
            to_final.saturating_record(took.as_millis() as u64);
        }
        for (stage, ms) in stage_times(order) {
            let h = match stages.entry(stage) {
                std::collections::btree_map::Entry::Occupied(h) => h.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => v.insert(histogram()?),
            };
            h.saturating_record(ms);
        }
        if order["status"] == "CONFIRMED" {
            report.confirmed += 1;
            for line in order["lines"].as_array().into_iter().flatten() {
                *confirmed_units
                    .entry(line["sku"].as_str().unwrap_or_default().to_owned())
                    .or_insert(0) += line["quantity"].as_u64().unwrap_or(0);
            }
        } else {
            let reason = order["cancelReason"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned();
            *report.cancelled.entry(reason).or_insert(0) += 1;
        }
    }
    for (sku, units) in confirmed_units {
        let had = on_hand.get(&sku).copied().unwrap_or(0);
        if units > had {
            report.oversold.insert(sku, units - had);
        }
    }
    report.time_to_accepted = Percentiles::of(&to_accepted);
    report.time_to_final = Percentiles::of(&to_final);
    report.stage_time = stages
        .iter()
        .map(|(stage, h)| ((*stage).to_owned(), Percentiles::of(h)))
        .collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_business_endings_pass() {
        let mut report = LoadReport {
            confirmed: 100,
            cancelled: BTreeMap::from([("OutOfStock".into(), 199), ("PaymentDeclined".into(), 1)]),
            ..LoadReport::default()
        };
        assert!(report.failures().is_empty());
        report.cancelled.insert("States.Timeout".into(), 2);
        report.never_ended = 1;
        report.oversold.insert("HOT".into(), 3);
        report.refused.insert(429, 4);
        assert_eq!(
            report.failures(),
            [
                "2 cancelled for States.Timeout",
                "1 never ended",
                "4 never accepted (last answer 429)",
                "3 units of HOT oversold"
            ]
        );
    }

    #[test]
    fn the_wait_is_read_from_the_orders_own_timestamps() {
        let order = json!({
            "createdAt": "2026-12-03T10:00:00.000Z",
            "history": [{"at": "2026-12-03T10:00:00.000Z"}, {"at": "2026-12-03T10:00:21.500Z"}]
        });
        assert_eq!(time_to_final(&order), Some(Duration::from_millis(21_500)));
        assert_eq!(time_to_final(&json!({})), None);
        let confirmed = json!({
            "createdAt": "2026-12-03T10:00:00.000Z",
            "history": [
                {"status": "PENDING", "at": "2026-12-03T10:00:00.000Z"},
                {"status": "RESERVED", "at": "2026-12-03T10:00:02.000Z"},
                {"status": "PAYMENT_PENDING", "at": "2026-12-03T10:00:02.000Z"},
                {"status": "CONFIRMED", "at": "2026-12-03T10:00:30.250Z"}
            ]
        });
        assert_eq!(
            stage_times(&confirmed),
            [("stock", 2_000), ("payment", 28_250)]
        );
        let sold_out = json!({
            "createdAt": "2026-12-03T10:00:00.000Z",
            "history": [{"status": "CANCELLED", "at": "2026-12-03T10:00:01.000Z"}]
        });
        assert_eq!(stage_times(&sold_out), []);
    }
}
