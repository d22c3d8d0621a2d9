//! Every function of the template linked into this process, built from the same
//! environment variables Lambda would give it, with optional port wrappers so tests
//! inject faults through the ports rather than through branches in handlers.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use local_runtime::InProcess;
use local_runtime::provision::Stack;
use shop_aws::ConfigError;
use shop_domain::payment::SandboxProvider;
use shop_domain::ports::{
    EventPublisher, OrderQueue, PaymentProvider, PortHooks, SagaStarter, StockStore, TaskCallbacks,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Wraps one port: receives the real adapter and returns what the function will use,
/// so a test can put a fault injector in front of it.
pub type PortWrapper<T> = Arc<dyn Fn(Arc<T>) -> Arc<T> + Send + Sync>;

/// Port wrappers applied when linking; unset ones leave the port as built.
#[derive(Default, Clone)]
pub struct PortWrappers {
    /// Around the orders API's intake queue.
    pub queue: Option<PortWrapper<dyn OrderQueue>>,
    /// Around the payment provider.
    pub provider: Option<PortWrapper<dyn PaymentProvider>>,
    /// Around the stock store.
    pub stock: Option<PortWrapper<dyn StockStore>>,
    /// Around the saga starter.
    pub saga: Option<PortWrapper<dyn SagaStarter>>,
    /// Around the task callbacks of inventory and payments (answers and heartbeats).
    pub callbacks: Option<PortWrapper<dyn TaskCallbacks>>,
    /// Around the event publisher of every function that publishes.
    pub events: Option<PortWrapper<dyn EventPublisher>>,
}

/// Applies an optional port wrapper.
fn wrapped<T: ?Sized>(wrapper: &Option<PortWrapper<T>>, inner: Arc<T>) -> Arc<T> {
    match wrapper {
        Some(wrap) => wrap(inner),
        None => inner,
    }
}

impl PortHooks for PortWrappers {
    fn queue(&self, port: Arc<dyn OrderQueue>) -> Arc<dyn OrderQueue> {
        wrapped(&self.queue, port)
    }
    fn saga(&self, port: Arc<dyn SagaStarter>) -> Arc<dyn SagaStarter> {
        wrapped(&self.saga, port)
    }
    fn stock(&self, port: Arc<dyn StockStore>) -> Arc<dyn StockStore> {
        wrapped(&self.stock, port)
    }
    fn provider(&self, port: Arc<dyn PaymentProvider>) -> Arc<dyn PaymentProvider> {
        wrapped(&self.provider, port)
    }
    fn callbacks(&self, port: Arc<dyn TaskCallbacks>) -> Arc<dyn TaskCallbacks> {
        wrapped(&self.callbacks, port)
    }
    fn events(&self, port: Arc<dyn EventPublisher>) -> Arc<dyn EventPublisher> {
        wrapped(&self.events, port)
    }
}

/// The linked functions and the sandbox provider behind payments, whose state the
/// tests read to check captures.
pub struct Linked {
    /// Handlers by logical id.
    pub functions: InProcess,
    /// The payment provider's sandbox.
    pub sandbox: Arc<SandboxProvider>,
}

fn env_of(stack: &Stack, logical_id: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    stack
        .functions
        .get(logical_id)
        .map(|f| f.env.clone())
        .ok_or_else(|| ConfigError(format!("template has no function {logical_id}")))
}

/// A function could not be built from its template environment, as its cold start
/// would fail on Lambda.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A function's environment lacks a variable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The payments function could not start (its provider key).
    #[error(transparent)]
    Payments(#[from] payments::InitError),
    /// The orphan sweeper's settings are wrong.
    #[error(transparent)]
    Sweeper(#[from] orphan_sweeper::InitError),
}

/// Builds every function from its template environment.
pub async fn link(
    sdk: &aws_config::SdkConfig,
    stack: &Stack,
    wrappers: &dyn PortHooks,
) -> Result<Linked, LinkError> {
    let mut functions = InProcess::new();

    let env = env_of(stack, "OrdersApiFunction")?;
    let api = Arc::new(orders_api::OrdersApi::from_env_with_hooks(
        sdk,
        &|k| env.get(k).cloned(),
        wrappers,
    )?);
    functions.register(
        "OrdersApiFunction",
        move |request: ApiGatewayV2httpRequest| {
            let api = api.clone();
            async move { api.handle(request).await }
        },
    );

    let env = env_of(stack, "OrderIntakeFunction")?;
    let intake = Arc::new(order_intake::Intake::from_env_with_hooks(
        sdk,
        &|k| env.get(k).cloned(),
        wrappers,
    )?);
    functions.register("OrderIntakeFunction", move |event: SqsEvent| {
        let intake = intake.clone();
        async move { intake.handle(event).await }
    });

    let env = env_of(stack, "InventoryFunction")?;
    let inventory = Arc::new(inventory::Inventory::from_env_with_hooks(
        sdk,
        &|k| env.get(k).cloned(),
        wrappers,
    )?);
    functions.register("InventoryFunction", move |event: SqsEvent| {
        let inventory = inventory.clone();
        async move { inventory.handle(event).await }
    });

    let env = env_of(stack, "PaymentsFunction")?;
    let sandbox = Arc::new(payments::sandbox_from_env(sdk, &|k| env.get(k).cloned()).await?);
    let payments = Arc::new(payments::Payments::from_env_with_provider(
        sdk,
        &|k| env.get(k).cloned(),
        sandbox.clone(),
        wrappers,
    )?);
    functions.register("PaymentsFunction", move |event: SqsEvent| {
        let payments = payments.clone();
        async move { payments.handle(event).await }
    });

    let env = env_of(stack, "FulfilmentFunction")?;
    let fulfilment = Arc::new(fulfilment::Fulfilment::from_env(sdk, &|k| {
        env.get(k).cloned()
    })?);
    functions.register("FulfilmentFunction", move |event: SqsEvent| {
        let fulfilment = fulfilment.clone();
        async move { fulfilment.handle(event).await }
    });

    let env = env_of(stack, "OrphanSweeperFunction")?;
    let sweeper = Arc::new(orphan_sweeper::OrphanSweeper::from_env(sdk, &|k| {
        env.get(k).cloned()
    })?);
    functions.register_fallible("OrphanSweeperFunction", move |_: serde_json::Value| {
        let sweeper = sweeper.clone();
        async move { sweeper.handle().await }
    });

    Ok(Linked { functions, sandbox })
}
