use serde_json::Value;

// One thread, as in every function: one invocation at a time (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let sdk = shop_aws::load_sdk_config().await;
    let config = orphan_sweeper::Config::from_env(shop_aws::Settings::process())?;
    let tracing = shop_aws::otlp::install(&sdk, &config.function_name)?;
    let sweeper =
        orphan_sweeper::OrphanSweeper::new(&config, orphan_sweeper::Ports::aws(&sdk, &config));
    observability::traces::run(tracing, &config.function_name, |_: Value, _| {
        let sweeper = &sweeper;
        async move {
            sweeper
                .handle()
                .await
                .map_err(|e| lambda_runtime::Error::from(observability::ErrorChain(&e).to_string()))
        }
    })
    .await
}
