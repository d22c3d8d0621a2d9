//! Where a function's spans go: OTLP over HTTP (JSON), to CloudWatch's OTLP traces
//! endpoint on AWS (`https://xray.<region>.amazonaws.com/v1/traces`, which X-Ray and
//! Transaction Search read), signed with SigV4 as the function's role, or to `shop
//! local`'s receiver, unsigned.
//!
//! Exported from the function itself rather than through a collector extension: an
//! extension is a second process in every execution environment, with its own init
//! (tens of milliseconds of cold start, tens of megabytes of memory), for a request a
//! function can sign with the credentials it already holds.

use crate::settings::{ConfigError, Settings};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use observability::traces::Tracing;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use std::time::{Duration, SystemTime};

/// How long one export may take: a slow endpoint delays the next invocation's start,
/// never the caller's answer.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// A function's trace settings, from the template's environment.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// `TRACES_ENDPOINT`: the OTLP/HTTP traces URL; empty turns tracing off.
    pub endpoint: String,
    /// `TRACES_SAMPLE_RATIO`: the share of orders traced, 0 to 1 (the template's
    /// `TraceSampleRatio`).
    pub sample_ratio: f64,
    /// `TRACES_SIGNED`: sign exports with SigV4 (true on AWS; `shop local`'s
    /// receiver takes them unsigned).
    pub signed: bool,
}

impl TraceConfig {
    /// Reads the settings; absent ones mean tracing off.
    pub fn from_env(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let endpoint = settings.parsed("TRACES_ENDPOINT", String::new(), "a URL", |_| true)?;
        let sample_ratio = if endpoint.is_empty() {
            0.0
        } else {
            settings.parsed(
                "TRACES_SAMPLE_RATIO",
                1.0,
                "a share from 0 to 1",
                |r: &f64| (0.0..=1.0).contains(r),
            )?
        };
        let signed = settings.parsed("TRACES_SIGNED", false, "true or false", |_| true)?;
        Ok(Self {
            endpoint,
            sample_ratio,
            signed,
        })
    }
}

/// The OTLP exporter every function uses.
pub type Exporter = opentelemetry_otlp::SpanExporter;

/// A function's tracing, exported as `service` per `config`. `sdk` gives the region
/// and the credentials a signed export uses.
pub fn tracing(
    sdk: &aws_config::SdkConfig,
    service: &str,
    config: &TraceConfig,
) -> Tracing<Exporter> {
    if config.sample_ratio <= 0.0 {
        return Tracing::off();
    }
    let signer = match (config.signed, sdk.credentials_provider(), sdk.region()) {
        (true, Some(credentials), Some(region)) => Some(Signer {
            credentials,
            region: region.to_string(),
        }),
        _ => None,
    };
    let client = OtlpHttp::new(signer);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(client)
        .build();
    match exporter {
        Ok(exporter) => Tracing::new(service, config.sample_ratio, exporter),
        Err(error) => {
            tracing::warn!(error = %error, "traces are off: the exporter could not be built");
            Tracing::off()
        }
    }
}

/// A function's tracing from the process environment, installed for the whole
/// process with its JSON logs: the first thing a function's `main` does after loading
/// the SDK configuration.
pub fn install(
    sdk: &aws_config::SdkConfig,
    function_name: &str,
) -> Result<std::sync::Arc<Tracing<Exporter>>, ConfigError> {
    let config = TraceConfig::from_env(&Settings::process())?;
    let tracing = std::sync::Arc::new(self::tracing(sdk, function_name, &config));
    tracing.install();
    Ok(tracing)
}

#[derive(Debug)]
struct Signer {
    credentials: SharedCredentialsProvider,
    region: String,
}

/// The exporter's HTTP client: hyper over rustls (Mozilla's roots compiled in, as the
/// Stripe adapter), each request signed for X-Ray when on AWS. The client (its TLS
/// configuration and roots) is built at the first export, which runs after the first
/// answer is posted: a cold start's init does not pay for it (BENCHMARKS.md, "Tracing:
/// what the spans cost").
#[derive(Debug)]
struct OtlpHttp {
    client: std::sync::OnceLock<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
    signer: Option<Signer>,
}

impl OtlpHttp {
    fn new(signer: Option<Signer>) -> Self {
        Self {
            client: std::sync::OnceLock::new(),
            signer,
        }
    }

    fn client(&self) -> Result<&Client<HttpsConnector<HttpConnector>, Full<Bytes>>, HttpError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(self
            .client
            .get_or_init(|| Client::builder(TokioExecutor::new()).build(connector)))
    }
}

/// Signs `request` with SigV4 for the `xray` service.
async fn sign_request(
    signer: &Signer,
    request: &mut http::Request<Bytes>,
) -> Result<(), HttpError> {
    let credentials = signer.credentials.provide_credentials().await?;
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&signer.region)
        .name("xray")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let uri = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)));
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers,
        SignableBody::Bytes(request.body()),
    )?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttp {
    async fn send_bytes(
        &self,
        mut request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        if let Some(signer) = &self.signer {
            sign_request(signer, &mut request).await?;
        }
        let (parts, body) = request.into_parts();
        let response = self
            .client()?
            .request(http::Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    fn settings(pairs: &[(&str, &str)]) -> Result<TraceConfig, ConfigError> {
        crate::settings::with_pairs(pairs, |s| TraceConfig::from_env(&s))
    }

    #[test]
    fn tracing_is_off_without_an_endpoint_and_the_ratio_is_bounded() {
        assert_eq!(settings(&[]).unwrap().sample_ratio, 0.0);
        let on = settings(&[
            (
                "TRACES_ENDPOINT",
                "https://xray.eu-west-1.amazonaws.com/v1/traces",
            ),
            ("TRACES_SAMPLE_RATIO", "0.25"),
            ("TRACES_SIGNED", "true"),
        ])
        .unwrap();
        assert_eq!(on.sample_ratio, 0.25);
        assert!(on.signed);
        assert!(
            settings(&[
                ("TRACES_ENDPOINT", "http://x"),
                ("TRACES_SAMPLE_RATIO", "2")
            ])
            .is_err()
        );
    }

    #[tokio::test]
    async fn an_export_is_signed_for_xray_in_the_functions_region() {
        let signer = Signer {
            credentials: SharedCredentialsProvider::new(Credentials::for_tests()),
            region: "eu-west-1".into(),
        };
        let mut request = http::Request::post("https://xray.eu-west-1.amazonaws.com/v1/traces")
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{\"resourceSpans\":[]}"))
            .unwrap();
        sign_request(&signer, &mut request).await.unwrap();
        let authorization = request.headers()["authorization"].to_str().unwrap();
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=ANOTREAL/"));
        assert!(authorization.contains("/eu-west-1/xray/aws4_request"));
        assert!(authorization.contains("SignedHeaders=content-type;host;x-amz-date"));
        assert!(request.headers().contains_key("x-amz-date"));
    }
}
