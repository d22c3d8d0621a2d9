//! The small JSON-over-HTTP client of the local stack and the CLI: moto's control
//! API, a Lambda invoke URL, the deployed API in `shop smoke`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A JSON-over-HTTP client: plain HTTP for loopback services (moto, an invoke URL,
/// `shop local`), HTTPS with the system's root certificates for a deployed API
/// (`shop smoke --stack`).
#[derive(Clone)]
pub enum HttpClient {
    /// HTTP and HTTPS.
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// HTTP only: the system has no root certificates to verify a server with.
    Plain(Client<HttpConnector, Full<Bytes>>),
}

impl Default for HttpClient {
    fn default() -> Self {
        let builder = Client::builder(TokioExecutor::new());
        match HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        {
            Ok(tls) => Self::Tls(builder.build(tls.https_or_http().enable_http1().build())),
            Err(e) => {
                tracing::warn!(error = %e, "no root certificates: HTTPS is unavailable");
                Self::Plain(builder.build_http())
            }
        }
    }
}

impl HttpClient {
    /// Sends a JSON request and returns status, headers and body.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        body: Vec<u8>,
    ) -> Result<(u16, http::HeaderMap, Vec<u8>), String> {
        self.send_with_headers(method, url, body, &[]).await
    }

    /// Sends a JSON request with extra headers.
    pub async fn send_with_headers(
        &self,
        method: &str,
        url: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, http::HeaderMap, Vec<u8>), String> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = match self {
            Self::Tls(client) => client.request(request).await,
            Self::Plain(client) => client.request(request).await,
        }
        .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, headers, body.to_vec()))
    }
}
