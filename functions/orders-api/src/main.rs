use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{LambdaEvent, service_fn};

// One thread: a Lambda environment runs one invocation at a time with at most a
// fraction of a vCPU at this memory size, and a multi-thread runtime's workers cost a
// quarter of the init's CPU (BENCHMARKS.md, cold start).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    observability::init_logging();
    let sdk = shop_aws::load_sdk_config().await;
    let config = orders_api::Config::from_env(shop_aws::Settings::process())?;
    let api = orders_api::OrdersApi::new(&config, orders_api::Ports::aws(&sdk, &config));
    let api = &api;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, std::convert::Infallible>(
                api.handle(
                    event.payload,
                    shop_aws::invocation_deadline(event.context.deadline(), orders_api::TIMEOUT),
                )
                .await,
            )
        },
    ))
    .await
}
