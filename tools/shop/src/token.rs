//! `shop token`: a bearer token the running `shop local` accepts, signed by the local
//! issuer its stack trusts (found through the stack file `shop local` writes).

use local_runtime::oidc_issuer::{IssuerKey, LocalIssuer, TokenRequest};
use shop_domain::CustomerId;
use shop_ops::OpsError;
use shop_ops::stack::LocalStackFile;
use std::path::Path;

/// Signs a token for `request.subject` with the issuer of the local stack `stack`.
pub fn local_token(
    state_dir: &Path,
    stack: &str,
    request: &TokenRequest,
) -> Result<String, OpsError> {
    if CustomerId::from_subject(&request.subject).is_none() {
        return Err(OpsError::Refused(format!(
            "--customer {:?}: a customer id is 1 to 255 characters without control characters",
            request.subject
        )));
    }
    if request.lifetime.is_zero() {
        return Err(OpsError::Refused(
            "--expires must be longer than zero".into(),
        ));
    }
    let path = LocalStackFile::path(state_dir, stack);
    let issuer = LocalStackFile::read(&path)?
        .issuer
        .ok_or_else(|| OpsError::Outputs {
            from: path.display().to_string(),
            reason: "it names no token issuer; restart `shop local`".into(),
        })?;
    let key = IssuerKey::load_or_create(&issuer.key_file)
        .map_err(|e| OpsError::Refused(e.to_string()))?;
    LocalIssuer::new(issuer.url, issuer.audience, key)
        .mint(request)
        .map_err(|e| OpsError::Refused(e.to_string()))
}
