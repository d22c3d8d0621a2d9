//! Who is calling and where the API is mounted, read from what API Gateway put in the
//! request: the claims of the token its JWT authorizer verified
//! (`requestContext.authorizer.jwt.claims`) and the stage the request came through.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use shop_domain::CustomerId;

/// Why a request carries no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No verified claims: the route reached the function without the JWT authorizer
    /// (a misconfigured stage or route), so nobody vouched for the caller.
    #[error("the request carries no verified token claims; the route must use the JWT authorizer")]
    NoClaims,
    /// The token's subject is empty, too long or has control characters.
    #[error("the token's subject is not a usable customer id")]
    BadSubject,
}

/// The caller: the `sub` claim of the verified token. Never a header or body value.
pub fn caller(request: &ApiGatewayV2httpRequest) -> Result<CustomerId, IdentityError> {
    let subject = request
        .request_context
        .authorizer
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .and_then(|jwt| jwt.claims.get("sub"))
        .ok_or(IdentityError::NoClaims)?;
    CustomerId::from_subject(subject).ok_or(IdentityError::BadSubject)
}

/// The prefix every link of this API needs for the request's stage: API Gateway serves
/// a named stage under `/{stage}` (and passes it in `rawPath`), the `$default` stage at
/// the root.
pub fn stage_prefix(request: &ApiGatewayV2httpRequest) -> String {
    match request.request_context.stage.as_deref() {
        None | Some("" | "$default") => String::new(),
        Some(stage) => format!("/{stage}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::{
        ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription,
    };
    use std::collections::HashMap;

    fn with_claims(claims: &[(&str, &str)]) -> ApiGatewayV2httpRequest {
        let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
        jwt.claims = claims
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>();
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.jwt = Some(jwt);
        let mut request = ApiGatewayV2httpRequest::default();
        request.request_context.authorizer = Some(authorizer);
        request
    }

    #[test]
    fn the_caller_is_the_verified_subject() {
        let request = with_claims(&[("sub", "8f1c-42"), ("customerId", "someone-else")]);
        assert_eq!(caller(&request), Ok(CustomerId("8f1c-42".into())));
    }

    #[test]
    fn no_authorizer_no_claims_or_no_subject_is_no_identity() {
        assert_eq!(
            caller(&ApiGatewayV2httpRequest::default()),
            Err(IdentityError::NoClaims)
        );
        let mut no_jwt = ApiGatewayV2httpRequest::default();
        no_jwt.request_context.authorizer = Some(ApiGatewayRequestAuthorizer::default());
        assert_eq!(caller(&no_jwt), Err(IdentityError::NoClaims));
        assert_eq!(
            caller(&with_claims(&[("email", "a@example.com")])),
            Err(IdentityError::NoClaims)
        );
    }

    #[test]
    fn an_unusable_subject_is_refused() {
        for bad in ["", "tab\there", &"x".repeat(256)] {
            assert_eq!(
                caller(&with_claims(&[("sub", bad)])),
                Err(IdentityError::BadSubject),
                "{bad:?}"
            );
        }
        let longest = "é".repeat(255);
        assert!(caller(&with_claims(&[("sub", &longest)])).is_ok());
    }

    #[test]
    fn links_carry_a_named_stage_and_not_the_default_one() {
        let mut request = ApiGatewayV2httpRequest::default();
        assert_eq!(stage_prefix(&request), "");
        request.request_context.stage = Some("$default".into());
        assert_eq!(stage_prefix(&request), "");
        request.request_context.stage = Some("prod".into());
        assert_eq!(stage_prefix(&request), "/prod");
    }
}
