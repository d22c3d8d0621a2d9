use super::*;
use async_trait::async_trait;
use aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription,
};
use base64::Engine;
use shop_domain::fakes::{FakeCatalog, FakeOrders, FakeQueue};
use shop_domain::ports::{PortError, PriceList};
use shop_domain::request::MAX_BODY_BYTES;
use shop_domain::{Currency, CustomerId, OrderId, OrderStatus, Sku};
use std::collections::HashMap;

/// The deadline of an invocation that has the template's 10 s left.
fn deadline() -> std::time::SystemTime {
    std::time::SystemTime::now() + Duration::from_secs(10)
}

fn catalog() -> FakeCatalog {
    FakeCatalog(HashMap::from([(
        Sku("MUG".into()),
        HashMap::from([(Currency::EUR, 1250)]),
    )]))
}

fn api_with(catalog: Arc<dyn Catalog>) -> (OrdersApi, Arc<FakeOrders>) {
    let orders = Arc::new(FakeOrders::default());
    let config = shop_aws::settings::with_pairs(
        &[
            ("AWS_LAMBDA_FUNCTION_NAME", "shop-OrdersApiFunction"),
            ("CATALOG_TABLE", "catalog"),
            ("ORDERS_TABLE", "orders"),
            ("ORDERS_QUEUE_URL", "https://sqs/orders"),
            ("EXPRESS_ORDERS_QUEUE_URL", "https://sqs/express"),
            ("IDEMPOTENCY_TABLE", "idempotency"),
        ],
        Config::from_env,
    )
    .unwrap();
    let api = OrdersApi::new(
        &config,
        Ports {
            catalog,
            orders: orders.clone(),
            queue: Arc::new(FakeQueue::default()),
            idempotency: Arc::new(idempotency::InMemoryStore::default()),
        },
    );
    (api, orders)
}

/// A request as API Gateway passes it after its JWT authorizer verified a token of
/// shopper `c-1`.
fn request(
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> ApiGatewayV2httpRequest {
    request_as("c-1", method, path, body, headers)
}

/// A request carrying the verified claims of `customer`'s token.
fn request_as(
    customer: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> ApiGatewayV2httpRequest {
    let mut r = anonymous(method, path, body, headers);
    let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
    jwt.claims = HashMap::from([
        ("sub".to_owned(), customer.to_owned()),
        ("iss".to_owned(), "https://issuer.example".to_owned()),
    ]);
    let mut authorizer = ApiGatewayRequestAuthorizer::default();
    authorizer.jwt = Some(jwt);
    r.request_context.authorizer = Some(authorizer);
    r
}

/// A request that reached the function without an authorizer (a misconfigured route).
fn anonymous(
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> ApiGatewayV2httpRequest {
    let mut r = ApiGatewayV2httpRequest::default();
    if let Some((path, query)) = path.split_once('?') {
        r.raw_query_string = Some(query.into());
        r.query_string_parameters = query.parse().unwrap();
        r.raw_path = Some(path.into());
    }
    r.raw_path.get_or_insert_with(|| path.into());
    r.request_context.http.method = method.parse().unwrap();
    r.body = body.map(Into::into);
    r.headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        r.headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    r
}

fn body_of(r: &ApiGatewayV2httpResponse) -> Value {
    match &r.body {
        Some(Body::Text(t)) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

const ORDER: &str = r#"{"customerId":"c-1","currency":"EUR","paymentToken":"tok_ok","lines":[{"sku":"MUG","quantity":2}]}"#;

fn problem_type(r: &ApiGatewayV2httpResponse) -> String {
    assert_eq!(r.headers["content-type"], "application/problem+json");
    body_of(r)["type"]
        .as_str()
        .unwrap()
        .trim_start_matches(problem::TYPE_BASE)
        .to_owned()
}

#[tokio::test]
async fn places_an_order_priced_by_the_catalog() {
    let (api, _) = api_with(Arc::new(catalog()));
    let r = api
        .handle(request("POST", "/v1/orders", Some(ORDER), &[]), deadline())
        .await;
    assert_eq!(r.status_code, 202);
    let body = body_of(&r);
    assert_eq!(body["total"], 2500);
    assert_eq!(
        r.headers["location"],
        format!("/v1/orders/{}", body["orderId"].as_str().unwrap())
    );

    let got = api
        .handle(
            request("GET", r.headers["location"].to_str().unwrap(), None, &[]),
            deadline(),
        )
        .await;
    assert_eq!(got.status_code, 200);
    assert_eq!(body_of(&got)["status"], "PENDING");
    assert!(body_of(&got).get("paymentToken").is_none());
}

#[tokio::test]
async fn bad_input_gets_a_problem_with_a_stable_type_and_the_field() {
    let (api, orders) = api_with(Arc::new(catalog()));
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000));
    let unknown_sku = ORDER.replace("MUG", "NOPE");
    let negative = ORDER.replace("\"quantity\":2", "\"quantity\":-3");
    let bad_currency = ORDER.replace("EUR", "DOGE");
    let extra_field = ORDER.replace("\"lines\"", "\"extra\":true,\"lines\"");
    let cases: Vec<(Option<&str>, u16, &str, Option<&str>)> = vec![
        (Some("{not json"), 400, "malformed-json", None),
        (
            Some(r#"{"customerId":1}"#),
            400,
            "invalid-request",
            Some("customerId"),
        ),
        (Some(&huge), 413, "payload-too-large", None),
        (
            Some(&unknown_sku),
            422,
            "validation-failed",
            Some("lines[0].sku"),
        ),
        (
            Some(&negative),
            422,
            "validation-failed",
            Some("lines[0].quantity"),
        ),
        (
            Some(&bad_currency),
            422,
            "validation-failed",
            Some("currency"),
        ),
        (Some(&extra_field), 400, "invalid-request", None),
    ];
    for (body, status, slug, field) in cases {
        let r = api
            .handle(request("POST", "/v1/orders", body, &[]), deadline())
            .await;
        assert_eq!(r.status_code, i64::from(status), "{body:?}");
        assert_eq!(problem_type(&r), slug);
        if let Some(field) = field {
            assert_eq!(body_of(&r)["errors"][0]["field"], field);
        }
    }
    // The largest body is read, base64 or not.
    let largest = format!("{ORDER}{}", " ".repeat(MAX_BODY_BYTES - ORDER.len()));
    assert_eq!(largest.len(), MAX_BODY_BYTES);
    let r = api
        .handle(
            request("POST", "/v1/orders", Some(&largest), &[]),
            deadline(),
        )
        .await;
    assert_eq!(r.status_code, 202, "{:?}", r.body);
    let mut encoded = request(
        "POST",
        "/v1/orders",
        Some(&base64::engine::general_purpose::STANDARD.encode(&largest)),
        &[],
    );
    encoded.is_base64_encoded = true;
    let r = api.handle(encoded, deadline()).await;
    assert_eq!(r.status_code, 202, "{:?}", r.body);
    orders.0.lock().unwrap().clear();
    // One byte more is refused before an Idempotency-Key is claimed: the shopper's
    // retry with a good body under the same key is a fresh order.
    let key = [("idempotency-key", "too-big-then-fixed")];
    let r = api
        .handle(
            request("POST", "/v1/orders", Some(&format!("{largest} ")), &key),
            deadline(),
        )
        .await;
    assert_eq!(r.status_code, 413);
    let r = api
        .handle(request("POST", "/v1/orders", Some(ORDER), &key), deadline())
        .await;
    assert_eq!(r.status_code, 202, "{:?}", r.body);
    orders.0.lock().unwrap().clear();
    // A base64 body too large to be an order is refused before it is decoded, even
    // when it is not base64 at all.
    let mut oversized = request("POST", "/v1/orders", Some(&"!".repeat(100_000)), &[]);
    oversized.is_base64_encoded = true;
    let r = api.handle(oversized, deadline()).await;
    assert_eq!(
        (r.status_code, problem_type(&r).as_str()),
        (413, "payload-too-large")
    );
    assert!(
        orders.0.lock().unwrap().is_empty(),
        "nothing stored for bad input"
    );
}

#[tokio::test]
async fn wrong_media_type_and_unknown_routes_are_problems() {
    let (api, _) = api_with(Arc::new(catalog()));
    let mut r = request("POST", "/v1/orders", Some(ORDER), &[]);
    r.headers
        .insert("content-type", HeaderValue::from_static("text/plain"));
    assert_eq!(
        problem_type(&api.handle(r, deadline()).await),
        "unsupported-media-type"
    );
    // No route, a method the route lacks, an empty id: API Gateway's own answer, as it
    // gives before any function runs.
    for (method, path) in [
        ("GET", "/v2/things"),
        ("DELETE", "/v1/orders"),
        ("POST", "/v1/orders//cancel"),
    ] {
        let r = api
            .handle(request(method, path, None, &[]), deadline())
            .await;
        assert_eq!(r.status_code, 404, "{method} {path}");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(
            body_of(&r),
            json!({"message": "Not Found"}),
            "{method} {path}"
        );
    }
    assert_eq!(
        problem_type(
            &api.handle(
                request("GET", "/v1/orders/ord-missing", None, &[]),
                deadline()
            )
            .await
        ),
        "order-not-found"
    );
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let (api, orders) = api_with(Arc::new(catalog()));
    let key = [("idempotency-key", "k-1")];
    let first = api
        .handle(request("POST", "/v1/orders", Some(ORDER), &key), deadline())
        .await;
    let reordered = r#"{"lines":[{"quantity":2,"sku":"MUG"}],"currency":"EUR","customerId":"c-1","paymentToken":"tok_ok"}"#;
    let again = api
        .handle(
            request("POST", "/v1/orders", Some(reordered), &key),
            deadline(),
        )
        .await;
    assert_eq!(body_of(&first), body_of(&again));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(orders.0.lock().unwrap().len(), 1);

    let other = api
        .handle(
            request("POST", "/v1/orders", Some(&ORDER.replace("2}", "3}")), &key),
            deadline(),
        )
        .await;
    assert_eq!(other.status_code, 422);
    assert_eq!(problem_type(&other), "idempotency-key-reused");
}

#[tokio::test]
async fn cancel_before_payment_succeeds_and_after_is_a_conflict() {
    let (api, orders) = api_with(Arc::new(catalog()));
    let placed = body_of(
        &api.handle(request("POST", "/v1/orders", Some(ORDER), &[]), deadline())
            .await,
    );
    let id = placed["orderId"].as_str().unwrap().to_owned();
    let cancelled = api
        .handle(
            request("POST", &format!("/v1/orders/{id}/cancel"), None, &[]),
            deadline(),
        )
        .await;
    assert_eq!(cancelled.status_code, 200);
    assert_eq!(body_of(&cancelled)["cancelReason"], "cancelled-by-customer");

    let second = body_of(
        &api.handle(request("POST", "/v1/orders", Some(ORDER), &[]), deadline())
            .await,
    );
    let id = OrderId::parse(second["orderId"].as_str().unwrap()).unwrap();
    orders.0.lock().unwrap().get_mut(&id).unwrap().status = OrderStatus::PaymentPending;
    let late = api
        .handle(
            request("POST", &format!("/v1/orders/{id}/cancel"), None, &[]),
            deadline(),
        )
        .await;
    assert_eq!(late.status_code, 409);
    assert_eq!(problem_type(&late), "order-not-cancellable");
}

#[tokio::test]
async fn a_request_without_verified_claims_is_refused_never_served_anonymously() {
    // GIVEN a route that reached the function without the JWT authorizer
    let (api, orders) = api_with(Arc::new(catalog()));
    for (method, path, body) in [
        ("POST", "/v1/orders", Some(ORDER)),
        ("GET", "/v1/orders", None),
        ("GET", "/v1/orders/ord-0193abc", None),
    ] {
        // WHEN anyone calls it
        let r = api
            .handle(anonymous(method, path, body, &[]), deadline())
            .await;
        // THEN 401 with a problem and a Bearer challenge, and nothing is stored
        assert_eq!(r.status_code, 401, "{method} {path}");
        assert_eq!(problem_type(&r), "unauthenticated");
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }
    assert!(orders.0.lock().unwrap().is_empty());
    // Only a 401 carries the challenge.
    let placed = api
        .handle(request("POST", "/v1/orders", Some(ORDER), &[]), deadline())
        .await;
    assert_eq!(placed.status_code, 202);
    assert!(!placed.headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn the_owner_is_the_token_subject_and_a_body_customer_id_must_match() {
    let (api, orders) = api_with(Arc::new(catalog()));
    // A body without customerId places an order for the caller.
    let body = r#"{"currency":"EUR","paymentToken":"tok_ok","lines":[{"sku":"MUG","quantity":1}]}"#;
    let placed = api
        .handle(
            request_as("shopper-a", "POST", "/v1/orders", Some(body), &[]),
            deadline(),
        )
        .await;
    assert_eq!(placed.status_code, 202);
    let id = OrderId::parse(body_of(&placed)["orderId"].as_str().unwrap()).unwrap();
    assert_eq!(
        orders.0.lock().unwrap()[&id].customer_id,
        CustomerId("shopper-a".into())
    );
    // Someone else's customerId is refused, and nothing is stored.
    let r = api
        .handle(
            request_as("shopper-a", "POST", "/v1/orders", Some(ORDER), &[]),
            deadline(),
        )
        .await;
    assert_eq!(r.status_code, 403);
    assert_eq!(problem_type(&r), "customer-mismatch");
    assert_eq!(body_of(&r)["errors"][0]["field"], "customerId");
    assert_eq!(orders.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn another_shoppers_order_answers_exactly_as_an_unknown_id() {
    // GIVEN c-1's order
    let (api, orders) = api_with(Arc::new(catalog()));
    let placed = body_of(
        &api.handle(request("POST", "/v1/orders", Some(ORDER), &[]), deadline())
            .await,
    );
    let id = placed["orderId"].as_str().unwrap();
    let unknown = "ord-0193ffffffffffffffffffffffffffff";
    for (path, unknown_path) in [
        (format!("/v1/orders/{id}"), format!("/v1/orders/{unknown}")),
        (
            format!("/v1/orders/{id}/cancel"),
            format!("/v1/orders/{unknown}/cancel"),
        ),
    ] {
        let method = if path.ends_with("cancel") {
            "POST"
        } else {
            "GET"
        };
        // WHEN c-2 reads or cancels it, and asks for an id that does not exist
        let theirs = api
            .handle(request_as("c-2", method, &path, None, &[]), deadline())
            .await;
        let missing = api
            .handle(
                request_as("c-2", method, &unknown_path, None, &[]),
                deadline(),
            )
            .await;
        // THEN both are the same 404, apart from the id echoed in the detail
        assert_eq!(theirs.status_code, 404);
        assert_eq!(problem_type(&theirs), "order-not-found");
        let mut a = body_of(&theirs);
        let mut b = body_of(&missing);
        a["detail"] = Value::Null;
        b["detail"] = Value::Null;
        assert_eq!(a, b);
        assert_eq!(theirs.headers.len(), missing.headers.len());
    }
    // AND the order is still pending
    let id = OrderId::parse(id).unwrap();
    assert_eq!(orders.0.lock().unwrap()[&id].status, OrderStatus::Pending);
}

#[tokio::test]
async fn an_idempotency_key_is_scoped_to_its_shopper() {
    let (api, orders) = api_with(Arc::new(catalog()));
    let body = r#"{"currency":"EUR","paymentToken":"tok_ok","lines":[{"sku":"MUG","quantity":1}]}"#;
    let key = [("idempotency-key", "checkout-1")];
    let a = api
        .handle(
            request_as("a", "POST", "/v1/orders", Some(body), &key),
            deadline(),
        )
        .await;
    let b = api
        .handle(
            request_as("b", "POST", "/v1/orders", Some(body), &key),
            deadline(),
        )
        .await;
    assert_eq!((a.status_code, b.status_code), (202, 202));
    assert_ne!(body_of(&a)["orderId"], body_of(&b)["orderId"]);
    assert!(!b.headers.contains_key("idempotent-replayed"));
    // A subject and key whose plain concatenations collide ("a#b" + "c" and "a" +
    // "b#c" both read "a#b#c") still belong to two shoppers: the same body under
    // the other's pair is a fresh order, never the first shopper's replay.
    let pair = |subject: &'static str, key: &'static str| {
        api.handle(
            request_as(
                subject,
                "POST",
                "/v1/orders",
                Some(body),
                &[("idempotency-key", key)],
            ),
            deadline(),
        )
    };
    let first = pair("a#b", "c").await;
    let second = pair("a", "b#c").await;
    assert_eq!((first.status_code, second.status_code), (202, 202));
    assert!(!second.headers.contains_key("idempotent-replayed"));
    assert_ne!(body_of(&first)["orderId"], body_of(&second)["orderId"]);
    assert_eq!(orders.0.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_shopper_lists_only_their_orders_a_page_at_a_time() {
    // GIVEN five orders of c-1 and two of c-2
    let (api, _) = api_with(Arc::new(catalog()));
    let body = r#"{"currency":"EUR","paymentToken":"tok_ok","lines":[{"sku":"MUG","quantity":1}]}"#;
    let mut mine = Vec::new();
    for customer in ["c-1", "c-2", "c-1", "c-1", "c-2", "c-1", "c-1"] {
        let r = api
            .handle(
                request_as(customer, "POST", "/v1/orders", Some(body), &[]),
                deadline(),
            )
            .await;
        if customer == "c-1" {
            mine.push(body_of(&r)["orderId"].as_str().unwrap().to_owned());
        }
    }
    // WHEN c-1 follows the next links two at a time
    let mut link = Some("/v1/orders?limit=2".to_owned());
    let mut seen = Vec::new();
    while let Some(path) = link {
        let page = api
            .handle(request("GET", &path, None, &[]), deadline())
            .await;
        assert_eq!(page.status_code, 200);
        let page = body_of(&page);
        assert!(page["orders"].as_array().unwrap().len() <= 2);
        for o in page["orders"].as_array().unwrap() {
            assert_eq!(
                o["links"]["self"],
                format!("/v1/orders/{}", o["orderId"].as_str().unwrap())
            );
            seen.push(o["orderId"].as_str().unwrap().to_owned());
        }
        link = page["links"]["next"].as_str().map(str::to_owned);
    }
    // THEN it saw each of its own orders once
    let mut expected = mine.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected);
    // AND a bad limit or a tampered cursor is a 400 problem naming the parameter
    for (path, slug, field) in [
        ("/v1/orders?limit=0", "invalid-query", "limit"),
        ("/v1/orders?limit=101", "invalid-query", "limit"),
        ("/v1/orders?limit=abc", "invalid-query", "limit"),
        ("/v1/orders?cursor=not-a-cursor", "invalid-cursor", "cursor"),
    ] {
        let r = api
            .handle(request("GET", path, None, &[]), deadline())
            .await;
        assert_eq!(r.status_code, 400, "{path}");
        assert_eq!(problem_type(&r), slug);
        assert_eq!(body_of(&r)["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn links_resolve_on_a_named_stage() {
    // GIVEN the API behind a named stage, where API Gateway prefixes every path
    let (api, _) = api_with(Arc::new(catalog()));
    let mut placed = request("POST", "/prod/v1/orders", Some(ORDER), &[]);
    placed.request_context.stage = Some("prod".into());
    let placed = api.handle(placed, deadline()).await;
    // THEN the Location carries the stage
    let location = placed.headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/prod/v1/orders/ord-"), "{location}");
    assert_eq!(body_of(&placed)["links"]["self"], location);
    let mut list = request("GET", "/prod/v1/orders?limit=1", None, &[]);
    list.request_context.stage = Some("prod".into());
    let list = body_of(&api.handle(list, deadline()).await);
    assert!(
        list["links"]["self"]
            .as_str()
            .unwrap()
            .starts_with("/prod/v1/orders?")
    );
}

struct PanickingCatalog;

#[async_trait]
impl Catalog for PanickingCatalog {
    async fn prices(&self, _: &[Sku]) -> Result<HashMap<Sku, PriceList>, PortError> {
        panic!("catalog bug")
    }
}

struct DownCatalog;

#[async_trait]
impl Catalog for DownCatalog {
    async fn prices(&self, _: &[Sku]) -> Result<HashMap<Sku, PriceList>, PortError> {
        Err(PortError::new("catalog.prices", "throttled"))
    }
}

#[tokio::test]
async fn a_dependency_outage_is_a_503_to_retry_and_only_it_says_when() {
    let (api, _) = api_with(Arc::new(DownCatalog));
    let r = api
        .handle(request("POST", "/v1/orders", Some(ORDER), &[]), deadline())
        .await;
    assert_eq!(r.status_code, 503);
    assert_eq!(problem_type(&r), "service-unavailable");
    assert_eq!(r.headers["retry-after"], "1");
    let (api, _) = api_with(Arc::new(catalog()));
    let placed = api
        .handle(request("POST", "/v1/orders", Some(ORDER), &[]), deadline())
        .await;
    assert_eq!(placed.status_code, 202);
    assert!(!placed.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_panic_becomes_a_500_problem() {
    let (api, _) = api_with(Arc::new(PanickingCatalog));
    let r = api
        .handle(request("POST", "/v1/orders", Some(ORDER), &[]), deadline())
        .await;
    assert_eq!(r.status_code, 500);
    assert_eq!(problem_type(&r), "internal-error");
}

/// The OpenAPI document as one JSON Schema 2020-12 resource, so `#/components/...`
/// references resolve.
fn openapi() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/orders-api.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Checks one answer against what the document says `operation` may answer: the
/// status is documented, the media type is the documented one and the body is valid
/// against its schema.
fn conforms(doc: &Value, path: &str, method: &str, r: &ApiGatewayV2httpResponse) -> Vec<String> {
    let pointer = format!("/paths/{}/{method}/responses", path.replace('/', "~1"));
    let status = r.status_code.to_string();
    let Some(mut response) = doc.pointer(&format!("{pointer}/{status}")).cloned() else {
        return vec![format!(
            "{method} {path}: status {status} is not documented"
        )];
    };
    if let Some(reference) = response["$ref"].as_str() {
        response = doc.pointer(&reference[1..]).unwrap().clone();
    }
    let media = r.headers["content-type"].to_str().unwrap();
    let Some(schema) = response["content"][media]["schema"].as_object() else {
        return vec![format!(
            "{method} {path} {status}: {media} is not documented"
        )];
    };
    let mut root = doc.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = schema["$ref"].clone();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap();
    validator
        .iter_errors(&body_of(r))
        .map(|e| format!("{method} {path} {status}: {e} at {}", e.instance_path()))
        .collect()
}

/// One request of the conformance test and the documented operation it exercises.
struct Case {
    method: &'static str,
    template: &'static str,
    path: String,
    body: Option<String>,
    headers: Vec<(&'static str, &'static str)>,
}

impl Case {
    fn new(
        method: &'static str,
        template: &'static str,
        path: &str,
        body: Option<String>,
        headers: Vec<(&'static str, &'static str)>,
    ) -> Self {
        Self {
            method,
            template,
            path: path.to_owned(),
            body,
            headers,
        }
    }
}

#[test]
fn the_idempotency_window_is_the_one_the_document_promises() {
    let doc = openapi();
    let key = &doc["paths"]["/v1/orders"]["post"]["parameters"][0];
    assert_eq!(key["name"], "Idempotency-Key");
    let description = key["description"].as_str().unwrap().replace('\n', " ");
    let hours: u64 = description
        .split_once("remembered for ")
        .and_then(|(_, rest)| rest.split_once(" hours"))
        .and_then(|(n, _)| n.parse().ok())
        .expect("the document says how long a key is remembered");
    assert_eq!(IDEMPOTENCY_EXPIRY, Duration::from_secs(hours * 3_600));
}

#[tokio::test]
async fn every_answer_matches_the_openapi_document() {
    let doc = openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    let (api, _) = api_with(Arc::new(catalog()));
    let placed = api
        .handle(
            request(
                "POST",
                "/v1/orders",
                Some(ORDER),
                &[("idempotency-key", "k1")],
            ),
            deadline(),
        )
        .await;
    let id = body_of(&placed)["orderId"].as_str().unwrap().to_owned();
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000));
    let mut problems = conforms(&doc, "/v1/orders", "post", &placed);
    let post = "/v1/orders";
    let one = format!("/v1/orders/{id}");
    let cancel = format!("/v1/orders/{id}/cancel");
    let key = |k: &'static str| vec![("idempotency-key", k)];
    let cases: Vec<Case> = vec![
        Case::new("post", post, post, Some(ORDER.into()), key("k1")),
        Case::new(
            "post",
            post,
            post,
            Some(ORDER.replace("2}", "3}")),
            key("k1"),
        ),
        Case::new("post", post, post, Some(ORDER.into()), key("bad key")),
        Case::new("post", post, post, Some("{".into()), vec![]),
        Case::new(
            "post",
            post,
            post,
            Some(r#"{"customerId":5}"#.into()),
            vec![],
        ),
        Case::new(
            "post",
            post,
            post,
            Some(ORDER.replace("MUG", "NOPE")),
            vec![],
        ),
        Case::new("post", post, post, Some(ORDER.replace("2}", "-2}")), vec![]),
        Case::new("post", post, post, Some(huge), vec![]),
        Case::new(
            "post",
            post,
            post,
            Some(ORDER.into()),
            vec![("content-type", "text/plain")],
        ),
        Case::new("get", "/v1/orders/{orderId}", &one, None, vec![]),
        Case::new(
            "get",
            "/v1/orders/{orderId}",
            "/v1/orders/ord-nope",
            None,
            vec![],
        ),
        Case::new("post", "/v1/orders/{orderId}/cancel", &cancel, None, vec![]),
        Case::new("post", "/v1/orders/{orderId}/cancel", &cancel, None, vec![]),
        Case::new(
            "post",
            "/v1/orders/{orderId}/cancel",
            "/v1/orders/ord-nope/cancel",
            None,
            vec![],
        ),
        Case::new(
            "post",
            post,
            post,
            Some(ORDER.replace("c-1", "c-2")),
            vec![],
        ),
        Case::new("get", post, "/v1/orders?limit=1", None, vec![]),
        Case::new("get", post, "/v1/orders?limit=1000", None, vec![]),
        Case::new("get", post, "/v1/orders?cursor=x", None, vec![]),
    ];
    let mut statuses = Vec::new();
    for case in &cases {
        let r = api
            .handle(
                request(
                    &case.method.to_uppercase(),
                    &case.path,
                    case.body.as_deref(),
                    &case.headers,
                ),
                deadline(),
            )
            .await;
        statuses.push(r.status_code);
        problems.extend(conforms(&doc, case.template, case.method, &r));
    }
    let unauthenticated = api
        .handle(anonymous("GET", "/v1/orders", None, &[]), deadline())
        .await;
    statuses.push(unauthenticated.status_code);
    problems.extend(conforms(&doc, post, "get", &unauthenticated));
    assert!(problems.is_empty(), "{problems:#?}");
    // The cases cover every documented answer that needs no failing dependency.
    assert_eq!(
        statuses,
        [
            202, 422, 400, 400, 400, 422, 422, 413, 415, 200, 404, 200, 409, 404, 403, 200, 400,
            400, 401
        ]
    );
}

#[tokio::test]
async fn an_order_speaks_one_timestamp_format_whoever_wrote_it() {
    // GIVEN an order whose history the saga extended with the emulator's timestamp form
    let (api, orders) = api_with(Arc::new(catalog()));
    let placed = body_of(
        &api.handle(request("POST", "/v1/orders", Some(ORDER), &[]), deadline())
            .await,
    );
    let id = OrderId::parse(placed["orderId"].as_str().unwrap()).unwrap();
    orders
        .0
        .lock()
        .unwrap()
        .get_mut(&id)
        .unwrap()
        .history
        .push(shop_domain::StatusChange {
            status: OrderStatus::Reserved,
            at: "2026-11-29T04:12:50.367183+00:00".into(),
            reason: None,
        });
    // WHEN the shopper reads it
    let order = body_of(
        &api.handle(
            request("GET", &format!("/v1/orders/{id}"), None, &[]),
            deadline(),
        )
        .await,
    );
    // THEN every timestamp is UTC with milliseconds
    let shape = |t: &Value| {
        let t = t.as_str().unwrap();
        t.len() == 24 && t.ends_with('Z') && t.as_bytes()[19] == b'.'
    };
    assert!(shape(&order["createdAt"]), "{order}");
    let history = order["history"].as_array().unwrap();
    assert!(history.iter().all(|c| shape(&c["at"])), "{order}");
    assert_eq!(history[1]["at"], "2026-11-29T04:12:50.367Z");
}

#[test]
fn every_problem_type_is_documented_and_every_documented_one_exists() {
    let doc = openapi();
    let mut documented: Vec<String> = doc["components"]["schemas"]["Problem"]["properties"]["type"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let mut built: Vec<String> = problem::ProblemType::ALL
        .iter()
        .map(|kind| Problem::new(*kind, "").type_uri)
        .collect();
    documented.sort();
    built.sort();
    assert_eq!(built, documented);
    // Each kind has its own short title (RFC 9457: the same for every occurrence).
    let mut titles = std::collections::HashSet::new();
    for kind in problem::ProblemType::ALL {
        let title = Problem::new(kind, "").title;
        assert!(
            !title.is_empty() && titles.insert(title),
            "{kind:?}: {title:?}"
        );
    }
}

#[tokio::test]
async fn a_placed_order_continues_the_callers_trace_and_names_the_order() {
    use observability::traces::testing::{attribute, invoke, named, producer};
    let (api, _) = api_with(Arc::new(catalog()));
    let caller = producer(7);
    let placing = request(
        "POST",
        "/v1/orders",
        Some(ORDER),
        &[("traceparent", &caller)],
    );
    let (r, spans) = invoke("shop-OrdersApiFunction", placing, |e| {
        api.handle(e, deadline())
    })
    .await;
    assert_eq!(r.status_code, 202);
    let invocation = named(&spans, "shop-OrdersApiFunction");
    assert_eq!(
        attribute(invocation, "faas.trigger").as_deref(),
        Some("http")
    );
    let caller = observability::traces::parse(&caller).unwrap();
    assert_eq!(invocation.span_context.trace_id(), caller.trace_id());
    assert_eq!(invocation.parent_span_id, caller.span_id());
    let handled = named(&spans, "request");
    assert_eq!(handled.parent_span_id, invocation.span_context.span_id());
    assert_eq!(
        attribute(handled, "order.id"),
        body_of(&r)["orderId"].as_str().map(str::to_owned)
    );
    assert_eq!(
        attribute(handled, "http.response.status_code").as_deref(),
        Some("202")
    );
    // A read is not part of the order's path: no order.id, a trace of its own.
    let location = r.headers["location"].to_str().unwrap().to_owned();
    let mut reading = request("GET", &location, None, &[]);
    reading.path_parameters.insert(
        "id".into(),
        body_of(&r)["orderId"].as_str().unwrap().to_owned(),
    );
    let (got, spans) = invoke("shop-OrdersApiFunction", reading, |e| {
        api.handle(e, deadline())
    })
    .await;
    assert_eq!(got.status_code, 200);
    assert_eq!(attribute(named(&spans, "request"), "order.id"), None);
    assert_eq!(
        named(&spans, "shop-OrdersApiFunction").parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
}
