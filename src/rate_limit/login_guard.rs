//! The login guard: brute-force and credential-stuffing protection for a login handler,
//! following the OWASP Authentication Cheat Sheet ("Protect against automated attacks",
//! "Account lockout", "Authentication and error messages").
//!
//! - Failed attempts are counted per **account** (the username normalised with
//!   [`normalize_account`]: NFKC, trimmed, lower-cased) and per **client IP** (the crate's
//!   resolver; IPv6 by /64), over a window (default 15 minutes).
//! - **When the 429 starts.** The first `free_failures` failures within the window (default
//!   5 per account, 20 per IP) start no backoff. The next failure, number
//!   `free_failures + 1`, is still answered by your handler (the 401) but starts a backoff of
//!   the base (1 s); attempts during a backoff are refused with 429 and `Retry-After` before
//!   your check runs; each later failure doubles the backoff (1 s, 2 s, 4 s … capped at 15
//!   minutes). With the defaults, an account's first six failures in a row get 401 and an
//!   attempt within a second of the sixth gets the 429. The backoff is a lockout that
//!   expires on its own, so an attacker cannot lock a user out for good.
//! - Unknown accounts are counted exactly like existing ones and every refusal is the same
//!   429, so the guard reveals nothing about which accounts exist. Answer failures with
//!   [`AccountAttempt::failed`], one generic 401 for wrong user and wrong password alike.
//! - Every attempt is charged as a failure to the account and the IP **before** the handler
//!   checks the credentials, in one atomic step with the lock check (one `DashMap` entry in
//!   memory, one Lua script per account or IP in Redis). Concurrent guesses therefore cannot
//!   all pass the lock check while the (slow) password check runs: at most `free_failures + 1`
//!   attempts on one account reach the check at once, exactly as many as one after another
//!   (the free failures and the one whose failure starts the first backoff); the others get
//!   the 429 at once. A success refunds the charge: it clears the account's failures and takes
//!   back the one charged to the IP (and the IP lock that charge started, if any). A failure,
//!   or an attempt dropped without a verdict (e.g. on an early `?`), keeps it.
//! - Failures are forgotten one window after the last failure **or after the end of the
//!   lock, whichever is later**. The longest lock equals the window by default, so forgetting
//!   at the last failure's window would reset the count as the lock ends and grant a fresh
//!   free allowance every lock; instead the first failure after a maximum lock locks again for
//!   the maximum. The same holds in Redis (the count's TTL is the lock plus the window).
//! - Memory is bounded; a full table evicts, it never shares an entry (see [`LoginGuardLayer`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{Extensions, Method, Request, Uri};
use tokio::sync::Notify;
use tower_layer::Layer;
use tower_service::Service;
use unicode_normalization::UnicodeNormalization;

use super::headers::{retry_after_secs, retry_after_value};
use super::key::{client_ip_key, LimitKey};
use super::store::failures::{Backoff, Charge, FailureTable, Receipt};
#[cfg(test)]
use super::store::memory::ManualClock;
use super::store::memory::{
    Evict, EvictorStart, LimiterClock, DEFAULT_EVICTION_INTERVAL, DEFAULT_MAX_KEYS,
};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::rejection::{Rejection, RejectionKind};
use crate::ConfigError;

/// The most bytes of a login name that [`normalize_account`] reads (after leading white
/// space).
///
/// The result keeps 256 characters. NFKC can shrink text: canonical composition merges at
/// most 4 characters into one (U+1F87 is α with three marks), lower-casing never shortens
/// and trimming only takes white space at the ends, so 1 024 characters, 4 096 bytes of
/// UTF-8, always yield 256 characters. Twice that leaves room for the normalisation segment
/// that the cut may split (a starter and its combining marks; at most 31 characters in
/// stream-safe text, UAX #15 §13), so for such text the cut never changes the result.
/// (NFKC also expands, U+FDFA into 18 characters, which only makes the bound more generous.)
const ACCOUNT_INPUT_BYTES: usize = 2 * 4 * 4 * 256;

/// Normalises a login name so that `Alice`, ` alice ` and `ａｌｉｃｅ` (full-width) count as one
/// account: Unicode NFKC (UAX #15), trimmed, lower-cased, at most 256 characters.
///
/// The work is bounded: only the first 8 KiB after any leading white space are normalised
/// (cut at a character boundary), which is more than enough for the 256 characters kept, so
/// a megabyte of U+FDFA costs no more than a short name. A longer name normalises like its
/// first 8 KiB.
///
/// ```
/// use axum_shield::rate_limit::normalize_account;
/// assert_eq!(normalize_account(" Alice@Example.COM "), "alice@example.com");
/// assert_eq!(normalize_account("ａｌｉｃｅ"), "alice");
/// ```
pub fn normalize_account(name: &str) -> String {
    // Leading white space is skipped before the cut (a linear scan, no normalisation) so a
    // padded name still counts for the account it names. White space never composes with
    // what follows and NFKC maps it to white space, which `trim` removes below anyway.
    let name = name.trim_start();
    let mut cut = name.len().min(ACCOUNT_INPUT_BYTES);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.get(..cut)
        .unwrap_or_default()
        .nfkc()
        .collect::<String>()
        .trim()
        .to_lowercase()
        .chars()
        .take(256)
        .collect()
}

struct GuardInner {
    accounts: FailureTable,
    ips: FailureTable,
    clock: LimiterClock,
    /// Starts the eviction task (at build, or on the first attempt without a runtime then).
    evictor: EvictorStart,
    #[cfg(feature = "redis")]
    redis: Option<super::store::redis::RedisFailures>,
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
        self.clock.now().saturating_add(1)
    }
}

/// The login guard, as a tower layer: counts failed logins per account and per IP and
/// refuses attempts during backoff.
///
/// Build it with [`LoginGuardLayer::builder`], put it on the login route (or the router) and
/// take a [`LoginAttempt`] in the handler:
///
/// ```
/// use axum::{routing::post, Json, Router};
/// use axum_shield::rate_limit::{LoginAttempt, LoginGuardLayer};
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
/// let guard = LoginGuardLayer::builder().build()?;
/// let app: Router = Router::new().route("/login", post(login)).layer(guard);
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
///
/// # Concurrent attempts
///
/// [`LoginAttempt::account`] charges the attempt as a failure to the account and the client
/// IP before your check runs, in the same atomic step as the lock check, and
/// [`AccountAttempt::succeeded`] refunds it. So however many guesses arrive at once, at most
/// `free_failures + 1` per account reach your (slow) password check, as many as one after
/// another would; the rest get the 429 at once.
///
/// # Memory: a full table evicts, it never shares
///
/// Each table (accounts, IPs) holds at most [`LoginGuardBuilder::max_keys`] entries. When a
/// new account or IP arrives at a full table, the guard evicts the entries that matter least,
/// in this order: those whose failures are forgotten, then unlocked ones with the fewest
/// failures, oldest first, and only when every entry is locked, locked ones with the fewest
/// failures. It frees a batch (1/64 of the cap) per pass so the scan is paid once per batch.
///
/// Why evict rather than stop tracking new keys: an attacker who fills the table would then
/// guess freely on every account outside it, and a shared entry for the overflow (what the
/// guard did before) locks out users who never failed. Evicting keeps memory bounded, gives
/// every newcomer its own count (so nobody is locked by someone else's failures), and keeps
/// the locks that matter: to evict a locked account the attacker must lock every other
/// tracked entry first, and entries with more failures (the account under attack) go last.
#[derive(Clone)]
pub struct LoginGuardLayer(Arc<GuardInner>);

impl fmt::Debug for LoginGuardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginGuardLayer")
            .field("accounts", &self.0.accounts.backoff)
            .field("ips", &self.0.ips.backoff)
            .field("tracked_accounts", &self.0.accounts.tracked())
            .field("tracked_ips", &self.0.ips.tracked())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for LoginGuardLayer {
    type Service = LoginGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginGuard {
            inner,
            guard: GuardRef(self.0.clone()),
        }
    }
}

/// The login-guard service: makes the guard available to the [`LoginAttempt`] extractor of
/// the requests it passes on (it refuses nothing itself).
#[derive(Clone)]
pub struct LoginGuard<S> {
    inner: S,
    guard: GuardRef,
}

impl<S: fmt::Debug> fmt::Debug for LoginGuard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginGuard")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for LoginGuard<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.guard.clone());
        self.inner.call(req)
    }
}

/// The guard in request extensions, where [`LoginAttempt`] finds it.
#[derive(Clone)]
struct GuardRef(Arc<GuardInner>);

/// Builder of a [`LoginGuardLayer`]: infallible setters, checked once by
/// [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct LoginGuardBuilder {
    account: Backoff,
    ip: Backoff,
    max_keys: usize,
    #[cfg(test)]
    clock: Option<ManualClock>,
    eviction_interval: Duration,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis::RedisStore>,
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
            max_keys: DEFAULT_MAX_KEYS,
            #[cfg(test)]
            clock: None,
            eviction_interval: DEFAULT_EVICTION_INTERVAL,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl LoginGuardLayer {
    /// A builder with the defaults: 5 free failures per account and 20 per IP within 15
    /// minutes, then a backoff from 1 s doubling up to 15 minutes.
    pub fn builder() -> LoginGuardBuilder {
        LoginGuardBuilder::default()
    }

    /// Starts an attempt from `client` (the client's rate-limit key, e.g.
    /// `LimitKey::from(ip)`) without an HTTP request — for custom flows and tests.
    ///
    /// # Errors
    ///
    /// A 429 [`Rejection`] while the client IP is in backoff.
    pub async fn attempt(&self, client: LimitKey) -> Result<LoginAttempt, Rejection> {
        let attempt = LoginAttempt {
            guard: self.0.clone(),
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
    /// Failures per account within the window that start no backoff (default 5). Failure
    /// `n + 1` is still answered (401) and starts the first backoff; the 429 starts with the
    /// next attempt made during that backoff (see the [module docs](super#login-brute-force)).
    pub fn account_free_failures(mut self, n: u32) -> Self {
        self.account.free_failures = n;
        self
    }

    /// Failures per client IP within the window that start no backoff (default 20), counted
    /// like [`account_free_failures`](Self::account_free_failures).
    pub fn ip_free_failures(mut self, n: u32) -> Self {
        self.ip.free_failures = n;
        self
    }

    /// The first backoff and its cap (defaults 1 s and 15 minutes), for accounts and IPs.
    /// [`build`](Self::build) refuses a `base` under 1 ms or a `max` below `base`.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        for b in [&mut self.account, &mut self.ip] {
            b.base = base;
            b.max = max;
        }
        self
    }

    /// How long failures are remembered (default 15 minutes; [`build`](Self::build) refuses
    /// less than one second).
    pub fn window(mut self, window: Duration) -> Self {
        self.account.window = window;
        self.ip.window = window;
        self
    }

    /// The most accounts and IPs tracked in memory (each; default 100 000;
    /// [`build`](Self::build) refuses 0). A new account or IP at a full table evicts the
    /// entries that matter least (forgotten ones, then those with the fewest failures, oldest
    /// first; locked ones last): it is never refused and never shares another's count
    /// (attempts racing in at the same moment may pass the cap by one each, briefly). See
    /// [`LoginGuardLayer`](LoginGuardLayer#memory-a-full-table-evicts-it-never-shares).
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// Drives the guard from a manual clock (the crate's tests).
    #[cfg(test)]
    pub(crate) fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Keeps the failure counts in Redis so every instance shares them. When Redis cannot
    /// answer, the guard goes on with this instance's counts in memory and reports a
    /// `sys_dependency_fail` event.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, store: crate::redis::RedisStore) -> Self {
        self.redis = Some(store);
        self
    }

    /// Checks the settings and builds the layer; starts its eviction task now when a Tokio
    /// runtime is running, otherwise on the first login attempt.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first bad setting: a backoff base under 1 ms or a maximum
    /// below it, a window under one second, a `max_keys` of 0.
    pub fn build(self) -> Result<LoginGuardLayer, ConfigError> {
        let (base, max) = (self.account.base, self.account.max);
        if base < Duration::from_millis(1) || max < base {
            return Err(lock_error("login_guard.backoff"));
        }
        if self.account.window < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "login_guard.window",
                "a window under one second forgets failures at once",
                "use a window such as 15 minutes",
            ));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                "login_guard.max_keys",
                "a key cap of 0 cannot track any account",
                "use a cap such as 100000",
            ));
        }
        #[cfg(test)]
        let clock = self
            .clock
            .as_ref()
            .map_or_else(LimiterClock::monotonic, ManualClock::limiter_clock);
        #[cfg(not(test))]
        let clock = LimiterClock::monotonic();
        let inner = Arc::new(GuardInner {
            accounts: FailureTable::new(self.max_keys, self.account),
            ips: FailureTable::new(self.max_keys, self.ip),
            clock,
            // Nothing wakes it early: a full table makes room itself when a new key arrives.
            evictor: EvictorStart::new(self.eviction_interval, Arc::new(Notify::new())),
            #[cfg(feature = "redis")]
            redis: self
                .redis
                .map(|store| super::store::redis::RedisFailures::new(store, self.account, self.ip)),
        });
        inner.evictor.ensure(&inner);
        Ok(LoginGuardLayer(inner))
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
/// Needs a [`LoginGuardLayer`] on the route; without it the request fails with a 500 and an
/// error log.
pub struct LoginAttempt {
    guard: Arc<GuardInner>,
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

    /// The guard's one refusal: a 429 with `Retry-After`, the same whether the account
    /// exists or not and whichever scope (account or IP) is in backoff. Every refusal of the
    /// guard is made here, so its problem `code` is chosen in this one place.
    fn refuse(&self, wait: Duration, scope: &'static str) -> Rejection {
        self.event(SecurityEventKind::ExcessRateLimitExceeded)
            .reason("login_backoff")
            .field("scope", scope)
            .field("retry_after", retry_after_secs(wait).to_string())
            .emit();
        let (name, value) = retry_after_value(wait);
        // Its own code (`login_locked`), so clients can tell it from the rate limiter's 429.
        Rejection::new(RejectionKind::LoginLocked)
            .with_detail("Too many failed login attempts; retry later.")
            .with_header(name, value)
    }

    /// Redis could not answer: the guard goes on in memory (this instance's counts only)
    /// and reports it.
    #[cfg(feature = "redis")]
    fn redis_failed(&self) {
        self.event(SecurityEventKind::SysDependencyFail)
            .reason("redis_unavailable")
            .field("use", "login_guard")
            .emit();
    }

    /// The remaining lock of `key`, if any: from Redis when the guard has it and it answers,
    /// else from memory.
    async fn locked(&self, key: &LimitKey, account: bool) -> Option<Duration> {
        let inner = &self.guard;
        #[cfg(feature = "redis")]
        if let Some(redis) = &inner.redis {
            match redis.locked(key, account).await {
                Ok(answer) => return answer,
                Err(_) => self.redis_failed(),
            }
        }
        let table = if account { &inner.accounts } else { &inner.ips };
        table.locked(key, inner.now())
    }

    /// Charges this attempt to `key` unless it is locked (then the remaining lock): in Redis
    /// when it has one and answers, else in memory.
    async fn charge(&self, key: &LimitKey, account: bool) -> Result<Charge, Duration> {
        let inner = &self.guard;
        #[cfg(feature = "redis")]
        if let Some(redis) = &inner.redis {
            match redis.charge(key, account).await {
                Ok(answer) => return answer,
                Err(_) => self.redis_failed(),
            }
        }
        let table = if account { &inner.accounts } else { &inner.ips };
        table.charge(key, inner.now())
    }

    /// Takes back a charge, in the store that took it.
    async fn refund(&self, key: &LimitKey, account: bool, charge: Charge) {
        let inner = &self.guard;
        match charge.receipt {
            Receipt::Memory {
                locked_until,
                previous,
            } => {
                let table = if account { &inner.accounts } else { &inner.ips };
                table.refund(key, locked_until, previous, inner.now());
            }
            #[cfg(feature = "redis")]
            Receipt::Redis { token } => {
                if let Some(redis) = &inner.redis {
                    if redis.refund(key, account, &token).await.is_err() {
                        self.redis_failed();
                    }
                }
            }
        }
    }

    async fn check_ip(&self) -> Result<(), Rejection> {
        // Every attempt starts here: a guard built outside a runtime starts its eviction task
        // on the first one.
        self.guard.evictor.ensure(&self.guard);
        match self.locked(&self.ip, false).await {
            Some(wait) => Err(self.refuse(wait, "ip")),
            None => Ok(()),
        }
    }

    /// Checks the account named `username` (normalised with [`normalize_account`]), charges
    /// the attempt as a failure to the account and the client IP (before your credential
    /// check runs, so concurrent guesses cannot all get through; see
    /// [`LoginGuardLayer`](LoginGuardLayer#concurrent-attempts)), and returns the attempt to
    /// settle with [`AccountAttempt::succeeded`] (which refunds the charge) or
    /// [`AccountAttempt::failed`].
    ///
    /// # Errors
    ///
    /// The same 429 [`Rejection`] (with `Retry-After`) while the account or the client IP is
    /// in backoff, whether or not the account exists. A refused attempt is not charged.
    pub async fn account(self, username: &str) -> Result<AccountAttempt, Rejection> {
        let account = LimitKey::text(normalize_account(username));
        let ip_charge = match self.charge(&self.ip, false).await {
            Ok(charge) => charge,
            Err(wait) => return Err(self.refuse(wait, "ip")),
        };
        let account_charge = match self.charge(&account, true).await {
            Ok(charge) => charge,
            Err(wait) => {
                self.refund(&self.ip, false, ip_charge).await;
                return Err(self.refuse(wait, "account"));
            }
        };
        Ok(AccountAttempt {
            attempt: Some(self),
            account,
            account_lock: account_charge.lock,
            ip_charge: Some(ip_charge),
        })
    }
}

impl LoginAttempt {
    /// Runs your credential check for `username` under the guard: refuses with 429 during
    /// backoff (without calling `check`); otherwise charges the attempt as a failure before
    /// calling `check` (see [`account`](Self::account)), keeps the charge and answers the
    /// generic 401 when `check` yields `None`, and refunds it (clearing the account's
    /// failures) when it yields `Some`.
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
        let Some(GuardRef(guard)) = parts.extensions.get::<GuardRef>().cloned() else {
            return Err(crate::rejection::misconfigured(
                "LoginAttempt used without a LoginGuardLayer: add `.route_layer(guard)`, where \
                 `guard` is `LoginGuardLayer::builder().build()?`, to the login route",
            ));
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

/// A login attempt for one account, already charged as a failure, to settle with the
/// handler's outcome.
///
/// Dropping it without a verdict keeps the charge: it counts as a failure (fail closed).
pub struct AccountAttempt {
    attempt: Option<LoginAttempt>,
    account: LimitKey,
    /// The lock the account's charge started (reported if the attempt fails).
    account_lock: Duration,
    /// The IP's charge, refunded on success.
    ip_charge: Option<Charge>,
}

impl fmt::Debug for AccountAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountAttempt").finish_non_exhaustive()
    }
}

impl AccountAttempt {
    /// The credentials were right: refunds the attempt's charge (clears the account's
    /// failures; the IP keeps its earlier failures but not this attempt's) and emits
    /// `authn_login_success`.
    pub async fn succeeded(mut self) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let inner = &attempt.guard;
        #[cfg(feature = "redis")]
        if let Some(redis) = &inner.redis {
            if redis.clear(&self.account).await.is_err() {
                attempt.redis_failed();
            }
        }
        inner.accounts.clear(&self.account);
        if let Some(charge) = self.ip_charge.take() {
            attempt.refund(&attempt.ip, false, charge).await;
        }
        attempt
            .event(SecurityEventKind::AuthnLoginSuccess)
            .principal(account_text(&self.account))
            .emit();
    }

    /// The credentials were wrong (or the account does not exist): keeps the failure charged
    /// to the account and the IP, emits `authn_login_fail` (and `authn_login_lock` when it
    /// started a backoff), and returns the one generic 401 to answer with.
    pub async fn failed(mut self) -> Rejection {
        if let Some(attempt) = self.attempt.take() {
            self.report_failure(&attempt, "bad_credentials");
        }
        // RFC 9110 §15.5.2: a 401 carries a challenge; the login exchanges credentials for a
        // bearer token, so the challenge names that scheme.
        Rejection::new(RejectionKind::InvalidCredentials).with_header(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        )
    }

    /// Reports the failure already charged. The account goes into the `username` field, as
    /// on every login event, so it is pseudonymized exactly like the principal of
    /// `authn_login_success` when the Shield has a key (never a plain field).
    fn report_failure(&self, attempt: &LoginAttempt, reason: &'static str) {
        let account = account_text(&self.account);
        attempt
            .event(SecurityEventKind::AuthnLoginFail)
            .reason(reason)
            .username(&account)
            .emit();
        let ip_lock = self.ip_charge.as_ref().map_or(Duration::ZERO, |c| c.lock);
        if !self.account_lock.is_zero() || !ip_lock.is_zero() {
            attempt
                .event(SecurityEventKind::AuthnLoginLock)
                .reason(if self.account_lock >= ip_lock {
                    "account_backoff"
                } else {
                    "ip_backoff"
                })
                .username(&account)
                .field(
                    "lock_secs",
                    retry_after_secs(self.account_lock.max(ip_lock)).to_string(),
                )
                .emit();
        }
    }
}

fn account_text(key: &LimitKey) -> String {
    match key {
        LimitKey::Text(t) => t.to_string(),
        other => other.to_string(),
    }
}

impl Drop for AccountAttempt {
    fn drop(&mut self) {
        // The failure was charged before the check: dropping without a verdict keeps it.
        if let Some(attempt) = self.attempt.take() {
            self.report_failure(&attempt, "no_verdict");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn guard(clock: &ManualClock) -> LoginGuardLayer {
        LoginGuardLayer::builder()
            .account_free_failures(3)
            .ip_free_failures(10)
            .clock(clock.clone())
            .build()
            .unwrap()
    }

    fn ip(s: &str) -> LimitKey {
        LimitKey::Ip(s.parse::<IpAddr>().unwrap())
    }

    async fn fail(g: &LoginGuardLayer, from: &str, user: &str) -> Result<Rejection, Rejection> {
        let attempt = g.attempt(ip(from)).await?;
        Ok(attempt.account(user).await?.failed().await)
    }

    /// What `build()` returns is the layer: it makes the guard available to `LoginAttempt`,
    /// and without it the extractor answers a 500 that names the fix.
    #[tokio::test]
    async fn the_built_guard_is_the_layer_that_login_attempt_needs() {
        use axum::{body::Body, routing::post, Router};
        use tower::ServiceExt;

        async fn handler(attempt: LoginAttempt) -> Result<&'static str, Rejection> {
            attempt.verify("alice", || async { Some("welcome") }).await
        }
        let request = || {
            let mut req = Request::post("/login").body(Body::empty()).unwrap();
            let peer = std::net::SocketAddr::from(([192, 0, 2, 1], 4000));
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            req
        };
        let guard = LoginGuardLayer::builder().build().unwrap();
        let guarded = Router::new().route("/login", post(handler).route_layer(guard));
        assert_eq!(guarded.oneshot(request()).await.unwrap().status(), 200);
        let unguarded = Router::new().route("/login", post(handler));
        assert_eq!(unguarded.oneshot(request()).await.unwrap().status(), 500);
    }

    #[test]
    fn bad_login_guard_settings_are_config_errors_from_build() {
        let setting = |b: LoginGuardBuilder| b.build().unwrap_err().setting().to_owned();
        let secs = Duration::from_secs;
        let builder = LoginGuardLayer::builder;
        assert_eq!(setting(builder().max_keys(0)), "login_guard.max_keys");
        assert_eq!(setting(builder().window(secs(0))), "login_guard.window");
        let backoff = |base, max| setting(builder().backoff(base, max));
        assert_eq!(backoff(Duration::ZERO, secs(1)), "login_guard.backoff");
        assert_eq!(backoff(secs(2), secs(1)), "login_guard.backoff");
        // The setters never fail; the first bad setting is reported by `build`.
        assert_eq!(
            setting(builder().max_keys(0).backoff(secs(2), secs(1))),
            "login_guard.backoff"
        );
        assert!(builder().backoff(secs(1), secs(1)).build().is_ok());
    }

    #[test]
    fn a_guard_built_without_a_runtime_starts_eviction_on_first_use() {
        let guard = LoginGuardLayer::builder().build().unwrap();
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

    /// Issue 17: the docs said the account locks "after 5 failures", yet the sixth failure
    /// still got a 401. With the defaults the first six failures get 401 (the sixth starts
    /// the 1 s backoff), and the 429 starts with the next attempt during it.
    #[tokio::test]
    async fn with_the_defaults_the_sixth_failure_gets_401_and_the_next_attempt_429() {
        let clock = ManualClock::default();
        let g = LoginGuardLayer::builder()
            .clock(clock.clone())
            .build()
            .unwrap();
        for n in 1..=6 {
            let answered = fail(&g, "192.0.2.1", "alice").await.unwrap();
            assert_eq!(answered.status(), 401, "failure {n}");
        }
        let refused = fail(&g, "192.0.2.1", "alice").await.unwrap_err();
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()["retry-after"], "1");
        clock.advance(Duration::from_secs(1));
        // The backoff over, the 7th failure is answered and doubles it.
        assert_eq!(fail(&g, "192.0.2.1", "alice").await.unwrap().status(), 401);
        let refused = fail(&g, "192.0.2.1", "alice").await.unwrap_err();
        assert_eq!(refused.headers()["retry-after"], "2");
    }

    #[tokio::test]
    async fn brute_force_on_one_account_is_slowed_exponentially() {
        let clock = ManualClock::default();
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
        let clock = ManualClock::default();
        let g = guard(&clock);
        for i in 0..4 {
            fail(&g, &format!("198.51.100.{i}"), "Alice").await.unwrap();
        }
        let r = fail(&g, "203.0.113.50", " ALICE ").await.unwrap_err();
        assert_eq!(r.status(), 429);
    }

    #[tokio::test]
    async fn credential_stuffing_from_one_ip_is_slowed_across_accounts() {
        let clock = ManualClock::default();
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
        let clock = ManualClock::default();
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
        let clock = ManualClock::default();
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
        let clock = ManualClock::default();
        let g = guard(&clock);
        for _ in 0..4 {
            let a = g.attempt(ip("192.0.2.1")).await.unwrap();
            drop(a.account("carol").await.unwrap());
        }
        assert!(fail(&g, "192.0.2.1", "carol").await.is_err());
    }

    #[tokio::test]
    async fn failures_are_forgotten_after_the_window_and_tables_stay_bounded() {
        let clock = ManualClock::default();
        let g = LoginGuardLayer::builder()
            .max_keys(50)
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

    /// Item 2 of issue 16: the lock was only read before the (slow) credential check and the
    /// failure recorded after it, so every concurrent guess reached the check.
    #[tokio::test(start_paused = true)]
    async fn concurrent_guesses_on_one_account_cannot_all_reach_the_password_check() {
        let clock = ManualClock::default();
        let g = guard(&clock); // 3 free failures per account
        let reached = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let (g, reached) = (g.clone(), reached.clone());
            tasks.push(tokio::spawn(async move {
                let from = LimitKey::Ip(IpAddr::from([10, 1, (i / 200) as u8, (i % 200) as u8]));
                let attempt = g.attempt(from).await?;
                attempt
                    .verify("victim", || async {
                        reached.fetch_add(1, Ordering::SeqCst);
                        // A slow hash (paused time: the runtime lets every task get here
                        // before any check ends).
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        None::<()>
                    })
                    .await
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap().unwrap_err().status().as_u16());
        }
        // As many as one after another: the free failures and the one that starts the backoff.
        assert_eq!(reached.load(Ordering::SeqCst), 4);
        assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 4);
        assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 196);
    }

    #[tokio::test]
    async fn a_successful_login_refunds_its_charge_to_the_client_ip() {
        let clock = ManualClock::default();
        let g = guard(&clock); // 10 free failures per IP
        for i in 0..10 {
            fail(&g, "192.0.2.1", &format!("user{i}")).await.unwrap();
        }
        // Successes from the same IP do not count as failures of the IP.
        for _ in 0..5 {
            let a = g.attempt(ip("192.0.2.1")).await.unwrap();
            a.account("bob").await.unwrap().succeeded().await;
        }
        // The 11th failure starts the IP's backoff, not an earlier one.
        assert_eq!(fail(&g, "192.0.2.1", "x").await.unwrap().status(), 401);
        assert_eq!(fail(&g, "192.0.2.1", "y").await.unwrap_err().status(), 429);
    }

    /// Item 3 of issue 16: once the account table was full, untracked accounts shared one
    /// overflow entry, so failures on new names locked out users with no failures at all.
    #[tokio::test]
    async fn a_full_account_table_never_locks_out_an_account_without_failures() {
        let clock = ManualClock::default();
        let g = LoginGuardLayer::builder()
            .account_free_failures(3)
            .ip_free_failures(1000)
            .max_keys(50)
            .clock(clock.clone())
            .build()
            .unwrap();
        for i in 0..200u32 {
            for n in 0..5u32 {
                let from = format!("10.{}.{}.{n}", i / 250, i % 250);
                let _ = fail(&g, &from, &format!("filler{i}")).await;
            }
        }
        let attempt = g.attempt(ip("203.0.113.77")).await.unwrap();
        let alice = attempt.account("alice").await;
        assert!(
            alice.is_ok(),
            "alice never failed: {:?}",
            alice.err().map(|r| r.status())
        );
        alice.unwrap().succeeded().await;
        let (accounts, _) = g.tracked();
        assert!(accounts <= 50, "{accounts}");
    }

    #[tokio::test]
    async fn a_full_ip_table_never_locks_out_a_client_without_failures() {
        let clock = ManualClock::default();
        let g = LoginGuardLayer::builder()
            .account_free_failures(1000)
            .ip_free_failures(3)
            .max_keys(50)
            .clock(clock.clone())
            .build()
            .unwrap();
        for i in 0..200u32 {
            for n in 0..5u32 {
                let from = format!("10.0.{}.{}", i / 250, i % 250);
                let _ = fail(&g, &from, &format!("user{i}-{n}")).await;
            }
        }
        let attempt = g.attempt(ip("203.0.113.77")).await;
        assert!(attempt.is_ok(), "a clean IP was refused");
        let alice = attempt.unwrap().account("alice").await;
        assert!(alice.is_ok(), "a clean IP was refused");
        alice.unwrap().succeeded().await;
        let (_, ips) = g.tracked();
        assert!(ips <= 50, "{ips}");
    }

    #[tokio::test]
    async fn flooding_a_full_table_with_new_names_does_not_unlock_a_locked_account() {
        let clock = ManualClock::default();
        let g = LoginGuardLayer::builder()
            .account_free_failures(3)
            .ip_free_failures(1000)
            .max_keys(50)
            .clock(clock.clone())
            .build()
            .unwrap();
        for n in 0..4 {
            fail(&g, &format!("192.0.2.{n}"), "victim").await.unwrap();
        }
        for i in 0..500u32 {
            let _ = fail(&g, "198.51.100.1", &format!("new{i}")).await;
        }
        let refused = fail(&g, "203.0.113.5", "victim").await.unwrap_err();
        assert_eq!(refused.status(), 429);
    }

    /// Item 11 of issue 16: the maximum lock equalled the window, so the count was forgotten
    /// when the lock ended and the next failure started over at the free allowance.
    #[tokio::test]
    async fn after_a_maximum_lock_the_next_failure_locks_again_for_the_maximum() {
        let clock = ManualClock::default();
        let g = LoginGuardLayer::builder()
            .account_free_failures(3)
            .ip_free_failures(100_000)
            .clock(clock.clone())
            .build()
            .unwrap();
        let max = 15 * 60;
        let mut reached_max = false;
        for _ in 0..100 {
            match fail(&g, "192.0.2.1", "alice").await {
                Ok(r) => assert_eq!(r.status(), 401),
                Err(r) => {
                    let secs: u64 = r.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    if secs == max {
                        reached_max = true;
                        break;
                    }
                    clock.advance(Duration::from_secs(secs));
                }
            }
        }
        assert!(reached_max);
        // Wait the maximum lock out (and a little more), then fail once.
        clock.advance(Duration::from_secs(max + 1));
        assert_eq!(fail(&g, "192.0.2.1", "alice").await.unwrap().status(), 401);
        let refused = fail(&g, "192.0.2.1", "alice").await.unwrap_err();
        assert_eq!(refused.headers()["retry-after"], max.to_string().as_str());
    }

    /// Item 9 of issue 16: NFKC ran over the whole input before truncating, so the work grew
    /// with the input. Only a bounded prefix is read now: what lies past it cannot change
    /// the result (here a combining mark that canonical ordering would move to the front).
    #[test]
    fn normalize_account_reads_only_a_bounded_prefix_of_a_huge_name() {
        let mut long = String::from("a");
        long.extend(std::iter::repeat_n('\u{0301}', 100_000));
        long.push('\u{0323}');
        let mut cut = 8192;
        while !long.is_char_boundary(cut) {
            cut -= 1;
        }
        assert_eq!(normalize_account(&long), normalize_account(&long[..cut]));
        assert!(normalize_account(&long).starts_with('\u{e1}'), "á, not ạ");

        // 1 MiB of U+FDFA (18 characters each after NFKC) gives what a short prefix gives.
        let ligatures: String = std::iter::repeat_n('\u{FDFA}', (1 << 20) / 3).collect();
        let short: String = std::iter::repeat_n('\u{FDFA}', 20).collect();
        assert_eq!(normalize_account(&ligatures), normalize_account(&short));
        assert_eq!(normalize_account(&ligatures).chars().count(), 256);
    }

    /// The definition before the byte cut, for comparison.
    fn normalize_unbounded(name: &str) -> String {
        name.nfkc()
            .collect::<String>()
            .trim()
            .to_lowercase()
            .chars()
            .take(256)
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn normalize_account_matches_the_unbounded_definition_below_the_cut(
            chars in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::char::range('a', 'z'),
                    proptest::char::range('A', 'Z'),
                    proptest::sample::select(vec![
                        ' ', '\t', '\u{a0}', '\u{2000}', '\u{3000}', '\u{85}', '\u{a8}', '\u{b4}',
                        '\u{301}', '\u{323}', '\u{302}', '\u{345}', '\u{342}', '\u{314}',
                        '\u{3b1}', '\u{391}', '\u{130}', '\u{fdfa}', '\u{ff41}', '\u{1100}',
                        '\u{1161}', '\u{11a8}', '\u{ac00}', '\u{1e9e}', '\u{2126}', '\u{fb01}',
                        '\u{1f87}', '\u{b47}', '\u{b3e}', 'e', 'ß',
                    ]),
                    proptest::char::any(),
                ],
                0..600,
            )
        ) {
            let name: String = chars.into_iter().collect();
            proptest::prop_assume!(name.len() <= 8192);
            proptest::prop_assert_eq!(normalize_account(&name), normalize_unbounded(&name));
        }
    }
}
