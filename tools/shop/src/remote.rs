//! Invoking functions through a Lambda invoke URL (such as the one `cargo lambda
//! watch` serves), and the small HTTP client the CLI uses for it and for moto.

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use local_runtime::provision::FunctionSpec;
use local_runtime::{InvokeError, Invoker};
use serde_json::Value;

/// A plain-HTTP client for loopback services.
#[derive(Clone)]
pub struct LoopbackClient(Client<HttpConnector, Full<Bytes>>);

impl Default for LoopbackClient {
    fn default() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }
}

impl LoopbackClient {
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
        let response = self
            .0
            .request(request)
            .await
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
    client: LoopbackClient,
}

impl RemoteInvoker {
    /// An invoker for the given invoke URL, e.g. `http://127.0.0.1:9000`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: LoopbackClient::default(),
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
