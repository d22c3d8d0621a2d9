use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

// One thread: a Lambda environment runs one invocation at a time with at most a
// fraction of a vCPU at this memory size, and a multi-thread runtime's workers cost a
// quarter of the init's CPU (BENCHMARKS.md, cold start).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    observability::init_logging();
    let sdk = shop_aws::load_sdk_config().await;
    let config = inventory::Config::from_env(shop_aws::Settings::process())?;
    let function = inventory::Inventory::new(&config, inventory::Ports::aws(&sdk, &config));
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, std::convert::Infallible>(function.handle(event.payload).await)
    }))
    .await
}
