//! Secrets Manager, read once at cold start: a function keeps the value in memory for
//! its lifetime, so a warm invocation never pays a secrets call.

use aws_sdk_secretsmanager::Client;

/// A secret could not be turned into the value a function needs. Returned at cold
/// start, so the function fails its init visibly instead of its first invocation.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager refused or failed the read.
    #[error("secret {secret} could not be read: {cause}")]
    Unreadable {
        /// The secret's ARN or name.
        secret: String,
        /// The SDK error, rendered with its chain.
        cause: String,
    },
    /// The secret holds binary data, or its JSON has no such string field.
    #[error("secret {secret} has no string field {field}")]
    MissingField {
        /// The secret's ARN or name.
        secret: String,
        /// The field looked for.
        field: String,
    },
}

/// Reads one string field of a JSON secret (`{"apiKey": "..."}`, the shape the
/// template's generated secret and a rotation function both write).
pub async fn read_json_field(
    client: &Client,
    secret: &str,
    field: &str,
) -> Result<String, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| SecretError::Unreadable {
            secret: secret.to_owned(),
            cause: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    out.secret_string()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|json| json.get(field)?.as_str().map(str::to_owned))
        .ok_or_else(|| SecretError::MissingField {
            secret: secret.to_owned(),
            field: field.to_owned(),
        })
}
