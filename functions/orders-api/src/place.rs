//! `POST /v1/orders`: an order placed once per `Idempotency-Key`, its body read as
//! API Gateway passes it.

use crate::problem::{Problem, ProblemType};
use crate::{OrdersApi, Reply, header, unavailable};
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use idempotency::{IdempotencyError, Outcome};
use serde_json::{Value, json};
use shop_domain::CustomerId;
use shop_domain::request::{self, MAX_BODY_BYTES, RequestError};
use shop_domain::services::PlaceOrderError;
use std::time::SystemTime;

impl OrdersApi {
    pub(crate) async fn place(
        &self,
        request: &ApiGatewayV2httpRequest,
        caller: &CustomerId,
        links: &str,
        correlation_id: &str,
        deadline: SystemTime,
    ) -> (Reply, bool) {
        let body = match request_body(request) {
            Ok(body) => body,
            Err(reply) => return (reply, false),
        };
        let place_once = || self.place_once(&body, caller, links, correlation_id);
        let Some(key) = header(&request.headers, "idempotency-key") else {
            return (place_once().await, false);
        };
        if !(1..=255).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic()) {
            let p = Problem::new(
                ProblemType::IdempotencyKeyInvalid,
                "Idempotency-Key must be 1-255 visible ASCII characters",
            );
            return (p.into(), false);
        }
        // Per caller: two shoppers may use the same key. The subject's length keeps
        // ("a#b", "c") and ("a", "b#c") apart.
        let scoped = format!("POST /v1/orders#{}:{caller}#{key}", caller.as_str().len());
        let fingerprint = canonical_payload(&body);
        let result = self
            .idempotency
            .run(&scoped, &fingerprint, deadline, || async {
                let reply = place_once().await;
                if reply.status >= 500 {
                    Err(reply)
                } else {
                    Ok(reply)
                }
            })
            .await;
        match result {
            Ok(Outcome::Fresh(reply)) => (reply, false),
            Ok(Outcome::Replayed(reply)) => (reply, true),
            Err(IdempotencyError::Work(reply)) => (reply, false),
            Err(IdempotencyError::PayloadMismatch) => (
                Problem::new(
                    ProblemType::IdempotencyKeyReused,
                    "this Idempotency-Key was used with a different request body",
                )
                .into(),
                false,
            ),
            Err(IdempotencyError::InProgress) => (
                Problem::new(
                    ProblemType::IdempotencyKeyInProgress,
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                )
                .into(),
                false,
            ),
            Err(e @ (IdempotencyError::Store(_) | IdempotencyError::Corrupt(_))) => {
                (unavailable("idempotency store", &e), false)
            }
        }
    }

    async fn place_once(
        &self,
        body: &[u8],
        caller: &CustomerId,
        links: &str,
        correlation_id: &str,
    ) -> Reply {
        let parsed = match request::parse_place_order(body, caller) {
            Ok(p) => p,
            Err(e) => return request_problem(e).into(),
        };
        match self.service().place(parsed, correlation_id).await {
            Ok(order) => {
                tracing::Span::current().record("order.id", order.order_id.as_str());
                tracing::info!(order_id = %order.order_id, total = order.total, "order accepted");
                observability::emit(observability::Metric::OrdersPlaced, 1.0, &[]);
                let location = format!("{links}/v1/orders/{}", order.order_id);
                Reply {
                    location: Some(location.clone()),
                    ..Reply::json(
                        202,
                        json!({
                            "orderId": order.order_id,
                            "status": order.status,
                            "total": order.total,
                            "currency": order.currency,
                            "links": { "self": location },
                        }),
                    )
                }
            }
            Err(PlaceOrderError::UnknownSkus(errors)) => Problem::new(
                ProblemType::ValidationFailed,
                "some lines name SKUs the catalog does not sell in this currency",
            )
            .with_errors(errors)
            .into(),
            Err(PlaceOrderError::TotalOverflow) => Problem::new(
                ProblemType::ValidationFailed,
                "the order total is too large",
            )
            .into(),
            Err(PlaceOrderError::Unavailable(e)) => unavailable("placing order", &e),
        }
    }
}

fn request_body(request: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, Reply> {
    let content_type = header(&request.headers, "content-type").unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" && !media.ends_with("+json") {
        return Err(Problem::new(
            ProblemType::UnsupportedMediaType,
            "send the order as application/json",
        )
        .into());
    }
    let raw = request.body.as_deref().unwrap_or("");
    // Base64 inflates by 4/3; refuse before decoding anything huge.
    if raw.len() > MAX_BODY_BYTES * 4 / 3 + 4 {
        return Err(request_problem(RequestError::TooLarge(raw.len())).into());
    }
    let body = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| {
                Reply::from(request_problem(RequestError::MalformedJson(format!(
                    "body is not valid base64: {e}"
                ))))
            })?
    } else {
        raw.as_bytes().to_vec()
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(request_problem(RequestError::TooLarge(body.len())).into());
    }
    Ok(body)
}

/// The bytes the idempotency hash covers: canonical JSON when the body parses, so
/// key order and whitespace do not make an identical request look different.
fn canonical_payload(body: &[u8]) -> Vec<u8> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec(&keys_sorted(v)).ok())
        .unwrap_or_else(|| body.to_vec())
}

/// The value with every object's keys in sorted order. Sorted here, not left to
/// serde_json's map: its `preserve_order` feature, which any crate in a build can
/// turn on, keeps the order the client sent (a dev-dependency once did, and a
/// reordered retry was refused as another body).
fn keys_sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, keys_sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(keys_sorted).collect()),
        other => other,
    }
}

fn request_problem(e: RequestError) -> Problem {
    let detail = e.to_string();
    match e {
        RequestError::TooLarge(_) => Problem::new(ProblemType::PayloadTooLarge, detail),
        RequestError::MalformedJson(_) => Problem::new(ProblemType::MalformedJson, detail),
        RequestError::Shape { field, detail: why } => {
            Problem::new(ProblemType::InvalidRequest, detail)
                .with_errors(vec![request::FieldError { field, detail: why }])
        }
        RequestError::Invalid(errors) => {
            Problem::new(ProblemType::ValidationFailed, detail).with_errors(errors)
        }
        RequestError::NotTheCaller => Problem::new(ProblemType::CustomerMismatch, detail)
            .with_errors(vec![request::FieldError {
                field: "customerId".into(),
                detail: "must be the caller's own id or absent".into(),
            }]),
    }
}
