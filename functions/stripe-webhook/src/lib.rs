//! `POST /v1/webhooks/stripe`: Stripe's events about the shop's PaymentIntents. No JWT
//! guards the route (Stripe cannot carry one): each delivery's `Stripe-Signature` is
//! verified over the raw body, a forged or replayed one is refused with 400 and
//! changes nothing. An event about an order's payment becomes one `SettleAuthentication`
//! command on the payments queue, and Stripe gets its 2xx at once; the payments
//! function then asks Stripe where the payment stands rather than believe the event,
//! so events that arrive twice, late or out of order settle a payment once.
#![warn(missing_docs)]

pub mod signature;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use shop_aws::{ConfigError, Settings};
use shop_domain::OrderId;
use shop_domain::ports::{BoxError, PaymentSettlements};
use signature::{SignatureError, SigningSecret};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The function's timeout in `template.yaml` (a contract test holds the two equal).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The field of the secret's JSON that holds the endpoint's signing secret.
pub const SECRET_FIELD: &str = "webhookSecret";

/// How far a signature's time may be from now: Stripe's libraries' default.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// The Stripe events this endpoint acts on; docs/deploying.md tells which to enable. Any
/// other is answered 200 and ignored, so enabling more does no harm.
pub const EVENTS: [&str; 3] = [
    "payment_intent.amount_capturable_updated",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
];

/// The shortest time between two reads of the signing secret after a delivery failed
/// to verify: a secret rolled in the Dashboard and saved in Secrets Manager is picked
/// up, and a flood of forged deliveries does not become a flood of secrets reads.
pub const SECRET_REREAD_INTERVAL: Duration = Duration::from_secs(30);

/// Base of every problem `type`.
pub const TYPE_BASE: &str = "https://order-saga.example/problems/";

/// The problem `type` slugs the endpoint answers with (`WebhookProblem` in the
/// OpenAPI document): a refused signature, a body that is no event, a queue failure.
pub const PROBLEMS: [&str; 3] = [SIGNATURE_INVALID, INVALID_EVENT, UNAVAILABLE];
const SIGNATURE_INVALID: &str = "webhook-signature-invalid";
const INVALID_EVENT: &str = "invalid-event";
const UNAVAILABLE: &str = "service-unavailable";

/// What the function reads from its environment, parsed once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): what its failures are counted
    /// under ([`observability::Metric::FunctionFailures`]).
    pub function_name: String,
    /// `PAYMENTS_QUEUE_URL`: where settlements go.
    pub payments_queue_url: String,
    /// `STRIPE_WEBHOOK_SECRET`: the Secrets Manager secret holding the endpoint's
    /// signing secret (a JSON secret with it in [`SECRET_FIELD`]).
    pub webhook_secret: String,
    /// `STRIPE_WEBHOOK_TOLERANCE_SECONDS` (300): how far a signature's time may be from
    /// now.
    pub tolerance: Duration,
}

impl Config {
    /// Reads every setting, naming the first that is missing or malformed.
    pub fn from_env(env: Settings<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            function_name: env.function_name()?,
            payments_queue_url: env.required("PAYMENTS_QUEUE_URL")?,
            webhook_secret: env.required("STRIPE_WEBHOOK_SECRET")?,
            tolerance: Duration::from_secs(env.parsed(
                "STRIPE_WEBHOOK_TOLERANCE_SECONDS",
                DEFAULT_TOLERANCE_SECONDS,
                "a number of seconds from 1 to 3600",
                |n: &u64| (1..=3600).contains(n),
            )?),
        })
    }
}

/// Where the signing secret lives (Secrets Manager in the function).
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    /// The current signing secret.
    async fn read(&self) -> Result<SigningSecret, BoxError>;
}

/// The signing secret in Secrets Manager.
pub struct SecretsManagerSecret {
    client: aws_sdk_secretsmanager::Client,
    secret: String,
}

#[async_trait::async_trait]
impl SecretSource for SecretsManagerSecret {
    async fn read(&self) -> Result<SigningSecret, BoxError> {
        let raw =
            shop_aws::secrets::read_json_field(&self.client, &self.secret, SECRET_FIELD).await?;
        Ok(SigningSecret::new(raw))
    }
}

/// The ports the function works through. A test replaces one.
#[derive(Clone)]
pub struct Ports {
    /// Hands an order's payment to the payments function.
    pub settlements: Arc<dyn PaymentSettlements>,
    /// The signing secret.
    pub secret: Arc<dyn SecretSource>,
}

impl Ports {
    /// The AWS adapters, with clients built once.
    pub fn aws(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let sdk = &shop_aws::for_function(sdk, "stripe-webhook");
        Self {
            settlements: Arc::new(shop_aws::queue::SqsPaymentSettlements::new(
                aws_sdk_sqs::Client::new(sdk),
                config.payments_queue_url.clone(),
            )),
            secret: Arc::new(SecretsManagerSecret {
                client: aws_sdk_secretsmanager::Client::new(sdk),
                secret: config.webhook_secret.clone(),
            }),
        }
    }
}

/// The signing secrets held: the current one, and the one it replaced while a
/// delivery signed with it may still arrive.
struct Held {
    secrets: Vec<SigningSecret>,
    reread_at: Option<Instant>,
}

/// The function could not start: its signing secret is unreadable.
#[derive(Debug, thiserror::Error)]
#[error("reading the Stripe webhook signing secret failed")]
pub struct InitError(#[source] pub BoxError);

/// The webhook endpoint with its ports.
pub struct StripeWebhook {
    /// Lambda's name of the function, its failures are counted under.
    function_name: String,
    settlements: Arc<dyn PaymentSettlements>,
    source: Arc<dyn SecretSource>,
    tolerance: Duration,
    held: RwLock<Held>,
}

/// A Stripe event, as far as the endpoint reads it.
#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Value,
}

impl StripeWebhook {
    /// Reads the signing secret once and wires the endpoint to its ports.
    pub async fn new(config: &Config, ports: Ports) -> Result<Self, InitError> {
        let secret = ports.secret.read().await.map_err(InitError)?;
        Ok(Self {
            function_name: config.function_name.clone(),
            settlements: ports.settlements,
            source: ports.secret,
            tolerance: config.tolerance,
            held: RwLock::new(Held {
                secrets: vec![secret],
                reread_at: None,
            }),
        })
    }

    fn secrets(&self) -> Vec<SigningSecret> {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .secrets
            .clone()
    }

    /// After a mismatch, reads the secret again (at most every
    /// [`SECRET_REREAD_INTERVAL`]); returns whether a new one is now held.
    async fn reread_secret(&self) -> bool {
        {
            let held = self.held.read().unwrap_or_else(|p| p.into_inner());
            if held
                .reread_at
                .is_some_and(|at| at.elapsed() < SECRET_REREAD_INTERVAL)
            {
                return false;
            }
        }
        let read = self.source.read().await;
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        held.reread_at = Some(Instant::now());
        match read {
            Ok(secret) if !held.secrets.contains(&secret) => {
                tracing::warn!("the webhook signing secret changed; the previous one is kept too");
                held.secrets.insert(0, secret);
                held.secrets.truncate(2);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(error = %e, "re-reading the webhook signing secret failed");
                false
            }
        }
    }

    async fn verify(&self, header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let first = signature::verify(header, body, &self.secrets(), now, self.tolerance);
        if first == Err(SignatureError::Mismatch) && self.reread_secret().await {
            return signature::verify(header, body, &self.secrets(), now, self.tolerance);
        }
        first
    }

    /// Answers one delivery.
    pub async fn handle(&self, request: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let body = match raw_body(&request) {
            Ok(body) => body,
            Err(detail) => return problem(400, INVALID_EVENT, "Invalid event", &detail),
        };
        let header = request
            .headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok());
        if let Err(refused) = self.verify(header, &body).await {
            tracing::warn!(reason = %refused, "webhook delivery refused");
            observability::emit(observability::Metric::WebhookDeliveriesRefused, 1.0, &[]);
            return problem(
                400,
                SIGNATURE_INVALID,
                "Webhook signature invalid",
                &refused.to_string(),
            );
        }
        let event: Event = match serde_json::from_slice(&body) {
            Ok(event) => event,
            Err(e) => {
                return problem(
                    400,
                    INVALID_EVENT,
                    "Invalid event",
                    &format!("the body is not a Stripe event: {e}"),
                );
            }
        };
        let order_id = event.data.object["metadata"]["order_id"]
            .as_str()
            .and_then(OrderId::parse);
        let span = tracing::info_span!("event", event_id = %event.id, kind = %event.kind);
        let _entered = span.enter();
        let Some(order_id) = order_id.filter(|_| EVENTS.contains(&event.kind.as_str())) else {
            tracing::info!("not an event about an order's payment; ignored");
            return accepted(false);
        };
        match self.settlements.settle(&order_id, &event.id).await {
            Ok(()) => {
                tracing::info!(order_id = %order_id, "handed to the payments function");
                accepted(true)
            }
            Err(e) => {
                tracing::error!(order_id = %order_id, error = %observability::ErrorChain(&e), "the payments queue refused the settlement");
                observability::count_failures(&self.function_name, 1);
                problem(
                    503,
                    UNAVAILABLE,
                    "Service unavailable",
                    "the event could not be queued; Stripe delivers it again",
                )
            }
        }
    }
}

/// The body exactly as Stripe sent it: API Gateway passes a text body as it is and
/// base64-encodes any other.
fn raw_body(request: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, String> {
    let text = request.body.as_deref().unwrap_or_default();
    if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("the body is not valid base64: {e}"))
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

fn response(status: i64, content_type: &'static str, body: Value) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = status;
    response.headers = headers;
    response.body = Some(Body::Text(body.to_string()));
    response
}

fn accepted(settling: bool) -> ApiGatewayV2httpResponse {
    response(
        200,
        "application/json",
        json!({ "received": true, "settling": settling }),
    )
}

fn problem(status: i64, slug: &str, title: &str, detail: &str) -> ApiGatewayV2httpResponse {
    response(
        status,
        "application/problem+json",
        json!({
            "type": format!("{TYPE_BASE}{slug}"),
            "title": title,
            "status": status,
            "detail": detail,
        }),
    )
}

#[cfg(test)]
mod tests;
