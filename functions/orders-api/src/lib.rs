//! The orders HTTP API (API Gateway HTTP API, payload v2): `POST /v1/orders`,
//! `GET /v1/orders`, `GET /v1/orders/{id}`, `POST /v1/orders/{id}/cancel`. The caller is
//! the subject of the token API Gateway's JWT authorizer verified, and sees only their
//! own orders. Every failure becomes an `application/problem+json` answer; no panic
//! reaches the caller.
#![warn(missing_docs)]

mod cancel;
pub mod identity;
mod place;
pub mod problem;
mod read;

pub use read::view;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use futures::FutureExt;
use http::{HeaderMap, HeaderValue};
use idempotency::{Idempotency, IdempotencyStore};
use identity::IdentityError;
use problem::{Problem, ProblemType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shop_aws::{ConfigError, Settings};
use shop_domain::ports::{Catalog, OrderQueue, OrderStore};
use shop_domain::services::OrderService;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::Instrument;

/// The function's timeout in `template.yaml` (the Globals' `Timeout`; a contract test
/// holds the two equal).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// An HTTP answer before it is shaped into the API Gateway response. Stored as the
/// result of an idempotent request and replayed verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// `Location` header, for created resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// True for problem details.
    #[serde(default)]
    pub problem: bool,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            location: None,
            problem: false,
        }
    }

    /// A request no route of the API declares: API Gateway answers it before any
    /// function runs (`404 {"message":"Not Found"}`, whatever the method), so the
    /// function answers an event for one (a direct invoke) the same way.
    fn not_found() -> Self {
        Self::json(404, json!({ "message": "Not Found" }))
    }
}

impl From<Problem> for Reply {
    fn from(p: Problem) -> Self {
        Self {
            status: p.status,
            body: serde_json::to_value(&p).unwrap_or_else(|_| json!({ "status": p.status })),
            location: None,
            problem: true,
        }
    }
}

/// What the function reads from its environment, parsed once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): what its failures are counted
    /// under ([`observability::Metric::FunctionFailures`]).
    pub function_name: String,
    /// `CATALOG_TABLE`: products and prices.
    pub catalog_table: String,
    /// `ORDERS_TABLE`: the orders.
    pub orders_table: String,
    /// `ORDERS_QUEUE_URL`: the intake queue of standard orders.
    pub orders_queue_url: String,
    /// `EXPRESS_ORDERS_QUEUE_URL`: the intake queue of express orders.
    pub express_orders_queue_url: String,
    /// `IDEMPOTENCY_TABLE`: the keys of `POST /v1/orders`.
    pub idempotency_table: String,
}

impl Config {
    /// Reads every setting, naming the first that is missing.
    pub fn from_env(env: Settings<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            function_name: env.function_name()?,
            catalog_table: env.required("CATALOG_TABLE")?,
            orders_table: env.required("ORDERS_TABLE")?,
            orders_queue_url: env.required("ORDERS_QUEUE_URL")?,
            express_orders_queue_url: env.required("EXPRESS_ORDERS_QUEUE_URL")?,
            idempotency_table: env.required("IDEMPOTENCY_TABLE")?,
        })
    }
}

/// The ports the API works through. A test replaces one to inject a fault.
#[derive(Clone)]
pub struct Ports {
    /// Prices of the products.
    pub catalog: Arc<dyn Catalog>,
    /// The orders.
    pub orders: Arc<dyn OrderStore>,
    /// Hands accepted orders to intake.
    pub queue: Arc<dyn OrderQueue>,
    /// Remembers `Idempotency-Key`s and their answers.
    pub idempotency: Arc<dyn IdempotencyStore>,
}

impl Ports {
    /// The AWS adapters, with clients built once.
    pub fn aws(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let sdk = &shop_aws::for_function(sdk, "orders-api");
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            catalog: Arc::new(shop_aws::catalog::DynamoCatalog::new(
                dynamo.clone(),
                config.catalog_table.clone(),
            )),
            orders: Arc::new(shop_aws::orders::DynamoOrderStore::new(
                dynamo.clone(),
                config.orders_table.clone(),
            )),
            queue: Arc::new(shop_aws::queue::SqsOrderQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                config.orders_queue_url.clone(),
                config.express_orders_queue_url.clone(),
            )),
            idempotency: Arc::new(shop_aws::idempotency_store::DynamoIdempotencyStore::new(
                dynamo,
                config.idempotency_table.clone(),
            )),
        }
    }
}

/// The API with its ports; built once per process.
pub struct OrdersApi {
    /// Lambda's name of the function, its failures are counted under.
    function_name: String,
    catalog: Arc<dyn Catalog>,
    orders: Arc<dyn OrderStore>,
    queue: Arc<dyn OrderQueue>,
    idempotency: Idempotency<Arc<dyn IdempotencyStore>>,
}

impl OrdersApi {
    /// Wires the API to its ports.
    pub fn new(config: &Config, ports: Ports) -> Self {
        Self {
            function_name: config.function_name.clone(),
            catalog: ports.catalog,
            orders: ports.orders,
            queue: ports.queue,
            idempotency: Idempotency::new(ports.idempotency, IDEMPOTENCY_EXPIRY),
        }
    }

    /// Answers one request. Never fails and never panics outward: a panic inside
    /// becomes a 500 problem. `deadline` is when Lambda stops the invocation
    /// (`Context::deadline`): an `Idempotency-Key` is held in progress until then.
    pub async fn handle(
        &self,
        request: ApiGatewayV2httpRequest,
        deadline: SystemTime,
    ) -> ApiGatewayV2httpResponse {
        let correlation_id = observability::correlation_id_or_new(
            header(&request.headers, observability::CORRELATION_HEADER)
                .or(request.request_context.request_id.as_deref()),
        );
        let span = tracing::info_span!(
            "request",
            correlation_id = %correlation_id,
            route = request.route_key.as_deref().unwrap_or(""),
            // Reads are not part of an order's path; a cancel is.
            order.id = request
                .path_parameters
                .get("id")
                .filter(|_| request.request_context.http.method != http::Method::GET)
                .map(String::as_str),
            http.response.status_code = tracing::field::Empty,
        );
        let outcome = AssertUnwindSafe(
            self.route(&request, &correlation_id, deadline)
                .instrument(span.clone()),
        )
        .catch_unwind()
        .await;
        let (reply, replayed) = outcome.unwrap_or_else(|_| {
            tracing::error!(correlation_id = %correlation_id, "handler panicked");
            (internal_error(), false)
        });
        span.record("http.response.status_code", reply.status);
        observability::count_failures(&self.function_name, usize::from(reply.status >= 500));
        to_response(reply, replayed, &correlation_id)
    }

    async fn route(
        &self,
        request: &ApiGatewayV2httpRequest,
        correlation_id: &str,
        deadline: SystemTime,
    ) -> (Reply, bool) {
        let method = request.request_context.http.method.as_str();
        let path = request
            .raw_path
            .as_deref()
            .or(request.request_context.http.path.as_deref())
            .unwrap_or("");
        let Some(route) = route_of(path) else {
            return (Reply::not_found(), false);
        };
        let caller = match identity::caller(request) {
            Ok(caller) => caller,
            Err(e) => {
                if e == IdentityError::NoClaims {
                    tracing::error!(
                        route = path,
                        "request without verified claims: is the route's JWT authorizer attached on this stage?"
                    );
                }
                let p = Problem::new(ProblemType::Unauthenticated, e.to_string());
                return (p.into(), false);
            }
        };
        let links = identity::stage_prefix(request);
        let id = request.path_parameters.get("id").map(String::as_str);
        match (method, route) {
            ("POST", Route::Orders) => {
                self.place(request, &caller, &links, correlation_id, deadline)
                    .await
            }
            ("GET", Route::Orders) => (self.list(request, &caller, &links).await, false),
            ("GET", Route::Order(raw)) => (self.get(id.unwrap_or(raw), &caller).await, false),
            ("POST", Route::Cancel(raw)) => (self.cancel(id.unwrap_or(raw), &caller).await, false),
            _ => (Reply::not_found(), false),
        }
    }

    fn service(&self) -> OrderService<'_> {
        OrderService {
            catalog: self.catalog.as_ref(),
            orders: self.orders.as_ref(),
            queue: self.queue.as_ref(),
        }
    }
}

enum Route<'a> {
    Orders,
    Order(&'a str),
    Cancel(&'a str),
}

/// Matches a path, with or without a stage prefix (`/dev/v1/orders`).
fn route_of(path: &str) -> Option<Route<'_>> {
    let start = path.find("/v1/orders")?;
    let rest = path[start + "/v1/orders".len()..].trim_end_matches('/');
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    // `rest` is empty or starts with '/' and does not end with one, so a single
    // segment is never empty; an empty id before "cancel" (`//cancel`) is refused.
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    match segments.as_slice() {
        [] => Some(Route::Orders),
        [id] => Some(Route::Order(id)),
        [id, "cancel"] if !id.is_empty() => Some(Route::Cancel(id)),
        _ => None,
    }
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn not_found(raw_id: &str) -> Reply {
    let shown: String = raw_id.chars().take(100).collect();
    Problem::new(ProblemType::OrderNotFound, format!("no order {shown}")).into()
}

/// A dependency failed: the cause goes to the log with its whole chain, the caller
/// gets a 503 problem telling them to retry (with the same Idempotency-Key).
pub(crate) fn unavailable(doing: &str, cause: &(dyn std::error::Error + 'static)) -> Reply {
    tracing::error!(error = %observability::ErrorChain(cause), "{doing} failed");
    Problem::new(
        ProblemType::ServiceUnavailable,
        "a dependency is briefly unavailable; retry with the same Idempotency-Key",
    )
    .into()
}

fn internal_error() -> Reply {
    Problem::new(
        ProblemType::InternalError,
        "unexpected error; it has been logged",
    )
    .into()
}

/// A stored timestamp in the API's one format; the saga's come from Step Functions (and
/// from the emulator in another RFC 3339 form).
pub(crate) fn timestamp(raw: &str) -> String {
    shop_domain::normalize_timestamp(raw).unwrap_or_else(|| raw.to_owned())
}

fn to_response(reply: Reply, replayed: bool, correlation_id: &str) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    let content_type = if reply.problem {
        "application/problem+json"
    } else {
        "application/json"
    };
    headers.insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(correlation_id) {
        headers.insert(observability::CORRELATION_HEADER, v);
    }
    if let Some(v) = reply
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        headers.insert("location", v);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if reply.status == 503 {
        headers.insert("retry-after", HeaderValue::from_static("1"));
    }
    if reply.status == 401 {
        headers.insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(reply.status);
    response.headers = headers;
    response.body = Some(Body::Text(reply.body.to_string()));
    response
}

#[cfg(test)]
mod tests;
