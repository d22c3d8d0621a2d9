use aws_lambda_events::apigw::ApiGatewayV2httpRequest;

// One thread: a Lambda environment runs one invocation at a time (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let sdk = shop_aws::load_sdk_config().await;
    let config = stripe_webhook::Config::from_env(shop_aws::Settings::process())?;
    let tracing = shop_aws::otlp::install(&sdk, &config.function_name)?;
    let webhook =
        stripe_webhook::StripeWebhook::new(&config, stripe_webhook::Ports::aws(&sdk, &config))
            .await?;
    observability::traces::run(
        tracing,
        &config.function_name,
        |request: ApiGatewayV2httpRequest, _| {
            let webhook = &webhook;
            async move { Ok(webhook.handle(request).await) }
        },
    )
    .await
}
