//! Every function of the template linked into this process, built from the same
//! environment variables Lambda would give it, with optional port wrappers so tests
//! inject faults through the ports rather than through branches in handlers.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use local_runtime::InProcess;
use local_runtime::provision::Stack;
use shop_aws::ConfigError;
use shop_domain::payment::SandboxProvider;
use shop_domain::ports::{PaymentProvider, SagaStarter, StockStore, TaskCallbacks};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Wraps one port: receives the real adapter and returns what the function will use,
/// so a test can put a fault injector in front of it.
pub type PortWrapper<T> = Arc<dyn Fn(Arc<T>) -> Arc<T> + Send + Sync>;

/// Wraps the payment provider the payments function uses.
pub type ProviderWrapper = PortWrapper<dyn PaymentProvider>;

/// Wraps the stock store the inventory function uses.
pub type StockWrapper = PortWrapper<dyn StockStore>;

/// Wraps the saga starter the order intake function uses.
pub type SagaWrapper = PortWrapper<dyn SagaStarter>;

/// Wraps the task callbacks the payments function answers (and beats) with.
pub type CallbacksWrapper = PortWrapper<dyn TaskCallbacks>;

/// Port wrappers applied when linking.
#[derive(Default, Clone)]
pub struct PortWrappers {
    /// Around the payment provider.
    pub provider: Option<ProviderWrapper>,
    /// Around the stock store.
    pub stock: Option<StockWrapper>,
    /// Around the saga starter.
    pub saga: Option<SagaWrapper>,
    /// Around the payments function's task callbacks.
    pub payment_callbacks: Option<CallbacksWrapper>,
}

/// The linked functions and the sandbox provider behind payments, whose state the
/// tests read to check captures.
pub struct Linked {
    /// Handlers by logical id.
    pub functions: InProcess,
    /// The payment provider's sandbox.
    pub sandbox: Arc<SandboxProvider>,
}

/// Applies an optional port wrapper.
fn wrapped<T: ?Sized>(wrapper: &Option<PortWrapper<T>>, inner: Arc<T>) -> Arc<T> {
    match wrapper {
        Some(wrap) => wrap(inner),
        None => inner,
    }
}

fn env_of(stack: &Stack, logical_id: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    stack
        .functions
        .get(logical_id)
        .map(|f| f.env.clone())
        .ok_or_else(|| ConfigError(format!("template has no function {logical_id}")))
}

/// Builds every function from its template environment.
pub fn link(
    sdk: &aws_config::SdkConfig,
    stack: &Stack,
    wrappers: &PortWrappers,
) -> Result<Linked, ConfigError> {
    let mut functions = InProcess::new();

    let env = env_of(stack, "OrdersApiFunction")?;
    let api = Arc::new(orders_api::OrdersApi::from_env(sdk, &|k| {
        env.get(k).cloned()
    })?);
    functions.register(
        "OrdersApiFunction",
        move |request: ApiGatewayV2httpRequest| {
            let api = api.clone();
            async move { api.handle(request).await }
        },
    );

    let env = env_of(stack, "OrderIntakeFunction")?;
    let intake = Arc::new(order_intake::Intake::from_env_wrapping_saga(
        sdk,
        &|k| env.get(k).cloned(),
        |saga| wrapped(&wrappers.saga, saga),
    )?);
    functions.register("OrderIntakeFunction", move |event: SqsEvent| {
        let intake = intake.clone();
        async move { intake.handle(event).await }
    });

    let env = env_of(stack, "InventoryFunction")?;
    let inventory = Arc::new(inventory::Inventory::from_env_wrapping_stock(
        sdk,
        &|k| env.get(k).cloned(),
        |stock| wrapped(&wrappers.stock, stock),
    )?);
    functions.register("InventoryFunction", move |event: SqsEvent| {
        let inventory = inventory.clone();
        async move { inventory.handle(event).await }
    });

    let env = env_of(stack, "PaymentsFunction")?;
    let sandbox = Arc::new(payments::sandbox_from_env(&|k| env.get(k).cloned())?);
    let provider = wrapped(
        &wrappers.provider,
        sandbox.clone() as Arc<dyn PaymentProvider>,
    );
    let payments = Arc::new(payments::Payments::from_env_wrapping(
        sdk,
        &|k| env.get(k).cloned(),
        provider,
        |callbacks| wrapped(&wrappers.payment_callbacks, callbacks),
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

    Ok(Linked { functions, sandbox })
}
