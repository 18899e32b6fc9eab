//! The login guard: brute-force and credential-stuffing protection for a login handler,
//! following the OWASP Authentication Cheat Sheet ("Protect against automated attacks",
//! "Account lockout", "Authentication and error messages").
//!
//! - Failed attempts are counted per **account** (the username normalised with
//!   [`normalize_account`]: NFKC, trimmed, lower-cased) and per **client IP** (the crate's
//!   resolver; IPv6 by /64), over a window (default 15 minutes).
//! - After `free_failures` failures (default 5 per account, 20 per IP) every further failure
//!   doubles a backoff (1 s, 2 s, 4 s … capped at 15 minutes) during which attempts are refused
//!   with 429 and `Retry-After` — a lockout that expires on its own, so an attacker cannot lock
//!   a user out for good.
//! - Unknown accounts are counted exactly like existing ones and every refusal is the same
//!   429, so the guard reveals nothing about which accounts exist. Answer failures with
//!   [`AccountAttempt::failed`], one generic 401 for wrong user and wrong password alike.
//! - Only the handler's outcome charges: a success clears the account's failures; a failure
//!   (or an attempt dropped without a verdict, e.g. on an early `?`) counts.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, FromRequestParts};
use dashmap::DashMap;
use governor::clock::{Clock, FakeRelativeClock};
use http::request::Parts;
use http::{Extensions, Method, Uri};
use tokio::sync::Notify;
use unicode_normalization::UnicodeNormalization;

use super::headers::{retry_after_secs, retry_after_value};
use super::key::{client_ip_key, LimitKey};
use super::memory::{sweep, Evict, EvictorStart, LimiterClock};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::rejection::{Rejection, RejectionKind};
use crate::ConfigError;

/// Normalises a login name so that `Alice`, ` alice ` and `ａｌｉｃｅ` (full-width) count as one
/// account: Unicode NFKC, trimmed, lower-cased, at most 256 characters.
///
/// ```
/// use axum_shield::rate_limit::normalize_account;
/// assert_eq!(normalize_account(" Alice@Example.COM "), "alice@example.com");
/// assert_eq!(normalize_account("ａｌｉｃｅ"), "alice");
/// ```
pub fn normalize_account(name: &str) -> String {
    name.nfkc()
        .collect::<String>()
        .trim()
        .to_lowercase()
        .chars()
        .take(256)
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) free_failures: u32,
    pub(crate) base: Duration,
    pub(crate) max: Duration,
    pub(crate) window: Duration,
}

impl Backoff {
    /// The lock after the `failures`-th failure: none within the free allowance, then
    /// `base · 2^(failures - free - 1)`, capped.
    pub(crate) fn lock_after(&self, failures: u32) -> Duration {
        if failures <= self.free_failures {
            return Duration::ZERO;
        }
        let exp = (failures - self.free_failures - 1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct FailState {
    failures: u32,
    last: u64,
    locked_until: u64,
}

/// Failure counts for one dimension (accounts or IPs), with a hard key cap.
struct FailureTable {
    map: DashMap<LimitKey, FailState>,
    len: AtomicUsize,
    max_keys: usize,
    backoff: Backoff,
}

impl FailureTable {
    fn new(max_keys: usize, backoff: Backoff) -> Self {
        Self {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            max_keys,
            backoff,
        }
    }

    /// Remaining lock at `now`, if any.
    fn locked(&self, key: &LimitKey, now: u64) -> Option<Duration> {
        let state = self.map.get(key).map(|s| *s).or_else(|| {
            // Over the cap new keys share the overflow entry.
            (self.len.load(Ordering::Relaxed) >= self.max_keys)
                .then(|| self.map.get(&LimitKey::Global).map(|s| *s))
                .flatten()
        })?;
        (state.locked_until > now).then(|| Duration::from_nanos(state.locked_until - now))
    }

    /// Records a failure; returns the new lock (zero when still within the allowance).
    fn fail(&self, key: &LimitKey, now: u64) -> Duration {
        // Reserve a slot before inserting so concurrent failures never pass the cap; beyond
        // it new keys share the overflow entry. `len` always equals the map's length.
        let (key, reserved) = if self.map.contains_key(key) {
            (key.clone(), false)
        } else if self.len.fetch_add(1, Ordering::AcqRel) >= self.max_keys {
            self.len.fetch_sub(1, Ordering::AcqRel);
            (LimitKey::Global, false)
        } else {
            (key.clone(), true)
        };
        let entry = self.map.entry(key);
        match (&entry, reserved) {
            (dashmap::Entry::Occupied(_), true) => {
                self.len.fetch_sub(1, Ordering::AcqRel);
            }
            (dashmap::Entry::Vacant(_), false) => {
                self.len.fetch_add(1, Ordering::AcqRel);
            }
            _ => {}
        }
        let mut entry = entry.or_default();
        let window = self.backoff.window.as_nanos() as u64;
        if now.saturating_sub(entry.last) > window && entry.locked_until <= now {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        let lock = self.backoff.lock_after(entry.failures);
        if !lock.is_zero() {
            entry.locked_until = now.saturating_add(lock.as_nanos() as u64);
        }
        lock
    }

    fn clear(&self, key: &LimitKey) {
        if self.map.remove(key).is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn evict(&self, now: u64) {
        let window = self.backoff.window.as_nanos() as u64;
        sweep(&self.map, &self.len, |s| {
            s.locked_until > now || now.saturating_sub(s.last) <= window
        });
    }

    fn tracked(&self) -> usize {
        self.map.len()
    }
}

struct GuardInner {
    accounts: FailureTable,
    ips: FailureTable,
    clock: LimiterClock,
    /// Starts the eviction task (at build, or on the first attempt without a runtime then).
    evictor: EvictorStart,
    #[cfg(feature = "redis")]
    redis: Option<super::redis::RedisGuard>,
}

impl Drop for GuardInner {
    fn drop(&mut self) {
        self.evictor.stop();
    }
}

impl Evict for GuardInner {
    fn evict(&self) {
        let now = self.now();
        self.accounts.evict(now);
        self.ips.evict(now);
    }
}

impl GuardInner {
    fn now(&self) -> u64 {
        // Nanoseconds since the guard was built (or of the manual clock); never 0-based
        // wrap-around since both clocks are monotonic.
        self.clock.now().as_u64().saturating_add(1)
    }
}

/// Counts failed logins per account and per IP and refuses attempts during backoff.
///
/// Install it with [`layer`](Self::layer) on the login route (or the router) and take a
/// [`LoginAttempt`] in the handler:
///
/// ```
/// use axum::{routing::post, Json, Router};
/// use axum_shield::rate_limit::{LoginAttempt, LoginGuard};
/// use axum_shield::Rejection;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Credentials { username: String, password: String }
///
/// async fn login(attempt: LoginAttempt, Json(c): Json<Credentials>) -> Result<&'static str, Rejection> {
///     let attempt = attempt.account(&c.username).await?; // 429 while in backoff
///     if c.username == "alice" && c.password == "correct horse" { // your real check here
///         attempt.succeeded().await;
///         Ok("welcome")
///     } else {
///         Err(attempt.failed().await) // one 401 for unknown users and wrong passwords
///     }
/// }
///
/// # fn main() -> Result<(), axum_shield::ConfigError> {
/// let guard = LoginGuard::builder().build()?;
/// let app: Router = Router::new().route("/login", post(login)).layer(guard.layer());
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LoginGuard(Arc<GuardInner>);

impl fmt::Debug for LoginGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginGuard")
            .field("accounts", &self.0.accounts.backoff)
            .field("ips", &self.0.ips.backoff)
            .field("tracked_accounts", &self.0.accounts.tracked())
            .field("tracked_ips", &self.0.ips.tracked())
            .finish_non_exhaustive()
    }
}

/// Builder of a [`LoginGuard`].
#[derive(Debug, Clone)]
pub struct LoginGuardBuilder {
    account: Backoff,
    ip: Backoff,
    max_keys: usize,
    clock: Option<FakeRelativeClock>,
    eviction_interval: Duration,
    #[cfg(feature = "redis")]
    redis: Option<super::RedisStore>,
}

impl Default for LoginGuardBuilder {
    fn default() -> Self {
        let window = Duration::from_secs(15 * 60);
        Self {
            account: Backoff {
                free_failures: 5,
                base: Duration::from_secs(1),
                max: window,
                window,
            },
            ip: Backoff {
                free_failures: 20,
                base: Duration::from_secs(1),
                max: window,
                window,
            },
            max_keys: super::DEFAULT_MAX_KEYS,
            clock: None,
            eviction_interval: super::DEFAULT_EVICTION_INTERVAL,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl LoginGuard {
    /// A builder with the defaults: 5 free failures per account and 20 per IP within 15
    /// minutes, then a backoff from 1 s doubling up to 15 minutes.
    pub fn builder() -> LoginGuardBuilder {
        LoginGuardBuilder::default()
    }

    /// The layer that makes the guard available to [`LoginAttempt`] (an `Extension`).
    pub fn layer(&self) -> Extension<LoginGuard> {
        Extension(self.clone())
    }

    /// Starts an attempt from `client` (already the grouped key, see
    /// [`client_ip_key`]) without an HTTP request — for custom flows and tests.
    ///
    /// # Errors
    ///
    /// A 429 [`Rejection`] while the client IP is in backoff.
    pub async fn attempt(&self, client: LimitKey) -> Result<LoginAttempt, Rejection> {
        let attempt = LoginAttempt {
            guard: self.clone(),
            ip: client,
            context: None,
        };
        attempt.check_ip().await?;
        Ok(attempt)
    }

    /// How many accounts and IPs the in-memory tables track now.
    pub fn tracked(&self) -> (usize, usize) {
        (self.0.accounts.tracked(), self.0.ips.tracked())
    }
}

fn lock_error(kind: &'static str) -> ConfigError {
    ConfigError::new(
        kind,
        "backoff durations must be at least one millisecond and the maximum not below the base",
        "use for example a base of 1 s and a maximum of 15 minutes",
    )
}

impl LoginGuardBuilder {
    /// Failures per account allowed within the window before backoff starts (default 5).
    pub fn account_free_failures(mut self, n: u32) -> Self {
        self.account.free_failures = n;
        self
    }

    /// Failures per client IP allowed within the window before backoff starts (default 20).
    pub fn ip_free_failures(mut self, n: u32) -> Self {
        self.ip.free_failures = n;
        self
    }

    /// The first backoff and its cap (defaults 1 s and 15 minutes), for accounts and IPs.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `base` is under 1 ms or `max < base`.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Result<Self, ConfigError> {
        if base < Duration::from_millis(1) || max < base {
            return Err(lock_error("login_guard.backoff"));
        }
        for b in [&mut self.account, &mut self.ip] {
            b.base = base;
            b.max = max;
        }
        Ok(self)
    }

    /// How long failures are remembered (default 15 minutes).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] under one second.
    pub fn window(mut self, window: Duration) -> Result<Self, ConfigError> {
        if window < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "login_guard.window",
                "a window under one second forgets failures at once",
                "use a window such as 15 minutes",
            ));
        }
        self.account.window = window;
        self.ip.window = window;
        Ok(self)
    }

    /// The most accounts and IPs tracked in memory (each; default 100 000). Beyond it, new
    /// ones share one overflow entry.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for 0.
    pub fn max_keys(mut self, max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::new(
                "login_guard.max_keys",
                "a key cap of 0 cannot track any account",
                "use a cap such as 100000",
            ));
        }
        self.max_keys = max;
        Ok(self)
    }

    /// Drives the guard from a manual clock (tests).
    pub fn clock(mut self, clock: FakeRelativeClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Keeps the failure counts in Redis so every instance shares them.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, store: super::RedisStore) -> Self {
        self.redis = Some(store);
        self
    }

    /// Builds the guard and starts its eviction task: now when a Tokio runtime is running,
    /// otherwise on the first login attempt.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for inconsistent settings.
    pub fn build(self) -> Result<LoginGuard, ConfigError> {
        if self.account.max < self.account.base {
            return Err(lock_error("login_guard.backoff"));
        }
        let clock = match self.clock {
            Some(c) => LimiterClock::Manual(c),
            None => LimiterClock::monotonic(),
        };
        let inner = Arc::new(GuardInner {
            accounts: FailureTable::new(self.max_keys, self.account),
            ips: FailureTable::new(self.max_keys, self.ip),
            clock,
            // Nothing wakes it early: the tables send new keys to their overflow entry.
            evictor: EvictorStart::new(self.eviction_interval, Arc::new(Notify::new())),
            #[cfg(feature = "redis")]
            redis: self
                .redis
                .map(|store| super::redis::RedisGuard::new(store, self.account, self.ip)),
        });
        inner.evictor.ensure(&inner);
        Ok(LoginGuard(inner))
    }
}

struct RequestContext {
    method: Method,
    uri: Uri,
    extensions: Extensions,
}

/// Extractor of a login attempt: refuses at once (429) while the client IP is in backoff.
///
/// Call [`account`](Self::account) with the submitted username to check the account too.
/// Needs [`LoginGuard::layer`] on the route; without it the request fails with a 500 and an
/// error log.
pub struct LoginAttempt {
    guard: LoginGuard,
    ip: LimitKey,
    context: Option<Arc<RequestContext>>,
}

impl fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

impl LoginAttempt {
    fn event(&self, kind: SecurityEventKind) -> SecurityEvent {
        match &self.context {
            Some(c) => SecurityEvent::for_request(kind, &c.method, &c.uri, &c.extensions),
            None => SecurityEvent::new(kind),
        }
    }

    fn refuse(&self, wait: Duration, scope: &'static str) -> Rejection {
        self.event(SecurityEventKind::ExcessRateLimitExceeded)
            .reason("login_backoff")
            .field("scope", scope)
            .field("retry_after", retry_after_secs(wait).to_string())
            .emit();
        let (name, value) = retry_after_value(wait);
        // The same answer whether the account exists or not, and whichever scope locked.
        Rejection::new(RejectionKind::RateLimited)
            .with_detail("Too many failed login attempts; retry later.")
            .with_header(name, value)
    }

    async fn locked(&self, key: &LimitKey, account: bool) -> Option<Duration> {
        let inner = &self.guard.0;
        #[cfg(feature = "redis")]
        if let Some(redis) = &inner.redis {
            if let Some(answer) = redis
                .locked(
                    key,
                    account,
                    &self.event(SecurityEventKind::SysDependencyFail),
                )
                .await
            {
                return answer;
            }
        }
        let table = if account { &inner.accounts } else { &inner.ips };
        table.locked(key, inner.now())
    }

    async fn check_ip(&self) -> Result<(), Rejection> {
        // Every attempt starts here: a guard built outside a runtime starts its eviction task
        // on the first one.
        self.guard.0.evictor.ensure(&self.guard.0);
        match self.locked(&self.ip, false).await {
            Some(wait) => Err(self.refuse(wait, "ip")),
            None => Ok(()),
        }
    }

    /// Checks the account named `username` (normalised with [`normalize_account`]) and
    /// returns the attempt to settle with [`AccountAttempt::succeeded`] or
    /// [`AccountAttempt::failed`].
    ///
    /// # Errors
    ///
    /// The same 429 [`Rejection`] (with `Retry-After`) while the account or the client IP is
    /// in backoff, whether or not the account exists.
    pub async fn account(self, username: &str) -> Result<AccountAttempt, Rejection> {
        self.check_ip().await?;
        let account = LimitKey::text(normalize_account(username));
        if let Some(wait) = self.locked(&account, true).await {
            return Err(self.refuse(wait, "account"));
        }
        Ok(AccountAttempt {
            attempt: Some(self),
            account,
        })
    }
}

impl LoginAttempt {
    /// Runs your credential check for `username` under the guard: refuses with 429 during
    /// backoff (without calling `check`), charges a failure and answers the generic 401 when
    /// `check` yields `None`, clears the account's failures when it yields `Some`.
    ///
    /// ```
    /// use axum_shield::rate_limit::LoginAttempt;
    /// use axum_shield::Rejection;
    ///
    /// async fn login(attempt: LoginAttempt) -> Result<String, Rejection> {
    ///     let (user, password) = ("alice", "…"); // from the request body
    ///     let id = attempt
    ///         .verify(user, || async move { (password == "correct horse").then_some(42) })
    ///         .await?;
    ///     Ok(format!("user {id}"))
    /// }
    /// # let _ = axum::Router::<()>::new().route("/login", axum::routing::post(login));
    /// ```
    ///
    /// # Errors
    ///
    /// The 429 of [`account`](Self::account), or the 401 of [`AccountAttempt::failed`].
    pub async fn verify<T, F, Fut>(self, username: &str, check: F) -> Result<T, Rejection>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let attempt = self.account(username).await?;
        match check().await {
            Some(value) => {
                attempt.succeeded().await;
                Ok(value)
            }
            None => Err(attempt.failed().await),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LoginAttempt {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(guard) = parts.extensions.get::<LoginGuard>().cloned() else {
            tracing::error!(
                target: "axum_shield::config",
                "LoginAttempt used without a LoginGuard: add `.layer(guard.layer())` to the login route"
            );
            return Err(Rejection::new(RejectionKind::Misconfigured)
                .with_detail("The server is misconfigured; the error is in its log."));
        };
        let ip = client_ip_key(parts)?;
        let attempt = LoginAttempt {
            guard,
            ip,
            context: Some(Arc::new(RequestContext {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                extensions: parts.extensions.clone(),
            })),
        };
        attempt.check_ip().await?;
        Ok(attempt)
    }
}

/// A login attempt for one account, to settle with the handler's outcome.
///
/// Dropping it without a verdict counts as a failure (fail closed).
pub struct AccountAttempt {
    attempt: Option<LoginAttempt>,
    account: LimitKey,
}

impl fmt::Debug for AccountAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountAttempt").finish_non_exhaustive()
    }
}

impl AccountAttempt {
    /// The credentials were right: clears the account's failures (the IP's stay) and emits
    /// `authn_login_success`.
    pub async fn succeeded(mut self) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let inner = &attempt.guard.0;
        #[cfg(feature = "redis")]
        if let Some(redis) = &inner.redis {
            redis
                .clear(
                    &self.account,
                    &attempt.event(SecurityEventKind::SysDependencyFail),
                )
                .await;
        }
        inner.accounts.clear(&self.account);
        attempt
            .event(SecurityEventKind::AuthnLoginSuccess)
            .principal(account_text(&self.account))
            .emit();
    }

    /// The credentials were wrong (or the account does not exist): counts the failure for the
    /// account and the IP, emits `authn_login_fail` (and `authn_login_lock` when a backoff
    /// starts), and returns the one generic 401 to answer with.
    pub async fn failed(mut self) -> Rejection {
        if let Some(attempt) = self.attempt.take() {
            record_failure(&attempt, &self.account).await;
        }
        // RFC 9110 §15.5.2: a 401 carries a challenge; the login exchanges credentials for a
        // bearer token, so the challenge names that scheme.
        Rejection::new(RejectionKind::InvalidCredentials).with_header(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        )
    }
}

fn account_text(key: &LimitKey) -> String {
    match key {
        LimitKey::Text(t) => t.to_string(),
        other => other.to_string(),
    }
}

async fn record_failure(attempt: &LoginAttempt, account: &LimitKey) {
    let inner = &attempt.guard.0;
    #[allow(unused_mut)]
    let mut locks: Option<(Duration, Duration)> = None;
    #[cfg(feature = "redis")]
    if let Some(redis) = &inner.redis {
        locks = redis
            .fail(
                account,
                &attempt.ip,
                &attempt.event(SecurityEventKind::SysDependencyFail),
            )
            .await;
    }
    let (account_lock, ip_lock) = match locks {
        Some(locks) => locks,
        None => {
            let now = inner.now();
            (
                inner.accounts.fail(account, now),
                inner.ips.fail(&attempt.ip, now),
            )
        }
    };
    attempt
        .event(SecurityEventKind::AuthnLoginFail)
        .reason("bad_credentials")
        .field("account", account_text(account))
        .emit();
    if !account_lock.is_zero() || !ip_lock.is_zero() {
        attempt
            .event(SecurityEventKind::AuthnLoginLock)
            .reason(if account_lock >= ip_lock {
                "account_backoff"
            } else {
                "ip_backoff"
            })
            .field("account", account_text(account))
            .field(
                "lock_secs",
                retry_after_secs(account_lock.max(ip_lock)).to_string(),
            )
            .emit();
    }
}

impl Drop for AccountAttempt {
    fn drop(&mut self) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let account = self.account.clone();
        #[cfg(feature = "redis")]
        if attempt.guard.0.redis.is_some() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { record_failure(&attempt, &account).await });
            }
            return;
        }
        let inner = &attempt.guard.0;
        let now = inner.now();
        inner.accounts.fail(&account, now);
        inner.ips.fail(&attempt.ip, now);
        attempt
            .event(SecurityEventKind::AuthnLoginFail)
            .reason("no_verdict")
            .field("account", account_text(&account))
            .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    fn guard(clock: &FakeRelativeClock) -> LoginGuard {
        LoginGuard::builder()
            .account_free_failures(3)
            .ip_free_failures(10)
            .clock(clock.clone())
            .build()
            .unwrap()
    }

    fn ip(s: &str) -> LimitKey {
        LimitKey::Ip(s.parse::<IpAddr>().unwrap())
    }

    async fn fail(g: &LoginGuard, from: &str, user: &str) -> Result<Rejection, Rejection> {
        let attempt = g.attempt(ip(from)).await?;
        Ok(attempt.account(user).await?.failed().await)
    }

    #[test]
    fn table_count_stays_exact_under_concurrent_fail_clear_and_evict() {
        // `clear` (a success) and new failures during a sweep must neither be subtracted twice
        // nor hide removals: a drifting count sends every new account to the overflow entry
        // (or wraps below zero).
        let table = FailureTable::new(1_000_000, LoginGuardBuilder::default().account);
        let now = AtomicU64::new(1);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let (table, now, done) = (&table, &now, &done);
                s.spawn(move || {
                    for i in 0..20_000u32 {
                        let key = LimitKey::Text(format!("user{t}-{i}").into());
                        table.fail(&key, now.load(Ordering::Relaxed));
                        if i % 2 == 0 {
                            table.clear(&key);
                        }
                    }
                    done.store(true, Ordering::Release);
                });
            }
            let (table, now, done) = (&table, &now, &done);
            s.spawn(move || {
                for _ in 0..10_000 {
                    // Past the window: every entry not locked is idle.
                    let t = now.fetch_add(3_600_000_000_000, Ordering::Relaxed);
                    table.evict(t + 3_600_000_000_000);
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                }
            });
        });
        assert_eq!(table.len.load(Ordering::Acquire), table.map.len());
        table.evict(u64::MAX);
        assert_eq!(table.len.load(Ordering::Acquire), 0);
        assert_eq!(table.map.len(), 0);
    }

    #[test]
    fn a_guard_built_without_a_runtime_starts_eviction_on_first_use() {
        let guard = LoginGuard::builder().build().unwrap();
        assert!(!guard.0.evictor.is_started(), "no runtime at build");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let _ = guard.attempt(ip("192.0.2.1")).await;
        });
        assert!(guard.0.evictor.is_started());
    }

    #[tokio::test]
    async fn brute_force_on_one_account_is_slowed_exponentially() {
        let clock = FakeRelativeClock::default();
        let g = guard(&clock);
        for _ in 0..3 {
            let r = fail(&g, "192.0.2.1", "alice").await.unwrap();
            assert_eq!(r.status(), 401);
        }
        // 4th failure starts a 1 s backoff, then 2 s, 4 s.
        fail(&g, "192.0.2.1", "alice").await.unwrap();
        let refused = fail(&g, "192.0.2.1", "alice").await.unwrap_err();
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()["retry-after"], "1");
        clock.advance(Duration::from_secs(1));
        fail(&g, "192.0.2.1", "alice").await.unwrap();
        assert_eq!(
            fail(&g, "192.0.2.1", "alice").await.unwrap_err().headers()["retry-after"],
            "2"
        );
        clock.advance(Duration::from_secs(2));
        fail(&g, "192.0.2.1", "alice").await.unwrap();
        assert_eq!(
            fail(&g, "192.0.2.1", "alice").await.unwrap_err().headers()["retry-after"],
            "4"
        );
    }

    #[tokio::test]
    async fn distributed_guessing_from_many_ips_still_locks_the_account() {
        let clock = FakeRelativeClock::default();
        let g = guard(&clock);
        for i in 0..4 {
            fail(&g, &format!("198.51.100.{i}"), "Alice").await.unwrap();
        }
        let r = fail(&g, "203.0.113.50", " ALICE ").await.unwrap_err();
        assert_eq!(r.status(), 429);
    }

    #[tokio::test]
    async fn credential_stuffing_from_one_ip_is_slowed_across_accounts() {
        let clock = FakeRelativeClock::default();
        let g = guard(&clock);
        for i in 0..11 {
            fail(&g, "192.0.2.7", &format!("user{i}")).await.unwrap();
        }
        let r = fail(&g, "192.0.2.7", "fresh-user").await.unwrap_err();
        assert_eq!(r.status(), 429);
        // Another client is unaffected.
        assert!(fail(&g, "192.0.2.8", "fresh-user").await.is_ok());
    }

    #[tokio::test]
    async fn unknown_and_existing_accounts_get_identical_answers() {
        let clock = FakeRelativeClock::default();
        let g = guard(&clock);
        for _ in 0..4 {
            fail(&g, "192.0.2.1", "alice").await.unwrap();
            fail(&g, "192.0.2.2", "no-such-user").await.unwrap();
        }
        let a = fail(&g, "192.0.2.1", "alice").await.unwrap_err();
        let b = fail(&g, "192.0.2.2", "no-such-user").await.unwrap_err();
        assert_eq!(a.status(), b.status());
        assert_eq!(a.detail(), b.detail());
        assert_eq!(a.headers(), b.headers());
    }

    #[tokio::test]
    async fn success_clears_the_account_and_only_failures_charge() {
        let clock = FakeRelativeClock::default();
        let g = guard(&clock);
        for _ in 0..3 {
            fail(&g, "192.0.2.1", "bob").await.unwrap();
        }
        let ok = g.attempt(ip("192.0.2.1")).await.unwrap();
        ok.account("bob").await.unwrap().succeeded().await;
        for _ in 0..20 {
            let ok = g.attempt(ip("192.0.2.9")).await.unwrap();
            ok.account("bob").await.unwrap().succeeded().await;
        }
        assert!(fail(&g, "192.0.2.1", "bob").await.is_ok());
    }

    #[tokio::test]
    async fn an_attempt_dropped_without_verdict_counts_as_a_failure() {
        let clock = FakeRelativeClock::default();
        let g = guard(&clock);
        for _ in 0..4 {
            let a = g.attempt(ip("192.0.2.1")).await.unwrap();
            drop(a.account("carol").await.unwrap());
        }
        assert!(fail(&g, "192.0.2.1", "carol").await.is_err());
    }

    #[tokio::test]
    async fn failures_are_forgotten_after_the_window_and_tables_stay_bounded() {
        let clock = FakeRelativeClock::default();
        let g = LoginGuard::builder()
            .max_keys(50)
            .unwrap()
            .clock(clock.clone())
            .build()
            .unwrap();
        for i in 0..500 {
            let _ = fail(
                &g,
                &format!("10.0.{}.{}", i / 250, i % 250),
                &format!("u{i}"),
            )
            .await;
        }
        let (accounts, ips) = g.tracked();
        assert!(accounts <= 51 && ips <= 51, "{accounts} {ips}");
        clock.advance(Duration::from_secs(16 * 60));
        g.0.evict();
        assert_eq!(g.tracked(), (0, 0));
    }
}
