use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

// One thread, as in every function: one invocation at a time (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    observability::init_logging();
    let sdk = shop_aws::load_sdk_config().await;
    let config = orphan_sweeper::Config::from_env(shop_aws::Settings::process())?;
    let sweeper =
        orphan_sweeper::OrphanSweeper::new(&config, orphan_sweeper::Ports::aws(&sdk, &config));
    let sweeper = &sweeper;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        sweeper
            .handle()
            .await
            .map_err(|e| lambda_runtime::Error::from(observability::ErrorChain(&e).to_string()))
    }))
    .await
}
