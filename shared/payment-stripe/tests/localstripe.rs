//! The Stripe adapter against localstripe over HTTP, wrapped as Stripe answers
//! (`local/stripe_server.py`): authorize, capture, void, refund (whole and in parts),
//! declines with their
//! codes, the same idempotency key giving the same object, 429 and 5xx as transient
//! failures, a timeout, and a rotated key picked up on Stripe's 401.

use async_trait::async_trait;
use local_runtime::emulator::Emulator;
use local_runtime::http_client::HttpClient;
use payment_stripe::{KeyError, KeySource, StripeProvider};
use serde_json::Value;
use shop_domain::payment::{
    Authentication, Authorization, ChargeRequest, PartRefund, ProviderError, ProviderKey, Released,
    charge_key, part_refund_key,
};
use shop_domain::ports::PaymentProvider;
use shop_domain::{Currency, OrderId};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "sk_test_contracttests000000";

/// Serves the keys in order, then the last one for ever; counts the reads.
struct Keys(Mutex<Vec<&'static str>>, AtomicUsize);

impl Keys {
    fn new(keys: &[&'static str]) -> Arc<Self> {
        Arc::new(Self(Mutex::new(keys.to_vec()), AtomicUsize::new(0)))
    }
}

#[async_trait]
impl KeySource for Keys {
    async fn read(&self) -> Result<ProviderKey, KeyError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        let mut keys = self.0.lock().unwrap();
        let key = if keys.len() > 1 {
            keys.remove(0)
        } else {
            keys[0]
        };
        ProviderKey::new(key).map_err(|e| KeyError(Box::new(e)))
    }
}

struct Stripe {
    emulator: Emulator,
    provider: StripeProvider,
    keys: Arc<Keys>,
}

impl Stripe {
    async fn start(keys: &[&'static str]) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let state = std::env::temp_dir().join("order-saga-stripe-contract");
        let name = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let emulator = Emulator::start_stripe(&root, &state, &name, None)
            .await
            .expect("the wrapped localstripe starts (scripts/bootstrap.sh installs it)");
        let keys = Keys::new(keys);
        let provider =
            StripeProvider::connect(&emulator.endpoint, Duration::from_secs(10), keys.clone())
                .unwrap();
        Self {
            emulator,
            provider,
            keys,
        }
    }

    /// A PaymentIntent as Stripe holds it.
    async fn intent(&self, id: &str) -> Value {
        self.get(&format!("/v1/payment_intents/{id}")).await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, _, body) = HttpClient::default()
            .send_with_headers(
                "GET",
                &format!("{}{path}", self.emulator.endpoint),
                Vec::new(),
                &[("authorization", &format!("Bearer {KEY}"))],
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Makes the next `count` API calls answer `status`, as Stripe does under load.
    async fn fail_next(&self, status: u16, count: u32) {
        let body = serde_json::json!({ "status": status, "count": count });
        let (code, _, _) = HttpClient::default()
            .send(
                "POST",
                &format!("{}/_config/faults", self.emulator.endpoint),
                body.to_string().into_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(code, 200);
    }

    /// Authorizes a payment that needs no authentication; its PaymentIntent's id.
    async fn held(&self, order: &ChargeRequest) -> String {
        match self.provider.authorize(order).await {
            Ok(Authorization::Held(id)) => id,
            other => panic!("expected a held authorization, got {other:?}"),
        }
    }

    /// What the shopper's browser does with the client secret (Stripe.js
    /// `handleNextAction`), through localstripe's authentication endpoint.
    async fn authenticate(&self, id: &str, client_secret: &str, success: bool) {
        let body =
            serde_json::json!({ "client_secret": client_secret, "success": success }).to_string();
        let (status, _, body) = HttpClient::default()
            .send_with_headers(
                "POST",
                &format!(
                    "{}/v1/payment_intents/{id}/_authenticate",
                    self.emulator.endpoint
                ),
                body.into_bytes(),
                &[("authorization", &format!("Bearer {KEY}"))],
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    async fn stop(mut self) {
        self.emulator.stop().await;
    }
}

fn request(payment_method: &str, amount: u64) -> ChargeRequest {
    let order_id = OrderId::generate();
    ChargeRequest {
        idempotency_key: charge_key(&order_id),
        order_id,
        amount,
        currency: Currency::EUR,
        payment_token: payment_method.into(),
    }
}

#[tokio::test]
async fn an_authorization_is_captured_once_and_refunded_once() {
    let stripe = Stripe::start(&[KEY]).await;
    let order = request("pm_card_visa", 4_499);
    let id = stripe.held(&order).await;
    assert!(id.starts_with("pi_"), "{id}");
    let held = stripe.intent(&id).await;
    assert_eq!(held["status"], "requires_capture");
    assert_eq!(held["capture_method"], "manual");
    assert_eq!(held["amount"], 4_499);
    assert_eq!(held["currency"], "eur");
    assert_eq!(held["metadata"]["order_id"], order.order_id.as_str());
    // The same key is the same PaymentIntent, however often it is asked.
    assert_eq!(stripe.held(&order).await, id);
    let all = stripe.get("/v1/payment_intents").await;
    let same_order = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pi| pi["metadata"]["order_id"] == order.order_id.as_str())
        .count();
    assert_eq!(same_order, 1, "one PaymentIntent for the order");

    stripe.provider.capture(&id, &order).await.unwrap();
    stripe.provider.capture(&id, &order).await.unwrap();
    let captured = stripe.intent(&id).await;
    assert_eq!(captured["status"], "succeeded");
    assert_eq!(captured["latest_charge"]["captured"], true);
    assert_eq!(captured["latest_charge"]["amount"], 4_499);

    for _ in 0..2 {
        let released = stripe.provider.release(Some(&id), &order).await;
        assert_eq!(released, Ok(Released::Refunded));
    }
    let refunds = stripe
        .get(&format!("/v1/refunds?payment_intent={id}"))
        .await;
    let refunds = refunds["data"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "refunded once: {refunds:?}");
    assert_eq!(refunds[0]["amount"], 4_499);
    stripe.stop().await;
}

#[tokio::test]
async fn parts_of_a_capture_are_refunded_once_per_key_never_beyond_what_is_left() {
    let stripe = Stripe::start(&[KEY]).await;
    let order = request("pm_card_visa", 5_000);
    let id = stripe.held(&order).await;
    stripe.provider.capture(&id, &order).await.unwrap();
    let part = |reference: &str, amount: u64| PartRefund {
        order_id: order.order_id.clone(),
        idempotency_key: part_refund_key(&order.order_id, reference),
        amount,
    };
    // A redelivered command is the same refund under the same key.
    for _ in 0..2 {
        stripe
            .provider
            .refund_part(&id, &part("RMA-1", 1_200))
            .await
            .unwrap();
    }
    stripe
        .provider
        .refund_part(&id, &part("RMA-2", 800))
        .await
        .unwrap();
    let too_much = stripe
        .provider
        .refund_part(&id, &part("RMA-3", 3_001))
        .await;
    assert!(
        matches!(&too_much, Err(ProviderError::Refused(why)) if why.contains("400")),
        "more than is left is refused as made: {too_much:?}"
    );
    // The compensation's whole refund gives back what is left.
    assert_eq!(
        stripe.provider.release(Some(&id), &order).await,
        Ok(Released::Refunded)
    );
    let refunds = stripe
        .get(&format!("/v1/refunds?payment_intent={id}"))
        .await;
    let mut amounts: Vec<u64> = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_u64().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(
        amounts,
        [800, 1_200, 3_000],
        "each part once, then the rest"
    );
    let after = stripe.provider.refund_part(&id, &part("RMA-4", 1)).await;
    assert!(
        matches!(&after, Err(ProviderError::Refused(why)) if why.contains("charge_already_refunded")),
        "{after:?}"
    );
    stripe.stop().await;
}

#[tokio::test]
async fn an_uncaptured_authorization_is_voided_and_can_no_longer_be_captured() {
    let stripe = Stripe::start(&[KEY]).await;
    let order = request("pm_card_visa", 1_250);
    let id = stripe.held(&order).await;
    assert_eq!(
        stripe.provider.release(Some(&id), &order).await,
        Ok(Released::Voided)
    );
    assert_eq!(stripe.intent(&id).await["status"], "canceled");
    assert_eq!(
        stripe.provider.release(Some(&id), &order).await,
        Ok(Released::Voided),
        "a second void changes nothing"
    );
    let late = stripe.provider.capture(&id, &order).await;
    assert!(matches!(late, Err(ProviderError::Refused(_))), "{late:?}");
    assert_eq!(stripe.intent(&id).await["status"], "canceled");
    stripe.stop().await;
}

#[tokio::test]
async fn a_payment_whose_authorization_got_no_answer_is_found_by_its_key_and_voided() {
    let stripe = Stripe::start(&[KEY]).await;
    // GIVEN an authorization Stripe made whose answer the shop never read
    let order = request("pm_card_visa", 900);
    let id = stripe.held(&order).await;
    // WHEN the compensation releases it knowing only the request
    let released = stripe.provider.release(None, &order).await;
    // THEN the same PaymentIntent is cancelled: nothing stays held
    assert_eq!(released, Ok(Released::Voided));
    assert_eq!(stripe.intent(&id).await["status"], "canceled");
    // A request that never reached Stripe is voided all the same, and one declined
    // when it was made holds nothing to release.
    let never = request("pm_card_visa", 700);
    assert_eq!(
        stripe.provider.release(None, &never).await,
        Ok(Released::Voided)
    );
    let declined = request("pm_card_visa_chargeDeclined", 700);
    assert_eq!(
        stripe.provider.release(None, &declined).await,
        Ok(Released::Voided)
    );
    stripe.stop().await;
}

#[tokio::test]
async fn declines_keep_stripes_codes() {
    let stripe = Stripe::start(&[KEY]).await;
    for (method, reason) in [
        ("pm_card_visa_chargeDeclined", "generic_decline"),
        (
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
        ),
        ("pm_card_visa_chargeDeclinedLostCard", "lost_card"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
    ] {
        let answer = stripe.provider.authorize(&request(method, 100)).await;
        assert_eq!(
            answer,
            Err(ProviderError::Declined(reason.into())),
            "{method}"
        );
    }
    let unknown = stripe
        .provider
        .authorize(&request("pm_no_such_method", 100))
        .await;
    assert!(
        matches!(unknown, Err(ProviderError::Refused(_))),
        "{unknown:?}"
    );
    stripe.stop().await;
}

#[tokio::test]
async fn a_payment_that_needs_3d_secure_waits_for_the_shopper_then_is_held_or_failed() {
    let stripe = Stripe::start(&[KEY]).await;
    for success in [true, false] {
        // GIVEN a card whose issuer asks for authentication
        let order = request("pm_card_threeDSecure2Required", 2_000);
        let Ok(Authorization::ActionRequired {
            payment_id,
            client_secret,
        }) = stripe.provider.authorize(&order).await
        else {
            panic!("a 3-D Secure card asks the shopper to authenticate");
        };
        assert!(client_secret.starts_with(&format!("{payment_id}_secret_")));
        assert_eq!(
            stripe.intent(&payment_id).await["status"],
            "requires_action"
        );
        assert_eq!(
            stripe.provider.authentication(&payment_id).await,
            Ok(Authentication::Pending)
        );
        // The same key gives the same PaymentIntent and secret.
        assert_eq!(
            stripe.provider.authorize(&order).await.unwrap(),
            Authorization::ActionRequired {
                payment_id: payment_id.clone(),
                client_secret: client_secret.clone()
            }
        );
        // WHEN the shopper authenticates, or fails to
        stripe
            .authenticate(&payment_id, &client_secret, success)
            .await;
        let now = stripe.provider.authentication(&payment_id).await;
        if success {
            // THEN the amount is held, and captured as any other
            assert_eq!(now, Ok(Authentication::Held));
            stripe.provider.capture(&payment_id, &order).await.unwrap();
            assert_eq!(stripe.intent(&payment_id).await["status"], "succeeded");
        } else {
            // THEN nothing is held, and the release cancels it for good
            assert_eq!(
                now,
                Ok(Authentication::Failed(
                    "payment_intent_authentication_failure".into()
                ))
            );
            assert_eq!(
                stripe.provider.release(Some(&payment_id), &order).await,
                Ok(Released::Voided)
            );
            assert_eq!(stripe.intent(&payment_id).await["status"], "canceled");
        }
    }
    // An abandoned authentication is cancelled by the release too.
    let abandoned = request("pm_card_threeDSecure2Required", 700);
    let id = stripe.provider.authorize(&abandoned).await.unwrap();
    assert_eq!(
        stripe
            .provider
            .release(Some(id.payment_id()), &abandoned)
            .await,
        Ok(Released::Voided)
    );
    assert_eq!(
        stripe.provider.authentication(id.payment_id()).await,
        Ok(Authentication::Failed("canceled".into()))
    );
    stripe.stop().await;
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_transient_and_a_retry_with_the_key_goes_through() {
    let stripe = Stripe::start(&[KEY]).await;
    let order = request("pm_card_visa", 300);
    for status in [429, 500, 503] {
        stripe.fail_next(status, 1).await;
        let answer = stripe.provider.authorize(&order).await;
        assert!(
            matches!(answer, Err(ProviderError::Transient(ref m)) if m.contains(&status.to_string())),
            "{status}: {answer:?}"
        );
    }
    let id = stripe.held(&order).await;
    stripe.fail_next(503, 1).await;
    assert!(matches!(
        stripe.provider.capture(&id, &order).await,
        Err(ProviderError::Transient(_))
    ));
    stripe.provider.capture(&id, &order).await.unwrap();
    assert_eq!(stripe.intent(&id).await["status"], "succeeded");
    stripe.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_read_again_when_stripe_refuses_the_old_one() {
    // GIVEN a function that read a key Stripe no longer accepts (localstripe takes
    // only sk_ keys), while the secret now holds the new one
    let stripe = Stripe::start(&["rk_revoked_000000000000", KEY]).await;
    // WHEN it authorizes
    let id = stripe
        .provider
        .authorize(&request("pm_card_visa", 500))
        .await;
    // THEN the 401 made it read the secret again and the call went through
    assert!(matches!(id, Ok(Authorization::Held(ref id)) if id.starts_with("pi_")));
    stripe.stop().await;
}

#[tokio::test]
async fn a_key_stripe_keeps_refusing_is_transient_and_not_read_on_every_call() {
    let stripe = Stripe::start(&["rk_revoked_000000000000"]).await;
    for _ in 0..3 {
        let answer = stripe
            .provider
            .authorize(&request("pm_card_visa", 500))
            .await;
        assert!(
            matches!(answer, Err(ProviderError::Transient(ref m)) if m.contains("401")),
            "{answer:?}"
        );
    }
    assert_eq!(
        stripe.keys.1.load(Ordering::SeqCst),
        2,
        "read at start and once again, not on every refused call"
    );
    stripe.stop().await;
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_a_timeout() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let provider =
        StripeProvider::connect(&url, Duration::from_millis(300), Keys::new(&[KEY])).unwrap();
    let answer = provider.authorize(&request("pm_card_visa", 100)).await;
    assert_eq!(
        answer,
        Err(ProviderError::Timeout(Duration::from_millis(300)))
    );
    held.abort();
}

#[tokio::test]
async fn a_key_unreadable_at_first_use_is_transient_and_read_again_at_the_next() {
    // GIVEN a secret that cannot be read at first (its first read fails), then can
    let stripe = Stripe::start(&["unreadable", KEY]).await;
    let order = request("pm_card_visa", 500);
    // WHEN the first authorization needs the key
    let first = stripe.provider.authorize(&order).await;
    // THEN it fails as a provider outage the saga retries, naming the cause
    assert!(
        matches!(first, Err(ProviderError::Transient(ref m)) if m.contains("Stripe secret key")),
        "{first:?}"
    );
    // AND the retry reads the key again and goes through
    assert!(matches!(
        stripe.provider.authorize(&order).await,
        Ok(Authorization::Held(_))
    ));
    assert_eq!(stripe.keys.1.load(Ordering::SeqCst), 2);
    stripe.stop().await;
}
