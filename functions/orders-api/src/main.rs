use aws_lambda_events::apigw::ApiGatewayV2httpRequest;

// One thread: a Lambda environment runs one invocation at a time with at most a
// fraction of a vCPU at this memory size, and a multi-thread runtime's workers cost a
// quarter of the init's CPU (BENCHMARKS.md, cold start).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let sdk = shop_aws::load_sdk_config().await;
    let config = orders_api::Config::from_env(shop_aws::Settings::process())?;
    let tracing = shop_aws::otlp::install(&sdk, &config.function_name)?;
    let api = orders_api::OrdersApi::new(&config, orders_api::Ports::aws(&sdk, &config));
    observability::traces::run(
        tracing,
        &config.function_name,
        |request: ApiGatewayV2httpRequest, context: lambda_runtime::Context| {
            let api = &api;
            let deadline = shop_aws::invocation_deadline(context.deadline(), orders_api::TIMEOUT);
            async move { Ok(api.handle(request, deadline).await) }
        },
    )
    .await
}
