//! JSON logs that carry a correlation id, and CloudWatch Embedded Metric Format lines,
//! set up the same way in every function.
#![warn(missing_docs)]

use serde_json::{Map, Value, json};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub mod traces;

/// An error and every cause under it, `outer: inner: root`, for the places a person
/// reads an error (logs, a task failure's cause, an operator's console). A wrapper's
/// own text is skipped when its cause repeats it, as transparent wrappers do.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut written = String::new();
        let mut current = Some(self.0);
        while let Some(error) = current {
            let text = error.to_string();
            if !written.ends_with(&text) {
                if !written.is_empty() {
                    written.push_str(": ");
                }
                written.push_str(&text);
            }
            current = error.source();
        }
        f.write_str(&written)
    }
}

/// Header and message attribute that carry the correlation id between services.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Installs the JSON log subscriber once per process. Level comes from `RUST_LOG`
/// (default `info`; a level or `target=level` directives); each line is one JSON object so CloudWatch Logs Insights can
/// query `correlation_id` and `order_id` fields from the enclosing span.
pub fn init_logging() {
    init_logging_to(std::io::stdout);
}

/// Like [`init_logging`], writing elsewhere: benchmarks keep the cost of formatting
/// each line without flooding their own output.
pub fn init_logging_to<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::registry()
        .with(json_logs(writer).with_filter(log_filter()))
        .try_init();
}

/// `RUST_LOG` as a level (`info`, the template's LogLevel) or `target=level` list;
/// `Targets` parses it without the regex engine `EnvFilter` links into every binary.
fn log_filter() -> Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

/// One JSON object per line, with the fields of the enclosing span.
fn json_logs<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_writer(writer)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
}

/// The caller's correlation id if it is sane, or a new one.
pub fn correlation_id_or_new(incoming: Option<&str>) -> String {
    match incoming {
        Some(id)
            if (1..=128).contains(&id.len())
                && id.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
                }) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// CloudWatch namespace of every metric the functions emit.
pub const NAMESPACE: &str = "OrderSaga";

/// Every custom metric the code emits, with its dimensions. The only way to emit one
/// is [`emit`], so this list is the whole catalogue: the template's alarms and
/// dashboard are checked against it (tests/tests/contracts.rs), and the EMF lines a
/// running `shop local` prints are checked against it (tools/shop/tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// An order was accepted (202). Dimensions: Service.
    OrdersPlaced,
    /// An order's saga confirmed it. Dimensions: Service.
    OrdersConfirmed,
    /// An order ended cancelled. Dimensions: Service, Reason.
    OrdersCancelled,
    /// The orphan sweep cancelled orders no saga started. Dimensions: Service.
    OrdersOrphaned,
    /// The payment provider declined a card. Dimensions: Service.
    PaymentDeclines,
    /// The provider's circuit breaker changed state. Dimensions: Service, State.
    PaymentCircuitStateChanges,
    /// A provider call refused because the circuit is open. Dimensions: Service.
    PaymentCircuitRejections,
    /// A compensation (refund, release) failed for a transient reason and the saga
    /// waits to send it again. Dimensions: Service.
    CompensationWaiting,
    /// A Stripe webhook delivery was refused (no valid signature, or signed too long
    /// ago): a wrong signing secret refuses every one, and 3-D Secure orders then wait
    /// for their deadline. Dimensions: Service.
    WebhookDeliveriesRefused,
    /// Work a function was invoked for and could not do: an API answer of 5xx, a
    /// queue record it failed (redelivered, then dead-lettered), a sweep that failed.
    /// Lambda's `Errors` counts none of these (the handler answered), so this is what
    /// a canary deployment rolls back on. Dimensions: Service, FunctionName (Lambda's
    /// `AWS_LAMBDA_FUNCTION_NAME`, as Lambda's own metrics name the function).
    FunctionFailures,
}

impl Metric {
    /// Every metric, for the contract tests.
    pub const ALL: [Metric; 10] = [
        Self::OrdersPlaced,
        Self::OrdersConfirmed,
        Self::OrdersCancelled,
        Self::OrdersOrphaned,
        Self::PaymentDeclines,
        Self::PaymentCircuitStateChanges,
        Self::PaymentCircuitRejections,
        Self::CompensationWaiting,
        Self::WebhookDeliveriesRefused,
        Self::FunctionFailures,
    ];

    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Self::OrdersPlaced => "OrdersPlaced",
            Self::OrdersConfirmed => "OrdersConfirmed",
            Self::OrdersCancelled => "OrdersCancelled",
            Self::OrdersOrphaned => "OrdersOrphaned",
            Self::PaymentDeclines => "PaymentDeclines",
            Self::PaymentCircuitStateChanges => "PaymentCircuitStateChanges",
            Self::PaymentCircuitRejections => "PaymentCircuitRejections",
            Self::CompensationWaiting => "CompensationWaiting",
            Self::WebhookDeliveriesRefused => "WebhookDeliveriesRefused",
            Self::FunctionFailures => "FunctionFailures",
        }
    }

    /// The value of its `Service` dimension: fixed per metric, so an alarm's
    /// dimension value can be checked against the one the code emits.
    pub fn service(self) -> &'static str {
        match self {
            Self::OrdersPlaced
            | Self::OrdersConfirmed
            | Self::OrdersCancelled
            | Self::OrdersOrphaned => "orders",
            Self::PaymentDeclines
            | Self::PaymentCircuitStateChanges
            | Self::PaymentCircuitRejections
            | Self::WebhookDeliveriesRefused => "payments",
            Self::CompensationWaiting => "saga",
            Self::FunctionFailures => "functions",
        }
    }

    /// The names of its dimensions: `Service` first, then those [`emit`] takes
    /// values for, in that order.
    pub fn dimensions(self) -> &'static [&'static str] {
        match self {
            Self::OrdersCancelled => &["Service", "Reason"],
            Self::PaymentCircuitStateChanges => &["Service", "State"],
            Self::FunctionFailures => &["Service", "FunctionName"],
            _ => &["Service"],
        }
    }
}

/// One EMF document: the metric, its dimensions and value, at `timestamp_ms`.
/// `varying` are the values of the dimensions after `Service`.
pub fn emf_line(metric: Metric, value: f64, varying: &[&str], timestamp_ms: u128) -> Value {
    let names = metric.dimensions();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                // Every metric of the catalogue counts events.
                "Metrics": [{ "Name": metric.name(), "Unit": "Count" }],
            }],
        }),
    );
    let values = std::iter::once(metric.service()).chain(varying.iter().copied());
    for (name, value) in names.iter().zip(values) {
        doc.insert((*name).into(), json!(value));
    }
    doc.insert(metric.name().into(), json!(value));
    Value::Object(doc)
}

/// Prints one metric as an EMF line on stdout, where Lambda's log agent turns it into
/// a CloudWatch metric. `varying` are the values of the dimensions after `Service`
/// (see [`Metric::dimensions`]).
pub fn emit(metric: Metric, value: f64, varying: &[&str]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    println!("{}", emf_line(metric, value, varying, now));
}

/// Counts the work `function` (its Lambda name) could not do in one invocation, if
/// any, as [`Metric::FunctionFailures`].
pub fn count_failures(function: &str, failed: usize) {
    if failed > 0 {
        emit(Metric::FunctionFailures, failed as f64, &[function]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_chain_shows_every_cause_once() {
        let root = Layer(
            "ConditionalCheckFailedException: the condition failed",
            None,
        );
        let transparent = Layer("service error", Some(Box::new(root)));
        let same = Layer("service error", Some(Box::new(transparent)));
        let port = Layer("stock.reserve failed", Some(Box::new(same)));
        assert_eq!(
            ErrorChain(&port).to_string(),
            "stock.reserve failed: service error: ConditionalCheckFailedException: the condition failed"
        );
    }

    #[test]
    fn emf_document_declares_the_metric_and_its_dimensions() {
        let doc = emf_line(Metric::OrdersCancelled, 1.0, &["OutOfStock"], 42);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            json!(["Service", "Reason"])
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "OrdersCancelled"
        );
        assert_eq!(doc["Service"], "orders");
        assert_eq!(doc["Reason"], "OutOfStock");
        assert_eq!(doc["OrdersCancelled"], 1.0);
    }

    #[test]
    fn keeps_sane_correlation_ids_and_replaces_hostile_ones() {
        assert_eq!(correlation_id_or_new(Some("abc-123")), "abc-123");
        let replaced = correlation_id_or_new(Some("bad\nid"));
        assert_ne!(replaced, "bad\nid");
        assert_eq!(replaced.len(), 36);
    }
}
