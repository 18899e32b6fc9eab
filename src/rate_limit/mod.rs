//! Rate limiting: quotas, keys, a bounded in-memory store, the login guard, and (feature
//! `redis`) a store shared by every instance.
//!
//! # Limits
//!
//! A [`RateLimitLayer`] counts requests under a key — the client IP
//! ([`RateLimitLayer::per_ip`], from the crate's one client-IP resolver: trusted proxies only,
//! IPv4-mapped normalised, IPv6 grouped by /64), the authenticated principal
//! ([`RateLimitLayer::per_principal`]: its kind, issuer and id, so a JWT `sub` never shares an
//! API key's bucket), a header, the route, one global key, or your own async function
//! ([`RateLimitLayer::per_key`]) — against one or more [`Quota`]s written as
//! `Quota::per_minute(5)` or as text (`"100/hour"`, `"5 per minute"`, `"10 per 30 seconds"`,
//! `"5/minute; 100/day"`). Each key constructor returns a [`RateLimitBuilder`] whose setters
//! never fail; [`build`](RateLimitBuilder::build) checks every setting once and returns the
//! layer, or a [`ConfigError`](crate::ConfigError) saying what to fix.
//!
//! ```
//! use axum::{routing::{get, post}, Router};
//! use axum_shield::{rate_limit::RateLimitLayer, Shield};
//!
//! # fn main() -> Result<(), axum_shield::ConfigError> {
//! let shield = Shield::api()
//!     .rate_limit(RateLimitLayer::per_ip("100/hour").exempt_paths(["/health"]).build()?)
//!     .build()?;
//! let login_limit = RateLimitLayer::per_ip("5/minute").name("login").build()?;
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .route("/login", post(|| async { "…" }).route_layer(login_limit))
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
//! Several quotas on one limit (`"10/day; 1/minute"`): every quota is checked before any is
//! charged, in memory and in Redis alike, so a refused request spends nothing. A refusal
//! reports the refusing quota with the longest wait (its `Retry-After` is when every quota
//! allows again); an allowed request reports the quota with the fewest units left.
//!
//! # Memory
//!
//! The in-memory store is GCRA (governor's arithmetic, one 8-byte state per key and quota,
//! monotonic clock built once per limiter) over a map with a **hard key cap** (default
//! 100 000 keys per tier, [`RateLimitBuilder::max_keys`]). One background task per layer
//! forgets keys whose quotas have fully come back; it ends when the layer is dropped. Nothing
//! to call.
//!
//! At the cap ([`KeyCapPolicy::Evict`], the default) a new key makes room, as nginx's
//! `limit_req` zones do, and gets a fresh bucket of its own. Room is made a sixteenth of the
//! cap at a time (one scan of the map per that many new keys), forgetting the keys whose
//! quotas come back soonest:
//!
//! * first the keys whose quotas have all fully come back: a fresh bucket is the same state,
//!   so nothing is lost;
//! * then, if too few are, the keys that owe the least time. This is the lossy part, and the
//!   reason for the order: a flood of fresh addresses (each owing one request's worth) pushes
//!   out its own keys long before the bucket of a client driven into refusal (which owes up to
//!   a whole period). To reset such a bucket, an attacker must first make most of the table
//!   owe more, spending close to the whole burst on each of `max_keys` keys.
//!
//! The alternatives stay available: `SharedOverflow` (new keys share one bucket, so during a
//! flood every new client is refused with the flood) and `AllowUntracked` (new keys pass
//! unlimited, so the flood passes too).
//!
//! # Login brute force
//!
//! [`LoginGuardLayer`] follows the OWASP Authentication Cheat Sheet: failures are counted per
//! normalised account and per IP, with exponential backoff, the same answer for existing and
//! unknown accounts, and only the handler's failures kept: every attempt is charged before
//! the credential check, so concurrent guesses cannot outrun the count, and refunded on
//! success ([`LoginAttempt`]). A full table evicts the least-failed entries; it never makes
//! users share a lock ([`LoginGuardLayer`]).
//!
//! When the 429 starts: the first `free_failures` failures (default 5 per account) start no
//! backoff; failure `free_failures + 1` is still answered by your handler (401) and starts a
//! 1 s backoff, during which attempts get 429; each later failure doubles it. With the
//! defaults, six failures in a row get 401, and an attempt within a second of the sixth gets
//! the 429.
//!
//! ```
//! use axum::{routing::post, Router};
//! use axum_shield::rate_limit::{LoginAttempt, LoginGuardLayer};
//! use axum_shield::Rejection;
//!
//! async fn login(attempt: LoginAttempt) -> Result<&'static str, Rejection> {
//!     let (user, password) = ("alice", "…"); // from the request body
//!     attempt
//!         .verify(user, || async move { (password == "correct horse").then_some("welcome") })
//!         .await
//! }
//!
//! # fn main() -> Result<(), axum_shield::ConfigError> {
//! let guard = LoginGuardLayer::builder().account_free_failures(5).build()?;
//! let app: Router = Router::new().route("/login", post(login).route_layer(guard));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

// `Rejection` (the crate's one refusal type, ~136 bytes) is returned by value as everywhere in
// the crate; it is only built on the refusal path.
#![allow(clippy::result_large_err)]

mod builder;
pub mod future;
mod headers;
mod key;
mod layer;
mod login_guard;
mod quota;
mod store;

#[cfg(feature = "redis")]
pub use builder::FailureMode;
pub use builder::RateLimitBuilder;
pub use key::{LimitKey, PrincipalKey};
pub use layer::{RateLimit, RateLimitLayer};
pub use login_guard::{
    normalize_account, AccountAttempt, LoginAttempt, LoginGuard, LoginGuardBuilder, LoginGuardLayer,
};
pub use quota::{IntoQuotas, Quota};
pub use store::memory::KeyCapPolicy;
