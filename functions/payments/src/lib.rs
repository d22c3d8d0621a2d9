//! Payment commands from the saga: Charge and Refund through a payment provider,
//! recorded in the ledger, answered with a result or a named failure.
#![warn(missing_docs)]

pub mod breaker;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::json;
use shop_aws::ConfigError;
use shop_domain::commands::{Envelope, PaymentCommand, TaskError, answer_task, with_heartbeats};
use shop_domain::payment::{InvalidProviderKey, PaymentService, ProviderKey, SandboxProvider};
use shop_domain::ports::{
    EventPublisher, NoHooks, PaymentLedger, PaymentProvider, PortError, PortHooks, TaskCallbacks,
};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Provider deadline when `PAYMENT_PROVIDER_TIMEOUT_MS` is not set.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a message was not processed (it is redelivered, then dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The body is not a payment command.
    #[error("message is not a payment command: {0}")]
    Malformed(#[from] shop_domain::commands::DecodeError),
    /// Answering the saga failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The payments function with its ports.
pub struct Payments {
    ledger: Arc<dyn PaymentLedger>,
    provider: Arc<dyn PaymentProvider>,
    events: Arc<dyn EventPublisher>,
    callbacks: Arc<dyn TaskCallbacks>,
}

/// Environment variable naming the Secrets Manager secret that holds the provider's
/// API key (a JSON secret with the key in [`PROVIDER_KEY_FIELD`]).
pub const PROVIDER_KEY_SECRET: &str = "PAYMENT_PROVIDER_KEY_SECRET";

/// The field of the secret's JSON that holds the API key.
pub const PROVIDER_KEY_FIELD: &str = "apiKey";

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
}

/// The sandbox provider configured from the environment. Its API key is read from
/// Secrets Manager here, once per cold start, and held in memory: no key in the
/// template, the environment or the code, and no secrets call on a warm invocation.
/// A real provider plugs in by implementing [`PaymentProvider`] and being passed to
/// [`Payments::from_env_with_provider`].
pub async fn sandbox_from_env(
    sdk: &aws_config::SdkConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SandboxProvider, InitError> {
    let deadline = match env("PAYMENT_PROVIDER_TIMEOUT_MS") {
        None => DEFAULT_PROVIDER_TIMEOUT,
        Some(raw) => raw.parse::<u64>().map(Duration::from_millis).map_err(|_| {
            ConfigError("PAYMENT_PROVIDER_TIMEOUT_MS (not a number of milliseconds)".into())
        })?,
    };
    let secrets = aws_sdk_secretsmanager::Client::new(&shop_aws::for_function(sdk, "payments"));
    let secret = shop_aws::required(env, PROVIDER_KEY_SECRET)?;
    let key = shop_aws::secrets::read_json_field(&secrets, &secret, PROVIDER_KEY_FIELD).await?;
    let provider = SandboxProvider::new(deadline, ProviderKey::new(key)?);
    tracing::info!(key = ?provider.key(), "payment provider key loaded");
    Ok(provider)
}

impl Payments {
    /// Wires the function to its ports.
    pub fn new(
        ledger: Arc<dyn PaymentLedger>,
        provider: Arc<dyn PaymentProvider>,
        events: Arc<dyn EventPublisher>,
        callbacks: Arc<dyn TaskCallbacks>,
    ) -> Self {
        Self {
            ledger,
            provider,
            events,
            callbacks,
        }
    }

    /// Builds the AWS adapters and the sandbox provider from the environment.
    pub async fn from_env(
        sdk: &aws_config::SdkConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, InitError> {
        let provider = Arc::new(sandbox_from_env(sdk, env).await?);
        Ok(Self::from_env_with_provider(sdk, env, provider, &NoHooks)?)
    }

    /// Builds the AWS adapters from the environment around a given provider, which
    /// is guarded by a circuit breaker configured from the environment too. Every
    /// port passes through `hooks` (fault injection in the local runner and tests).
    pub fn from_env_with_provider(
        sdk: &aws_config::SdkConfig,
        env: &dyn Fn(&str) -> Option<String>,
        provider: Arc<dyn PaymentProvider>,
        hooks: &dyn PortHooks,
    ) -> Result<Self, ConfigError> {
        let sdk = &shop_aws::for_function(sdk, "payments");
        let provider: Arc<dyn PaymentProvider> = Arc::new(breaker::GuardedProvider::new(
            hooks.provider(provider),
            breaker::config_from_env(env)?,
        ));
        Ok(Self::new(
            Arc::new(shop_aws::ledger::DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(sdk),
                shop_aws::required(env, "PAYMENTS_TABLE")?,
            )),
            provider,
            hooks.events(Arc::new(shop_aws::events::EventBridgePublisher::from_env(
                sdk, env,
            )?)),
            hooks.callbacks(Arc::new(shop_aws::saga::SfnTaskCallbacks::new(
                aws_sdk_sfn::Client::new(sdk),
            ))),
        ))
    }

    /// Processes a batch, reporting only the failed records.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        sqs_batch::process_batch(event, |message| self.execute(message)).await
    }

    async fn execute(&self, message: SqsMessage) -> Result<(), CommandError> {
        let envelope: Envelope<PaymentCommand> =
            Envelope::decode(message.body.as_deref().unwrap_or(""))?;
        let correlation_id = envelope.correlation_id.clone().unwrap_or_default();
        let service = PaymentService {
            ledger: self.ledger.as_ref(),
            provider: self.provider.as_ref(),
            events: self.events.as_ref(),
        };
        let order_id = match &envelope.command {
            PaymentCommand::Charge { order_id, .. } | PaymentCommand::Refund { order_id, .. } => {
                order_id.clone()
            }
        };
        let span =
            tracing::info_span!("command", correlation_id = %correlation_id, order_id = %order_id);
        async {
            let work = async {
                match &envelope.command {
                    PaymentCommand::Charge {
                        order_id,
                        amount,
                        currency,
                        payment_token,
                    } => service
                        .charge(order_id, &correlation_id, *amount, *currency, payment_token)
                        .await
                        .map(|c| json!({ "chargeId": c.charge_id, "amount": c.amount })),
                    PaymentCommand::Refund { order_id, reason } => {
                        tracing::info!(reason = reason.as_deref().unwrap_or(""), "refunding");
                        service
                            .refund(order_id, &correlation_id)
                            .await
                            .map(|status| json!({ "ledgerStatus": status }))
                    }
                }
            };
            let outcome = with_heartbeats(
                self.callbacks.as_ref(),
                envelope.task_token.as_deref(),
                envelope.heartbeat_seconds,
                work,
            )
            .await;
            if let Err(failure) = &outcome {
                tracing::info!(error = failure.error.name(), cause = %failure.cause, "command failed");
                if failure.error == TaskError::PaymentDeclined {
                    observability::emit(observability::Metric::PaymentDeclines, 1.0, &["payments"]);
                }
            }
            answer_task(
                self.callbacks.as_ref(),
                envelope.task_token.as_deref(),
                outcome,
            )
            .await?;
            Ok(())
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_domain::fakes::{FakeCallbacks, FakeEvents, FakeLedger};

    #[tokio::test]
    async fn charge_answers_with_the_capture_and_decline_by_name() {
        let callbacks = Arc::new(FakeCallbacks::default());
        let payments = Payments::new(
            Arc::new(FakeLedger::default()),
            Arc::new(SandboxProvider::new(
                Duration::from_millis(5),
                ProviderKey::new("sandbox-key-0123456789").unwrap(),
            )),
            Arc::new(FakeEvents::default()),
            callbacks.clone(),
        );
        let mut event = SqsEvent::default();
        for (i, token) in ["tok_visa", "tok_decline"].iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(format!(
                r#"{{"command":"Charge","taskToken":"t{i}","orderId":"ord-{i}","amount":100,"currency":"EUR","paymentToken":"{token}"}}"#
            ));
            event.records.push(m);
        }
        let response = payments.handle(event).await;
        assert!(response.batch_item_failures.is_empty());
        let ok = callbacks.succeeded.lock().unwrap();
        assert_eq!(ok[0].0, "t0");
        assert!(
            ok[0].1["chargeId"]
                .as_str()
                .unwrap()
                .starts_with("ch_sandbox_")
        );
        assert_eq!(
            callbacks.failed.lock().unwrap().as_slice(),
            [("t1".to_string(), "PaymentDeclined".to_string())]
        );
    }
}
