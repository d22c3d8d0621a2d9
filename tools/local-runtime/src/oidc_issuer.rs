//! A small OpenID Connect issuer on loopback, the identity provider of a local stack.
//!
//! It publishes what API Gateway's JWT authorizer reads from a real issuer (the
//! discovery document at `/.well-known/openid-configuration` and the key set its
//! `jwks_uri` names) and signs RS256 access tokens for any subject a developer asks
//! for (`shop token --customer ID`). The stack points its authorizer at it through the
//! template's own "existing issuer" parameters ([`LocalIssuer::template_parameters`]),
//! so locally the authorizer runs exactly the path a deployment with its own identity
//! provider runs on AWS.
//!
//! The RSA key lives in a PEM file (PKCS#8) in the state folder, created on first use
//! and kept, so a token stays valid across restarts of `shop local` until it expires.

use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The issuer's key could not be created, read or used.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The key file could not be read or written.
    #[error("issuer key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold a usable RSA key.
    #[error("issuer key {path} is not an RSA private key in PKCS#8 PEM: {source}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// Generating a key failed.
    #[error("cannot generate an RSA key: {0}")]
    Generate(String),
    /// Signing a token failed.
    #[error("cannot sign the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The issuer's RSA signing key and its key id.
#[derive(Clone)]
pub struct IssuerKey {
    encoding: EncodingKey,
    public: Jwk,
}

impl IssuerKey {
    /// A fresh 2048-bit key, kept in memory only (tests).
    pub fn generate() -> Result<Self, IssuerError> {
        Self::from_pem(&generate_pem()?, Path::new("(generated)"))
    }

    /// The key in `path`, created there (readable by its owner only) when absent.
    /// Two processes starting at once end up with the same key: the second one's
    /// link fails and it reads the first one's file.
    pub fn load_or_create(path: &Path) -> Result<Self, IssuerError> {
        let io = |source| IssuerError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(pem) => return Self::from_pem(&pem, path),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            Err(_) => {}
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let pem = generate_pem()?;
        let staging = path.with_extension(format!("{}.tmp", std::process::id()));
        write_private(&staging, &pem).map_err(io)?;
        let linked = std::fs::hard_link(&staging, path);
        let _ = std::fs::remove_file(&staging);
        match linked {
            Ok(()) => Self::from_pem(&pem, path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::from_pem(&std::fs::read(path).map_err(io)?, path)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn from_pem(pem: &[u8], path: &Path) -> Result<Self, IssuerError> {
        let bad = |source| IssuerError::BadKey {
            path: path.to_owned(),
            source,
        };
        let encoding = EncodingKey::from_rsa_pem(pem).map_err(bad)?;
        let mut public = Jwk::from_encoding_key(&encoding, Algorithm::RS256).map_err(bad)?;
        // The key id is the key's RFC 7638 thumbprint: stable for a key, new for a new one.
        public.common.key_id = Some(public.thumbprint(ThumbprintHash::SHA256).map_err(bad)?);
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        public.common.key_algorithm = Some(KeyAlgorithm::RS256);
        Ok(Self { encoding, public })
    }

    /// The key id tokens carry in their header (`kid`).
    pub fn key_id(&self) -> &str {
        self.public.common.key_id.as_deref().unwrap_or_default()
    }

    /// The public half, as the issuer's JWKS lists it.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.public.clone()],
        }
    }
}

fn generate_pem() -> Result<Vec<u8>, IssuerError> {
    use aws_lc_rs::encoding::AsDer;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|e| IssuerError::Generate(e.to_string()))?;
    let der = pair
        .as_der()
        .map_err(|e| IssuerError::Generate(e.to_string()))?;
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec())).into_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// The scopes a shopper's access token carries: the orders API's routes require one of
/// them each (`AuthorizationScopes` in template.yaml, which a contract test holds equal;
/// reads need `orders/read`, placing and cancelling `orders/write`).
pub const SHOPPER_SCOPES: [&str; 2] = ["orders/read", "orders/write"];

/// What a token should say.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The subject: the customer the token speaks for.
    pub subject: String,
    /// OAuth scopes, written space-separated in the `scope` claim.
    pub scopes: Vec<String>,
    /// How long the token is valid from now.
    pub lifetime: Duration,
}

impl TokenRequest {
    /// A shopper's access token: `subject`, with [`SHOPPER_SCOPES`].
    pub fn shopper(subject: impl Into<String>, lifetime: Duration) -> Self {
        Self {
            subject: subject.into(),
            scopes: SHOPPER_SCOPES.map(str::to_owned).to_vec(),
            lifetime,
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    token_use: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// An issuer: its URL (the tokens' `iss`), the audience its tokens are for, its key.
#[derive(Clone)]
pub struct LocalIssuer {
    /// Issuer URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The `aud` of every token, which the stack's authorizer expects.
    pub audience: String,
    key: IssuerKey,
}

/// The audience of local tokens.
pub const LOCAL_AUDIENCE: &str = "order-saga-local";

impl LocalIssuer {
    /// An issuer at `url` signing with `key`.
    pub fn new(url: impl Into<String>, audience: impl Into<String>, key: IssuerKey) -> Self {
        Self {
            url: url.into(),
            audience: audience.into(),
            key,
        }
    }

    /// An issuer signing with `key` for [`LOCAL_AUDIENCE`], on 127.0.0.1:`port` (0: a
    /// free port); [`LocalIssuer::serve`] answers on the listener.
    pub async fn bind(port: u16, key: IssuerKey) -> std::io::Result<(Self, TcpListener)> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        Ok((Self::new(url, LOCAL_AUDIENCE, key), listener))
    }

    /// The template parameters that point the stack's JWT authorizer at this issuer:
    /// the same ones a deployment with its own identity provider sets.
    pub fn template_parameters(&self) -> [(String, String); 2] {
        [
            ("JwtIssuer".into(), self.url.clone()),
            ("JwtAudience".into(), self.audience.clone()),
        ]
    }

    /// A signed access token.
    pub fn mint(&self, request: &TokenRequest) -> Result<String, IssuerError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let claims = Claims {
            iss: &self.url,
            sub: &request.subject,
            aud: &self.audience,
            iat: now,
            nbf: now,
            exp: now + request.lifetime.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
            token_use: "access",
            scope: (!request.scopes.is_empty()).then(|| request.scopes.join(" ")),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the issuer's key (tests build expired or foreign
    /// tokens with it).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, IssuerError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key.key_id().to_owned());
        jsonwebtoken::encode(&header, claims, &self.key.encoding).map_err(IssuerError::Sign)
    }

    /// The discovery document.
    pub fn discovery(&self) -> serde_json::Value {
        serde_json::json!({
            "issuer": self.url,
            "jwks_uri": format!("{}/.well-known/jwks.json", self.url),
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    /// Serves the discovery document and the key set until `shutdown` turns true.
    pub async fn serve(self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let issuer = Arc::new(self);
        crate::http_server::run(listener, shutdown, move |request| {
            let answer = issuer.answer(request.uri().path());
            async move { answer }
        })
        .await
    }

    fn answer(&self, path: &str) -> hyper::Response<Full<Bytes>> {
        let (status, body) = match path {
            "/.well-known/openid-configuration" => (200, self.discovery().to_string()),
            "/.well-known/jwks.json" => (
                200,
                serde_json::to_string(&self.key.jwks()).unwrap_or_default(),
            ),
            _ => (404, r#"{"error":"not_found"}"#.to_owned()),
        };
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_once_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("issuer-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("local-issuer.pem");
        let first = IssuerKey::load_or_create(&path).unwrap();
        let again = IssuerKey::load_or_create(&path).unwrap();
        assert_eq!(first.key_id(), again.key_id());
        assert_ne!(first.key_id(), IssuerKey::generate().unwrap().key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            IssuerKey::load_or_create(&path),
            Err(IssuerError::BadKey { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
