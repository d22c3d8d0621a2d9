//! API Gateway's HTTP API JWT authorizer, as AWS documents it ("Control access to HTTP
//! APIs with JWT authorizers", and "Troubleshooting issues with HTTP API JWT
//! authorizers"):
//!
//! 1. the token is read from the identity source (`$request.header.Authorization`),
//!    alone or prefixed with `Bearer `;
//! 2. it is decoded, its algorithm must be RSA-based and its signature must verify
//!    with the key of its `kid` in the key set the issuer's discovery document names
//!    (`{issuer}/.well-known/openid-configuration` → `jwks_uri`);
//! 3. `iss` must equal the configured issuer; `aud` must match one configured audience,
//!    or, only when there is no `aud`, `client_id` must; `exp` must be after now, `nbf`
//!    and `iat` before now;
//! 4. if the route has authorization scopes, the token's `scope` (space-separated) or
//!    `scp` must hold at least one of them.
//!
//! Any failure of 1–3 is 401 `{"message":"Unauthorized"}` with a `www-authenticate`
//! header saying why; 4 is 403 `{"message":"Forbidden"}`. On success the claims reach
//! the function as strings in `requestContext.authorizer.jwt.claims` (numbers as their
//! text, arrays as `[a b]`) and `scopes` is the token's scopes when the route has
//! scopes, `null` otherwise.

use http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// How long fetched keys are used before they are fetched again: API Gateway caches an
/// issuer's public keys for up to two hours.
const KEY_CACHE: Duration = Duration::from_secs(2 * 60 * 60);

/// An authorizer as the template declares it (`AWS::ApiGatewayV2::Authorizer`, JWT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerSpec {
    /// Header the token is read from, lower case (`authorization`).
    pub identity_header: String,
    /// `JwtConfiguration.Issuer`.
    pub issuer: String,
    /// `JwtConfiguration.Audience`.
    pub audiences: Vec<String>,
}

/// What the authorizer decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through with these claims and scopes.
    Allow {
        /// Every claim as a string.
        claims: HashMap<String, String>,
        /// The token's scopes when the route requires scopes, else `None`.
        scopes: Option<Vec<String>>,
    },
    /// 401: no token or an invalid one; the text is the header's `error_description`.
    Unauthorized(String),
    /// 403: a valid token without any of the route's scopes.
    Forbidden(String),
}

/// One authorizer with its cache of the issuer's keys.
pub struct JwtAuthorizer {
    spec: AuthorizerSpec,
    keys: Mutex<Option<(Instant, JwkSet)>>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn as_seconds(value: Option<&Value>) -> Option<i64> {
    value.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

/// A claim as API Gateway passes it: strings as they are, arrays as `[a b]`, anything
/// else as its JSON text.
fn claim_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(claim_text).collect();
            format!("[{}]", inner.join(" "))
        }
        other => other.to_string(),
    }
}

/// The token's scopes: `scp` (an array or a space-separated string) or `scope`.
fn token_scopes(claims: &Map<String, Value>) -> Vec<String> {
    let words = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    claims
        .get("scp")
        .or_else(|| claims.get("scope"))
        .map(words)
        .unwrap_or_default()
}

impl JwtAuthorizer {
    /// An authorizer with an empty key cache.
    pub fn new(spec: AuthorizerSpec) -> Self {
        Self {
            spec,
            keys: Mutex::new(None),
        }
    }

    /// Decides one request to a route that requires `route_scopes` (empty: none).
    pub async fn authorize(&self, headers: &HeaderMap, route_scopes: &[String]) -> Decision {
        let Some(raw) = headers
            .get(self.spec.identity_header.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        else {
            return Decision::Unauthorized(String::new());
        };
        let token = raw.strip_prefix("Bearer ").unwrap_or(raw).trim();
        let claims = match self.verify(token).await {
            Ok(claims) => claims,
            Err(why) => return Decision::Unauthorized(why),
        };
        let scopes = token_scopes(&claims);
        if !route_scopes.is_empty() && !route_scopes.iter().any(|s| scopes.contains(s)) {
            return Decision::Forbidden(
                "the token does not have any of the scopes this route requires".into(),
            );
        }
        Decision::Allow {
            claims: claims
                .iter()
                .map(|(k, v)| (k.clone(), claim_text(v)))
                .collect(),
            scopes: (!route_scopes.is_empty()).then_some(scopes),
        }
    }

    /// Steps 2 and 3: signature and claims. The error is the reason, in words.
    async fn verify(&self, token: &str) -> Result<Map<String, Value>, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| "the token is malformed".to_owned())?;
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) {
            return Err(format!(
                "the token's algorithm {:?} is not supported; only RSA-based algorithms are",
                header.alg
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| "the token has no kid header".to_owned())?;
        let jwk = self.key(&kid).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| format!("the issuer's key {kid} is unusable: {e}"))?;
        // The library checks the signature only; the claims are checked below, each
        // with API Gateway's rule.
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|_| "the token's signature is invalid".to_owned())?
            .claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.spec.issuer.as_str()) {
            return Err("the token does not have a valid issuer".into());
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => claims
                .get("client_id")
                .and_then(Value::as_str)
                .into_iter()
                .collect(),
        };
        if !audiences
            .iter()
            .any(|a| self.spec.audiences.iter().any(|allowed| allowed == a))
        {
            return Err("the token does not have a valid audience".into());
        }
        let now = now_secs();
        match as_seconds(claims.get("exp")) {
            Some(exp) if exp > now => {}
            Some(_) => return Err("the token has expired".into()),
            None => return Err("the token has no exp claim".into()),
        }
        if as_seconds(claims.get("nbf")).is_some_and(|nbf| nbf > now) {
            return Err("the token is not valid yet (nbf)".into());
        }
        if as_seconds(claims.get("iat")).is_some_and(|iat| iat > now) {
            return Err("the token was issued in the future (iat)".into());
        }
        Ok(claims)
    }

    /// The issuer's key `kid`, from the cache or freshly fetched (a key the cache does
    /// not know triggers one fetch, so a rotated key is picked up).
    async fn key(&self, kid: &str) -> Result<jsonwebtoken::jwk::Jwk, String> {
        let mut cache = self.keys.lock().await;
        let fresh = cache
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < KEY_CACHE);
        if let Some((_, set)) = cache.as_ref().filter(|_| fresh)
            && let Some(jwk) = set.find(kid)
        {
            return Ok(jwk.clone());
        }
        // The fetch runs as its own task: its 5 s are the issuer's, however slowly the
        // request that needed the keys is polled (a caller busy elsewhere, as a test
        // signing a hundred tokens is, must not time the issuer out).
        let issuer = self.spec.issuer.clone();
        let fetched = tokio::spawn(async move { fetch_keys(&issuer).await })
            .await
            .unwrap_or_else(|e| Err(format!("the key fetch stopped: {e}")));
        let set = fetched.map_err(|e| {
            tracing::error!(issuer = %self.spec.issuer, error = %e, "cannot fetch the issuer's keys");
            format!("cannot fetch the issuer's signing keys: {e}")
        })?;
        let found = set.find(kid).cloned();
        *cache = Some((Instant::now(), set));
        found.ok_or_else(|| format!("no signing key of the issuer has kid {kid}"))
    }
}

/// The key set `issuer`'s discovery document names.
async fn fetch_keys(issuer: &str) -> Result<JwkSet, String> {
    let discovery = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let document: Value = get_json(&discovery).await?;
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{discovery} names no jwks_uri"))?;
    get_json(jwks_uri).await
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<T, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url}: the local runtime reaches issuers over plain HTTP on this machine only"
        ));
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| format!("{url}: no answer in 5 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc_issuer::{IssuerKey, LocalIssuer, TokenRequest};
    use serde_json::json;

    /// An issuer served on loopback and an authorizer configured for it.
    async fn issuer_and_authorizer()
    -> (LocalIssuer, JwtAuthorizer, tokio::sync::watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let issuer = LocalIssuer::new(url, "shop-api", IssuerKey::generate().unwrap());
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(issuer.clone().serve(listener, rx));
        let authorizer = JwtAuthorizer::new(AuthorizerSpec {
            identity_header: "authorization".into(),
            issuer: issuer.url.clone(),
            audiences: vec!["shop-api".into(), "mobile-client".into()],
        });
        (issuer, authorizer, stop)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers
    }

    fn claims(issuer: &LocalIssuer, change: impl FnOnce(&mut Value)) -> Value {
        let now = now_secs();
        let mut c = json!({"iss": issuer.url, "sub": "cust-1", "aud": "shop-api",
                           "iat": now, "nbf": now, "exp": now + 300});
        change(&mut c);
        c
    }

    /// A token of `cust-1` with the `orders/read` scope.
    fn reader_token(issuer: &LocalIssuer) -> String {
        issuer
            .mint(&TokenRequest {
                subject: "cust-1".into(),
                scopes: vec!["orders/read".into()],
                lifetime: Duration::from_secs(60),
            })
            .unwrap()
    }

    fn unauthorized(d: &Decision) -> &str {
        match d {
            Decision::Unauthorized(why) => why,
            other => panic!("expected 401, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_valid_token_passes_with_its_claims_as_strings() {
        let (issuer, authorizer, _stop) = issuer_and_authorizer().await;
        let token = reader_token(&issuer);
        // With the Bearer prefix and without it, as the identity source allows.
        for headers in [bearer(&token), {
            let mut h = HeaderMap::new();
            h.insert("authorization", token.parse().unwrap());
            h
        }] {
            let Decision::Allow { claims, scopes } = authorizer.authorize(&headers, &[]).await
            else {
                panic!("a valid token is refused")
            };
            assert_eq!(claims["sub"], "cust-1");
            assert_eq!(claims["scope"], "orders/read");
            assert!(claims["exp"].parse::<i64>().is_ok());
            assert_eq!(scopes, None, "no route scopes: scopes is null");
        }
        let scoped = authorizer
            .authorize(&bearer(&token), &["orders/read".into(), "admin".into()])
            .await;
        assert!(
            matches!(&scoped, Decision::Allow { scopes: Some(s), .. } if s == &["orders/read"]),
            "{scoped:?}"
        );
    }

    #[tokio::test]
    async fn every_broken_token_is_a_401_naming_the_reason() {
        let (issuer, authorizer, _stop) = issuer_and_authorizer().await;
        let now = now_secs();
        let other_key = LocalIssuer::new(
            issuer.url.clone(),
            "shop-api",
            IssuerKey::generate().unwrap(),
        );
        let sign = |c: Value| issuer.sign(&c).unwrap();
        let cases = [
            (
                sign(claims(&issuer, |c| c["exp"] = json!(now - 1))),
                "expired",
            ),
            (
                sign(claims(&issuer, |c| c["nbf"] = json!(now + 60))),
                "not valid yet",
            ),
            (
                sign(claims(&issuer, |c| c["iat"] = json!(now + 60))),
                "future",
            ),
            (
                sign(claims(&issuer, |c| c["iss"] = json!("http://127.0.0.1:1"))),
                "issuer",
            ),
            (
                sign(claims(&issuer, |c| c["aud"] = json!("someone-else"))),
                "audience",
            ),
            (
                sign(claims(&issuer, |c| {
                    c.as_object_mut().unwrap().remove("exp");
                })),
                "exp",
            ),
            (other_key.sign(&claims(&issuer, |_| {})).unwrap(), "kid"),
            ("not.a.jwt".to_owned(), "malformed"),
        ];
        for (token, reason) in cases {
            let decision = authorizer.authorize(&bearer(&token), &[]).await;
            assert!(
                unauthorized(&decision).contains(reason),
                "{reason}: {decision:?}"
            );
        }
        assert_eq!(
            unauthorized(&authorizer.authorize(&HeaderMap::new(), &[]).await),
            ""
        );
        // A token whose signature was made by another key under the issuer's kid.
        let mut forged: Vec<String> = sign(claims(&issuer, |_| {}))
            .split('.')
            .map(str::to_owned)
            .collect();
        forged[2] = other_key
            .sign(&claims(&issuer, |_| {}))
            .unwrap()
            .rsplit('.')
            .next()
            .unwrap()
            .to_owned();
        let decision = authorizer.authorize(&bearer(&forged.join(".")), &[]).await;
        assert!(
            unauthorized(&decision).contains("signature"),
            "{decision:?}"
        );
    }

    #[tokio::test]
    async fn client_id_stands_in_for_a_missing_aud_only() {
        let (issuer, authorizer, _stop) = issuer_and_authorizer().await;
        let client = |aud: Option<&str>, client_id: &str| {
            issuer
                .sign(&claims(&issuer, |c| {
                    let c = c.as_object_mut().unwrap();
                    c.remove("aud");
                    if let Some(aud) = aud {
                        c.insert("aud".into(), json!(aud));
                    }
                    c.insert("client_id".into(), json!(client_id));
                }))
                .unwrap()
        };
        let ok = authorizer
            .authorize(&bearer(&client(None, "mobile-client")), &[])
            .await;
        assert!(matches!(ok, Decision::Allow { .. }), "{ok:?}");
        let aud_wins = authorizer
            .authorize(&bearer(&client(Some("nobody"), "mobile-client")), &[])
            .await;
        assert!(unauthorized(&aud_wins).contains("audience"));
    }

    #[tokio::test]
    async fn a_valid_token_without_the_route_scope_is_403() {
        let (issuer, authorizer, _stop) = issuer_and_authorizer().await;
        let token = reader_token(&issuer);
        let decision = authorizer
            .authorize(&bearer(&token), &["orders/write".into()])
            .await;
        assert!(matches!(decision, Decision::Forbidden(_)), "{decision:?}");
    }

    #[test]
    fn claims_reach_the_function_as_api_gateway_writes_them() {
        assert_eq!(claim_text(&json!("abc")), "abc");
        assert_eq!(claim_text(&json!(1787996002)), "1787996002");
        assert_eq!(claim_text(&json!(true)), "true");
        assert_eq!(claim_text(&json!(["admin", "users"])), "[admin users]");
    }

    #[test]
    fn scopes_come_from_scp_or_the_space_separated_scope() {
        let from = |v: Value| token_scopes(v.as_object().unwrap());
        assert_eq!(from(json!({"scope": "a b"})), ["a", "b"]);
        assert_eq!(from(json!({"scp": ["a", "b"], "scope": "c"})), ["a", "b"]);
        assert_eq!(from(json!({"scp": "x y"})), ["x", "y"]);
        assert!(from(json!({})).is_empty());
    }
}
