//! The local stack's trace receiver: the OTLP/HTTP endpoint (JSON, `POST /v1/traces`)
//! the functions export to instead of X-Ray, keeping every span of the session in one
//! file beside the stack file, one span a line, for `shop trace --local`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};
pub use shop_ops::trace::{Span as StoredSpan, TraceFile};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// An OTLP `AnyValue` as plain JSON.
fn any_value(value: &Value) -> Value {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    match kind.as_str() {
        "intValue" => inner
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .map(Value::from)
            .unwrap_or_else(|| inner.clone()),
        "arrayValue" => Value::Array(
            inner["values"]
                .as_array()
                .map(|values| values.iter().map(any_value).collect())
                .unwrap_or_default(),
        ),
        _ => inner.clone(),
    }
}

fn attributes(list: &Value) -> Map<String, Value> {
    list.as_array()
        .map(|list| {
            list.iter()
                .filter_map(|kv| Some((kv["key"].as_str()?.to_owned(), any_value(&kv["value"]))))
                .collect()
        })
        .unwrap_or_default()
}

/// The spans of an OTLP `ExportTraceServiceRequest` in its JSON encoding.
pub fn decode(request: &Value) -> Result<Vec<StoredSpan>, String> {
    let resources = request["resourceSpans"]
        .as_array()
        .ok_or("no resourceSpans")?;
    let mut spans = Vec::new();
    for resource in resources {
        let service = attributes(&resource["resource"]["attributes"]);
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                spans.push(
                    StoredSpan::from_otel_json(span, &service, attributes(&span["attributes"]))
                        .ok_or("a span without its ids")?,
                );
            }
        }
    }
    Ok(spans)
}

fn answer(status: u16, body: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The largest export the receiver takes, as CloudWatch's OTLP endpoint (1 MB).
const MAX_EXPORT: usize = 1024 * 1024;

async fn receive(
    request: hyper::Request<hyper::body::Incoming>,
    file: TraceFile,
) -> hyper::Response<Full<Bytes>> {
    if request.method() != http::Method::POST || request.uri().path() != "/v1/traces" {
        return answer(404, "{\"message\":\"Not Found\"}");
    }
    let body = match Limited::new(request.into_body(), MAX_EXPORT)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return answer(413, "{\"message\":\"an export is at most 1 MB\"}"),
    };
    let spans = serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|request| decode(&request));
    match spans {
        Ok(spans) => match file.append(&spans) {
            Ok(()) => answer(200, "{}"),
            Err(e) => answer(
                500,
                &serde_json::json!({ "message": e.to_string() }).to_string(),
            ),
        },
        Err(e) => answer(400, &serde_json::json!({ "message": e }).to_string()),
    }
}

/// Receives exports on `listener` into `file` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, file: TraceFile, shutdown: watch::Receiver<bool>) {
    crate::http_server::run(listener, shutdown, move |request| {
        receive(request, file.clone())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_otlp_json_export_becomes_one_stored_span_per_span() {
        let request = json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop-InventoryFunction"}}]},
            "scopeSpans": [{"scope": {"name": "order-saga"}, "spans": [{
                "traceId": "4BF92F3577B34DA6A3CE929D0E0E4736",
                "spanId": "00f067aa0ba902b7",
                "parentSpanId": "",
                "name": "record",
                "kind": 5,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": 1700000000005000000u64,
                "attributes": [
                    {"key": "order.id", "value": {"stringValue": "o-1"}},
                    {"key": "faas.coldstart", "value": {"boolValue": true}},
                    {"key": "attempt", "value": {"intValue": "2"}}
                ],
                "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}],
                "status": {"code": 2, "message": "stock.reserve failed: throttled"}
            }]}]
        }]});
        let spans = decode(&request).unwrap();
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.parent_span_id, None);
        assert_eq!(span.service, "shop-InventoryFunction");
        assert_eq!(span.end_ns - span.start_ns, 5_000_000);
        assert_eq!(span.attributes["order.id"], "o-1");
        assert_eq!(span.attributes["attempt"], 2);
        assert_eq!(span.attributes["faas.coldstart"], true);
        assert_eq!(
            span.error.as_deref(),
            Some("stock.reserve failed: throttled")
        );
        assert_eq!(span.links.len(), 1);
        assert!(
            decode(&json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]}))
                .is_err()
        );
    }
}
