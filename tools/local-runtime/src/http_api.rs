//! API Gateway HTTP API (payload v2) in front of functions: serves the template's
//! stage, answers CORS preflights, runs each route's JWT authorizer, matches the
//! template's routes, builds the request event and maps the answer back.
//!
//! Stage: on AWS the `$default` stage is served at the root of the API's URL and a
//! named stage under `/{stage}`; a named stage stays in the event's `rawPath` and
//! `requestContext.http.path` (only route matching ignores it), and
//! `requestContext.stage` names the stage either way. The same happens here.

use crate::cors::Cors;
use crate::invoke::{InvokeError, Invoker};
use crate::jwt_authorizer::{Decision, JwtAuthorizer};
use crate::provision::{DEFAULT_STAGE, Route, Stack};
use aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription,
    ApiGatewayV2httpRequest, ApiGatewayV2httpResponse,
};
use aws_lambda_events::encodings::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl HttpResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// API Gateway's own answers (`{"message":"Unauthorized"}`, ...), which are plain
    /// JSON rather than problem details.
    fn gateway(status: u16, message: &str, challenge: Option<String>) -> Self {
        let mut headers = vec![("content-type".into(), "application/json".into())];
        if let Some(challenge) = challenge {
            headers.push(("www-authenticate".into(), challenge));
        }
        Self {
            status,
            headers,
            body: serde_json::json!({ "message": message }).to_string(),
        }
    }
}

fn match_route<'a>(pattern: &str, path: &'a str) -> Option<HashMap<String, String>> {
    let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let segments: Vec<&'a str> = path.trim_matches('/').split('/').collect();
    if pattern.len() != segments.len() {
        return None;
    }
    let mut params = HashMap::new();
    for (p, s) in pattern.iter().zip(&segments) {
        match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) if !s.is_empty() => {
                params.insert(name.to_owned(), (*s).to_owned());
            }
            Some(_) => return None,
            None if p == s => {}
            None => return None,
        }
    }
    Some(params)
}

/// A stage's route throttling: one bucket per route key, or every request refused
/// when the stage's rate or burst is zero.
enum RouteLimits {
    Open,
    Closed,
    Buckets(governor::DefaultKeyedRateLimiter<String>),
}

impl RouteLimits {
    fn of(throttle: Option<crate::provision::Throttle>) -> Self {
        let Some(t) = throttle else {
            return Self::Open;
        };
        let burst = std::num::NonZeroU32::new(t.burst);
        let quota = (t.rate > 0.0)
            .then(|| governor::Quota::with_period(std::time::Duration::from_secs_f64(1.0 / t.rate)))
            .flatten();
        match (quota, burst) {
            (Some(quota), Some(burst)) => {
                Self::Buckets(governor::RateLimiter::keyed(quota.allow_burst(burst)))
            }
            _ => Self::Closed,
        }
    }

    fn admits(&self, route_key: &str) -> bool {
        match self {
            Self::Open => true,
            Self::Closed => false,
            Self::Buckets(buckets) => buckets.check_key(&route_key.to_owned()).is_ok(),
        }
    }
}

/// The HTTP API of a stack: its routes, stage and authorizers, in front of functions.
pub struct HttpApi {
    stack: Arc<Stack>,
    invoker: Arc<dyn Invoker>,
    authorizers: BTreeMap<String, JwtAuthorizer>,
    limits: RouteLimits,
    /// The stage's path prefix: empty for `$default`, `/{stage}` otherwise.
    stage_prefix: String,
}

/// The verified claims and the scopes a route's authorizer passes to the function.
type Verified = (HashMap<String, String>, Option<Vec<String>>);

/// The challenge API Gateway's JWT authorizer sends with a 401 or 403.
fn challenge(error: &str, description: &str) -> String {
    format!(r#"Bearer scope="" error="{error}" error_description="{description}""#)
}

impl HttpApi {
    /// The API of `stack`, invoking its functions through `invoker`.
    pub fn new(stack: Arc<Stack>, invoker: Arc<dyn Invoker>) -> Self {
        let authorizers = stack
            .authorizers
            .iter()
            .map(|(id, spec)| (id.clone(), JwtAuthorizer::new(spec.clone())))
            .collect();
        let stage_prefix = if stack.stage == DEFAULT_STAGE {
            String::new()
        } else {
            format!("/{}", stack.stage)
        };
        Self {
            limits: RouteLimits::of(stack.throttle),
            stack,
            invoker,
            authorizers,
            stage_prefix,
        }
    }

    /// Runs the route's JWT authorizer, if it has one: the claims to pass on, or API
    /// Gateway's 401/403 answer.
    async fn authorize(
        &self,
        route: &Route,
        headers: &HeaderMap,
    ) -> Result<Result<Option<Verified>, HttpResponse>, InvokeError> {
        let Some(auth) = &route.authorization else {
            return Ok(Ok(None));
        };
        let authorizer = self
            .authorizers
            .get(&auth.authorizer)
            .ok_or_else(|| InvokeError::Unknown(auth.authorizer.clone()))?;
        Ok(match authorizer.authorize(headers, &auth.scopes).await {
            Decision::Allow { claims, scopes } => Ok(Some((claims, scopes))),
            Decision::Unauthorized(why) => {
                let challenge = (!why.is_empty()).then(|| challenge("invalid_token", &why));
                Err(HttpResponse::gateway(401, "Unauthorized", challenge))
            }
            Decision::Forbidden(why) => Err(HttpResponse::gateway(
                403,
                "Forbidden",
                Some(challenge("insufficient_scope", &why)),
            )),
        })
    }

    /// Serves one request as an HTTP API does: a preflight answered by the API's CORS
    /// configuration, if it has one (see [`crate::cors`]); 404 `{"message":"Not
    /// Found"}` when no route matches the path and method, 429 above the route's
    /// throttle, 401/403 when the route's authorizer refuses, 500 `{"message":"Internal
    /// Server Error"}` when the function fails, otherwise the function's answer, with
    /// the CORS headers for its origin.
    pub async fn serve(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Option<String>,
    ) -> Result<HttpResponse, InvokeError> {
        let stack = self.stack.as_ref();
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let origin = crate::cors::header(headers, "origin");
        if let Some(cors) = &stack.cors
            && let Some(origin) = origin.filter(|_| Cors::is_preflight(method, headers))
        {
            return Ok(HttpResponse {
                status: 204,
                headers: cors.preflight(origin),
                body: String::new(),
            });
        }
        let prefix = self.stage_prefix.as_str();
        let Some(route_path) = path
            .strip_prefix(prefix)
            .filter(|rest| prefix.is_empty() || rest.is_empty() || rest.starts_with('/'))
        else {
            return Ok(HttpResponse::gateway(404, "Not Found", None));
        };
        // API Gateway answers a path or a method no route declares itself, the same
        // way for both (an HTTP API has no 405).
        let Some((route, params)) = stack
            .routes
            .iter()
            .filter(|r| r.method == method || r.method == "ANY")
            .find_map(|r| match_route(&r.path, route_path).map(|p| (r, p)))
        else {
            return Ok(HttpResponse::gateway(404, "Not Found", None));
        };
        // API Gateway throttles each route of the stage before its authorizer runs.
        let route_key = format!("{} {}", route.method, route.path);
        if !self.limits.admits(&route_key) {
            return Ok(HttpResponse::gateway(429, "Too Many Requests", None));
        }
        let mut header_map = HeaderMap::new();
        for (k, v) in headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
                HeaderValue::from_str(v),
            ) {
                header_map.append(name, value);
            }
        }
        let jwt = match self.authorize(route, &header_map).await? {
            Ok(jwt) => jwt,
            Err(refusal) => return Ok(refusal),
        };
        let function = stack
            .functions
            .get(&route.function)
            .ok_or_else(|| InvokeError::Unknown(route.function.clone()))?;

        let mut request = ApiGatewayV2httpRequest::default();
        request.version = Some("2.0".into());
        request.route_key = Some(route_key);
        request.raw_path = Some(path.to_owned());
        request.raw_query_string = Some(query.to_owned());
        request.headers = header_map;
        request.query_string_parameters = query.parse().unwrap_or_default();
        request.path_parameters = params;
        request.body = body;
        request.is_base64_encoded = false;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let ctx = &mut request.request_context;
        ctx.route_key = request.route_key.clone();
        ctx.account_id = Some(crate::ACCOUNT_ID.into());
        ctx.stage = Some(stack.stage.clone());
        ctx.request_id = Some(uuid::Uuid::new_v4().to_string());
        ctx.apiid = Some("local".into());
        ctx.domain_name = Some("127.0.0.1".into());
        ctx.time_epoch = now;
        ctx.http.method = method.parse::<Method>().unwrap_or(Method::GET);
        ctx.http.path = Some(path.to_owned());
        ctx.http.protocol = Some("HTTP/1.1".into());
        ctx.http.source_ip = Some("127.0.0.1".into());
        let route_scoped = jwt.as_ref().is_some_and(|(_, scopes)| scopes.is_some());
        if let Some((claims, scopes)) = jwt {
            let mut description = ApiGatewayRequestAuthorizerJwtDescription::default();
            description.claims = claims;
            description.scopes = scopes;
            let mut authorizer = ApiGatewayRequestAuthorizer::default();
            authorizer.jwt = Some(description);
            ctx.authorizer = Some(authorizer);
        }

        let mut event = serde_json::to_value(&request).map_err(|e| InvokeError::Payload {
            function: function.logical_id.clone(),
            message: e.to_string(),
        })?;
        // API Gateway sends `"scopes": null` for a route without scopes; the event type
        // leaves the key out.
        if let Some(jwt) = event.pointer_mut("/requestContext/authorizer/jwt")
            && !route_scoped
        {
            jwt["scopes"] = serde_json::Value::Null;
        }
        let started = std::time::Instant::now();
        let answer = match self.invoker.invoke(function, event).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(function = %function.name, error = %e, "invocation failed");
                // An HTTP API answers a failed Lambda integration with 500 and this body
                // (API Gateway's HTTP API Lambda troubleshooting page).
                return Ok(HttpResponse::gateway(500, "Internal Server Error", None));
            }
        };
        let response: ApiGatewayV2httpResponse =
            serde_json::from_value(answer).map_err(|e| InvokeError::Payload {
                function: function.logical_id.clone(),
                message: e.to_string(),
            })?;
        let body = match response.body {
            Some(Body::Text(t)) => t,
            Some(Body::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        let status = u16::try_from(response.status_code).unwrap_or(500);
        let header = |name: &str| {
            response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let location = header("location");
        tracing::info!(
            function = %function.name,
            route = %format!("{} {}", route.method, route.path),
            status,
            outcome = if status < 500 { "ok" } else { "failed" },
            duration_ms = started.elapsed().as_millis() as u64,
            order_id = %location.rsplit('/').next().unwrap_or(""),
            correlation_id = %header("x-correlation-id"),
            "invocation"
        );
        let mut headers = response
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        if let Some(cors) = &stack.cors {
            cors.answer(origin, &mut headers);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{HttpApi, match_route};
    use crate::InProcess;
    use crate::provision::{Route, Stack, Throttle};
    use std::sync::Arc;

    fn route(method: &str, path: &str) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            function: "Api".into(),
            authorization: None,
        }
    }

    fn stack(throttle: Option<Throttle>, routes: Vec<Route>) -> Stack {
        Stack {
            prefix: "t".into(),
            region: "us-east-1".into(),
            tables: Default::default(),
            queues: Default::default(),
            buses: Default::default(),
            state_machines: Default::default(),
            functions: Default::default(),
            outputs: Default::default(),
            stage: "$default".into(),
            throttle,
            cors: None,
            authorizers: Default::default(),
            routes,
        }
    }

    #[tokio::test]
    async fn each_route_is_throttled_on_its_own_with_api_gateways_429() {
        let stack = stack(
            Some(Throttle {
                rate: 5.0,
                burst: 3,
            }),
            vec![route("POST", "/v1/orders"), route("GET", "/v1/orders/{id}")],
        );
        let api = HttpApi::new(Arc::new(stack), Arc::new(InProcess::new()));
        // Admitted requests reach the function lookup (none is registered: an error);
        // a throttled one is answered by the gateway itself.
        let admitted = |r: &Result<super::HttpResponse, crate::InvokeError>| r.is_err();
        for _ in 0..3 {
            assert!(admitted(&api.serve("POST", "/v1/orders", &[], None).await));
        }
        let refused = api.serve("POST", "/v1/orders", &[], None).await.unwrap();
        assert_eq!(refused.status, 429);
        assert_eq!(refused.body, r#"{"message":"Too Many Requests"}"#);
        assert!(
            admitted(&api.serve("GET", "/v1/orders/o-1", &[], None).await),
            "another route has its own bucket"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert!(
            admitted(&api.serve("POST", "/v1/orders", &[], None).await),
            "refilled at 5 a second"
        );
    }

    #[tokio::test]
    async fn an_unknown_path_or_method_is_api_gateways_404_and_a_failed_function_its_500() {
        let stack = stack(
            None,
            vec![
                route("POST", "/v1/orders"),
                route("GET", "/v1/orders/{id}"),
                route("POST", "/v1/orders/{id}/cancel"),
            ],
        );
        let mut stack = stack;
        stack.functions.insert(
            "Api".into(),
            crate::provision::FunctionSpec {
                logical_id: "Api".into(),
                name: "t-Api".into(),
                binary: None,
                env: Default::default(),
                sqs_sources: Vec::new(),
                schedules: Vec::new(),
                timeout: std::time::Duration::from_secs(3),
            },
        );
        let mut failing = InProcess::new();
        failing.register_fallible("Api", |_: serde_json::Value, _| async {
            Err::<serde_json::Value, _>("a bug")
        });
        let api = HttpApi::new(Arc::new(stack), Arc::new(failing));
        for (method, path) in [("TRACE", "/v1/orders/o-1"), ("DELETE", "/v1/nothing")] {
            let r = api.serve(method, path, &[], None).await.unwrap();
            assert_eq!(r.status, 404, "{method} {path}");
            assert_eq!(r.body, r#"{"message":"Not Found"}"#);
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
        // The route exists and its function fails.
        let r = api.serve("GET", "/v1/orders/o-1", &[], None).await.unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.body, r#"{"message":"Internal Server Error"}"#);
    }

    #[test]
    fn matches_parameters_and_literal_segments() {
        let p = match_route("/v1/orders/{id}/cancel", "/v1/orders/ord-1/cancel").unwrap();
        assert_eq!(p["id"], "ord-1");
        assert!(match_route("/v1/orders/{id}", "/v1/orders/").is_none());
        assert!(match_route("/v1/orders", "/v1/orders/x").is_none());
    }
}
