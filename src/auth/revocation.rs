//! Token revocation keyed by (`iss`, `jti`).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ConfigError;

/// How long after a token's `exp` a revocation is kept: the largest clock-skew leeway a JWT
/// verifier may be built with (`jwt::MAX_LEEWAY`, 600 s).
///
/// A verifier accepts a token until `exp` + its leeway (RFC 7519 §4.1.4 allows "some small
/// leeway" for clock skew; RFC 8725 §3.10 asks for the claims to be validated as a whole), so
/// an entry that ended at `exp` would re-admit a revoked token for the whole leeway. Stores do
/// not know which leeway the verifiers reading them use (a Redis list is shared by many), so
/// they keep every entry for the largest one any verifier may use.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(600);

/// The future returned by [`RevocationStore`] methods.
pub type RevocationFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, RevocationError>> + Send + 'a>>;

/// A revocation store could not answer. The JWT layer then fails closed (503).
#[derive(Debug, Clone, thiserror::Error)]
#[error("revocation store failed: {message}")]
pub struct RevocationError {
    message: String,
}

impl RevocationError {
    /// An error with a message for logs (never shown to clients).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A denylist of revoked tokens, keyed by their issuer and `jti` (RFC 7519 §4.1.7: the `jti`
/// is unique per issuer, so the pair identifies one token).
///
/// The JWT layer asks [`is_revoked`](Self::is_revoked) for every verified token that has a
/// `jti`. Implementations keep an entry until `expires_at` (the token's `exp`) plus the
/// largest clock-skew leeway a verifier may use (600 s, `jwt::MAX_LEEWAY`): verifiers accept a
/// token until `exp` + leeway (RFC 7519 §4.1.4), so an entry dropped at `exp` would re-admit
/// the revoked token for that long. After that the token is refused as expired anyway. The
/// trait is object safe (`Arc<dyn
/// RevocationStore>`); [`MemoryRevocationStore`] serves one instance, a Redis store serves
/// many (feature `redis`).
///
/// ```
/// use axum_shield::auth::{MemoryRevocationStore, RevocationStore};
///
/// # tokio_test_block(async {
/// let store = MemoryRevocationStore::new(10_000)?;
/// let far_future = 4_102_444_800; // 2100-01-01
/// store.revoke("https://id.example", "token-1", far_future).await?;
/// assert!(store.is_revoked("https://id.example", "token-1").await?);
/// assert!(!store.is_revoked("https://other.example", "token-1").await?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub trait RevocationStore: Send + Sync + 'static {
    /// Whether the token (`issuer`, `jti`) is revoked. `issuer` is empty for tokens without
    /// `iss`.
    fn is_revoked<'a>(&'a self, issuer: &'a str, jti: &'a str) -> RevocationFuture<'a, bool>;

    /// Revokes the token (`issuer`, `jti`) whose `exp` is `expires_at` (Unix seconds). The
    /// entry must be kept at least until `expires_at` plus 600 s, the largest leeway a
    /// verifier may use (see the trait docs).
    fn revoke<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: u64,
    ) -> RevocationFuture<'a, ()>;
}

/// (`iss`, `jti`) → until when (Unix seconds) each revoked token stays revoked: its `exp`
/// plus [`MAX_LEEWAY`].
type Denylist = HashMap<(Box<str>, Box<str>), u64>;

/// An in-memory [`RevocationStore`] for a single instance: entries expire 600 s (the largest
/// verifier leeway) after their tokens, and the store is bounded.
///
/// When it is full of unexpired entries, [`revoke`](RevocationStore::revoke) fails rather
/// than forgetting an earlier revocation (which would silently re-admit that token).
#[derive(Clone)]
pub struct MemoryRevocationStore {
    inner: Arc<Mutex<Denylist>>,
    capacity: usize,
}

impl MemoryRevocationStore {
    /// A store holding at most `capacity` revoked tokens at a time.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `capacity` is zero.
    pub fn new(capacity: usize) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::new(
                "revocation.capacity",
                "the capacity is zero",
                "allow at least one entry, e.g. 100000",
            ));
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            capacity,
        })
    }

    /// How many live entries the store holds (a token's entry lives until its `exp` plus the
    /// largest leeway, 600 s).
    pub fn len(&self) -> usize {
        let now = now_unix();
        self.lock().values().filter(|exp| **exp > now).count()
    }

    /// Whether the store holds no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Denylist> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RevocationStore for MemoryRevocationStore {
    fn is_revoked<'a>(&'a self, issuer: &'a str, jti: &'a str) -> RevocationFuture<'a, bool> {
        let now = now_unix();
        let key = (Box::from(issuer), Box::from(jti));
        let revoked = self.lock().get(&key).is_some_and(|exp| *exp > now);
        Box::pin(std::future::ready(Ok(revoked)))
    }

    fn revoke<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: u64,
    ) -> RevocationFuture<'a, ()> {
        let now = now_unix();
        // Kept for the largest leeway after `exp`: no verifier accepts the token after that.
        let expires_at = expires_at.saturating_add(MAX_LEEWAY.as_secs());
        let mut map = self.lock();
        let key: (Box<str>, Box<str>) = (Box::from(issuer), Box::from(jti));
        if !map.contains_key(&key) && map.len() >= self.capacity {
            map.retain(|_, exp| *exp > now);
        }
        let result = if map.contains_key(&key) || map.len() < self.capacity {
            let entry = map.entry(key).or_insert(expires_at);
            *entry = (*entry).max(expires_at);
            Ok(())
        } else {
            Err(RevocationError::new("in-memory revocation store is full"))
        };
        Box::pin(std::future::ready(result))
    }
}

impl fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRevocationStore")
            .field("capacity", &self.capacity)
            .field("entries", &self.lock().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_expire_with_their_token_and_capacity_is_never_exceeded() {
        let store = MemoryRevocationStore::new(2).unwrap();
        let now = now_unix();
        // Expired beyond the largest leeway: no verifier accepts it any more.
        store
            .revoke("iss", "old", now - MAX_LEEWAY.as_secs() - 1)
            .await
            .unwrap();
        store.revoke("iss", "a", now + 100).await.unwrap();
        assert!(!store.is_revoked("iss", "old").await.unwrap());
        // Full: the expired entry is purged to make room.
        store.revoke("iss", "b", now + 100).await.unwrap();
        assert!(store.revoke("iss", "c", now + 100).await.is_err());
        assert!(store.is_revoked("iss", "a").await.unwrap());
        assert!(store.is_revoked("iss", "b").await.unwrap());
        assert!(!store.is_revoked("other", "a").await.unwrap());
        assert_eq!(store.len(), 2);
        assert!(MemoryRevocationStore::new(0).is_err());
    }
}
