//! Rate limiting: quotas, keys, a bounded in-memory store, the login guard, and (feature
//! `redis`) a store shared by every instance.
//!
//! # Limits
//!
//! A [`RateLimit`] counts requests under a key — the client IP ([`RateLimit::per_ip`], from the
//! crate's one client-IP resolver: trusted proxies only, IPv4-mapped normalised, IPv6 grouped
//! by /64), the authenticated principal ([`RateLimit::per_principal`]), a header, the route, one
//! global key, or your own async function ([`RateLimit::per_key`]) — against one or more
//! [`Quota`]s written as `Quota::per_minute(5)` or as text parsed when the layer is built
//! (`"100/hour"`, `"5 per minute"`, `"10 per 30 seconds"`, `"5/minute; 100/day"`).
//!
//! ```
//! use axum::{routing::{get, post}, Router};
//! use axum_shield::{rate_limit::RateLimit, Shield};
//!
//! # fn main() -> Result<(), axum_shield::ConfigError> {
//! let shield = Shield::api()
//!     .rate_limit(RateLimit::per_ip("100/hour")?.exempt_paths(["/health"]))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .route("/login", post(|| async { "…" })
//!         .route_layer(RateLimit::per_ip("5/minute")?.name("login")?.layer()))
//!     .layer(shield);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # What it answers
//!
//! | input | answer |
//! |---|---|
//! | within every quota | the handler's response, plus `RateLimit-Policy` / `RateLimit` (unless `headers_on_success(false)`) |
//! | over a quota | 429 problem+json, `Retry-After` (seconds, rounded up, ≥ 1), `RateLimit-Policy`, `RateLimit` (`r=0`), optional `X-RateLimit-*`; one `excess_rate_limit_exceeded` event |
//! | over a quota, `dry_run(true)` | the handler's response; the event with reason `dry_run` |
//! | exempt path, IP or key | the handler's response, nothing counted |
//! | client address unknown (no `Shield`, no `ConnectInfo`) | 500 problem+json and an error log saying how to serve the app |
//! | Redis unreachable (`redis` feature) | `FailureMode::Closed`: 503; `Open`: allowed + `sys_dependency_fail` event; `Local`: the in-memory limiter decides |
//!
//! Several quotas on one limit: the first that refuses wins (later ones are not charged) and
//! the quota with the fewest units left is the one reported in `RateLimit`.
//!
//! # Memory
//!
//! The in-memory store is governor's GCRA (one 8-byte state per key, monotonic clock built
//! once per limiter) over a map with a **hard key cap** (default 100 000 per quota,
//! [`RateLimitBuilder::max_keys`]). When full, new keys share one overflow bucket
//! ([`KeyCapPolicy`]). One background task per layer forgets keys whose quota has fully come
//! back; it ends when the layer is dropped. Nothing to call.
//!
//! # Login brute force
//!
//! [`LoginGuard`] follows the OWASP Authentication Cheat Sheet: failures are counted per
//! normalised account and per IP, with exponential backoff, the same answer for existing and
//! unknown accounts, and only the handler's failures kept: every attempt is charged before
//! the credential check, so concurrent guesses cannot outrun the count, and refunded on
//! success ([`LoginAttempt`]). A full table evicts the least-failed entries; it never makes
//! users share a lock ([`LoginGuard`]).

// `Rejection` (the crate's one refusal type, ~136 bytes) is returned by value as everywhere in
// the crate; it is only built on the refusal path.
#![allow(clippy::result_large_err)]

mod headers;
mod key;
mod layer;
mod login_guard;
mod memory;
mod quota;
#[cfg(feature = "redis")]
mod redis;

pub use headers::{
    retry_after_secs, RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
};
pub use key::{client_ip_key, KeyFuture, LimitKey};
pub use layer::{RateLimit, RateLimitBuilder, RateLimitLayer, ResponseFuture};
pub use login_guard::{
    normalize_account, AccountAttempt, LoginAttempt, LoginGuard, LoginGuardBuilder,
};
pub use memory::{KeyCapPolicy, DEFAULT_EVICTION_INTERVAL, DEFAULT_MAX_KEYS};
pub use quota::{IntoQuotas, Quota, MAX_REFILL};
#[cfg(feature = "redis")]
pub use redis::{FailureMode, RedisRevocationList, RedisStore};

/// The manual clock accepted by [`RateLimitBuilder::clock`] and [`LoginGuardBuilder::clock`]
/// (re-exported from governor).
pub use governor::clock::FakeRelativeClock;
