//! Every function of the template, built as its `main.rs` builds it: its configuration
//! read from the environment the template gives it, its ports built from that
//! configuration by the AWS adapters. A test injects a fault by replacing one port in
//! [`AppPorts`] before the functions are linked; nothing else differs from a
//! deployment.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use local_runtime::InProcess;
use local_runtime::provision::Stack;
use observability::traces::{Tracing, Trigger};
use shop_aws::otlp::{Exporter, TraceConfig};
use shop_aws::{ConfigError, Settings};
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;
use tracing::Dispatch;

/// The configuration of every function, as each reads it at cold start.
pub struct AppConfig {
    /// `OrdersApiFunction`.
    pub orders_api: orders_api::Config,
    /// `OrderIntakeFunction`.
    pub order_intake: order_intake::Config,
    /// `InventoryFunction`.
    pub inventory: inventory::Config,
    /// `PaymentsFunction`.
    pub payments: payments::Config,
    /// `FulfilmentFunction`.
    pub fulfilment: fulfilment::Config,
    /// `OrphanSweeperFunction`.
    pub orphan_sweeper: orphan_sweeper::Config,
    /// `StripeWebhookFunction`.
    pub stripe_webhook: stripe_webhook::Config,
    /// Every function's trace settings, by logical id.
    pub traces: Vec<(&'static str, String, TraceConfig)>,
}

/// The ports of every function. Replace one to put a fault injector in front of it.
#[derive(Clone)]
pub struct AppPorts {
    /// `OrdersApiFunction`.
    pub orders_api: orders_api::Ports,
    /// `OrderIntakeFunction`.
    pub order_intake: order_intake::Ports,
    /// `InventoryFunction`.
    pub inventory: inventory::Ports,
    /// `PaymentsFunction` (its provider sits inside the circuit breaker).
    pub payments: payments::Ports,
    /// `FulfilmentFunction`.
    pub fulfilment: fulfilment::Ports,
    /// `OrphanSweeperFunction`.
    pub orphan_sweeper: orphan_sweeper::Ports,
    /// `StripeWebhookFunction`.
    pub stripe_webhook: stripe_webhook::Ports,
}

/// A function could not be built from its template environment, as its cold start
/// would fail on Lambda.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The template declares no such function.
    #[error("the template has no function {0}")]
    MissingFunction(&'static str),
    /// A function's setting is missing or malformed.
    #[error("{function}: {source}")]
    Config {
        /// The function's logical id.
        function: &'static str,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// The payments function could not start (its provider key).
    #[error("PaymentsFunction: {0}")]
    Payments(#[source] payments::InitError),
    /// The Stripe webhook function could not start (its signing secret).
    #[error("StripeWebhookFunction: {0}")]
    StripeWebhook(#[source] stripe_webhook::InitError),
}

fn read<T>(
    stack: &Stack,
    function: &'static str,
    from_env: impl Fn(Settings<'_>) -> Result<T, ConfigError>,
) -> Result<T, LinkError> {
    let spec = stack
        .functions
        .get(function)
        .ok_or(LinkError::MissingFunction(function))?;
    let lookup = |name: &str| spec.env.get(name).cloned();
    from_env(Settings::new(&lookup)).map_err(|source| LinkError::Config { function, source })
}

/// A function's tracing as its `main.rs` builds it, and its subscriber: each
/// invocation runs inside it, as if the function had the process to itself.
#[derive(Clone)]
struct Traced {
    function: String,
    tracing: Arc<Tracing<Exporter>>,
    dispatch: Dispatch,
}

impl Traced {
    /// `handler`, each invocation inside its span and the function's subscriber, its
    /// spans flushed once it has answered, as `observability::traces::run` does under
    /// lambda_runtime.
    fn wrap<E, R, F, Fut>(
        &self,
        handler: F,
    ) -> impl Fn(E, SystemTime) -> futures::future::BoxFuture<'static, R> + Send + Sync + 'static
    where
        E: Trigger + Send + 'static,
        R: Send + 'static,
        F: Fn(E, SystemTime) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let traced_fn = self.clone();
        let handler = Arc::new(handler);
        move |event: E, deadline| {
            let this = traced_fn.clone();
            let handler = handler.clone();
            Box::pin(async move {
                let id = uuid::Uuid::new_v4().to_string();
                this.tracing
                    .invoke(&this.dispatch, &this.function, &id, event, |e| {
                        handler(e, deadline)
                    })
                    .await
            })
        }
    }
}

impl AppConfig {
    /// Reads every function's configuration from the environment the template gives it.
    pub fn from_stack(stack: &Stack) -> Result<Self, LinkError> {
        let mut traces = Vec::new();
        for function in [
            "OrdersApiFunction",
            "OrderIntakeFunction",
            "InventoryFunction",
            "PaymentsFunction",
            "FulfilmentFunction",
            "OrphanSweeperFunction",
            "StripeWebhookFunction",
        ] {
            let (name, config) = read(stack, function, |env| {
                Ok((env.function_name()?, TraceConfig::from_env(&env)?))
            })?;
            traces.push((function, name, config));
        }
        Ok(Self {
            traces,
            orders_api: read(stack, "OrdersApiFunction", orders_api::Config::from_env)?,
            order_intake: read(stack, "OrderIntakeFunction", order_intake::Config::from_env)?,
            inventory: read(stack, "InventoryFunction", inventory::Config::from_env)?,
            payments: read(stack, "PaymentsFunction", payments::Config::from_env)?,
            fulfilment: read(stack, "FulfilmentFunction", fulfilment::Config::from_env)?,
            orphan_sweeper: read(
                stack,
                "OrphanSweeperFunction",
                orphan_sweeper::Config::from_env,
            )?,
            stripe_webhook: read(
                stack,
                "StripeWebhookFunction",
                stripe_webhook::Config::from_env,
            )?,
        })
    }

    /// The AWS ports of every function, and the payment provider behind payments
    /// (whose captures the tests read when it is the sandbox).
    pub async fn aws_ports(
        &self,
        sdk: &aws_config::SdkConfig,
    ) -> Result<(AppPorts, payments::Provider), LinkError> {
        let provider = payments::provider(sdk, &self.payments)
            .await
            .map_err(LinkError::Payments)?;
        let ports = AppPorts {
            orders_api: orders_api::Ports::aws(sdk, &self.orders_api),
            order_intake: order_intake::Ports::aws(sdk, &self.order_intake),
            inventory: inventory::Ports::aws(sdk, &self.inventory),
            payments: payments::Ports::aws(sdk, &self.payments, provider.port()),
            fulfilment: fulfilment::Ports::aws(sdk, &self.fulfilment),
            orphan_sweeper: orphan_sweeper::Ports::aws(sdk, &self.orphan_sweeper),
            stripe_webhook: stripe_webhook::Ports::aws(sdk, &self.stripe_webhook),
        };
        Ok((ports, provider))
    }

    /// Builds every function from its ports, as each cold start does (the Stripe
    /// webhook reads its signing secret), and registers its handler under its logical
    /// id.
    pub async fn link(
        &self,
        sdk: &aws_config::SdkConfig,
        ports: AppPorts,
    ) -> Result<InProcess, LinkError> {
        let traced: std::collections::HashMap<&str, Traced> = self
            .traces
            .iter()
            .map(|(id, name, config)| {
                let tracing = Arc::new(shop_aws::otlp::tracing(sdk, name, config));
                let dispatch = tracing.dispatch(tracing_subscriber::fmt::TestWriter::new());
                let traced = Traced {
                    function: name.clone(),
                    tracing,
                    dispatch,
                };
                (*id, traced)
            })
            .collect();
        let traced = |id: &str| {
            traced
                .get(id)
                .cloned()
                .ok_or(LinkError::MissingFunction("traces"))
        };
        let mut functions = InProcess::new();
        let api = Arc::new(orders_api::OrdersApi::new(
            &self.orders_api,
            ports.orders_api,
        ));
        functions.register(
            "OrdersApiFunction",
            traced("OrdersApiFunction")?.wrap(move |request: ApiGatewayV2httpRequest, deadline| {
                let api = api.clone();
                async move { api.handle(request, deadline).await }
            }),
        );
        let intake = Arc::new(order_intake::Intake::new(
            &self.order_intake,
            ports.order_intake,
        ));
        functions.register(
            "OrderIntakeFunction",
            traced("OrderIntakeFunction")?.wrap(move |event: SqsEvent, _| {
                let intake = intake.clone();
                async move { intake.handle(event).await }
            }),
        );
        let inventory = Arc::new(inventory::Inventory::new(&self.inventory, ports.inventory));
        functions.register(
            "InventoryFunction",
            traced("InventoryFunction")?.wrap(move |event: SqsEvent, _| {
                let inventory = inventory.clone();
                async move { inventory.handle(event).await }
            }),
        );
        let payments = Arc::new(payments::Payments::new(&self.payments, ports.payments));
        functions.register(
            "PaymentsFunction",
            traced("PaymentsFunction")?.wrap(move |event: SqsEvent, deadline| {
                let payments = payments.clone();
                async move { payments.handle(event, deadline).await }
            }),
        );
        let fulfilment = Arc::new(fulfilment::Fulfilment::new(
            &self.fulfilment,
            ports.fulfilment,
        ));
        functions.register(
            "FulfilmentFunction",
            traced("FulfilmentFunction")?.wrap(move |event: SqsEvent, _| {
                let fulfilment = fulfilment.clone();
                async move { fulfilment.handle(event).await }
            }),
        );
        let sweeper = Arc::new(orphan_sweeper::OrphanSweeper::new(
            &self.orphan_sweeper,
            ports.orphan_sweeper,
        ));
        functions.register_fallible(
            "OrphanSweeperFunction",
            traced("OrphanSweeperFunction")?.wrap(move |_: serde_json::Value, _| {
                let sweeper = sweeper.clone();
                async move {
                    sweeper
                        .handle()
                        .await
                        .map_err(|e| observability::ErrorChain(&e).to_string())
                }
            }),
        );
        let webhook = Arc::new(
            stripe_webhook::StripeWebhook::new(&self.stripe_webhook, ports.stripe_webhook)
                .await
                .map_err(LinkError::StripeWebhook)?,
        );
        functions.register(
            "StripeWebhookFunction",
            traced("StripeWebhookFunction")?.wrap(move |request: ApiGatewayV2httpRequest, _| {
                let webhook = webhook.clone();
                async move { webhook.handle(request).await }
            }),
        );
        Ok(functions)
    }
}
