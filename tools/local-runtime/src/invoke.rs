//! Invoking a function with a JSON event, the way Lambda does: in process, or
//! through a Lambda invoke URL.

use crate::http_client::HttpClient;
use crate::provision::FunctionSpec;
use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::SystemTime;

/// An invocation failed as Lambda would report it (the function errored or crashed).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No handler is registered for the function.
    #[error("no handler registered for function {0}")]
    Unknown(String),
    /// The event did not deserialize or the answer did not serialize.
    #[error("function {function}: payload error: {message}")]
    Payload {
        /// Logical id.
        function: String,
        /// Cause.
        message: String,
    },
    /// The function panicked or returned an error.
    #[error("function {function} failed: {message}")]
    Failed {
        /// Logical id.
        function: String,
        /// Cause.
        message: String,
    },
}

/// Runs a function on an event.
#[async_trait]
pub trait Invoker: Send + Sync {
    /// Invokes `function` with `event` and returns its answer.
    async fn invoke(&self, function: &FunctionSpec, event: Value) -> Result<Value, InvokeError>;
}

/// A type-erased in-process handler: the event and the invocation's deadline.
pub type FunctionHandler =
    Arc<dyn Fn(Value, SystemTime) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// Functions linked into this process, by logical id.
#[derive(Default, Clone)]
pub struct InProcess {
    handlers: HashMap<String, FunctionHandler>,
}

impl InProcess {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the handler of a function: it receives the typed event and the
    /// invocation's deadline (Lambda's `Context::deadline`: now plus the function's
    /// `Timeout`) and returns the typed answer, exactly as under `lambda_runtime`.
    pub fn register<E, R, F, Fut>(&mut self, logical_id: &str, handler: F)
    where
        E: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(E, SystemTime) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.register_fallible(logical_id, move |event: E, deadline| {
            let answer = handler(event, deadline);
            async move { Ok::<R, std::convert::Infallible>(answer.await) }
        });
    }

    /// Registers a handler that can fail, as a Rust handler under `lambda_runtime`
    /// returning `Err`: the invocation then fails with the error's message.
    pub fn register_fallible<E, R, X, F, Fut>(&mut self, logical_id: &str, handler: F)
    where
        E: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        X: std::fmt::Display + 'static,
        F: Fn(E, SystemTime) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, X>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: FunctionHandler = Arc::new(move |event: Value, deadline| {
            let handler = handler.clone();
            async move {
                let event: E = serde_json::from_value(event).map_err(|e| format!("event: {e}"))?;
                let answer = handler(event, deadline).await.map_err(|e| e.to_string())?;
                serde_json::to_value(answer).map_err(|e| format!("answer: {e}"))
            }
            .boxed()
        });
        self.handlers.insert(logical_id.to_owned(), erased);
    }
}

#[async_trait]
impl Invoker for InProcess {
    async fn invoke(&self, function: &FunctionSpec, event: Value) -> Result<Value, InvokeError> {
        let handler = self
            .handlers
            .get(&function.logical_id)
            .ok_or_else(|| InvokeError::Unknown(function.logical_id.clone()))?;
        // The deadline Lambda would give; the local runtime does not stop a handler at
        // it (an emulated worker that hangs keeps hanging, as the chaos run needs).
        let deadline = SystemTime::now() + function.timeout;
        match AssertUnwindSafe(handler(event, deadline))
            .catch_unwind()
            .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(message)) => Err(InvokeError::Payload {
                function: function.logical_id.clone(),
                message,
            }),
            Err(_) => Err(InvokeError::Failed {
                function: function.logical_id.clone(),
                message: "handler panicked".into(),
            }),
        }
    }
}

/// Invokes functions through a Lambda invoke URL (such as the one `cargo lambda watch`
/// serves), by binary name at `{base}/2015-03-31/functions/{name}/invocations`.
pub struct InvokeUrl {
    base: String,
    client: HttpClient,
}

impl InvokeUrl {
    /// An invoker for the given invoke URL, e.g. `http://127.0.0.1:9000`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: HttpClient::default(),
        }
    }
}

#[async_trait]
impl Invoker for InvokeUrl {
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
