//! AWS SDK adapters for the domain's ports. Clients are built once at cold start from
//! the environment (region, credentials, `AWS_ENDPOINT_URL`), so the same code talks
//! to AWS or to an emulator with no test-only branch.
#![warn(missing_docs)]

pub mod catalog;
pub mod events;
pub mod idempotency_store;
pub mod ledger;
pub mod orders;
pub mod queue;
pub mod saga;
pub mod shipments;
pub mod stock;

use shop_domain::ports::PortError;

/// Loads the shared SDK configuration from the environment, once per process.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// Reads a required setting, naming it when it is missing so a misconfigured
/// deployment fails at cold start with a clear message.
pub fn required(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<String, ConfigError> {
    lookup(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError(name.to_owned()))
}

/// A required environment variable is missing.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct ConfigError(pub String);

/// Wraps an SDK error with the operation it failed in, rendering the whole error
/// chain (service code and message) so logs and task causes are actionable.
pub(crate) fn port_error<E>(operation: &'static str, e: E) -> PortError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string();
    PortError::new(operation, text)
}
