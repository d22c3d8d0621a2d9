//! Stripe's webhook signature: `Stripe-Signature: t=TIMESTAMP,v1=HEX[,v1=HEX…]`, each
//! `v1` an HMAC-SHA256 of `TIMESTAMP.RAW_BODY` keyed with the endpoint's signing
//! secret. Several `v1` arrive while a rolled secret and its successor are both live;
//! any one matching is enough. The timestamp is signed too, so once the signature
//! holds, a timestamp outside the tolerance means a replay of an old delivery.

use std::time::Duration;

/// An endpoint's signing secret (`whsec_…`). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    /// The secret as the Dashboard shows it, whole (the `whsec_` prefix is part of
    /// the key).
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("no Stripe-Signature header")]
    Missing,
    /// The header has no timestamp or no `v1` signature in Stripe's form.
    #[error("the Stripe-Signature header is not t=TIMESTAMP,v1=SIGNATURE")]
    Malformed,
    /// No `v1` signature is the body's under the signing secret.
    #[error("no signature matches the body under the endpoint's signing secret")]
    Mismatch,
    /// Signed, but at a time further from now than the tolerance: a replay.
    #[error("signed {age_seconds} s from now, more than the {tolerance_seconds} s tolerated")]
    Stale {
        /// How far the signature's time is from now.
        age_seconds: u64,
        /// The tolerance.
        tolerance_seconds: u64,
    },
}

/// The header's timestamp and `v1` signatures; other schemes (`v0`) are ignored, as
/// Stripe's libraries ignore them.
fn parse(header: &str) -> Result<(i64, Vec<Vec<u8>>), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for element in header.split(',') {
        let Some((key, value)) = element.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = value.parse::<i64>().ok(),
            "v1" => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    match timestamp {
        Some(t) if !signatures.is_empty() => Ok((t, signatures)),
        _ => Err(SignatureError::Malformed),
    }
}

/// Checks a delivery: some `v1` signature is the HMAC-SHA256 of `t.body` under
/// `secret` (compared in constant time), and `t` is within `tolerance` of `now`
/// (seconds since the epoch). `body` must be the raw bytes as received.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[SigningSecret],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let (timestamp, signatures) = parse(header.ok_or(SignatureError::Missing)?)?;
    let mut signed = timestamp.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let matches = secrets.iter().any(|secret| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.0.as_bytes());
        signatures
            .iter()
            .any(|signature| ring::hmac::verify(&key, &signed, signature).is_ok())
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    let age = now.abs_diff(timestamp);
    if age > tolerance.as_secs() {
        return Err(SignatureError::Stale {
            age_seconds: age,
            tolerance_seconds: tolerance.as_secs(),
        });
    }
    Ok(())
}

/// The header Stripe would send for `body` signed at `timestamp`, for the tests that
/// play Stripe.
pub fn sign(body: &[u8], secret: &SigningSecret, timestamp: i64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.0.as_bytes());
    let mut signed = timestamp.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &signed);
    format!("t={timestamp},v1={}", hex::encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000;
    const TOLERANCE: Duration = Duration::from_secs(300);

    fn secret() -> SigningSecret {
        SigningSecret::new("whsec_test_0123456789abcdef")
    }

    #[test]
    fn a_signature_over_the_raw_body_within_the_tolerance_is_accepted() {
        let body = br#"{"id":"evt_1","type":"payment_intent.amount_capturable_updated"}"#;
        let header = sign(body, &secret(), NOW - 10);
        assert_eq!(
            verify(Some(&header), body, &[secret()], NOW, TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn the_signing_scheme_is_stripes() {
        // HMAC-SHA256("key", "1.body"), computed independently (Python's hmac).
        let header = sign(b"body", &SigningSecret::new("key"), 1);
        assert_eq!(
            header,
            "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
    }

    #[test]
    fn a_rolled_secret_and_its_successor_both_verify() {
        let body = b"{}";
        let old = SigningSecret::new("whsec_old_0000000000");
        let header = format!("{},v1={}", sign(body, &secret(), NOW), "00".repeat(32));
        assert_eq!(
            verify(
                Some(&header),
                body,
                &[old.clone(), secret()],
                NOW,
                TOLERANCE
            ),
            Ok(())
        );
        assert_eq!(
            verify(Some(&header), body, &[old], NOW, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn forged_stale_and_malformed_deliveries_are_refused_by_name() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, &secret(), NOW);
        let tampered = br#"{"id":"evt_2"}"#;
        assert_eq!(
            verify(Some(&header), tampered, &[secret()], NOW, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        let other = SigningSecret::new("whsec_other_0000000000");
        assert_eq!(
            verify(
                Some(&sign(body, &other, NOW)),
                body,
                &[secret()],
                NOW,
                TOLERANCE
            ),
            Err(SignatureError::Mismatch)
        );
        let old = sign(body, &secret(), NOW - 301);
        assert_eq!(
            verify(Some(&old), body, &[secret()], NOW, TOLERANCE),
            Err(SignatureError::Stale {
                age_seconds: 301,
                tolerance_seconds: 300
            })
        );
        assert_eq!(
            verify(None, body, &[secret()], NOW, TOLERANCE),
            Err(SignatureError::Missing)
        );
        for malformed in ["", "t=1", "v1=abcd", "t=x,v1=abcd", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify(Some(malformed), body, &[secret()], NOW, TOLERANCE),
                Err(SignatureError::Malformed),
                "{malformed:?}"
            );
        }
        // A timestamp moved forward without the key breaks the signature.
        let moved = header.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert_eq!(
            verify(Some(&moved), body, &[secret()], NOW, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert!(!format!("{:?}", secret()).contains("whsec"));
    }
}
