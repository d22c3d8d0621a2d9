//! Payment commands from the saga (Authorize, AwaitAuthentication, Capture, Refund),
//! from the Stripe webhook (SettleAuthentication) and from operators (RefundPart),
//! through a payment provider, recorded in the ledger, answered with a result or a
//! named failure.
#![warn(missing_docs)]

pub mod breaker;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use payment_sandbox::{Latency, SandboxProvider};
use payment_stripe::StripeProvider;
use serde_json::json;
use shop_aws::{ConfigError, Settings};
use shop_domain::commands::TaskFailure;
use shop_domain::commands::{Envelope, PaymentCommand, TaskError};
use shop_domain::payment::PaymentService;
use shop_domain::payment::{InvalidProviderKey, ProviderKey};
use shop_domain::ports::{
    EventPublisher, OrderPayments, PaymentLedger, PaymentProvider, PortError, TaskCallbacks,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::Instrument;

/// The function's timeout in `template.yaml` (a contract test holds the two equal).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Provider deadline, in milliseconds, when `PAYMENT_PROVIDER_TIMEOUT_MS` is not set.
pub const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 5_000;

/// Why a message was not processed (it is redelivered, then dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The body is not a payment command.
    #[error("message is not a payment command: {0}")]
    Malformed(#[from] shop_domain::commands::DecodeError),
    /// Answering the saga failed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// A command the saga does not wait on (a settlement, an operator's part refund)
    /// failed for a reason a retry may fix.
    #[error("the payment command failed; retried")]
    Unsettled(#[source] TaskFailure),
}

/// The field of the secret's JSON that holds the API key.
pub const PROVIDER_KEY_FIELD: &str = "apiKey";

/// Who moves the money (`PAYMENT_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Stripe, at `STRIPE_API_BASE`.
    Stripe,
    /// The sandbox: deterministic test tokens, no money; refused in prod.
    Sandbox,
}

impl std::str::FromStr for ProviderKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "stripe" => Ok(Self::Stripe),
            "sandbox" => Ok(Self::Sandbox),
            other => Err(other.to_owned()),
        }
    }
}

/// What the function reads from its environment, parsed once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): what its failures are counted
    /// under ([`observability::Metric::FunctionFailures`]).
    pub function_name: String,
    /// `PAYMENTS_TABLE`: the ledger.
    pub payments_table: String,
    /// `ORDERS_TABLE`: where an order's payment method is read.
    pub orders_table: String,
    /// `EVENT_BUS_NAME`: where payment events are published.
    pub event_bus_name: String,
    /// `PAYMENT_PROVIDER` (`stripe` or `sandbox`, default `stripe`).
    pub provider: ProviderKind,
    /// `STRIPE_API_BASE` (default Stripe's own): where the Stripe adapter calls.
    pub stripe_api_base: String,
    /// `PAYMENT_PROVIDER_KEY_SECRET`: the Secrets Manager secret holding the provider's
    /// API key (a JSON secret with the key in [`PROVIDER_KEY_FIELD`]).
    pub provider_key_secret: String,
    /// `PAYMENT_PROVIDER_TIMEOUT_MS` (default 5000): how long one provider call may take.
    pub provider_timeout: Duration,
    /// `PAYMENT_SANDBOX_LATENCY` (`P50,P99` such as `300ms,2s`; empty: none): how long
    /// the sandbox provider takes to answer, so local runs queue as production does.
    pub sandbox_latency: Option<Latency>,
    /// `PAYMENT_BREAKER_FAILURES` (5), `PAYMENT_BREAKER_FAILURE_PERCENT` (50),
    /// `PAYMENT_BREAKER_WINDOW_SECONDS` (30) and `PAYMENT_BREAKER_COOL_DOWN_SECONDS`
    /// (20): the provider's circuit breaker.
    pub breaker: circuit_breaker::Config,
}

impl Config {
    /// Reads every setting, naming the first that is missing or malformed.
    pub fn from_env(env: Settings<'_>) -> Result<Self, ConfigError> {
        let positive = |n: &u64| *n > 0;
        const WHOLE: &str = "a whole number above 0";
        Ok(Self {
            function_name: env.function_name()?,
            payments_table: env.required("PAYMENTS_TABLE")?,
            orders_table: env.required("ORDERS_TABLE")?,
            event_bus_name: env.required("EVENT_BUS_NAME")?,
            provider: env.parsed(
                "PAYMENT_PROVIDER",
                ProviderKind::Stripe,
                "stripe or sandbox",
                |_| true,
            )?,
            stripe_api_base: env.parsed(
                "STRIPE_API_BASE",
                payment_stripe::DEFAULT_API_BASE.to_owned(),
                "an http(s) URL",
                |url: &String| url.starts_with("https://") || url.starts_with("http://"),
            )?,
            provider_key_secret: env.required("PAYMENT_PROVIDER_KEY_SECRET")?,
            provider_timeout: Duration::from_millis(env.parsed(
                "PAYMENT_PROVIDER_TIMEOUT_MS",
                DEFAULT_PROVIDER_TIMEOUT_MS,
                "a number of milliseconds above 0",
                positive,
            )?),
            sandbox_latency: env
                .parsed(
                    "PAYMENT_SANDBOX_LATENCY",
                    MaybeLatency(None),
                    "P50,P99 such as 300ms,2s, or empty for none",
                    |_| true,
                )?
                .0,
            breaker: circuit_breaker::Config {
                failure_threshold: env.parsed("PAYMENT_BREAKER_FAILURES", 5, WHOLE, |n| *n > 0)?,
                failure_percent: env.parsed(
                    "PAYMENT_BREAKER_FAILURE_PERCENT",
                    50,
                    "a percentage from 1 to 100",
                    |n| (1..=100).contains(n),
                )?,
                window: Duration::from_secs(env.parsed(
                    "PAYMENT_BREAKER_WINDOW_SECONDS",
                    30,
                    WHOLE,
                    positive,
                )?),
                cool_down: Duration::from_secs(env.parsed(
                    "PAYMENT_BREAKER_COOL_DOWN_SECONDS",
                    20,
                    WHOLE,
                    positive,
                )?),
            },
        })
    }
}

/// A latency or nothing (an empty setting).
struct MaybeLatency(Option<Latency>);

impl std::str::FromStr for MaybeLatency {
    type Err = payment_sandbox::InvalidLatency;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "" => Ok(Self(None)),
            text => text.parse().map(|l| Self(Some(l))),
        }
    }
}

/// Why the payments function could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A setting is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The provider key's secret could not be read.
    #[error(transparent)]
    Secret(#[from] shop_aws::secrets::SecretError),
    /// The secret's value is not a usable key.
    #[error(transparent)]
    Key(#[from] InvalidProviderKey),
    /// The Stripe provider could not be built (its key, its TLS client).
    #[error(transparent)]
    Stripe(#[from] payment_stripe::ConnectError),
}

/// The provider key in Secrets Manager, read at cold start and again when Stripe
/// refuses the held one (a rotation).
struct SecretKey {
    client: aws_sdk_secretsmanager::Client,
    secret: String,
}

impl SecretKey {
    async fn read_key(&self) -> Result<ProviderKey, InitError> {
        let raw =
            shop_aws::secrets::read_json_field(&self.client, &self.secret, PROVIDER_KEY_FIELD)
                .await?;
        Ok(ProviderKey::new(raw)?)
    }
}

#[async_trait::async_trait]
impl payment_stripe::KeySource for SecretKey {
    async fn read(&self) -> Result<ProviderKey, payment_stripe::KeyError> {
        self.read_key()
            .await
            .map_err(|e| payment_stripe::KeyError(Box::new(e)))
    }
}

/// The provider the function was built with. The sandbox is kept by its type, so the
/// local runtime and the tests can read its books.
pub enum Provider {
    /// Stripe.
    Stripe(Arc<StripeProvider>),
    /// The sandbox.
    Sandbox(Arc<SandboxProvider>),
}

impl Provider {
    /// The provider as the port the function calls.
    pub fn port(&self) -> Arc<dyn PaymentProvider> {
        match self {
            Self::Stripe(stripe) => stripe.clone(),
            Self::Sandbox(sandbox) => sandbox.clone(),
        }
    }
}

/// The provider `config` names. Its API key is read from Secrets Manager once per cold
/// start and held in memory: no key in the template, the environment or the code, and
/// no secrets call on a warm invocation. Stripe's read starts here and is joined at the
/// first call, overlapping the rest of init and the first event's delivery (the
/// shorter cold path, BENCHMARKS.md); it reads again when Stripe answers 401, so a
/// rotated key is picked up without a deploy. The sandbox's is read here.
pub async fn provider(sdk: &aws_config::SdkConfig, config: &Config) -> Result<Provider, InitError> {
    let keys = SecretKey {
        client: aws_sdk_secretsmanager::Client::new(&shop_aws::for_function(sdk, "payments")),
        secret: config.provider_key_secret.clone(),
    };
    let provider = match config.provider {
        ProviderKind::Stripe => {
            let stripe = StripeProvider::connect(
                &config.stripe_api_base,
                config.provider_timeout,
                Arc::new(keys),
            )?;
            tracing::info!(api = %config.stripe_api_base, version = payment_stripe::API_VERSION, "Stripe provider ready; its key is being read");
            Provider::Stripe(Arc::new(stripe))
        }
        ProviderKind::Sandbox => {
            let sandbox = SandboxProvider::new(config.provider_timeout, keys.read_key().await?)
                .with_latency(config.sandbox_latency);
            tracing::info!(key = ?sandbox.key(), "sandbox provider key loaded");
            Provider::Sandbox(Arc::new(sandbox))
        }
    };
    Ok(provider)
}

/// The ports the function works through. A test replaces one to inject a fault.
#[derive(Clone)]
pub struct Ports {
    /// One record per order, conditional transitions only.
    pub ledger: Arc<dyn PaymentLedger>,
    /// The card processor, which [`Payments::new`] puts behind the circuit breaker.
    pub provider: Arc<dyn PaymentProvider>,
    /// The stored orders: their payment methods, which no command carries, and their
    /// shoppers' actions.
    pub orders: Arc<dyn OrderPayments>,
    /// Publishes payment events.
    pub events: Arc<dyn EventPublisher>,
    /// Answers and heartbeats to the saga's task tokens.
    pub callbacks: Arc<dyn TaskCallbacks>,
}

impl Ports {
    /// The AWS adapters around `provider`, with clients built once.
    pub fn aws(
        sdk: &aws_config::SdkConfig,
        config: &Config,
        provider: Arc<dyn PaymentProvider>,
    ) -> Self {
        let sdk = &shop_aws::for_function(sdk, "payments");
        Self {
            ledger: Arc::new(shop_aws::ledger::DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.payments_table.clone(),
            )),
            provider,
            orders: Arc::new(shop_aws::orders::DynamoOrderStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.orders_table.clone(),
            )),
            events: Arc::new(shop_aws::events::EventBridgePublisher::new(
                aws_sdk_eventbridge::Client::new(sdk),
                config.event_bus_name.clone(),
            )),
            callbacks: Arc::new(shop_aws::saga::SfnTaskCallbacks::new(
                aws_sdk_sfn::Client::new(sdk),
            )),
        }
    }
}

/// How long before the invocation's deadline every provider call must have ended: the
/// time left to record the outcome in the ledger and answer the saga.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// Counts a declined payment (`PaymentDeclines`).
fn count_decline(failure: &TaskFailure) {
    if failure.error == TaskError::PaymentDeclined {
        observability::emit(observability::Metric::PaymentDeclines, 1.0, &[]);
    }
}

/// The payments function with its ports.
pub struct Payments {
    /// Lambda's name of the function, its failures are counted under.
    function_name: String,
    ledger: Arc<dyn PaymentLedger>,
    provider: breaker::GuardedProvider,
    orders: Arc<dyn OrderPayments>,
    events: Arc<dyn EventPublisher>,
    callbacks: Arc<dyn TaskCallbacks>,
}

impl Payments {
    /// Wires the function to its ports, the provider behind a circuit breaker
    /// configured by `config`.
    pub fn new(config: &Config, ports: Ports) -> Self {
        Self {
            function_name: config.function_name.clone(),
            ledger: ports.ledger,
            provider: breaker::GuardedProvider::new(ports.provider, config.breaker),
            orders: ports.orders,
            events: ports.events,
            callbacks: ports.callbacks,
        }
    }

    /// Processes a batch, reporting only the failed records. `deadline` is when Lambda
    /// stops the invocation (`Context::deadline`): every provider call ends
    /// [`ANSWER_MARGIN`] before it.
    pub async fn handle(&self, event: SqsEvent, deadline: SystemTime) -> SqsBatchResponse {
        let provider = self
            .provider
            .until(deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline));
        let response =
            sqs_batch::process_batch(event, |message| self.execute(message, &provider)).await;
        observability::count_failures(&self.function_name, response.batch_item_failures.len());
        response
    }

    async fn execute(
        &self,
        message: SqsMessage,
        provider: &dyn PaymentProvider,
    ) -> Result<(), CommandError> {
        let envelope: Envelope<PaymentCommand> =
            Envelope::decode(message.body.as_deref().unwrap_or(""))?;
        let correlation_id = envelope.correlation_id.clone().unwrap_or_default();
        let service = PaymentService {
            ledger: self.ledger.as_ref(),
            provider,
            orders: self.orders.as_ref(),
            events: self.events.as_ref(),
        };
        let order_id = match &envelope.command {
            PaymentCommand::Authorize { order_id, .. }
            | PaymentCommand::Capture { order_id }
            | PaymentCommand::AwaitAuthentication { order_id }
            | PaymentCommand::SettleAuthentication { order_id, .. }
            | PaymentCommand::Refund { order_id, .. }
            | PaymentCommand::RefundPart { order_id, .. } => order_id.clone(),
        };
        let span =
            tracing::info_span!("command", correlation_id = %correlation_id, order.id = %order_id);
        let callbacks = self.callbacks.as_ref();
        async {
            match &envelope.command {
                PaymentCommand::Authorize {
                    order_id,
                    amount,
                    currency,
                } => {
                    shop_domain::commands::execute(callbacks, envelope.timing(), async {
                        let held = service
                            .authorize(order_id, &correlation_id, *amount, *currency)
                            .await
                            .inspect_err(count_decline)?;
                        Ok(json!({ "chargeId": held.charge_id, "amount": held.amount }))
                    })
                    .await?
                }
                PaymentCommand::Capture { order_id } => {
                    shop_domain::commands::execute(callbacks, envelope.timing(), async {
                        let c = service.capture(order_id, &correlation_id).await?;
                        Ok(json!({ "chargeId": c.charge_id, "amount": c.amount }))
                    })
                    .await?
                }
                PaymentCommand::Refund { order_id, reason } => {
                    tracing::info!(reason = reason.as_deref().unwrap_or(""), "refunding");
                    shop_domain::commands::execute(callbacks, envelope.timing(), async {
                        let status = service.refund(order_id, &correlation_id).await?;
                        Ok(json!({ "ledgerStatus": status }))
                    })
                    .await?
                }
                PaymentCommand::AwaitAuthentication { order_id } => {
                    let Some(token) = envelope.task_token.as_deref() else {
                        tracing::warn!("AwaitAuthentication without a task token: nothing waits; dropped");
                        return Ok(());
                    };
                    // A failure to keep the token is answered on it at once.
                    let answer = service
                        .await_authentication(order_id, &correlation_id, token)
                        .await
                        .unwrap_or_else(|failure| Some((token.to_owned(), Err(failure))));
                    match answer {
                        Some((token, outcome)) => {
                            let outcome = outcome.inspect_err(count_decline);
                            shop_domain::commands::answer_task(callbacks, Some(&token), outcome)
                                .await?
                        }
                        None => tracing::info!(
                            "waiting for the shopper to authenticate; the payment keeps the saga's token"
                        ),
                    }
                }
                PaymentCommand::SettleAuthentication { order_id, event_id } => {
                    match service.settle_authentication(order_id, &correlation_id).await {
                        Ok(Some((token, outcome))) => {
                            tracing::info!(event_id, "authentication ended; answering the saga");
                            let outcome = outcome.inspect_err(count_decline);
                            shop_domain::commands::answer_task(callbacks, Some(&token), outcome)
                                .await?
                        }
                        Ok(None) => tracing::info!(event_id, "no authentication to settle"),
                        Err(failure) if failure.error.is_transient() => {
                            return Err(CommandError::Unsettled(failure));
                        }
                        Err(failure) => {
                            tracing::warn!(event_id, error = failure.error.name(), cause = %failure.cause, "settling refused")
                        }
                    }
                }
                PaymentCommand::RefundPart {
                    order_id,
                    amount,
                    reference,
                } => match service
                    .refund_part(order_id, &correlation_id, *amount, reference)
                    .await
                {
                    Ok(done) => tracing::info!(
                        reference,
                        amount = done.amount,
                        remaining = done.remaining,
                        replayed = done.replayed,
                        "part refund made"
                    ),
                    Err(failure) if failure.error.is_transient() => {
                        return Err(CommandError::Unsettled(failure));
                    }
                    Err(failure) => {
                        tracing::error!(reference, amount, error = failure.error.name(), cause = %failure.cause, "part refund refused; nothing moved")
                    }
                },
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use shop_domain::fakes::{FakeCallbacks, FakeEvents, FakeLedger, FakeOrders, pending_order};
    use shop_domain::payment::{
        Authentication, Authorization, ChargeRequest, LedgerStatus, ProviderError, Released,
    };
    use shop_domain::{Order, OrderId};

    /// The configuration the template gives, with `extra` variables set besides.
    pub(crate) fn config(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let env: Vec<(&str, &str)> = [
            ("PAYMENTS_TABLE", "payments"),
            ("ORDERS_TABLE", "orders"),
            ("EVENT_BUS_NAME", "bus"),
            ("PAYMENT_PROVIDER_KEY_SECRET", "secret"),
            ("AWS_LAMBDA_FUNCTION_NAME", "shop-PaymentsFunction"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
        shop_aws::settings::with_pairs(&env, Config::from_env)
    }

    #[test]
    fn configuration_is_read_and_validated() {
        let read = config(&[
            ("PAYMENT_BREAKER_FAILURES", "7"),
            ("PAYMENT_BREAKER_WINDOW_SECONDS", "45"),
            ("PAYMENT_BREAKER_FAILURE_PERCENT", "25"),
            ("PAYMENT_PROVIDER_TIMEOUT_MS", "1500"),
        ])
        .unwrap();
        assert_eq!(read.breaker.failure_threshold, 7);
        assert_eq!(read.breaker.window, Duration::from_secs(45));
        assert_eq!(read.breaker.failure_percent, 25);
        assert_eq!(read.provider_timeout, Duration::from_millis(1500));
        let defaults = config(&[]).unwrap();
        assert_eq!(
            defaults.provider_timeout,
            Duration::from_millis(DEFAULT_PROVIDER_TIMEOUT_MS)
        );
        let bad = config(&[("PAYMENT_BREAKER_COOL_DOWN_SECONDS", "soon")]).unwrap_err();
        assert!(
            bad.to_string()
                .contains("PAYMENT_BREAKER_COOL_DOWN_SECONDS")
        );
        for zero in [
            "PAYMENT_PROVIDER_TIMEOUT_MS",
            "PAYMENT_BREAKER_FAILURES",
            "PAYMENT_BREAKER_FAILURE_PERCENT",
        ] {
            let refused = config(&[(zero, "0")]).unwrap_err();
            assert!(refused.to_string().contains(zero), "{refused}");
        }
        assert_eq!(defaults.sandbox_latency, None);
        let slow = config(&[("PAYMENT_SANDBOX_LATENCY", "300ms,2s")]).unwrap();
        assert_eq!(
            slow.sandbox_latency,
            Some(Latency {
                p50: Duration::from_millis(300),
                p99: Duration::from_secs(2)
            })
        );
        assert_eq!(
            config(&[("PAYMENT_SANDBOX_LATENCY", "")])
                .unwrap()
                .sandbox_latency,
            None
        );
        let refused = config(&[("PAYMENT_SANDBOX_LATENCY", "2s,300ms")]).unwrap_err();
        assert!(refused.to_string().contains("PAYMENT_SANDBOX_LATENCY"));
        let missing = config(&[("PAYMENTS_TABLE", "")]).unwrap_err();
        assert_eq!(missing, ConfigError::Missing("PAYMENTS_TABLE"));
    }

    #[tokio::test]
    async fn authorize_answers_with_the_authorization_and_decline_by_name() {
        // GIVEN two stored orders, one paid with a card that declines, and an order
        // id that names no order
        let callbacks = Arc::new(FakeCallbacks::default());
        let config = config(&[]).unwrap();
        let orders = FakeOrders::default();
        let mut ids = Vec::new();
        for token in ["tok_visa", "tok_decline"] {
            let order = Order {
                payment_token: token.into(),
                ..pending_order("MUG", 1, 100)
            };
            ids.push(order.order_id.clone());
            orders
                .0
                .lock()
                .unwrap()
                .insert(order.order_id.clone(), order);
        }
        ids.push(OrderId::generate());
        let payments = Payments::new(
            &config,
            Ports {
                ledger: Arc::new(FakeLedger::default()),
                provider: Arc::new(SandboxProvider::new(
                    Duration::from_millis(5),
                    ProviderKey::new("sandbox-key-0123456789").unwrap(),
                )),
                orders: Arc::new(orders),
                events: Arc::new(FakeEvents::default()),
                callbacks: callbacks.clone(),
            },
        );
        // WHEN an Authorize for each arrives: commands carry no payment method
        let mut event = SqsEvent::default();
        for (i, id) in ids.iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(format!(
                r#"{{"command":"Authorize","taskToken":"t{i}","orderId":"{id}","amount":100,"currency":"EUR"}}"#
            ));
            event.records.push(m);
        }
        let response = payments
            .handle(event, SystemTime::now() + Duration::from_secs(30))
            .await;
        assert!(response.batch_item_failures.is_empty());
        let ok = callbacks.succeeded.lock().unwrap().clone();
        assert_eq!(ok[0].0, "t0");
        assert!(
            ok[0].1["chargeId"]
                .as_str()
                .unwrap()
                .starts_with("pay_sandbox_")
        );
        // THEN each is answered from its order's method, and one without is refused
        assert_eq!(
            callbacks.failed.lock().unwrap().as_slice(),
            [
                ("t1".to_string(), "PaymentDeclined".to_string()),
                ("t2".to_string(), "PaymentRefused".to_string())
            ]
        );
        // AND the confirmed order's Capture takes what was authorized
        let authorized = ok[0].1["chargeId"].clone();
        let mut capture = SqsMessage::default();
        capture.message_id = Some("m3".into());
        capture.body = Some(format!(
            r#"{{"command":"Capture","taskToken":"t3","orderId":"{}"}}"#,
            ids[0]
        ));
        let mut event = SqsEvent::default();
        event.records.push(capture);
        let response = payments
            .handle(event, SystemTime::now() + Duration::from_secs(30))
            .await;
        assert!(response.batch_item_failures.is_empty());
        let ok = callbacks.succeeded.lock().unwrap();
        assert_eq!(ok[1].0, "t3");
        assert_eq!(ok[1].1["chargeId"], authorized);
        assert_eq!(ok[1].1["amount"], 100);
    }

    #[tokio::test]
    async fn an_operators_part_refund_moves_money_once_and_a_refused_one_is_not_retried() {
        // GIVEN an order authorized and captured through the saga's commands
        let callbacks = Arc::new(FakeCallbacks::default());
        let orders = FakeOrders::default();
        let order = Order {
            payment_token: "tok_visa".into(),
            ..pending_order("MUG", 1, 1_000)
        };
        let id = order.order_id.clone();
        orders.0.lock().unwrap().insert(id.clone(), order);
        let ledger = Arc::new(FakeLedger::default());
        let sandbox = Arc::new(SandboxProvider::new(
            Duration::from_millis(5),
            ProviderKey::new("sandbox-key-0123456789").unwrap(),
        ));
        let payments = Payments::new(
            &config(&[]).unwrap(),
            Ports {
                ledger: ledger.clone(),
                provider: sandbox.clone(),
                orders: Arc::new(orders),
                events: Arc::new(FakeEvents::default()),
                callbacks: callbacks.clone(),
            },
        );
        let batch = |bodies: Vec<String>| {
            let mut event = SqsEvent::default();
            for (i, body) in bodies.into_iter().enumerate() {
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("m{i}"));
                m.body = Some(body);
                event.records.push(m);
            }
            payments.handle(event, SystemTime::now() + Duration::from_secs(30))
        };
        batch(vec![format!(
            r#"{{"command":"Authorize","taskToken":"t0","orderId":"{id}","amount":1000,"currency":"EUR"}}"#
        )])
        .await;
        batch(vec![format!(
            r#"{{"command":"Capture","taskToken":"t1","orderId":"{id}"}}"#
        )])
        .await;
        assert_eq!(sandbox.net_captured(&id), 1_000);
        // WHEN an operator's part refund arrives twice, and one for more than is left
        let part = |amount: u64, reference: &str| {
            format!(
                r#"{{"command":"RefundPart","correlationId":"ops-1","orderId":"{id}","amount":{amount},"reference":"{reference}"}}"#
            )
        };
        let response = batch(vec![part(400, "RMA-1"), part(400, "RMA-1")]).await;
        let refused = batch(vec![part(601, "RMA-2")]).await;
        // THEN the money moved once, the refused one is not retried, and the saga's
        // tokens heard nothing of either
        assert!(response.batch_item_failures.is_empty());
        assert!(
            refused.batch_item_failures.is_empty(),
            "retrying cannot help"
        );
        assert_eq!(sandbox.net_captured(&id), 600);
        let record = ledger.get(&id).await.unwrap().unwrap();
        assert_eq!(record.status, LedgerStatus::Captured);
        assert_eq!(record.refunds.get("RMA-1"), Some(&400));
        assert_eq!(record.refunds.len(), 1);
        assert_eq!(callbacks.succeeded.lock().unwrap().len(), 2, "t0 and t1");
        assert!(callbacks.failed.lock().unwrap().is_empty());
    }

    /// A card whose issuer asks for 3-D Secure; the shopper's answer is set by the test.
    struct ThreeDSecure(std::sync::Mutex<Authentication>);

    #[async_trait::async_trait]
    impl PaymentProvider for ThreeDSecure {
        async fn authorize(&self, _: &ChargeRequest) -> Result<Authorization, ProviderError> {
            Ok(Authorization::ActionRequired {
                payment_id: "pi_3ds".into(),
                client_secret: "pi_3ds_secret_x".into(),
            })
        }
        async fn authentication(&self, _: &str) -> Result<Authentication, ProviderError> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn capture(&self, _: &str, _: &ChargeRequest) -> Result<(), ProviderError> {
            Ok(())
        }
        async fn release(
            &self,
            _: Option<&str>,
            _: &ChargeRequest,
        ) -> Result<Released, ProviderError> {
            Ok(Released::Voided)
        }
    }

    fn message(body: String) -> SqsEvent {
        let mut m = SqsMessage::default();
        m.message_id = Some("m".into());
        m.body = Some(body);
        let mut event = SqsEvent::default();
        event.records.push(m);
        event
    }

    #[tokio::test]
    async fn a_commands_span_continues_the_sagas_trace_in_a_batch_of_one_or_several() {
        use observability::traces::testing::{
            assert_consumer_tree, assert_each_names_its_order, invoke, producer,
        };
        for size in [1u8, 3] {
            let producers: Vec<String> = (0..size).map(producer).collect();
            let orders = Arc::new(FakeOrders::default());
            let mut event = SqsEvent::default();
            for (i, traceparent) in producers.iter().enumerate() {
                let order = Order {
                    status: shop_domain::OrderStatus::PaymentPending,
                    ..pending_order("MUG", 1, 100)
                };
                let id = order.order_id.clone();
                orders.0.lock().unwrap().insert(id.clone(), order);
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("m{i}"));
                m.body = Some(format!(
                    r#"{{"command":"Authorize","taskToken":"t{i}","orderId":"{id}","amount":100,"currency":"EUR","traceparent":"{traceparent}"}}"#
                ));
                event.records.push(m);
            }
            let payments = Payments::new(
                &config(&[]).unwrap(),
                Ports {
                    ledger: Arc::new(FakeLedger::default()),
                    provider: Arc::new(ThreeDSecure(std::sync::Mutex::new(
                        Authentication::Pending,
                    ))),
                    orders,
                    events: Arc::new(FakeEvents::default()),
                    callbacks: Arc::new(FakeCallbacks::default()),
                },
            );
            let deadline = SystemTime::now() + Duration::from_secs(30);
            let (response, spans) = invoke("shop-PaymentsFunction", event, |e| {
                payments.handle(e, deadline)
            })
            .await;
            assert!(response.batch_item_failures.is_empty());
            let records = assert_consumer_tree(&spans, "shop-PaymentsFunction", &producers);
            assert_each_names_its_order(&spans, &records, "command");
        }
    }

    #[tokio::test]
    async fn a_3d_secure_payment_keeps_the_sagas_token_until_the_shopper_answers() {
        // GIVEN an order waiting for its payment, paid with a 3-D Secure card
        let callbacks = Arc::new(FakeCallbacks::default());
        let orders = Arc::new(FakeOrders::default());
        let order = Order {
            status: shop_domain::OrderStatus::PaymentPending,
            ..pending_order("MUG", 1, 100)
        };
        let id = order.order_id.clone();
        orders.0.lock().unwrap().insert(id.clone(), order);
        let provider = Arc::new(ThreeDSecure(std::sync::Mutex::new(Authentication::Pending)));
        let ledger = Arc::new(FakeLedger::default());
        let payments = Payments::new(
            &config(&[]).unwrap(),
            Ports {
                ledger: ledger.clone(),
                provider: provider.clone(),
                orders: orders.clone(),
                events: Arc::new(FakeEvents::default()),
                callbacks: callbacks.clone(),
            },
        );
        let deliver = |body: String| {
            payments.handle(message(body), SystemTime::now() + Duration::from_secs(30))
        };
        // WHEN its Authorize arrives
        deliver(format!(
            r#"{{"command":"Authorize","taskToken":"t-auth","orderId":"{id}","amount":100,"currency":"EUR"}}"#
        ))
        .await;
        // THEN the saga hears that the shopper must authenticate
        assert_eq!(
            callbacks.failed.lock().unwrap().as_slice(),
            [("t-auth".to_string(), "PaymentActionRequired".to_string())]
        );
        let stored = orders.0.lock().unwrap()[&id].clone();
        assert_eq!(
            stored.status,
            shop_domain::OrderStatus::PaymentActionRequired
        );
        assert_eq!(
            stored.payment_action.unwrap().client_secret,
            "pi_3ds_secret_x"
        );
        // AND its AwaitAuthentication, and a webhook's settlement, wait while the
        // shopper has not answered
        deliver(format!(
            r#"{{"command":"AwaitAuthentication","taskToken":"t-wait","orderId":"{id}"}}"#
        ))
        .await;
        let settle =
            format!(r#"{{"command":"SettleAuthentication","orderId":"{id}","eventId":"evt_1"}}"#);
        deliver(settle.clone()).await;
        assert!(
            callbacks.succeeded.lock().unwrap().is_empty(),
            "nobody answered yet"
        );
        let record = ledger.get(&id).await.unwrap().unwrap();
        assert_eq!(record.status, LedgerStatus::AwaitingAuthentication);
        assert_eq!(record.authentication_token.as_deref(), Some("t-wait"));
        // WHEN the shopper authenticated and the webhook says so
        *provider.0.lock().unwrap() = Authentication::Held;
        deliver(settle.clone()).await;
        // THEN the waiting step is answered with the authorization, recorded once
        let answered = callbacks.succeeded.lock().unwrap().clone();
        assert_eq!(answered.len(), 1);
        assert_eq!(answered[0].0, "t-wait");
        assert_eq!(answered[0].1["chargeId"], "pi_3ds");
        assert_eq!(
            ledger.get(&id).await.unwrap().unwrap().status,
            LedgerStatus::Authorized
        );
        // A duplicated event answers the same token again (Step Functions refuses a
        // second answer), and changes nothing else.
        deliver(settle).await;
        let answered = callbacks.succeeded.lock().unwrap().clone();
        assert_eq!(answered.len(), 2);
        assert_eq!(answered[1], answered[0]);
        assert_eq!(callbacks.failed.lock().unwrap().len(), 1);
    }
}
