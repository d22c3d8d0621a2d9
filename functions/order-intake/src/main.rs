use aws_lambda_events::event::sqs::SqsEvent;

// One thread: a Lambda environment runs one invocation at a time with at most a
// fraction of a vCPU at this memory size, and a multi-thread runtime's workers cost a
// quarter of the init's CPU (BENCHMARKS.md, cold start).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let sdk = shop_aws::load_sdk_config().await;
    let config = order_intake::Config::from_env(shop_aws::Settings::process())?;
    let tracing = shop_aws::otlp::install(&sdk, &config.function_name)?;
    let function = order_intake::Intake::new(&config, order_intake::Ports::aws(&sdk, &config));
    observability::traces::run(tracing, &config.function_name, |event: SqsEvent, _| {
        let function = &function;
        async move { Ok(function.handle(event).await) }
    })
    .await
}
