//! JSON logs that carry a correlation id, and CloudWatch Embedded Metric Format lines,
//! set up the same way in every function.
#![warn(missing_docs)]

use serde_json::{Map, Value, json};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
    // `RUST_LOG` as a level (`info`, the template's LogLevel) or `target=level` list;
    // `Targets` parses it without the regex engine `EnvFilter` links into every binary.
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .finish()
        .with(filter)
        .try_init();
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

/// A metric unit CloudWatch understands.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// A plain count.
    Count,
    /// Milliseconds.
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// Namespace every metric of the suite is published under.
pub const NAMESPACE: &str = "OrderSaga";

/// Builds one EMF document: CloudWatch extracts the metric from the log line, so no
/// PutMetricData call (and no extra latency or IAM grant) is needed.
pub fn emf_line(
    name: &str,
    unit: Unit,
    value: f64,
    dimensions: &[(&str, &str)],
    timestamp_ms: u128,
) -> Value {
    let mut doc = Map::new();
    let dim_names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dim_names],
                "Metrics": [{ "Name": name, "Unit": unit.as_str() }],
            }],
        }),
    );
    for (k, v) in dimensions {
        doc.insert((*k).into(), json!(v));
    }
    doc.insert(name.into(), json!(value));
    Value::Object(doc)
}

/// Emits one metric as an EMF line on stdout, where the Lambda log agent picks it up.
pub fn emit_metric(name: &str, unit: Unit, value: f64, dimensions: &[(&str, &str)]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    println!("{}", emf_line(name, unit, value, dimensions, now));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_the_metric_and_its_dimensions() {
        let doc = emf_line(
            "OrdersCancelled",
            Unit::Count,
            1.0,
            &[("Reason", "OutOfStock")],
            42,
        );
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Reason"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "OrdersCancelled"
        );
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
