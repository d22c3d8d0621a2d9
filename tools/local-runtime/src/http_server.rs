//! The loopback HTTP/1.1 servers of a local stack (its API, its token issuer): accept
//! connections until shutdown, answering each request with `handler`.

use crate::http_api::HttpApi;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `listener` until `shutdown` turns true.
pub async fn run<H, F>(listener: TcpListener, mut shutdown: watch::Receiver<bool>, handler: H)
where
    H: Fn(hyper::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let answer = handler(request);
                        async move { Ok::<_, Infallible>(answer.await) }
                    });
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %e, "connection closed");
                    }
                });
            }
        }
    }
}

/// API Gateway's own payload limit.
const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

fn plain(status: u16, body: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    api: Arc<HttpApi>,
) -> hyper::Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let body = match Limited::new(request.into_body(), MAX_PAYLOAD)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return plain(413, "{\"message\":\"Request Entity Too Large\"}"),
    };
    let body = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    match api.serve(&method, &path, &headers, body).await {
        Ok(r) => {
            let mut response = plain(r.status, &r.body);
            for (k, v) in r.headers {
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(&v),
                ) {
                    response.headers_mut().append(k, v);
                }
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "invocation failed");
            plain(500, "{\"message\":\"Internal Server Error\"}")
        }
    }
}

/// Serves the HTTP API on `listener` until `shutdown` turns true: each request becomes
/// an API Gateway HTTP API (v2) event for the function its route in the template names.
pub async fn serve_api(listener: TcpListener, api: Arc<HttpApi>, shutdown: watch::Receiver<bool>) {
    run(listener, shutdown, move |request| {
        answer(request, api.clone())
    })
    .await
}
