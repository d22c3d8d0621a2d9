//! `shop trace`: one order's whole path as one trace. The functions' spans (each
//! function's invocation, records, AWS calls: from the trace file `shop local`'s
//! receiver keeps, or from a deployed stack's Transaction Search) joined with the
//! saga's states (from the execution history, in the trace of the context the saga's
//! input carries), laid out as a waterfall: each span with its function or service,
//! start offset, duration and outcome, and the time a message waited in a queue shown
//! as the gap it is.

pub mod transaction_search;

use crate::stack::Ops;
use crate::{OpsError, saga};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One finished span, as the local receiver keeps it and `shop trace` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's span id; absent for a trace's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// The span's name.
    pub name: String,
    /// The function (its Lambda name) or service that recorded it.
    pub service: String,
    /// Start, nanoseconds since the epoch.
    pub start_ns: u128,
    /// End, nanoseconds since the epoch.
    pub end_ns: u128,
    /// The error, with its causes, when the span failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attributes, by key.
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// Spans this one links to, as `(trace id, span id)`.
    #[serde(default)]
    pub links: Vec<(String, String)>,
}

impl Span {
    /// A span from its OpenTelemetry JSON form, which OTLP's span object (what `shop
    /// local`'s receiver takes) and the span events X-Ray keeps in `aws/spans` share:
    /// ids, name, times, status and links. Where the two differ, the caller gives what
    /// its format says: the service (the resource's `service.name`) and the attributes.
    /// `None` without a trace and a span id.
    pub fn from_otel_json(
        span: &Value,
        service: &Map<String, Value>,
        attributes: Map<String, Value>,
    ) -> Option<Self> {
        let start_ns = nanos(&span["startTimeUnixNano"]).unwrap_or_default();
        let status = &span["status"];
        let failed = status["code"].as_u64() == Some(2)
            || matches!(status["code"].as_str(), Some("STATUS_CODE_ERROR" | "ERROR"));
        Some(Self {
            trace_id: hex_id(&span["traceId"])?,
            span_id: hex_id(&span["spanId"])?,
            parent_span_id: hex_id(&span["parentSpanId"]),
            name: span["name"].as_str().unwrap_or_default().to_owned(),
            service: service
                .get("service.name")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            start_ns,
            end_ns: nanos(&span["endTimeUnixNano"])
                .or_else(|| nanos(&span["durationNano"]).map(|d| start_ns + d))
                .unwrap_or(start_ns),
            error: failed.then(|| status["message"].as_str().unwrap_or("failed").to_owned()),
            attributes,
            links: span["links"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| Some((hex_id(&l["traceId"])?, hex_id(&l["spanId"])?)))
                .collect(),
        })
    }
}

/// A trace or span id: hex digits, lower case; an empty, all-zero (W3C's invalid id)
/// or non-hex value is none, so an id is always safe inside a query's string.
fn hex_id(value: &Value) -> Option<String> {
    value
        .as_str()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0'))
        .map(str::to_ascii_lowercase)
}

/// Nanoseconds since the epoch, written as a JSON number or as its decimal text (OTLP's
/// JSON encoding writes 64-bit integers as strings).
fn nanos(value: &Value) -> Option<u128> {
    match value {
        Value::Number(n) => n.as_u64().map(u128::from),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The spans of a local session: the file `shop local`'s receiver appends to.
#[derive(Debug, Clone)]
pub struct TraceFile {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl TraceFile {
    /// The trace file of `stack` in `state_dir`.
    pub fn path(state_dir: &Path, stack: &str) -> PathBuf {
        state_dir.join(format!("{stack}.traces.jsonl"))
    }

    /// A new session's file: whatever an earlier session left is removed.
    pub fn create(path: PathBuf) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, b"")?;
        Ok(Self {
            path,
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// Appends `spans`, one JSON line each.
    pub fn append(&self, spans: &[Span]) -> std::io::Result<()> {
        let mut text = String::new();
        for span in spans {
            text.push_str(&serde_json::to_string(span).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        let _held = self
            .lock
            .lock()
            .map_err(|_| std::io::Error::other("trace file lock poisoned"))?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)?
            .write_all(text.as_bytes())
    }

    /// Every span in the file at `path`.
    pub fn read(path: &Path) -> std::io::Result<Vec<Span>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }
}

/// One line of the waterfall.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The span.
    #[serde(flatten)]
    pub span: Span,
    /// Nesting under the trace's root.
    pub depth: usize,
    /// Milliseconds from the trace's first span to this one's start.
    pub offset_ms: f64,
    /// Milliseconds the span lasted.
    pub duration_ms: f64,
    /// For a message's consumer: milliseconds between its producer's last work before
    /// it and its start (time in the queue, and the saga's own transitions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<f64>,
}

/// One order's trace, in time order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderTrace {
    /// The order.
    pub order_id: String,
    /// The order's trace: the one its placement started.
    pub trace_id: String,
    /// Other traces that name the order (a cancel request, a Stripe webhook
    /// delivery): each starts at its own request and links to nothing here.
    pub related: Vec<String>,
    /// Every span, parents before their children, siblings by start.
    pub rows: Vec<Row>,
    /// Spans whose parent is not in the trace.
    pub orphans: usize,
}

/// The service the saga's states are shown under.
const STATES: &str = "step-functions";

/// The span id of a saga state: stable for the same execution and state entry.
fn state_span_id(execution: &str, index: usize) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{execution}#{index}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The saga's states as spans: each state entered is a span in the trace of the
/// context its input carries, a child of the span that started the execution.
fn state_spans(runs: &[(saga::Execution, Vec<saga::Step>)]) -> Vec<Span> {
    let mut spans = Vec::new();
    for (execution, steps) in runs {
        for (index, step) in steps.iter().enumerate() {
            let Some(context) = step
                .input
                .as_deref()
                .and_then(|i| serde_json::from_str::<Value>(i).ok())
                .and_then(|i| i["traceparent"].as_str().map(str::to_owned))
            else {
                continue;
            };
            let mut parts = context.split('-').skip(1);
            let (Some(trace_id), Some(parent)) = (parts.next(), parts.next()) else {
                continue;
            };
            let start_ns = u128::try_from(step.entered_ms).unwrap_or_default() * 1_000_000;
            let duration_ns = u128::try_from(step.duration_ms.unwrap_or_default())
                .unwrap_or_default()
                * 1_000_000;
            let mut attributes = Map::new();
            attributes.insert("order.id".into(), execution.order_id.clone().into());
            attributes.insert("execution".into(), execution.name.clone().into());
            attributes.insert("outcome".into(), step.outcome.clone().into());
            if step.retries > 0 {
                attributes.insert("retries".into(), step.retries.into());
            }
            spans.push(Span {
                trace_id: trace_id.to_owned(),
                span_id: state_span_id(&execution.arn, index),
                parent_span_id: Some(parent.to_owned()),
                name: step.state.clone(),
                service: STATES.into(),
                start_ns,
                end_ns: start_ns + duration_ns,
                error: step
                    .error
                    .clone()
                    .filter(|_| matches!(step.outcome.as_str(), "failed" | "caught" | "timed out")),
                attributes,
                links: Vec::new(),
            });
        }
    }
    spans
}

/// Lays out the spans of `order_id` found among `spans`: every span of the traces that
/// hold one with its `order.id`.
pub fn assemble(order_id: &str, spans: Vec<Span>) -> OrderTrace {
    let mut naming: Vec<&Span> = spans
        .iter()
        .filter(|s| s.attributes.get("order.id").and_then(Value::as_str) == Some(order_id))
        .collect();
    naming.sort_by_key(|s| s.start_ns);
    let trace_id = naming
        .first()
        .map(|s| s.trace_id.clone())
        .unwrap_or_default();
    let related: BTreeSet<String> = naming
        .iter()
        .map(|s| s.trace_id.clone())
        .filter(|t| *t != trace_id)
        .collect();
    let mut spans: Vec<Span> = spans
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect();
    spans.sort_by_key(|s| (s.start_ns, s.end_ns));
    let ids: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    let mut orphans = 0;
    for (i, span) in spans.iter().enumerate() {
        let parent = span
            .parent_span_id
            .as_deref()
            .and_then(|p| ids.get(p).copied());
        if span.parent_span_id.is_some() && parent.is_none() {
            orphans += 1;
        }
        children.entry(parent).or_default().push(i);
    }
    let origin = spans.first().map_or(0, |s| s.start_ns);
    let ms = |ns: u128| ns as f64 / 1e6;
    let mut rows = Vec::new();
    let mut stack: Vec<(usize, usize)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|&r| (r, 0)).collect())
        .unwrap_or_default();
    while let Some((i, depth)) = stack.pop() {
        let span = &spans[i];
        let parent = span
            .parent_span_id
            .as_deref()
            .and_then(|p| ids.get(p).copied());
        // A consumer in another service than its parent received a message: it waited
        // from the producer's last work before it started.
        let waited_ms = parent
            .filter(|&p| spans[p].service != span.service && span.service != STATES)
            .map(|p| {
                let producer = &spans[p];
                let last = children
                    .get(&Some(p))
                    .into_iter()
                    .flatten()
                    .map(|&c| &spans[c])
                    .filter(|c| c.service == producer.service && c.end_ns <= span.start_ns)
                    .map(|c| c.end_ns)
                    .max()
                    .unwrap_or(producer.start_ns);
                ms(span.start_ns.saturating_sub(last))
            });
        rows.push(Row {
            span: span.clone(),
            depth,
            offset_ms: ms(span.start_ns.saturating_sub(origin)),
            duration_ms: ms(span.end_ns.saturating_sub(span.start_ns)),
            waited_ms,
        });
        if let Some(kids) = children.get(&Some(i)) {
            stack.extend(kids.iter().rev().map(|&c| (c, depth + 1)));
        }
    }
    OrderTrace {
        order_id: order_id.to_owned(),
        trace_id,
        related: related.into_iter().collect(),
        rows,
        orphans,
    }
}

/// `shop trace --local`: the order's spans from the session's trace file, with the
/// saga's states from its execution history.
pub async fn local(ops: &Ops, traces: &Path, order_id: &str) -> Result<OrderTrace, OpsError> {
    let spans = TraceFile::read(traces).map_err(|e| {
        OpsError::Refused(format!(
            "cannot read the trace file {}: {e}; is shop local running with tracing on?",
            traces.display()
        ))
    })?;
    let report = saga::show(ops, order_id).await?;
    with_states(order_id, spans, &report, || {
        format!(
            "no span of order {order_id} in {}: traced orders are those placed since shop \
             local started, within TraceSampleRatio",
            traces.display()
        )
    })
}

/// `shop trace --stack`: the order's spans from the stack's Transaction Search (the
/// `aws/spans` log group), from five minutes before the order was placed until now,
/// with the saga's states from its execution history.
pub async fn deployed(ops: &Ops, order_id: &str) -> Result<OrderTrace, OpsError> {
    let report = saga::show(ops, order_id).await?;
    let (Some(order), Some(id)) = (report.order.as_ref(), shop_domain::OrderId::parse(order_id))
    else {
        return Err(OpsError::Refused(format!(
            "no order {order_id} in the stack"
        )));
    };
    let placed = shop_domain::parse_rfc3339(&order.created_at).ok_or_else(|| {
        OpsError::Refused(format!(
            "order {order_id} has an unreadable createdAt {:?}",
            order.created_at
        ))
    })?;
    let spans = transaction_search::spans(
        &ops.logs,
        &id,
        placed - time::Duration::minutes(5),
        time::OffsetDateTime::now_utc() + time::Duration::minutes(1),
    )
    .await?;
    with_states(order_id, spans, &report, || {
        format!(
            "no span of order {order_id} in {}: is Transaction Search enabled \
             (docs/operating.md \"Tracing an order\"), was the order sampled \
             (TraceSampleRatio), and have a few minutes passed since it was placed?",
            transaction_search::SPANS_LOG_GROUP
        )
    })
}

/// The functions' spans with the saga's states, laid out; `none` says why no span of
/// the order was found.
fn with_states(
    order_id: &str,
    mut spans: Vec<Span>,
    report: &saga::SagaReport,
    none: impl FnOnce() -> String,
) -> Result<OrderTrace, OpsError> {
    spans.extend(state_spans(&report.runs));
    let trace = assemble(order_id, spans);
    if trace.rows.is_empty() {
        return Err(OpsError::Refused(none()));
    }
    Ok(trace)
}

/// The waterfall as text, one span a line.
pub fn render(trace: &OrderTrace) -> String {
    let mut out = format!(
        "order {}  trace {}\n{:>9} {:>9}  {:<24} span\n",
        trace.order_id, trace.trace_id, "start ms", "took ms", "function / service"
    );
    for row in &trace.rows {
        let service = row
            .span
            .service
            .rsplit_once('-')
            .filter(|(_, tail)| tail.ends_with("Function"))
            .map_or(row.span.service.as_str(), |(_, tail)| tail);
        let outcome = match &row.span.error {
            Some(error) => format!("  FAILED: {error}"),
            None => String::new(),
        };
        let waited = row
            .waited_ms
            .map(|w| format!("  (waited {w:.1} ms)"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:>9.1} {:>9.1}  {:<24} {}{}{}{}\n",
            row.offset_ms,
            row.duration_ms,
            service,
            "  ".repeat(row.depth),
            row.span.name,
            waited,
            outcome
        ));
    }
    if !trace.related.is_empty() {
        out.push_str(&format!(
            "other traces naming the order: {}\n",
            trace.related.join(", ")
        ));
    }
    if trace.orphans > 0 {
        out.push_str(&format!(
            "{} span(s) name a parent that is not in the trace\n",
            trace.orphans
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str, start: u128, end: u128) -> Span {
        Span {
            trace_id: "t".repeat(32),
            span_id: id.into(),
            parent_span_id: parent.map(Into::into),
            name: id.into(),
            service: service.into(),
            start_ns: start * 1_000_000,
            end_ns: end * 1_000_000,
            error: None,
            attributes: Map::new(),
            links: Vec::new(),
        }
    }

    #[test]
    fn a_waterfall_nests_children_under_parents_and_shows_queue_waits() {
        let mut api = span("api", None, "shop-OrdersApiFunction", 0, 20);
        api.attributes.insert("order.id".into(), "ord-1".into());
        let spans = vec![
            span("intake", Some("api"), "shop-OrderIntakeFunction", 70, 90),
            api,
            span("put", Some("api"), "shop-OrdersApiFunction", 5, 15),
            span("other-trace", None, "x", 0, 1),
        ];
        let mut spans = spans;
        spans[3].trace_id = "o".repeat(32);
        let trace = assemble("ord-1", spans);
        let names: Vec<_> = trace
            .rows
            .iter()
            .map(|r| (r.span.name.as_str(), r.depth))
            .collect();
        assert_eq!(names, [("api", 0), ("put", 1), ("intake", 1)]);
        assert_eq!(trace.rows[2].waited_ms, Some(55.0));
        assert_eq!(trace.rows[2].offset_ms, 70.0);
        assert_eq!(trace.orphans, 0);
        let text = render(&trace);
        assert!(text.contains("OrderIntakeFunction"), "{text}");
        assert!(text.contains("(waited 55.0 ms)"), "{text}");
    }

    #[test]
    fn a_span_whose_parent_is_missing_is_counted() {
        let mut root = span("a", None, "s", 0, 1);
        root.attributes.insert("order.id".into(), "ord-2".into());
        let trace = assemble("ord-2", vec![root, span("b", Some("gone"), "s", 2, 3)]);
        assert_eq!(trace.orphans, 1);
    }
}
