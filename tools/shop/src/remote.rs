//! Invoking functions through a Lambda invoke URL (such as the one `cargo lambda
//! watch` serves), and the small HTTP client the CLI uses for it and for moto.

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use local_runtime::provision::FunctionSpec;
use local_runtime::{InvokeError, Invoker};
use serde_json::Value;

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

/// Invokes functions by binary name at `{base}/2015-03-31/functions/{name}/invocations`.
pub struct RemoteInvoker {
    base: String,
    client: HttpClient,
}

impl RemoteInvoker {
    /// An invoker for the given invoke URL, e.g. `http://127.0.0.1:9000`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: HttpClient::default(),
        }
    }
}

#[async_trait]
impl Invoker for RemoteInvoker {
    async fn invoke(&self, function: &FunctionSpec, event: Value) -> Result<Value, InvokeError> {
        let name = function.binary.as_deref().unwrap_or(&function.logical_id);
        let url = format!("{}/2015-03-31/functions/{name}/invocations", self.base);
        let failed = |message: String| InvokeError::Failed {
            function: function.logical_id.clone(),
            message,
        };
        let (status, headers, body) = self
            .client
            .send("POST", &url, event.to_string().into_bytes())
            .await
            .map_err(failed)?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if !(200..300).contains(&status) || headers.contains_key("x-amz-function-error") {
            return Err(failed(format!("status {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| InvokeError::Payload {
            function: function.logical_id.clone(),
            message: format!("{e}: {text}"),
        })
    }
}
