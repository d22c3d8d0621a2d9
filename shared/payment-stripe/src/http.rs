//! Stripe's wire: form-encoded requests over HTTPS (or HTTP to a local emulator),
//! authenticated with the secret key, the API version pinned, each bounded by a
//! timeout.

use crate::{API_VERSION, Answer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shop_domain::payment::{ProviderError, ProviderKey};
use std::time::Duration;

/// An HTTP client for Stripe's API at one base URL.
pub struct StripeHttp {
    base: String,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl StripeHttp {
    /// A client of `base` (`https://api.stripe.com`, or a local emulator's `http://`
    /// URL) whose calls each end within `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, rustls::Error> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends one request. A timeout is `Timeout` (the outcome is unknown); a failed
    /// connection is `Transient`; any answer, whatever its status, is returned.
    pub(crate) async fn send(
        &self,
        key: &ProviderKey,
        method: http::Method,
        path: &str,
        idempotency_key: Option<&str>,
        form: &[(&str, String)],
    ) -> Result<Answer, ProviderError> {
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| ProviderError::Refused(format!("cannot encode the request: {e}")))?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", key.expose()))
            .header("stripe-version", API_VERSION)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(idempotency_key) = idempotency_key {
            builder = builder.header("idempotency-key", idempotency_key);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ProviderError::Refused(format!("cannot build the request: {e}")))?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ProviderError::Transient(format!("Stripe unreachable: {e}")))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ProviderError::Transient(format!("Stripe's answer broke off: {e}")))?
                .to_bytes()
                .to_vec();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(ProviderError::Timeout(self.timeout)))
    }
}
