//! An HTTP API's CORS configuration as API Gateway applies it ("Configure CORS for HTTP
//! APIs in API Gateway"): with a configuration, API Gateway answers a preflight
//! `OPTIONS` itself, even where no route declares `OPTIONS` and before any authorizer,
//! and it adds the configured headers to a function's answer, ignoring any CORS header
//! the function returned. Without one it does neither.
//!
//! What AWS's page leaves unsaid is done as API Gateway answers: a preflight gets
//! `204` with no body; an origin not in `AllowOrigins` gets the same `204` without any
//! `access-control-*` header, so the browser refuses the call; a request without an
//! `Origin` gets no CORS header. API Gateway's own refusals (401, 403, 404, 429) are
//! left without CORS headers here, the stricter reading: a storefront that works
//! locally does not depend on reading them.

use serde::Deserialize;

/// `CorsConfiguration` of an `AWS::ApiGatewayV2::Api`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cors {
    /// Origins whose pages may call the API; `*` is any.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Methods a preflight allows.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight allows.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Answer headers a page may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a browser may keep a preflight's answer, in seconds.
    #[serde(default)]
    pub max_age: Option<u64>,
    /// Whether a page may send credentials (cookies) along.
    #[serde(default)]
    pub allow_credentials: bool,
}

impl Cors {
    /// The `access-control-allow-origin` an allowed origin gets, `None` for another.
    fn allowed<'a>(&'a self, origin: &'a str) -> Option<&'a str> {
        if self.allow_origins.iter().any(|o| o == "*") {
            Some("*")
        } else {
            self.allow_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
                .then_some(origin)
        }
    }

    /// Whether a request is a preflight API Gateway answers itself.
    pub fn is_preflight(method: &str, headers: &[(String, String)]) -> bool {
        method == "OPTIONS"
            && header(headers, "origin").is_some()
            && header(headers, "access-control-request-method").is_some()
    }

    /// The headers of the `204` answering a preflight from `origin`.
    pub fn preflight(&self, origin: &str) -> Vec<(String, String)> {
        let Some(allowed) = self.allowed(origin) else {
            return Vec::new();
        };
        let mut headers = vec![
            ("access-control-allow-origin".into(), allowed.to_owned()),
            (
                "access-control-allow-methods".into(),
                self.allow_methods.join(","),
            ),
            (
                "access-control-allow-headers".into(),
                self.allow_headers.join(","),
            ),
        ];
        if let Some(age) = self.max_age {
            headers.push(("access-control-max-age".into(), age.to_string()));
        }
        self.credentials(&mut headers);
        headers
    }

    /// A function's answer to a request from `origin` as API Gateway passes it on: the
    /// function's own CORS headers dropped, the configured ones added for an allowed
    /// origin.
    pub fn answer(&self, origin: Option<&str>, headers: &mut Vec<(String, String)>) {
        headers.retain(|(name, _)| !name.to_ascii_lowercase().starts_with("access-control-"));
        let Some(allowed) = origin.and_then(|o| self.allowed(o)) else {
            return;
        };
        headers.push(("access-control-allow-origin".into(), allowed.to_owned()));
        if !self.expose_headers.is_empty() {
            headers.push((
                "access-control-expose-headers".into(),
                self.expose_headers.join(","),
            ));
        }
        self.credentials(headers);
    }

    fn credentials(&self, headers: &mut Vec<(String, String)>) {
        if self.allow_credentials {
            headers.push(("access-control-allow-credentials".into(), "true".into()));
        }
    }
}

/// The first value of a request header, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Cors {
        Cors {
            allow_origins: vec!["https://shop.example.com".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["location".into()],
            max_age: Some(600),
            allow_credentials: false,
        }
    }

    fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        header(headers, name)
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_gets_the_configuration() {
        let headers = shop().preflight("https://shop.example.com");
        assert_eq!(
            get(&headers, "access-control-allow-origin"),
            Some("https://shop.example.com")
        );
        assert_eq!(
            get(&headers, "access-control-allow-methods"),
            Some("GET,POST")
        );
        assert_eq!(
            get(&headers, "access-control-allow-headers"),
            Some("authorization,content-type")
        );
        assert_eq!(get(&headers, "access-control-max-age"), Some("600"));
        assert_eq!(get(&headers, "access-control-allow-credentials"), None);
        assert!(shop().preflight("https://evil.example.com").is_empty());
        let any = Cors {
            allow_origins: vec!["*".into()],
            ..shop()
        };
        assert_eq!(
            get(
                &any.preflight("https://evil.example.com"),
                "access-control-allow-origin"
            ),
            Some("*")
        );
    }

    #[test]
    fn an_answer_carries_the_configured_headers_and_never_the_functions_own() {
        let mut headers = vec![
            ("location".into(), "/v1/orders/ord-1".into()),
            ("Access-Control-Allow-Origin".into(), "*".into()),
        ];
        shop().answer(Some("https://shop.example.com"), &mut headers);
        assert_eq!(
            headers,
            [
                ("location".to_owned(), "/v1/orders/ord-1".to_owned()),
                (
                    "access-control-allow-origin".to_owned(),
                    "https://shop.example.com".to_owned()
                ),
                (
                    "access-control-expose-headers".to_owned(),
                    "location".to_owned()
                ),
            ]
        );
        for origin in [Some("https://evil.example.com"), None] {
            let mut headers = vec![("access-control-allow-origin".into(), "*".into())];
            shop().answer(origin, &mut headers);
            assert!(headers.is_empty(), "{origin:?}: {headers:?}");
        }
    }

    #[test]
    fn only_an_options_with_an_origin_and_a_requested_method_is_a_preflight() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let preflight = h(&[
            ("Origin", "https://shop.example.com"),
            ("Access-Control-Request-Method", "POST"),
        ]);
        assert!(Cors::is_preflight("OPTIONS", &preflight));
        assert!(!Cors::is_preflight("POST", &preflight));
        assert!(!Cors::is_preflight(
            "OPTIONS",
            &h(&[("Origin", "https://shop.example.com")])
        ));
    }
}
