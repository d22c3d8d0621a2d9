use aws_lambda_events::event::sqs::SqsEvent;

// One thread: a Lambda environment runs one invocation at a time with at most a
// fraction of a vCPU at this memory size, and a multi-thread runtime's workers cost a
// quarter of the init's CPU (BENCHMARKS.md, cold start).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let sdk = shop_aws::load_sdk_config().await;
    let config = payments::Config::from_env(shop_aws::Settings::process())?;
    let tracing = shop_aws::otlp::install(&sdk, &config.function_name)?;
    let provider = payments::provider(&sdk, &config).await?;
    let function = payments::Payments::new(
        &config,
        payments::Ports::aws(&sdk, &config, provider.port()),
    );
    observability::traces::run(
        tracing,
        &config.function_name,
        |event: SqsEvent, context: lambda_runtime::Context| {
            let function = &function;
            let deadline = shop_aws::invocation_deadline(context.deadline(), payments::TIMEOUT);
            async move { Ok(function.handle(event, deadline).await) }
        },
    )
    .await
}
