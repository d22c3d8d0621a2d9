//! AWS SDK adapters for the domain's ports. Clients are built once at cold start from
//! the environment (region, credentials, `AWS_ENDPOINT_URL`), so the same code talks
//! to AWS or to an emulator with no test-only branch.
#![warn(missing_docs)]

pub mod catalog;
pub mod events;
pub mod idempotency_store;
pub mod ledger;
pub mod orders;
pub mod otlp;
pub mod queue;
pub mod saga;
pub mod secrets;
pub mod settings;
pub mod shipments;
pub mod stock;

pub use settings::{ConfigError, Settings};
use shop_domain::ports::PortError;
use std::time::{Duration, SystemTime};

/// The invocation's deadline as the function may rely on it. Lambda's
/// (`Context::deadline`) is always ahead when an invocation starts; `cargo lambda
/// watch` sends the constant `Lambda-Runtime-Deadline-Ms: 600000`, which is ten
/// minutes after the epoch, so every bound taken from it has passed before the first
/// call. A deadline already past is read as `timeout` (the function's, from the
/// template) from now.
pub fn invocation_deadline(deadline: SystemTime, timeout: Duration) -> SystemTime {
    let now = SystemTime::now();
    if deadline > now {
        deadline
    } else {
        now + timeout
    }
}

/// Loads the shared SDK configuration from the environment, once per process.
///
/// The SDK's HTTPS client trusts the Amazon roots only. The default client loads the
/// system root store at cold start (on the benchmark machine: a 200 KB bundle, then
/// every file in `/etc/ssl/certs`), time a function spends before its first event.
/// Its TLS runs on rustls with ring rather than the SDK default's aws-lc, which is
/// about a megabyte more of every binary (BENCHMARKS.md, size).
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls;
    let trust = AMAZON_ROOTS
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|pem| pem.contains("BEGIN CERTIFICATE"))
        .fold(tls::TrustStore::empty(), |store, pem| {
            store.with_pem_certificate(pem.trim().as_bytes())
        });
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    let https = match tls::TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        Err(_) => builder.build_https(),
    };
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https)
        .load()
        .await
}

/// The SDK configuration of one function: the same settings, with the function's name
/// as the SDK's app id. Every request then carries `app/<name>` in its user agent, so
/// CloudTrail (and the emulator's call log the IAM review reads) tell which function
/// made a call even when several run in one process.
pub fn for_function(sdk: &aws_config::SdkConfig, name: &'static str) -> aws_config::SdkConfig {
    match aws_config::AppName::new(name) {
        Ok(app) => sdk.to_builder().app_name(app).build(),
        Err(_) => sdk.clone(),
    }
}

/// `message` with the current span's W3C `traceparent` beside its correlation id, so
/// its consumer's span continues this trace. A producer's adapter adds it as it sends,
/// so the domain never handles trace contexts; one the message already carries stays.
pub(crate) fn with_traceparent(mut message: serde_json::Value) -> serde_json::Value {
    if let Some(fields) = message.as_object_mut() {
        fields
            .entry("traceparent")
            .or_insert_with(|| observability::traces::traceparent().into());
    }
    message
}

/// The root certificates every AWS service endpoint chains to: Amazon Root CA 1–4 and
/// Starfield Services Root CA G2 (the cross-signer of the Amazon roots).
const AMAZON_ROOTS: &str = include_str!("amazon-roots.pem");

/// Wraps an SDK error with the operation it failed in. The SDK error stays the typed
/// source, so its chain (dispatch failure, service code and message) reaches the logs,
/// the task failure's cause and the operator through `observability::ErrorChain`.
pub(crate) fn port_error<E>(operation: &'static str, e: E) -> PortError
where
    E: std::error::Error + Send + Sync + 'static,
{
    PortError::new(operation, e)
}

#[cfg(test)]
mod tests {
    use super::{AMAZON_ROOTS, invocation_deadline};
    use base64::Engine;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_deadline_already_past_is_the_functions_timeout_from_now() {
        let ahead = SystemTime::now() + Duration::from_secs(5);
        assert_eq!(invocation_deadline(ahead, Duration::from_secs(30)), ahead);
        // cargo lambda watch's constant: 600,000 ms after the epoch.
        let cargo_lambda = SystemTime::UNIX_EPOCH + Duration::from_millis(600_000);
        let read = invocation_deadline(cargo_lambda, Duration::from_secs(30));
        let left = read.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
    }

    #[test]
    fn the_embedded_trust_store_is_five_der_certificates() {
        let ders: Vec<Vec<u8>> = AMAZON_ROOTS
            .split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body: String = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap()
            })
            .collect();
        assert_eq!(ders.len(), 5);
        for der in &ders {
            // An X.509 certificate is a DER SEQUENCE with a two-byte long-form length.
            assert_eq!(&der[..2], &[0x30, 0x82]);
            assert_eq!(
                usize::from(der[2]) << 8 | usize::from(der[3]),
                der.len() - 4
            );
        }
        for name in [
            "Amazon Root CA 1",
            "Amazon Root CA 4",
            "Starfield Services Root",
        ] {
            assert!(
                ders.iter()
                    .any(|d| d.windows(name.len()).any(|w| w == name.as_bytes())),
                "{name} missing"
            );
        }
    }
}
