//! The JWT revocation list in Redis (feature `redis`).

use std::time::Duration;

use super::revocation::{now_unix, RevocationError, RevocationFuture, RevocationStore, MAX_LEEWAY};
use crate::redis::RedisStore;

/// A JWT revocation list (denylist) in Redis, shared by every instance: a
/// [`RevocationStore`] to give the JWT layer, and to `revoke` tokens through.
///
/// Entries expire on their own, at the token's `exp` plus 600 s, so the list never outgrows
/// the set of revoked tokens some verifier could still accept. The 600 s are the largest
/// clock-skew leeway a verifier may be built with (`jwt::MAX_LEEWAY`): verifiers accept a
/// token until `exp` + leeway (RFC 7519 §4.1.4), and the list, shared by many instances,
/// cannot know which leeway each uses. Keys are `{prefix}:revoked:{len(iss)}:{iss}:{jti}`, so
/// two issuers cannot collide.
///
/// A Redis failure or timeout is a [`RevocationError`], on which the JWT layer fails closed
/// (503): it never admits a token it could not check.
///
/// ```no_run
/// use axum_shield::auth::{RedisRevocationList, RevocationStore};
/// use axum_shield::redis::RedisStore;
///
/// # async fn run(exp: u64) -> Result<(), Box<dyn std::error::Error>> {
/// let list = RedisRevocationList::new(RedisStore::connect("redis://127.0.0.1/").await?);
/// list.revoke("https://id.example", "8f14e45f", exp).await?;
/// assert!(list.is_revoked("https://id.example", "8f14e45f").await?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRevocationList {
    store: RedisStore,
}

impl RedisRevocationList {
    /// A revocation list on `store`.
    pub fn new(store: RedisStore) -> Self {
        Self { store }
    }

    fn key(&self, iss: &str, jti: &str) -> String {
        format!(
            "{}:revoked:{}:{iss}:{jti}",
            self.store.key_prefix(),
            iss.len()
        )
    }
}

fn unavailable() -> RevocationError {
    RevocationError::new("redis did not answer in time")
}

impl RevocationStore for RedisRevocationList {
    fn is_revoked<'a>(&'a self, issuer: &'a str, jti: &'a str) -> RevocationFuture<'a, bool> {
        Box::pin(async move {
            self.store
                .cmd::<bool>(redis::cmd("EXISTS").arg(self.key(issuer, jti)))
                .await
                .map_err(|()| unavailable())
        })
    }

    fn revoke<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: u64,
    ) -> RevocationFuture<'a, ()> {
        Box::pin(async move {
            // Keep the entry until no verifier accepts the token any more: `exp` plus the
            // largest leeway (at least a second, also for a token already past that).
            let until = expires_at.saturating_add(MAX_LEEWAY.as_secs());
            let keep = Duration::from_secs(until.saturating_sub(now_unix()).max(1));
            let ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
            self.store
                .cmd::<()>(
                    redis::cmd("SET")
                        .arg(self.key(issuer, jti))
                        .arg("1")
                        .arg("PX")
                        .arg(ms),
                )
                .await
                .map_err(|()| unavailable())
        })
    }
}
