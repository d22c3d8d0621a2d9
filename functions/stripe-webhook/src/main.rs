use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{LambdaEvent, service_fn};

// One thread: a Lambda environment runs one invocation at a time (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    observability::init_logging();
    let sdk = shop_aws::load_sdk_config().await;
    let config = stripe_webhook::Config::from_env(shop_aws::Settings::process())?;
    let webhook =
        stripe_webhook::StripeWebhook::new(&config, stripe_webhook::Ports::aws(&sdk, &config))
            .await?;
    let webhook = &webhook;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, std::convert::Infallible>(webhook.handle(event.payload).await)
        },
    ))
    .await
}
