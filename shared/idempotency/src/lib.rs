//! Idempotent execution of a unit of work, keyed by a caller-chosen key.
//!
//! The first call with a key takes a lock record that expires when the invocation
//! holding it must end (Lambda's deadline, as Powertools ties it to the remaining time),
//! so a crashed worker never blocks the key for longer than it could have run; it runs
//! the work and stores its result. A later
//! call with the same key and the same payload gets the stored result; with a
//! different payload it is refused, since the key was reused for another request.
//! Failures release the key so the caller can retry.
//!
//! Each take of a key draws a lock token; completing and releasing act only while the
//! stored record still carries it. A worker whose lock lapsed (its invocation outlived
//! the deadline it declared, or a clock drifted) and whose key another call took over
//! can neither overwrite that call's record nor delete it.
#![warn(missing_docs)]

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// State of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordStatus {
    /// Work is running (or its worker died; see `lock_expires_at`).
    InProgress,
    /// Work finished; `response` holds its result.
    Completed,
}

/// What the store keeps per key.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Scoped key.
    pub key: String,
    /// SHA-256 of the request payload, hex.
    pub payload_hash: String,
    /// Where the work stands.
    pub status: RecordStatus,
    /// Epoch seconds after which the record is ignored (and removed by TTL).
    pub expires_at: u64,
    /// Epoch seconds after which an in-progress lock may be taken over.
    pub lock_expires_at: u64,
    /// Stored result of completed work.
    pub response: Option<Value>,
    /// Drawn by the call that took the key ([`Record::lock_token_new`]); `complete`
    /// and `release` act only while the stored record still carries it.
    pub lock_token: String,
}

impl Record {
    /// A fresh lock token, unguessable and unique per take of a key.
    pub fn lock_token_new() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// Outcome of trying to take a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The key is ours: run the work.
    Acquired,
    /// A live record exists for the key.
    Existing(Record),
}

/// Store failure, kept as a source.
pub type StoreError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Persistence for records. Implementations must make `begin` atomic: take the key
/// only if it is absent, expired, or an in-progress lock that expired.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Writes `record` as in progress unless a live record exists.
    async fn begin(&self, record: &Record, now: u64) -> Result<Begin, StoreError>;
    /// Marks `record`'s key completed with its response, if the stored record is still
    /// `record`'s lock (same token, in progress); `false` when it was taken over.
    async fn complete(&self, record: &Record, response: &Value) -> Result<bool, StoreError>;
    /// Removes `record`'s key after failed work so the caller can retry, if the stored
    /// record is still its lock; `false` when it was taken over.
    async fn release(&self, record: &Record) -> Result<bool, StoreError>;
}

/// Why idempotent execution did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError<E> {
    /// The key was used before with a different payload.
    #[error("idempotency key was already used with a different request")]
    PayloadMismatch,
    /// Another call with this key is still running.
    #[error("a request with this idempotency key is still in progress")]
    InProgress,
    /// The record store failed.
    #[error("idempotency store failed")]
    Store(#[source] StoreError),
    /// The stored response could not be read back.
    #[error("stored response is unreadable")]
    Corrupt(#[source] serde_json::Error),
    /// The work itself failed; the key was released.
    #[error("the idempotent work failed")]
    Work(E),
}

/// Whether the result was computed now or replayed from the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// Computed by this call.
    Fresh(T),
    /// Returned from an earlier call with the same key and payload.
    Replayed(T),
}

impl<T> Outcome<T> {
    /// The result either way.
    pub fn into_inner(self) -> T {
        match self {
            Self::Fresh(t) | Self::Replayed(t) => t,
        }
    }
}

/// SHA-256 of a payload, hex encoded.
pub fn payload_hash(payload: &[u8]) -> String {
    hex::encode(Sha256::digest(payload))
}

fn epoch_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Runs work at most once per key within the expiry window.
pub struct Idempotency<S> {
    store: S,
    expiry: Duration,
}

/// Epoch seconds of `at`, rounded up: a lock taken until `at` is never released early.
fn epoch_seconds_ceil(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .unwrap_or_default()
}

impl<S: IdempotencyStore> Idempotency<S> {
    /// Keys live for `expiry`.
    pub fn new(store: S, expiry: Duration) -> Self {
        Self { store, expiry }
    }

    /// Runs `work` unless `key` already has a result for the same payload. The key is
    /// held in progress until `deadline`, the moment the invocation running the work
    /// is stopped: after it, no live worker can still be running it, and another call
    /// may take the key over.
    pub async fn run<T, E, F, Fut>(
        &self,
        key: &str,
        payload: &[u8],
        deadline: SystemTime,
        work: F,
    ) -> Result<Outcome<T>, IdempotencyError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let now = epoch_seconds();
        let record = Record {
            key: key.to_owned(),
            payload_hash: payload_hash(payload),
            status: RecordStatus::InProgress,
            expires_at: now + self.expiry.as_secs(),
            lock_expires_at: epoch_seconds_ceil(deadline),
            response: None,
            lock_token: Record::lock_token_new(),
        };
        match self
            .store
            .begin(&record, now)
            .await
            .map_err(IdempotencyError::Store)?
        {
            Begin::Existing(existing) if existing.payload_hash != record.payload_hash => {
                return Err(IdempotencyError::PayloadMismatch);
            }
            Begin::Existing(existing) => {
                return match (existing.status, existing.response) {
                    (RecordStatus::Completed, Some(response)) => serde_json::from_value(response)
                        .map(Outcome::Replayed)
                        .map_err(IdempotencyError::Corrupt),
                    _ => Err(IdempotencyError::InProgress),
                };
            }
            Begin::Acquired => {}
        }
        match work().await {
            Ok(result) => {
                let stored = serde_json::to_value(&result).map_err(IdempotencyError::Corrupt)?;
                let kept = self
                    .store
                    .complete(&record, &stored)
                    .await
                    .map_err(IdempotencyError::Store)?;
                if !kept {
                    tracing::warn!(
                        "idempotency key taken over while the work ran (the lock lapsed); the record of the call that took it stands"
                    );
                }
                Ok(Outcome::Fresh(result))
            }
            Err(e) => {
                match self.store.release(&record).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        "idempotency key taken over while the work ran; left to the call that took it"
                    ),
                    Err(release) => tracing::warn!(
                        error = %release,
                        "could not release idempotency key; it frees itself when the lock expires"
                    ),
                }
                Err(IdempotencyError::Work(e))
            }
        }
    }
}

#[async_trait]
impl<T: IdempotencyStore + ?Sized> IdempotencyStore for std::sync::Arc<T> {
    async fn begin(&self, record: &Record, now: u64) -> Result<Begin, StoreError> {
        (**self).begin(record, now).await
    }
    async fn complete(&self, record: &Record, response: &Value) -> Result<bool, StoreError> {
        (**self).complete(record, response).await
    }
    async fn release(&self, record: &Record) -> Result<bool, StoreError> {
        (**self).release(record).await
    }
}

/// Whether `stored` is still the lock `ours` took.
fn holds(stored: &Record, ours: &Record) -> bool {
    stored.status == RecordStatus::InProgress && stored.lock_token == ours.lock_token
}

/// A store in memory, for tests and single-process tools.
#[derive(Default)]
pub struct InMemoryStore(Mutex<HashMap<String, Record>>);

#[async_trait]
impl IdempotencyStore for InMemoryStore {
    async fn begin(&self, record: &Record, now: u64) -> Result<Begin, StoreError> {
        let mut records = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = records.get(&record.key) {
            let live = existing.expires_at > now
                && (existing.status == RecordStatus::Completed || existing.lock_expires_at > now);
            if live {
                return Ok(Begin::Existing(existing.clone()));
            }
        }
        records.insert(record.key.clone(), record.clone());
        Ok(Begin::Acquired)
    }
    async fn complete(&self, record: &Record, response: &Value) -> Result<bool, StoreError> {
        let mut records = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match records.get_mut(&record.key) {
            Some(r) if holds(r, record) => {
                r.status = RecordStatus::Completed;
                r.response = Some(response.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn release(&self, record: &Record) -> Result<bool, StoreError> {
        let mut records = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match records.get(&record.key) {
            Some(r) if holds(r, record) => {
                records.remove(&record.key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The deadline of an invocation with 30 s left.
    fn soon() -> SystemTime {
        SystemTime::now() + Duration::from_secs(30)
    }

    fn idem() -> Idempotency<InMemoryStore> {
        Idempotency::new(InMemoryStore::default(), Duration::from_secs(86_400))
    }

    #[tokio::test]
    async fn same_key_same_payload_runs_once_and_replays() {
        let idem = idem();
        let runs = AtomicU32::new(0);
        let work = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(41 + runs.load(Ordering::SeqCst))
        };
        assert_eq!(
            idem.run("k", b"body", soon(), work).await.unwrap(),
            Outcome::Fresh(42)
        );
        assert_eq!(
            idem.run("k", b"body", soon(), work).await.unwrap(),
            Outcome::Replayed(42)
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn same_key_other_payload_is_refused() {
        let idem = idem();
        idem.run("k", b"a", soon(), || async { Ok::<_, String>(1) })
            .await
            .unwrap();
        let err = idem
            .run("k", b"b", soon(), || async { Ok::<_, String>(2) })
            .await
            .unwrap_err();
        assert!(matches!(err, IdempotencyError::PayloadMismatch));
    }

    #[tokio::test]
    async fn failed_work_releases_the_key() {
        let idem = idem();
        let err = idem
            .run("k", b"a", soon(), || async { Err::<u8, _>("down") })
            .await
            .unwrap_err();
        assert!(matches!(err, IdempotencyError::Work("down")));
        assert_eq!(
            idem.run("k", b"a", soon(), || async { Ok::<_, &str>(7) })
                .await
                .unwrap(),
            Outcome::Fresh(7)
        );
    }

    #[tokio::test]
    async fn the_lock_lasts_until_the_invocation_deadline_and_no_longer() {
        let store = std::sync::Arc::new(InMemoryStore::default());
        let idem = Idempotency::new(store.clone(), Duration::from_secs(60));
        let deadline = UNIX_EPOCH + Duration::from_millis(4_000_000_000_250);
        let seen = idem
            .run("k", b"a", deadline, || async {
                Ok::<_, String>(store.0.lock().unwrap().get("k").map(|r| r.lock_expires_at))
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(seen, Some(4_000_000_001), "rounded up, never early");
        assert_eq!(
            epoch_seconds_ceil(UNIX_EPOCH + Duration::from_secs(4_000_000_000)),
            4_000_000_000,
            "a whole second is not rounded"
        );
    }

    #[tokio::test]
    async fn a_record_lives_for_the_expiry_from_now() {
        let store = std::sync::Arc::new(InMemoryStore::default());
        let idem = Idempotency::new(store.clone(), Duration::from_secs(3_600));
        // The clock read here, not through the code under test.
        let clock = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let before = clock();
        idem.run("k", b"a", soon(), || async { Ok::<_, String>(1) })
            .await
            .unwrap();
        let expires_at = store.0.lock().unwrap()["k"].expires_at;
        assert!(
            (before + 3_600..=clock() + 3_600).contains(&expires_at),
            "{expires_at} is an hour after {before}"
        );
    }

    #[tokio::test]
    async fn a_shared_store_records_results_and_releases_failures() {
        // The store behind an Arc, as every function holds it.
        let idem = Idempotency::new(
            std::sync::Arc::new(InMemoryStore::default()),
            Duration::from_secs(60),
        );
        idem.run("done", b"a", soon(), || async { Ok::<_, String>(1) })
            .await
            .unwrap();
        assert_eq!(
            idem.run("done", b"a", soon(), || async { Ok::<_, String>(2) })
                .await
                .unwrap(),
            Outcome::Replayed(1)
        );
        idem.run("failed", b"a", soon(), || async { Err::<u8, _>("down") })
            .await
            .unwrap_err();
        assert_eq!(
            idem.run("failed", b"a", soon(), || async { Ok::<_, &str>(3) })
                .await
                .unwrap(),
            Outcome::Fresh(3)
        );
    }

    #[tokio::test]
    async fn a_record_or_lock_ends_at_its_second() {
        let store = InMemoryStore::default();
        let record = |key: &str, status, expires_at, lock_expires_at| Record {
            key: key.into(),
            payload_hash: payload_hash(b"a"),
            status,
            expires_at,
            lock_expires_at,
            response: Some(Value::Null),
            lock_token: Record::lock_token_new(),
        };
        store
            .begin(&record("expired", RecordStatus::Completed, 100, 0), 0)
            .await
            .unwrap();
        store
            .begin(&record("unlocked", RecordStatus::InProgress, 1_000, 100), 0)
            .await
            .unwrap();
        for key in ["expired", "unlocked"] {
            let taken_over = store
                .begin(&record(key, RecordStatus::InProgress, 2_000, 200), 100)
                .await
                .unwrap();
            assert!(matches!(taken_over, Begin::Acquired), "{key} at 100");
        }
    }

    /// `key` taken by another call, locked for a minute.
    fn locked(key: &str) -> Record {
        Record {
            key: key.into(),
            payload_hash: payload_hash(b"a"),
            status: RecordStatus::InProgress,
            expires_at: u64::MAX,
            lock_expires_at: epoch_seconds() + 60,
            response: None,
            lock_token: Record::lock_token_new(),
        }
    }

    #[tokio::test]
    async fn an_in_progress_key_is_refused_until_its_lock_expires() {
        let store = InMemoryStore::default();
        let stuck = locked("k");
        store.begin(&stuck, 0).await.unwrap();
        let idem = Idempotency::new(store, Duration::from_secs(60));
        let err = idem
            .run("k", b"a", soon(), || async { Ok::<_, String>(1) })
            .await
            .unwrap_err();
        assert!(matches!(err, IdempotencyError::InProgress));

        let expired = Record {
            lock_expires_at: 1,
            ..stuck
        };
        let store = InMemoryStore::default();
        store.begin(&expired, 0).await.unwrap();
        let idem = Idempotency::new(store, Duration::from_secs(60));
        assert_eq!(
            idem.run("k", b"a", soon(), || async { Ok::<_, String>(1) })
                .await
                .unwrap(),
            Outcome::Fresh(1)
        );
    }

    #[tokio::test]
    async fn a_worker_whose_lock_lapsed_cannot_overwrite_or_delete_the_takers_record() {
        let idem = idem();
        let lapsed = SystemTime::now() - Duration::from_secs(5);
        // GIVEN a call whose lock has lapsed, and another call that takes the key over
        // and completes while the first still works
        let first = idem
            .run("k", b"a", lapsed, || async {
                let taker = idem
                    .run("k", b"a", soon(), || async {
                        Ok::<_, String>("taker".to_owned())
                    })
                    .await
                    .unwrap();
                assert_eq!(taker, Outcome::Fresh("taker".to_owned()));
                Ok::<_, String>("lapsed".to_owned())
            })
            .await
            .unwrap();
        // THEN the first gets its own result, but the stored one is the taker's
        assert_eq!(first, Outcome::Fresh("lapsed".to_owned()));
        assert_eq!(
            idem.run("k", b"a", soon(), || async {
                Ok::<_, String>("again".to_owned())
            })
            .await
            .unwrap(),
            Outcome::Replayed("taker".to_owned())
        );
        // AND a lapsed call that fails leaves the taker's lock in place
        let failed = idem
            .run("f", b"a", lapsed, || async {
                let taken = idem.store.begin(&locked("f"), epoch_seconds()).await;
                assert_eq!(taken.unwrap(), Begin::Acquired);
                Err::<u8, _>("broke")
            })
            .await;
        assert!(matches!(failed, Err(IdempotencyError::Work("broke"))));
        let still = idem
            .run("f", b"a", soon(), || async { Ok::<_, &str>(1) })
            .await;
        assert!(
            matches!(still, Err(IdempotencyError::InProgress)),
            "the taker's lock stands"
        );
    }
}
