//! The Redis connection shared by the Redis-backed stores (feature `redis`): rate limits and
//! the login guard (`rate_limit`) and the JWT revocation list (`auth`).
//!
//! It is part of the shared model, like the rejection and the client IP: each concern keeps
//! its own scripts and keys, and they meet only in this connection. Connections go through
//! the redis crate's `ConnectionManager`, made on first use and remade after failures, and
//! every call is cut at the store's timeout so that a slow Redis becomes each store's failure
//! mode, never a hung request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::ConfigError;

/// Default wait for Redis before the failure mode applies.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// The longest wait [`RedisStore::timeout`] accepts: the connection manager's own connection
/// and response timeouts.
const MAX_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to Redis shared by rate limits, login guards and revocation lists.
///
/// Cheap to clone: clones share one connection.
///
/// ```no_run
/// use axum_shield::rate_limit::{FailureMode, RateLimitLayer};
/// use axum_shield::redis::RedisStore;
///
/// # async fn run() -> Result<(), axum_shield::ConfigError> {
/// let redis = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let limit = RateLimitLayer::per_ip("100/hour")
///     .redis(redis, FailureMode::Local)
///     .build()?;
/// # let _ = limit;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares a connection to `url` (`redis://host:port/db`, `rediss://` for TLS if the redis
    /// crate has it). The connection is made on first use and remade after failures, so the
    /// application starts even while Redis is down.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the URL is malformed.
    pub async fn connect(url: &str) -> Result<Self, ConfigError> {
        let bad = || {
            ConfigError::new(
                "redis.url",
                "the Redis URL is malformed",
                "use a URL such as redis://127.0.0.1:6379/",
            )
        };
        let client = redis::Client::open(url).map_err(|_| bad())?;
        // The connection's own timeouts are the ceiling of `timeout()`; each call is cut
        // at the store's (shorter, by default) timeout and then takes the failure mode.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(MAX_TIMEOUT))
            .set_response_timeout(Some(MAX_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|_| bad())?;
        Ok(Self {
            conn,
            prefix: Arc::from("axum-shield"),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Prefix of every key this crate writes (default `axum-shield`).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// The prefix of every key this crate writes.
    pub(crate) fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// How long to wait for Redis before applying the failure mode (default 250 ms, at most
    /// 5 s: longer values are cut to 5 s, the connection's own timeouts).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, ()> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(()),
        }
    }

    pub(crate) async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ()> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(()),
        }
    }
}
