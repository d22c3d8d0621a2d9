//! A deployed stack's spans, from CloudWatch Transaction Search. The functions export
//! to X-Ray's OTLP endpoint; with Transaction Search on, X-Ray keeps every span as one
//! structured log event in the `aws/spans` log group, in OpenTelemetry's semantic
//! convention format with W3C ids ("Transaction Search", "The span log group" in the
//! CloudWatch user guide). Logs Insights finds the spans naming the order
//! (`attributes.order.id`), then every span of their traces (`traceId`); both are
//! fields AWS's own example queries on `aws/spans` filter on.

use super::Span;
use crate::{OpsError, aws};
use aws_sdk_cloudwatchlogs::types::QueryStatus;
use serde_json::{Map, Value};
use shop_domain::OrderId;
use std::collections::BTreeSet;
use std::time::Duration;
use time::OffsetDateTime;

/// The log group X-Ray writes spans to once Transaction Search is enabled.
pub const SPANS_LOG_GROUP: &str = "aws/spans";

/// The most rows one Logs Insights query returns.
const MAX_ROWS: i32 = 10_000;

/// How long a query may run before `shop trace` gives up on it.
const QUERY_DEADLINE: Duration = Duration::from_secs(120);

/// Every span of the traces holding a span that names `order`, among the spans that
/// started between `from` and `to`.
pub async fn spans(
    logs: &aws_sdk_cloudwatchlogs::Client,
    order: &OrderId,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<Span>, OpsError> {
    // The order id is validated (`ord-` and [A-Za-z0-9_-]), so it cannot end the string.
    let naming = query(
        logs,
        (from, to),
        &format!(
            "fields @message | filter attributes.order.id = \"{}\"",
            order.as_str()
        ),
    )
    .await?;
    let traces: BTreeSet<String> = naming.into_iter().map(|s| s.trace_id).collect();
    if traces.is_empty() {
        return Ok(Vec::new());
    }
    // Trace ids are parsed as hex digits only: safe inside the query's strings.
    let list = traces
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    query(
        logs,
        (from, to),
        &format!("fields @message | filter traceId in [{list}]"),
    )
    .await
}

/// Runs one Logs Insights query on the span log group and parses each row's span.
async fn query(
    logs: &aws_sdk_cloudwatchlogs::Client,
    (from, to): (OffsetDateTime, OffsetDateTime),
    text: &str,
) -> Result<Vec<Span>, OpsError> {
    let started = logs
        .start_query()
        .log_group_name(SPANS_LOG_GROUP)
        .start_time(from.unix_timestamp())
        .end_time(to.unix_timestamp())
        .query_string(text)
        .limit(MAX_ROWS)
        .send()
        .await
        .map_err(aws("logs:StartQuery"))?;
    let id = started.query_id().unwrap_or_default().to_owned();
    let deadline = tokio::time::Instant::now() + QUERY_DEADLINE;
    loop {
        let answer = logs
            .get_query_results()
            .query_id(&id)
            .send()
            .await
            .map_err(aws("logs:GetQueryResults"))?;
        match answer.status() {
            Some(QueryStatus::Complete) => {
                return Ok(answer
                    .results()
                    .iter()
                    .filter_map(|row| {
                        row.iter()
                            .find(|f| f.field() == Some("@message"))
                            .and_then(|f| f.value())
                            .and_then(parse)
                    })
                    .collect());
            }
            Some(QueryStatus::Running | QueryStatus::Scheduled) | None
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            status => {
                return Err(OpsError::Refused(format!(
                    "the Logs Insights query on {SPANS_LOG_GROUP} ended {} ({text})",
                    status.map_or("without a status", |s| s.as_str())
                )));
            }
        }
    }
}

/// One span log event of `aws/spans`; `None` for an event that is not a span.
pub fn parse(message: &str) -> Option<Span> {
    let doc: Value = serde_json::from_str(message).ok()?;
    Span::from_otel_json(
        &doc,
        &flattened(&doc["resource"]["attributes"]),
        flattened(&doc["attributes"]),
    )
}

/// Attributes by their dotted names, whether stored flat (`{"order.id": …}`) or
/// nested (`{"order": {"id": …}}`).
fn flattened(value: &Value) -> Map<String, Value> {
    fn walk(prefix: &str, value: &Value, into: &mut Map<String, Value>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&name, inner, into);
                }
            }
            other if !prefix.is_empty() => {
                into.insert(prefix.to_owned(), other.clone());
            }
            _ => {}
        }
    }
    let mut into = Map::new();
    walk("", value, &mut into);
    into
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_span_event_keeps_its_ids_times_service_outcome_attributes_and_links() {
        let event = json!({
            "resource": {"attributes": {"service.name": "shop-prod-PaymentsFunction",
                                        "cloud.provider": "aws"}},
            "scope": {"name": "payments"},
            "traceId": "0AF7651916CD43DD8448EB211C80319C",
            "spanId": "b7ad6b7169203331",
            "parentSpanId": "00f067aa0ba902b7",
            "name": "authorize",
            "kind": "INTERNAL",
            "startTimeUnixNano": 1_796_412_629_428_000_000_u64,
            "durationNano": 2_500_000,
            "attributes": {"order.id": "ord-1", "faas": {"coldstart": true}},
            "status": {"code": "ERROR", "message": "provider unavailable: 503"},
            "links": [{"traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                       "spanId": "00f067aa0ba902b7"}],
        });
        let span = parse(&event.to_string()).unwrap();
        assert_eq!(span.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(span.service, "shop-prod-PaymentsFunction");
        assert_eq!(span.end_ns - span.start_ns, 2_500_000);
        assert_eq!(span.error.as_deref(), Some("provider unavailable: 503"));
        assert_eq!(span.attributes["order.id"], "ord-1");
        assert_eq!(span.attributes["faas.coldstart"], true);
        assert_eq!(
            span.links,
            vec![(
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into()
            )]
        );
    }

    #[test]
    fn a_root_span_has_no_parent_and_an_unset_status_is_no_failure() {
        let event = json!({
            "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
            "parentSpanId": "", "name": "request",
            "startTimeUnixNano": "1796412629428000000", "endTimeUnixNano": "1796412629438000000",
            "status": {"code": "UNSET"},
        });
        let span = parse(&event.to_string()).unwrap();
        assert_eq!(span.parent_span_id, None);
        assert_eq!(span.error, None);
        assert_eq!(span.end_ns - span.start_ns, 10_000_000);
    }

    #[test]
    fn an_event_that_is_not_a_span_is_skipped() {
        assert_eq!(parse("not json"), None);
        assert_eq!(
            parse(r#"{"traceId":"short","spanId":"b7ad6b7169203331"}"#),
            None
        );
    }
}
