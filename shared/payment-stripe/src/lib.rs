//! The Stripe payment provider behind the domain's `PaymentProvider` port: an order's
//! payment is one PaymentIntent, authorized with `capture_method=manual` and confirmed
//! at once with the shopper's PaymentMethod, captured in full, and given back by
//! cancelling it while uncaptured (a void: no fee, no statement line) or refunding it
//! once captured, in part (an operator's refund of a returned item) or in what is
//! left.
//!
//! Every call that changes something carries an `Idempotency-Key` derived from the
//! order's charge key and the step (`charge-ORDER`, `…-capture`, `…-cancel`,
//! `…-refund`; an operator's part refund is keyed by its reference), so a retried or redelivered command never makes a second
//! PaymentIntent, capture or refund. Stripe keeps a key's first answer for at least 24
//! hours and replays it for the same parameters; that replay is also how a payment
//! whose authorization had no answer is found again (see [`StripeProvider`]).
//!
//! A plain HTTP client (hyper, rustls, Stripe's form encoding) rather than the
//! `async-stripe` crate: five endpoints do not need the whole generated API, whose
//! build takes minutes and whose size and init a cold start pays for.
#![warn(missing_docs)]

mod http;

use async_trait::async_trait;
use serde::Deserialize;
use shop_domain::payment::{
    Authentication, Authorization, ChargeRequest, PartRefund, ProviderError, ProviderKey, Released,
};
use shop_domain::ports::PaymentProvider;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use http::StripeHttp;

/// The API version every request pins (`Stripe-Version`), so an account's default
/// version changing in the Dashboard cannot change what this code reads.
pub const API_VERSION: &str = "2026-09-30.endive";

/// Stripe's API, when `STRIPE_API_BASE` does not point elsewhere (localstripe).
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// The shortest time between two re-reads of the key after Stripe refused it: a key
/// rotated in Secrets Manager is picked up by the first 401, and a key that is simply
/// wrong does not turn every call into a secrets read.
pub const KEY_REREAD_INTERVAL: Duration = Duration::from_secs(30);

/// Reading the secret key failed.
#[derive(Debug, thiserror::Error)]
#[error("reading the Stripe secret key failed")]
pub struct KeyError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The Stripe provider could not be built: its TLS configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("the TLS client could not be configured")]
pub struct ConnectError(#[source] rustls::Error);

/// Where the secret key lives (Secrets Manager in the payments function). Read once
/// at start and again when Stripe answers 401, so a rotated key is used without a
/// deploy.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The current key.
    async fn read(&self) -> Result<ProviderKey, KeyError>;
}

/// What the adapter reads of a PaymentIntent.
#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
    #[serde(default)]
    last_payment_error: Option<StripeError>,
    /// What the shopper's browser confirms or authenticates the payment with.
    #[serde(default)]
    client_secret: Option<String>,
}

/// Stripe's error object (`{"error": {...}}`).
#[derive(Debug, Default, Deserialize)]
struct StripeError {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl StripeError {
    /// The reason kept on the order: the issuer's decline code when Stripe has one,
    /// else the error code (`card_declined`, `expired_card`, …).
    fn decline_reason(&self) -> String {
        self.decline_code
            .clone()
            .or_else(|| self.code.clone())
            .unwrap_or_else(|| "card_declined".into())
    }
}

/// An answer Stripe gave.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn error(&self) -> StripeError {
        #[derive(Deserialize)]
        struct Envelope {
            error: StripeError,
        }
        serde_json::from_slice::<Envelope>(&self.body)
            .map(|e| e.error)
            .unwrap_or_default()
    }

    /// A non-2xx answer as the port names it: a card error is a decline with its
    /// code; a conflict on the idempotency key, a rate limit, a dependency failure or
    /// a server error is transient; anything else is a request Stripe will refuse
    /// again.
    fn failure(&self) -> ProviderError {
        let error = self.error();
        let detail = format!(
            "Stripe answered {} ({}{}): {}",
            self.status,
            error.kind.as_deref().unwrap_or("no error type"),
            error
                .code
                .as_deref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default(),
            error.message.as_deref().unwrap_or("no message"),
        );
        match self.status {
            402 => ProviderError::Declined(error.decline_reason()),
            _ if error.kind.as_deref() == Some("card_error") => {
                ProviderError::Declined(error.decline_reason())
            }
            401 | 409 | 424 | 429 | 500..=599 => ProviderError::Transient(detail),
            _ => ProviderError::Refused(detail),
        }
    }

    fn payment_intent(&self) -> Result<PaymentIntent, ProviderError> {
        if !(200..300).contains(&self.status) {
            return Err(self.failure());
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ProviderError::Transient(format!("Stripe's answer is not a PaymentIntent: {e}"))
        })
    }
}

/// The held key and when it was last read again after a 401.
struct HeldKey {
    key: ProviderKey,
    reread_at: Option<Instant>,
}

/// The first read of the key, started with the provider and joined at first use.
type FirstRead = tokio::task::JoinHandle<Result<ProviderKey, KeyError>>;

/// Stripe, reached with a secret key from a [`KeySource`].
///
/// A payment whose authorization got no answer (a timeout, a lost connection) is
/// found again by sending the same request under the same key: Stripe replays the
/// first answer if the request reached it, and makes the authorization now if it did
/// not; either way the compensation then cancels what it finds. That replay needs the
/// same parameters, which is why the ledger keeps the payment method.
///
/// The key's first read starts with the provider, on the runtime, and is joined at the
/// first call: it overlaps the rest of the function's init and the first event's
/// delivery instead of adding a round trip before them (BENCHMARKS.md, the cold path).
/// A read that fails is a transient failure of that call, and the next call reads
/// again.
pub struct StripeProvider {
    http: StripeHttp,
    keys: Arc<dyn KeySource>,
    key: RwLock<Option<HeldKey>>,
    first_read: tokio::sync::Mutex<Option<FirstRead>>,
}

impl StripeProvider {
    /// The provider, its key's first read started. `timeout` bounds each call. Must
    /// be called on a Tokio runtime.
    pub fn connect(
        base: &str,
        timeout: Duration,
        keys: Arc<dyn KeySource>,
    ) -> Result<Self, ConnectError> {
        let http = StripeHttp::new(base, timeout).map_err(ConnectError)?;
        let reading = keys.clone();
        let first_read = tokio::spawn(async move { reading.read().await });
        Ok(Self {
            http,
            keys,
            key: RwLock::new(None),
            first_read: tokio::sync::Mutex::new(Some(first_read)),
        })
    }

    fn held_key(&self) -> Option<ProviderKey> {
        self.key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|held| held.key.clone())
    }

    /// The key: the held one, or the first read's (joined once), or a new read after
    /// a failed one.
    async fn current_key(&self) -> Result<ProviderKey, ProviderError> {
        if let Some(key) = self.held_key() {
            return Ok(key);
        }
        let mut first_read = self.first_read.lock().await;
        if let Some(key) = self.held_key() {
            return Ok(key);
        }
        let read = match first_read.take() {
            Some(reading) => reading.await.unwrap_or_else(|e| Err(KeyError(Box::new(e)))),
            None => self.keys.read().await,
        };
        match read {
            Ok(key) => {
                tracing::info!(key = %key.hint(), "Stripe key loaded");
                *self.key.write().unwrap_or_else(|p| p.into_inner()) = Some(HeldKey {
                    key: key.clone(),
                    reread_at: None,
                });
                Ok(key)
            }
            Err(e) => Err(ProviderError::Transient(format!("{e}: {}", e.0))),
        }
    }

    /// Reads the key again unless it was re-read less than [`KEY_REREAD_INTERVAL`]
    /// ago; returns whether a different key is now held.
    async fn reread_key(&self, refused: &ProviderKey) -> bool {
        let stale = {
            let held = self.key.read().unwrap_or_else(|p| p.into_inner());
            let Some(held) = held.as_ref() else {
                return false;
            };
            if held.key != *refused {
                return true;
            }
            held.reread_at
                .is_none_or(|at| at.elapsed() >= KEY_REREAD_INTERVAL)
        };
        if !stale {
            return false;
        }
        match self.keys.read().await {
            Ok(key) => {
                let changed = key != *refused;
                tracing::warn!(
                    refused = %refused.hint(),
                    now = %key.hint(),
                    changed,
                    "Stripe refused the API key; read it again"
                );
                *self.key.write().unwrap_or_else(|p| p.into_inner()) = Some(HeldKey {
                    key,
                    reread_at: Some(Instant::now()),
                });
                changed
            }
            Err(e) => {
                tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "re-reading the Stripe key failed");
                if let Some(held) = self.key.write().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    held.reread_at = Some(Instant::now());
                }
                false
            }
        }
    }

    /// One call; a 401 reads the key again once and repeats the call with the new key.
    async fn send(
        &self,
        method: ::http::Method,
        path: &str,
        idempotency_key: Option<&str>,
        form: &[(&str, String)],
    ) -> Result<Answer, ProviderError> {
        let key = self.current_key().await?;
        let answer = self
            .http
            .send(&key, method.clone(), path, idempotency_key, form)
            .await?;
        if answer.status == 401 && self.reread_key(&key).await {
            return self
                .http
                .send(
                    &self.current_key().await?,
                    method,
                    path,
                    idempotency_key,
                    form,
                )
                .await;
        }
        Ok(answer)
    }

    /// Creates and confirms the order's PaymentIntent under the charge key.
    async fn create_intent(&self, request: &ChargeRequest) -> Result<PaymentIntent, ProviderError> {
        let form = [
            ("amount", request.amount.to_string()),
            ("currency", request.currency.code().to_ascii_lowercase()),
            ("payment_method", request.payment_token.clone()),
            ("payment_method_types[0]", "card".into()),
            ("capture_method", "manual".into()),
            ("confirm", "true".into()),
            ("metadata[order_id]", request.order_id.to_string()),
        ];
        self.send(
            ::http::Method::POST,
            "/v1/payment_intents",
            Some(&request.idempotency_key),
            &form,
        )
        .await?
        .payment_intent()
    }

    async fn retrieve(&self, payment_id: &str) -> Result<PaymentIntent, ProviderError> {
        self.send(
            ::http::Method::GET,
            &format!("/v1/payment_intents/{payment_id}"),
            None,
            &[],
        )
        .await?
        .payment_intent()
    }
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    async fn authorize(&self, request: &ChargeRequest) -> Result<Authorization, ProviderError> {
        let intent = self.create_intent(request).await?;
        match intent.status.as_str() {
            "requires_capture" | "succeeded" => Ok(Authorization::Held(intent.id)),
            "requires_payment_method" => Err(ProviderError::Declined(
                intent
                    .last_payment_error
                    .unwrap_or_default()
                    .decline_reason(),
            )),
            "requires_action" => match intent.client_secret {
                Some(client_secret) => Ok(Authorization::ActionRequired {
                    payment_id: intent.id,
                    client_secret,
                }),
                None => Err(ProviderError::Refused(format!(
                    "payment {} requires an action but Stripe gave no client secret",
                    intent.id
                ))),
            },
            "processing" => Err(ProviderError::Transient(format!(
                "payment {} is still processing",
                intent.id
            ))),
            other => Err(ProviderError::Refused(format!(
                "payment {} is {other} after confirmation",
                intent.id
            ))),
        }
    }

    async fn authentication(&self, payment_id: &str) -> Result<Authentication, ProviderError> {
        let intent = self.retrieve(payment_id).await?;
        Ok(match intent.status.as_str() {
            "requires_capture" | "succeeded" => Authentication::Held,
            "requires_action" | "requires_confirmation" | "processing" => Authentication::Pending,
            "canceled" => Authentication::Failed("canceled".into()),
            _ => Authentication::Failed(
                intent
                    .last_payment_error
                    .and_then(|e| e.code)
                    .unwrap_or_else(|| "payment_intent_authentication_failure".into()),
            ),
        })
    }

    async fn capture(
        &self,
        payment_id: &str,
        request: &ChargeRequest,
    ) -> Result<(), ProviderError> {
        let answer = self
            .send(
                ::http::Method::POST,
                &format!("/v1/payment_intents/{payment_id}/capture"),
                Some(&format!("{}-capture", request.idempotency_key)),
                &[],
            )
            .await?;
        match answer.payment_intent() {
            Ok(intent) if intent.status == "succeeded" => Ok(()),
            Ok(intent) => Err(ProviderError::Refused(format!(
                "payment {payment_id} is {} after capture",
                intent.status
            ))),
            // Captured already under another key (an operator in the Dashboard):
            // what the port asks for holds.
            Err(ProviderError::Refused(_))
                if self.retrieve(payment_id).await?.status == "succeeded" =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn release(
        &self,
        payment_id: Option<&str>,
        request: &ChargeRequest,
    ) -> Result<Released, ProviderError> {
        let intent = match payment_id {
            Some(id) => self.retrieve(id).await?,
            None => match self.create_intent(request).await {
                Ok(intent) => intent,
                // Declined when it was made: nothing is held.
                Err(ProviderError::Declined(_)) => return Ok(Released::Voided),
                Err(e) => return Err(e),
            },
        };
        match intent.status.as_str() {
            "canceled" => Ok(Released::Voided),
            "succeeded" => {
                let form = [("payment_intent", intent.id.clone())];
                let answer = self
                    .send(
                        ::http::Method::POST,
                        "/v1/refunds",
                        Some(&format!("{}-refund", request.idempotency_key)),
                        &form,
                    )
                    .await?;
                if (200..300).contains(&answer.status) {
                    Ok(Released::Refunded)
                } else {
                    Err(answer.failure())
                }
            }
            // Nothing is held while a payment method is required, but a browser holding
            // the client secret could still confirm one: cancelled too.
            "requires_capture"
            | "requires_action"
            | "requires_confirmation"
            | "requires_payment_method" => {
                let cancelled = self
                    .send(
                        ::http::Method::POST,
                        &format!("/v1/payment_intents/{}/cancel", intent.id),
                        Some(&format!("{}-cancel", request.idempotency_key)),
                        &[],
                    )
                    .await?
                    .payment_intent()?;
                if cancelled.status == "canceled" {
                    Ok(Released::Voided)
                } else {
                    Err(ProviderError::Refused(format!(
                        "payment {} is {} after cancel",
                        cancelled.id, cancelled.status
                    )))
                }
            }
            other => Err(ProviderError::Transient(format!(
                "payment {} is {other}; release it once it settles",
                intent.id
            ))),
        }
    }

    async fn refund_part(&self, payment_id: &str, part: &PartRefund) -> Result<(), ProviderError> {
        let form = [
            ("payment_intent", payment_id.to_owned()),
            ("amount", part.amount.to_string()),
            ("metadata[order_id]", part.order_id.to_string()),
        ];
        let answer = self
            .send(
                ::http::Method::POST,
                "/v1/refunds",
                Some(&part.idempotency_key),
                &form,
            )
            .await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(answer.failure())
        }
    }
}
