//! [`RateLimit`] (builder and service) and [`RateLimitLayer`].

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use governor::clock::FakeRelativeClock;
use http::request::Parts;
use http::Request;
use ipnet::IpNet;
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tower_layer::Layer;
use tower_service::Service;

use super::headers::{
    is_safe_name, limit_value, policy_names, policy_value, retry_after_value, RateLimitFields,
    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
use super::key::{client_ip_key, ip_key_of, sync_key, Head, KeySource, LimitKey};
use super::quota::{ceil_secs, IntoQuotas, Quota};
use super::store::memory::{
    Evict, EvictorStart, KeyCapPolicy, LimiterClock, MemoryLimiter, DEFAULT_EVICTION_INTERVAL,
    DEFAULT_MAX_KEYS,
};
use super::store::Decision;
#[cfg(feature = "redis")]
use super::store::{self, redis::RedisQuota};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::client_ip::{ClientIp, UNKNOWN_CLIENT};
use crate::principal::Principal;
use crate::rejection::{Rejection, RejectionKind};
use crate::ConfigError;

/// A rate limit: build one with a key constructor, tune it, then call
/// [`layer`](RateLimitBuilder::layer) (or hand it to
/// [`ShieldBuilder::rate_limit`](crate::ShieldBuilder::rate_limit)). As a service it is the
/// `RateLimit<S>` that [`RateLimitLayer`] wraps around your router or route.
///
/// ```
/// use axum::{routing::{get, post}, Router};
/// use axum_shield::rate_limit::RateLimit;
///
/// # fn main() -> Result<(), axum_shield::ConfigError> {
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .route("/login", post(|| async { "ok" })
///         .route_layer(RateLimit::per_ip("5/minute; 100/day")?.layer()));
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limit", &self.shared)
            .finish()
    }
}

impl RateLimit<()> {
    /// Limits each client IP, as resolved by [`Shield`](crate::Shield) from trusted proxies
    /// only (IPv4-mapped addresses normalised, IPv6 grouped by the resolver's prefix, /64 by
    /// default).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the quota text does not parse.
    pub fn per_ip(quotas: impl IntoQuotas) -> Result<RateLimitBuilder, ConfigError> {
        RateLimitBuilder::new(KeySource::Ip, quotas)
    }

    /// Limits each authenticated principal, keyed by its kind, issuer and id
    /// ([`PrincipalKey`](super::PrincipalKey)): a JWT whose `sub` equals an API key's id, or
    /// one `sub` from two issuers, are different principals with buckets of their own. Name
    /// principals in `exempt_keys` and tiers with [`LimitKey::api_key`], [`LimitKey::jwt`] or
    /// [`LimitKey::principal`]. Requests without a principal are counted by client IP.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the quota text does not parse.
    pub fn per_principal(quotas: impl IntoQuotas) -> Result<RateLimitBuilder, ConfigError> {
        RateLimitBuilder::new(KeySource::Principal, quotas)
    }

    /// Limits each value of header `name` (e.g. a tenant id set by a trusted gateway).
    /// Requests without it (or with a value over 256 bytes) are counted by client IP.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an invalid header name or quota.
    pub fn per_header(
        name: &str,
        quotas: impl IntoQuotas,
    ) -> Result<RateLimitBuilder, ConfigError> {
        let header = ConfigError::header_name(
            "rate_limit.header",
            name,
            "use a header name such as \"x-tenant-id\"",
        )?;
        RateLimitBuilder::new(KeySource::Header(header), quotas)
    }

    /// One bucket per route (the matched route pattern when used as a `route_layer`, else the
    /// path), shared by every client.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the quota text does not parse.
    pub fn per_route(quotas: impl IntoQuotas) -> Result<RateLimitBuilder, ConfigError> {
        RateLimitBuilder::new(KeySource::Route, quotas)
    }

    /// One bucket for every request.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the quota text does not parse.
    pub fn global(quotas: impl IntoQuotas) -> Result<RateLimitBuilder, ConfigError> {
        RateLimitBuilder::new(KeySource::Global, quotas)
    }

    /// Keys requests with your own async function; `None` falls back to the client IP.
    ///
    /// ```
    /// use axum_shield::rate_limit::{LimitKey, RateLimit};
    ///
    /// let limit = RateLimit::per_key("1000/hour", |parts: &http::request::Parts| {
    ///     let tenant = parts.headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned);
    ///     async move { tenant.map(LimitKey::from) }
    /// })?;
    /// # let _ = limit.layer();
    /// # Ok::<(), axum_shield::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the quota text does not parse.
    pub fn per_key<F, Fut>(quotas: impl IntoQuotas, key: F) -> Result<RateLimitBuilder, ConfigError>
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<LimitKey>> + Send + 'static,
    {
        RateLimitBuilder::new(KeySource::custom(key), quotas)
    }
}

/// What a Redis-backed limit does when Redis cannot answer in time (the redis store's
/// [`timeout`](crate::redis::RedisStore::timeout)).
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureMode {
    /// Refuse with 503 problem+json (`Retry-After: 1`): the limit is never bypassed.
    Closed,
    /// Allow the request and emit a `sys_dependency_fail` event: availability first.
    Open,
    /// Fall back to this instance's in-memory limiter (default): limits stay per instance
    /// until Redis is back.
    #[default]
    Local,
}

#[cfg(feature = "redis")]
impl FailureMode {
    fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::Local => "local",
        }
    }
}

/// A limit shared through Redis, and what to do when Redis cannot answer.
#[cfg(feature = "redis")]
#[derive(Clone)]
struct RedisBackend {
    store: crate::redis::RedisStore,
    on_failure: FailureMode,
}

#[derive(Debug, Clone)]
enum TierMatch {
    Keys(HashSet<LimitKey>),
    Role(String),
}

/// Builder of a rate limit; every setter validates at once.
#[derive(Clone)]
pub struct RateLimitBuilder {
    name: Option<String>,
    source: KeySource,
    quotas: Vec<Quota>,
    tiers: Vec<(TierMatch, String, Vec<Quota>)>,
    exempt_nets: Vec<IpNet>,
    exempt_keys: HashSet<LimitKey>,
    exempt_paths: Vec<String>,
    cost: NonZeroU32,
    headers_on_success: bool,
    legacy_headers: bool,
    dry_run: bool,
    max_keys: usize,
    when_full: KeyCapPolicy,
    eviction_interval: Duration,
    clock: Option<FakeRelativeClock>,
    #[cfg(feature = "redis")]
    redis: Option<RedisBackend>,
}

impl fmt::Debug for RateLimitBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("name", &self.name)
            .field("key", &self.source)
            .field("quotas", &self.quotas)
            .field("tiers", &self.tiers)
            .field("cost", &self.cost)
            .field("dry_run", &self.dry_run)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

fn cost_error(cost: u32, quota: &Quota) -> ConfigError {
    ConfigError::new(
        "rate_limit.cost",
        format!(
            "a cost of {cost} exceeds the burst {} of quota {quota}",
            quota.burst()
        ),
        "lower the cost or raise the quota's burst, or every request would be refused",
    )
}

/// The keys, each plain string followed by the API key of that id (API key ids are chosen by
/// the operator; JWT subjects are not, so a string never names one).
fn with_api_key_aliases<I, K>(keys: I) -> impl Iterator<Item = LimitKey>
where
    I: IntoIterator<Item = K>,
    K: Into<LimitKey>,
{
    keys.into_iter().flat_map(|key| {
        let key = key.into();
        let alias = match &key {
            LimitKey::Text(id) => Some(LimitKey::api_key(id)),
            _ => None,
        };
        std::iter::once(key).chain(alias)
    })
}

impl RateLimitBuilder {
    fn new(source: KeySource, quotas: impl IntoQuotas) -> Result<Self, ConfigError> {
        Ok(Self {
            name: None,
            source,
            quotas: quotas.into_quotas()?,
            tiers: Vec::new(),
            exempt_nets: Vec::new(),
            exempt_keys: HashSet::new(),
            exempt_paths: Vec::new(),
            cost: NonZeroU32::MIN,
            headers_on_success: true,
            legacy_headers: false,
            dry_run: false,
            max_keys: DEFAULT_MAX_KEYS,
            when_full: KeyCapPolicy::default(),
            eviction_interval: DEFAULT_EVICTION_INTERVAL,
            clock: None,
            #[cfg(feature = "redis")]
            redis: None,
        })
    }

    fn check_cost(&self, cost: u32, quotas: &[Quota]) -> Result<(), ConfigError> {
        match quotas.iter().find(|q| q.burst() < cost) {
            Some(q) => Err(cost_error(cost, q)),
            None => Ok(()),
        }
    }

    /// Names the limit in the `RateLimit-Policy` field, events and Redis keys (default: the
    /// key kind, e.g. `ip`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] unless the name is 1–64 characters of `A-Z a-z 0-9 - _ . :`.
    pub fn name(mut self, name: &str) -> Result<Self, ConfigError> {
        if !is_safe_name(name) {
            return Err(ConfigError::new(
                "rate_limit.name",
                format!("{name:?} is not a usable limit name"),
                "use 1-64 characters of letters, digits, '-', '_', '.' or ':'",
            ));
        }
        self.name = Some(name.to_owned());
        Ok(self)
    }

    /// Units each request spends (default 1), for expensive endpoints.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for 0, or a cost above the burst of any quota (it could never pass).
    pub fn cost(mut self, cost: u32) -> Result<Self, ConfigError> {
        let nz = NonZeroU32::new(cost).ok_or_else(|| {
            ConfigError::new(
                "rate_limit.cost",
                "a cost of 0 would make the limit count nothing",
                "use a cost of at least 1, or remove the limit",
            )
        })?;
        self.check_cost(cost, &self.quotas)?;
        for (_, _, quotas) in &self.tiers {
            self.check_cost(cost, quotas)?;
        }
        self.cost = nz;
        Ok(self)
    }

    /// Never limits clients whose IP is inside one of these CIDRs (e.g. health checkers).
    /// The unknown client ([`UNKNOWN_CLIENT`], a malformed forwarding header from a trusted
    /// proxy) is never exempt, whatever the CIDRs cover.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first malformed entry.
    pub fn exempt_ips<I, T>(mut self, cidrs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        for cidr in cidrs {
            let text = cidr.as_ref().trim();
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        "rate_limit.exempt_ips",
                        format!("{text:?} is not an address or CIDR"),
                        "use CIDRs such as \"10.0.0.0/8\" or addresses such as \"192.0.2.1\"",
                    )
                })?;
            self.exempt_nets.push(net);
        }
        Ok(self)
    }

    /// Never limits these keys (e.g. an internal service's API key).
    ///
    /// A plain string names that text key and the API key with that id; a JWT subject must be
    /// named with its issuer ([`LimitKey::jwt`]), since subjects are chosen by issuers and
    /// may collide with your API key ids.
    pub fn exempt_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<LimitKey>,
    {
        self.exempt_keys.extend(with_api_key_aliases(keys));
        self
    }

    /// Never limits these paths: exact paths, or prefixes ending in `*` (e.g. `/health`,
    /// `/metrics/*`).
    pub fn exempt_paths<I, T>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.exempt_paths.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Gives these keys other quotas (a tier, e.g. paying customers), checked before the
    /// default quotas. Keys are named as in [`exempt_keys`](Self::exempt_keys): a plain
    /// string also names the API key with that id, never a JWT subject.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad name or quota, or quotas too small for the cost.
    pub fn tier<I, K>(
        mut self,
        name: &str,
        quotas: impl IntoQuotas,
        keys: I,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = K>,
        K: Into<LimitKey>,
    {
        let quotas = self.tier_quotas(name, quotas)?;
        let keys = with_api_key_aliases(keys).collect();
        self.tiers
            .push((TierMatch::Keys(keys), name.to_owned(), quotas));
        Ok(self)
    }

    /// Gives principals with `role` other quotas (a tier), checked before the defaults.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad name or quota, or quotas too small for the cost.
    pub fn tier_for_role(
        mut self,
        role: &str,
        quotas: impl IntoQuotas,
    ) -> Result<Self, ConfigError> {
        let quotas = self.tier_quotas(role, quotas)?;
        self.tiers
            .push((TierMatch::Role(role.to_owned()), role.to_owned(), quotas));
        Ok(self)
    }

    fn tier_quotas(&self, name: &str, quotas: impl IntoQuotas) -> Result<Vec<Quota>, ConfigError> {
        if !is_safe_name(name) {
            return Err(ConfigError::new(
                "rate_limit.tier",
                format!("{name:?} is not a usable tier name"),
                "use 1-64 characters of letters, digits, '-', '_', '.' or ':'",
            ));
        }
        let quotas = quotas.into_quotas()?;
        self.check_cost(self.cost.get(), &quotas)?;
        Ok(quotas)
    }

    /// Whether allowed responses carry `RateLimit-Policy` and `RateLimit` too (default: yes;
    /// refusals always do).
    pub fn headers_on_success(mut self, enabled: bool) -> Self {
        self.headers_on_success = enabled;
        self
    }

    /// Also sends the legacy `X-RateLimit-Limit`, `-Remaining` and `-Reset` fields (default:
    /// no).
    pub fn legacy_headers(mut self, enabled: bool) -> Self {
        self.legacy_headers = enabled;
        self
    }

    /// Only reports: requests over the limit pass, with an `excess_rate_limit_exceeded` event
    /// whose reason is `dry_run`. Use it to size a limit on real traffic.
    pub fn dry_run(mut self, enabled: bool) -> Self {
        self.dry_run = enabled;
        self
    }

    /// The most keys tracked in memory (default 100 000), for the default quotas and for each
    /// tier; each key holds the state of all of its tier's quotas.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for 0.
    pub fn max_keys(mut self, max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::new(
                "rate_limit.max_keys",
                "a key cap of 0 cannot track any client",
                "use a cap such as 100000 (the default)",
            ));
        }
        self.max_keys = max;
        Ok(self)
    }

    /// What happens to new keys once `max_keys` are tracked (default: room is made by
    /// forgetting the keys closest to refilled, and the new key gets a fresh bucket; see
    /// [`KeyCapPolicy`]).
    pub fn when_full(mut self, policy: KeyCapPolicy) -> Self {
        self.when_full = policy;
        self
    }

    /// How often the background task forgets idle keys (default 60 s).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] below one second.
    pub fn evict_idle_every(mut self, interval: Duration) -> Result<Self, ConfigError> {
        if interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "rate_limit.eviction_interval",
                format!("{interval:?} would sweep the key map continuously"),
                "use an interval of at least one second, such as 60 s",
            ));
        }
        self.eviction_interval = interval;
        Ok(self)
    }

    /// Drives the in-memory limiter from a manual clock instead of the monotonic clock — for
    /// exact tests: advance it with `FakeRelativeClock::advance`.
    pub fn clock(mut self, clock: FakeRelativeClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Shares the limit through Redis (see [`RedisStore`](crate::redis::RedisStore)); `on_failure`
    /// decides what happens when Redis cannot answer.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, store: crate::redis::RedisStore, on_failure: FailureMode) -> Self {
        self.redis = Some(RedisBackend { store, on_failure });
        self
    }

    /// Builds the layer. Its in-memory state and its one eviction task are shared by every
    /// clone of the layer and end when the last clone is dropped.
    pub fn layer(self) -> RateLimitLayer {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| self.source.short_name().to_owned());
        let clock = match &self.clock {
            Some(c) => LimiterClock::Manual(c.clone()),
            None => LimiterClock::monotonic(),
        };
        let wake = Arc::new(Notify::new());
        let make_tier = |tier_name: String, quotas: Vec<Quota>| {
            let names = policy_names(&tier_name, &quotas);
            Tier {
                policy: policy_value(&names, &quotas),
                limiter: MemoryLimiter::new(
                    &quotas,
                    self.max_keys,
                    self.when_full,
                    clock.clone(),
                    wake.clone(),
                ),
                #[cfg(feature = "redis")]
                redis: names
                    .iter()
                    .zip(&quotas)
                    .map(|(name, q)| RedisQuota::new(name, q))
                    .collect(),
                names,
                quotas,
            }
        };
        let default = make_tier(name.clone(), self.quotas.clone());
        let tiers = self
            .tiers
            .iter()
            .map(|(m, tier, q)| (m.clone(), make_tier(format!("{name}.{tier}"), q.clone())))
            .collect();
        let shared = Arc::new(Shared {
            name: name.into(),
            source: self.source,
            default,
            tiers,
            exempt_nets: self.exempt_nets,
            exempt_keys: self.exempt_keys,
            exempt_paths: self.exempt_paths,
            cost: self.cost,
            headers_on_success: self.headers_on_success,
            legacy_headers: self.legacy_headers,
            dry_run: self.dry_run,
            evictor: EvictorStart::new(self.eviction_interval, wake),
            #[cfg(feature = "redis")]
            redis: self.redis,
        });
        shared.evictor.ensure(&shared);
        RateLimitLayer { shared }
    }
}

/// The tower layer of a [`RateLimit`].
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limit", &self.shared)
            .finish()
    }
}

impl From<RateLimitBuilder> for RateLimitLayer {
    fn from(builder: RateLimitBuilder) -> Self {
        builder.layer()
    }
}

impl RateLimitLayer {
    /// Number of keys the in-memory limiter tracks now, summed over its quotas and tiers.
    pub fn tracked_keys(&self) -> usize {
        self.shared.all_limiters().map(MemoryLimiter::len).sum()
    }

    /// Checks (and charges) `key` against the default quotas in memory, outside HTTP — for
    /// example per WebSocket message. `Err` carries the time until it would be allowed.
    ///
    /// ```
    /// use axum_shield::rate_limit::{LimitKey, RateLimit};
    ///
    /// let limit = RateLimit::global("2/second")?.layer();
    /// assert!(limit.check(&LimitKey::Global).is_ok());
    /// assert!(limit.check(&LimitKey::Global).is_ok());
    /// assert!(limit.check(&LimitKey::Global).is_err());
    /// # Ok::<(), axum_shield::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The wait until the key would be allowed again.
    #[inline]
    pub fn check(&self, key: &LimitKey) -> Result<(), Duration> {
        match self.shared.decide_memory(&self.shared.default, key) {
            Decision::Allowed { .. } => Ok(()),
            Decision::Refused { retry_after, .. } => Err(retry_after),
        }
    }

    /// Forgets idle keys now (the background task does this on its own).
    pub fn evict_idle(&self) {
        self.shared.evict();
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

struct Tier {
    quotas: Vec<Quota>,
    names: Vec<String>,
    policy: http::HeaderValue,
    /// Every quota of the tier, checked together in memory.
    limiter: MemoryLimiter,
    /// What the Redis script needs of each quota, worked out once here.
    #[cfg(feature = "redis")]
    redis: Vec<RedisQuota>,
}

struct Shared {
    name: Arc<str>,
    source: KeySource,
    default: Tier,
    tiers: Vec<(TierMatch, Tier)>,
    exempt_nets: Vec<IpNet>,
    exempt_keys: HashSet<LimitKey>,
    exempt_paths: Vec<String>,
    cost: NonZeroU32,
    headers_on_success: bool,
    legacy_headers: bool,
    dry_run: bool,
    /// Starts the eviction task (at build, or on the first request without a runtime then).
    evictor: EvictorStart,
    #[cfg(feature = "redis")]
    redis: Option<RedisBackend>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("name", &self.name)
            .field("key", &self.source)
            .field("quotas", &self.default.quotas)
            .field("tiers", &self.tiers.len())
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Ends the eviction task (a stored permit if it is not waiting right now).
        self.evictor.stop();
    }
}

impl Evict for Shared {
    fn evict(&self) {
        let removed: usize = self.all_limiters().map(MemoryLimiter::evict_idle).sum();
        tracing::trace!(target: "axum_shield::rate_limit", limit = %self.name, removed, "evicted idle keys");
    }
}

/// What the service does with a request.
enum Verdict {
    Pass(Option<RateLimitFields>),
    Refuse(Response),
}

impl Shared {
    fn all_limiters(&self) -> impl Iterator<Item = &MemoryLimiter> {
        std::iter::once(&self.default.limiter).chain(self.tiers.iter().map(|(_, t)| &t.limiter))
    }

    fn is_exempt_path(&self, path: &str) -> bool {
        self.exempt_paths.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        })
    }

    /// Whether the client IP is exempt; the unknown client (a malformed forwarding header)
    /// never is.
    fn is_exempt_ip<H: Head>(&self, head: &H) -> bool {
        !self.exempt_nets.is_empty()
            && ClientIp::from_extensions(head.extensions())
                .map(|ip| {
                    ip.0 != UNKNOWN_CLIENT && self.exempt_nets.iter().any(|n| n.contains(&ip.0))
                })
                .unwrap_or(false)
    }

    fn tier_for<H: Head>(&self, key: &LimitKey, head: &H) -> &Tier {
        for (m, tier) in &self.tiers {
            let hit = match m {
                TierMatch::Keys(keys) => keys.contains(key),
                TierMatch::Role(role) => head
                    .extensions()
                    .get::<Principal>()
                    .is_some_and(|p| p.has_role(role)),
            };
            if hit {
                return tier;
            }
        }
        &self.default
    }

    /// Every quota is checked before any is charged, so a refused request spends nothing. A
    /// refusal reports the refusing quota with the longest wait (its `Retry-After` is when
    /// every quota allows); an allowed request reports the quota with the fewest units left.
    #[inline]
    fn decide_memory(&self, tier: &Tier, key: &LimitKey) -> Decision {
        tier.limiter.check(key, self.cost)
    }

    #[inline]
    fn fields(&self, tier: &Tier, d: &Decision) -> RateLimitFields {
        let index = d.quota();
        let (remaining, reset) = (d.remaining(), d.reset());
        RateLimitFields {
            policy: tier.policy.clone(),
            limit: limit_value(&tier.names[index], remaining, reset),
            legacy: self
                .legacy_headers
                .then(|| (tier.quotas[index].count(), remaining, ceil_secs(reset))),
        }
    }

    /// Turns a store's decision into what the service does: the one refusal policy of every
    /// store.
    #[inline]
    fn verdict<H: Head>(&self, head: &H, tier: &Tier, d: Decision) -> Verdict {
        if d.is_allowed() {
            return Verdict::Pass(self.headers_on_success.then(|| self.fields(tier, &d)));
        }
        self.refusal(head, tier, d)
    }

    /// A store could not answer: the failure mode decides, and the failure is reported.
    #[cfg(feature = "redis")]
    #[cold]
    fn store_failed(
        &self,
        parts: &Parts,
        tier: &Tier,
        key: &LimitKey,
        mode: FailureMode,
    ) -> Verdict {
        SecurityEvent::for_parts(SecurityEventKind::SysDependencyFail, parts)
            .reason("redis_unavailable")
            .field("limit", self.name.to_string())
            .field("failure_mode", mode.name())
            .emit();
        match mode {
            FailureMode::Closed => Verdict::Refuse(
                Rejection::new(RejectionKind::ServiceUnavailable)
                    .with_header(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from_static("1"),
                    )
                    .into_response(),
            ),
            FailureMode::Open => Verdict::Pass(None),
            FailureMode::Local => {
                let d = self.decide_memory(tier, key);
                self.verdict(parts, tier, d)
            }
        }
    }

    /// The refusal (or, in dry-run mode, the report) of a request over its quota: kept out of
    /// line so that the allowed path stays short. Not `#[cold]`: under a flood this is the
    /// common path.
    #[inline(never)]
    fn refusal<H: Head>(&self, head: &H, tier: &Tier, d: Decision) -> Verdict {
        let kind = SecurityEventKind::ExcessRateLimitExceeded;
        if SecurityEvent::is_wanted(kind, head.extensions()) {
            SecurityEvent::for_request(kind, head.method(), head.uri(), head.extensions())
                .reason(if self.dry_run {
                    "dry_run"
                } else {
                    "quota_exhausted"
                })
                .field("limit", self.name.to_string())
                .field("policy", tier.names[d.quota()].clone())
                .emit();
        }
        if self.dry_run {
            return Verdict::Pass(None);
        }
        let fields = self.fields(tier, &d);
        let mut response = crate::rejection::refuse(
            RejectionKind::RateLimited,
            head.extensions(),
            [
                retry_after_value(d.retry_after()),
                (RATELIMIT_POLICY, fields.policy),
                (RATELIMIT, fields.limit),
            ],
        );
        if let Some((limit, remaining, reset)) = fields.legacy {
            let headers = response.headers_mut();
            headers.insert(X_RATELIMIT_LIMIT, limit.into());
            headers.insert(X_RATELIMIT_REMAINING, remaining.into());
            headers.insert(X_RATELIMIT_RESET, reset.into());
        }
        Verdict::Refuse(response)
    }

    /// Exemptions, then the key; `None` = exempt.
    fn precheck<H: Head>(&self, head: &H) -> Option<()> {
        if self.is_exempt_path(head.uri().path()) || self.is_exempt_ip(head) {
            None
        } else {
            Some(())
        }
    }

    #[inline]
    fn decide_sync<H: Head>(&self, head: &H, key: Result<LimitKey, Rejection>) -> Verdict {
        let key = match key {
            Ok(key) => key,
            Err(rejection) => {
                return Verdict::Refuse(rejection.into_response_for(head.extensions()))
            }
        };
        if !self.exempt_keys.is_empty() && self.exempt_keys.contains(&key) {
            return Verdict::Pass(None);
        }
        let tier = self.tier_for(&key, head);
        let d = self.decide_memory(tier, &key);
        self.verdict(head, tier, d)
    }

    async fn decide_async(self: Arc<Self>, parts: &Parts) -> Verdict {
        let key = match &self.source {
            KeySource::Custom(f) => match f(parts).await {
                Some(key) => Ok(key),
                None => client_ip_key(parts),
            },
            other => sync_key(other, parts).unwrap_or_else(|| client_ip_key(parts)),
        };
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            let key = match key {
                Ok(key) => key,
                Err(rejection) => return Verdict::Refuse(rejection.into_response()),
            };
            if self.exempt_keys.contains(&key) {
                return Verdict::Pass(None);
            }
            let tier = self.tier_for(&key, parts);
            return match store::redis::check(&redis.store, &self.name, &tier.redis, &key, self.cost)
                .await
            {
                Ok(d) => self.verdict(parts, tier, d),
                Err(_) => self.store_failed(parts, tier, &key, redis.on_failure),
            };
        }
        self.decide_sync(parts, key)
    }

    fn needs_async(&self) -> bool {
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            return true;
        }
        matches!(self.source, KeySource::Custom(_))
    }
}

impl<S, B, ResBody> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        shared.evictor.ensure(shared);
        if shared.precheck(&req).is_none() {
            return ResponseFuture::inner(self.inner.call(req), None);
        }
        if shared.needs_async() {
            let (parts, body) = req.into_parts();
            let shared = shared.clone();
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture {
                state: State::Boxed {
                    future: Box::pin(async move {
                        match shared.decide_async(&parts).await {
                            Verdict::Refuse(response) => Ok(response),
                            Verdict::Pass(fields) => {
                                let mut response = inner
                                    .call(Request::from_parts(parts, body))
                                    .await?
                                    .map(Body::new);
                                if let Some(fields) = fields {
                                    fields.apply(response.headers_mut());
                                }
                                Ok(response)
                            }
                        }
                    }),
                },
            };
        }
        let key = sync_key(&shared.source, &req).unwrap_or_else(|| ip_key_of(req.extensions()));
        match shared.decide_sync(&req, key) {
            Verdict::Refuse(response) => ResponseFuture {
                state: State::Ready {
                    response: Some(response),
                },
            },
            Verdict::Pass(fields) => ResponseFuture::inner(self.inner.call(req), fields),
        }
    }
}

type BoxedResponse<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

pin_project! {
    /// Response future of [`RateLimit`].
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        Inner {
            #[pin]
            future: F,
            fields: Option<RateLimitFields>,
        },
        Ready {
            response: Option<Response>,
        },
        Boxed {
            future: BoxedResponse<E>,
        },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn inner(future: F, fields: Option<RateLimitFields>) -> Self {
        Self {
            state: State::Inner { future, fields },
        }
    }
}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E, ResBody> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, fields } => {
                let mut response = ready!(future.poll(cx))?.map(Body::new);
                if let Some(fields) = fields.take() {
                    fields.apply(response.headers_mut());
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| Rejection::new(RejectionKind::Internal).into_response()))),
            StateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::SecurityEvent;
    use crate::Shield;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use axum::Router;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use tower::ServiceExt;

    fn request(peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut req = Request::builder().uri("/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(Body::empty()).unwrap();
        let addr: SocketAddr = if peer.contains(':') {
            format!("[{peer}]:4000").parse().unwrap()
        } else {
            format!("{peer}:4000").parse().unwrap()
        };
        req.extensions_mut().insert(ConnectInfo(addr));
        req
    }

    fn app(limit: RateLimitBuilder, trusted: &[&str]) -> Router {
        let shield = Shield::api()
            .trusted_proxies(trusted)
            .unwrap()
            .rate_limit(limit)
            .build()
            .unwrap();
        Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/health", get(|| async { "ok" }))
            .layer(shield)
    }

    async fn status(app: &Router, req: Request<Body>) -> u16 {
        app.clone().oneshot(req).await.unwrap().status().as_u16()
    }

    fn manual(q: &str) -> (RateLimitBuilder, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimit::per_ip(q).unwrap().clock(clock.clone()), clock)
    }

    #[tokio::test]
    async fn spoofed_x_forwarded_for_from_untrusted_peer_keeps_the_key() {
        let (limit, _) = manual("2/minute");
        let app = app(limit, &["10.0.0.0/8"]);
        for i in 0..2 {
            let spoof = format!("1.2.3.{i}");
            let req = request("203.0.113.9", &[("x-forwarded-for", &spoof)]);
            assert_eq!(status(&app, req).await, 200);
        }
        let req = request("203.0.113.9", &[("x-forwarded-for", "9.9.9.9")]);
        assert_eq!(
            status(&app, req).await,
            429,
            "rotating XFF must not open a new bucket"
        );
    }

    #[tokio::test]
    async fn trusted_proxy_clients_get_their_own_buckets() {
        let (limit, _) = manual("1/minute");
        let app = app(limit, &["10.0.0.0/8"]);
        for client in ["198.51.100.1", "198.51.100.2"] {
            let req = request("10.0.0.1", &[("x-forwarded-for", client)]);
            assert_eq!(status(&app, req).await, 200);
        }
        let req = request("10.0.0.1", &[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(status(&app, req).await, 429);
    }

    #[tokio::test]
    async fn rotating_ipv6_inside_one_64_shares_a_bucket() {
        let (limit, _) = manual("3/minute");
        let app = app(limit, &[]);
        for host in [
            "2001:db8:1:2::1",
            "2001:db8:1:2:ffff::9",
            "2001:db8:1:2:abcd:1:2:3",
        ] {
            assert_eq!(status(&app, request(host, &[])).await, 200);
        }
        assert_eq!(
            status(&app, request("2001:db8:1:2:dead:beef::1", &[])).await,
            429
        );
        assert_eq!(status(&app, request("2001:db8:1:3::1", &[])).await, 200);
    }

    #[tokio::test]
    async fn ipv4_mapped_and_plain_ipv4_share_a_bucket() {
        let (limit, _) = manual("1/minute");
        let app = app(limit, &[]);
        assert_eq!(status(&app, request("192.0.2.1", &[])).await, 200);
        assert_eq!(status(&app, request("::ffff:192.0.2.1", &[])).await, 429);
    }

    #[tokio::test]
    async fn refusal_is_problem_json_with_draft_fields_and_retry_after_never_zero() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let events = events.clone();
            move |e: &SecurityEvent| events.lock().unwrap().push(e.kind().name().to_owned())
        };
        let clock = FakeRelativeClock::default();
        let limit = RateLimit::per_ip("2/second; 100/day")
            .unwrap()
            .legacy_headers(true)
            .clock(clock.clone());
        let shield = Shield::api()
            .rate_limit(limit)
            .event_sink(sink)
            .build()
            .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(shield);
        let ok = app
            .clone()
            .oneshot(request("192.0.2.1", &[]))
            .await
            .unwrap();
        assert_eq!(
            ok.headers()["ratelimit-policy"],
            "\"ip-1s\";q=2;w=1, \"ip-86400s\";q=100;w=86400"
        );
        assert_eq!(ok.headers()["ratelimit"], "\"ip-1s\";r=1;t=1");
        assert_eq!(ok.headers()["x-ratelimit-limit"], "2");
        app.clone()
            .oneshot(request("192.0.2.1", &[]))
            .await
            .unwrap();
        // 0.5 s per unit: waiting 499 ms leaves 1 ms, which must still say 1 second.
        clock.advance(Duration::from_millis(499));
        let refused = app
            .clone()
            .oneshot(request("192.0.2.1", &[]))
            .await
            .unwrap();
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json"
        );
        assert!(refused.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"ip-1s\";r=0;t="));
        assert!(refused.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(refused.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["status"], 429);
        assert_eq!(body["code"], "rate_limited");
        assert!(body["request_id"].is_string());
        assert_eq!(*events.lock().unwrap(), ["excess_rate_limit_exceeded"]);
    }

    #[tokio::test]
    async fn quota_is_exact_under_concurrent_requests() {
        let (limit, _) = manual("25/minute");
        let app = app(limit, &[]);
        let mut handles = Vec::new();
        for _ in 0..100 {
            let app = app.clone();
            handles.push(tokio::spawn(async move {
                app.oneshot(request("192.0.2.77", &[]))
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        let mut ok = 0;
        for h in handles {
            if h.await.unwrap() == 200 {
                ok += 1;
            }
        }
        assert_eq!(ok, 25);
    }

    #[tokio::test]
    async fn a_route_refusal_keeps_its_own_policy_under_the_default_limit() {
        let clock = FakeRelativeClock::default();
        let route = RateLimit::per_ip("1/minute")
            .unwrap()
            .name("login")
            .unwrap()
            .clock(clock.clone())
            .layer();
        let shield = Shield::api()
            .rate_limit(RateLimit::per_ip("100/hour").unwrap().clock(clock))
            .build()
            .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "ok" }).route_layer(route))
            .layer(shield);
        app.clone()
            .oneshot(request("192.0.2.1", &[]))
            .await
            .unwrap();
        let refused = app.oneshot(request("192.0.2.1", &[])).await.unwrap();
        assert_eq!(refused.status(), 429);
        let policies: Vec<_> = refused
            .headers()
            .get_all("ratelimit-policy")
            .iter()
            .collect();
        assert_eq!(policies[0], "\"login-60s\";q=1;w=60");
        assert_eq!(policies[1], "\"ip-3600s\";q=100;w=3600");
        let limits: Vec<_> = refused.headers().get_all("ratelimit").iter().collect();
        assert!(limits[0]
            .to_str()
            .unwrap()
            .starts_with("\"login-60s\";r=0;"));
    }

    #[tokio::test]
    async fn dry_run_reports_but_lets_requests_pass() {
        let (limit, _) = manual("1/minute");
        let app = app(limit.dry_run(true), &[]);
        for _ in 0..3 {
            assert_eq!(status(&app, request("192.0.2.1", &[])).await, 200);
        }
    }

    #[tokio::test]
    async fn exemptions_and_tiers() {
        let (limit, _) = manual("1/minute");
        let limit = limit
            .exempt_paths(["/health"])
            .exempt_ips(["192.0.2.100"])
            .unwrap()
            .tier(
                "gold",
                "3/minute",
                ["198.51.100.7".parse::<std::net::IpAddr>().unwrap()],
            )
            .unwrap();
        let app = app(limit, &[]);
        for _ in 0..5 {
            let mut req = request("192.0.2.1", &[]);
            *req.uri_mut() = "/health".parse().unwrap();
            assert_eq!(status(&app, req).await, 200);
            assert_eq!(status(&app, request("192.0.2.100", &[])).await, 200);
        }
        for expected in [200, 200, 200, 429] {
            assert_eq!(status(&app, request("198.51.100.7", &[])).await, expected);
        }
    }

    #[tokio::test]
    async fn principal_keys_and_custom_keys() {
        let clock = FakeRelativeClock::default();
        let limit = RateLimit::per_principal("1/minute")
            .unwrap()
            .clock(clock.clone())
            .layer();
        let svc = tower::ServiceBuilder::new()
            .layer(limit)
            .service(Router::new().route("/", get(|| async { "ok" })));
        for (who, expected) in [("alice", 200), ("bob", 200), ("alice", 429)] {
            let mut req = request("192.0.2.1", &[]);
            req.extensions_mut()
                .insert(Principal::new(crate::principal::PrincipalKind::Jwt, who));
            assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), expected);
        }
        let custom = RateLimit::per_key("1/minute", |parts: &Parts| {
            let t = parts
                .headers
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            async move { t.map(LimitKey::from) }
        })
        .unwrap()
        .clock(clock)
        .layer();
        let svc = tower::ServiceBuilder::new()
            .layer(custom)
            .service(Router::new().route("/", get(|| async { "ok" })));
        for (tenant, expected) in [("a", 200), ("b", 200), ("a", 429)] {
            let req = request("192.0.2.1", &[("x-tenant", tenant)]);
            assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), expected);
        }
    }

    #[tokio::test]
    async fn unknown_client_of_a_malformed_forwarding_header_is_never_exempt() {
        let (limit, _) = manual("1/minute");
        let limit = limit.exempt_ips(["0.0.0.0/0", "10.0.0.0/8"]).unwrap();
        let app = app(limit, &["10.0.0.0/8"]);
        for expected in [200, 429, 429] {
            let req = request("10.0.0.1", &[("x-forwarded-for", "garbage, 10.0.0.2")]);
            assert_eq!(status(&app, req).await, expected);
        }
        // Everyone else is exempt.
        for _ in 0..3 {
            let req = request("10.0.0.1", &[("x-forwarded-for", "198.51.100.1")]);
            assert_eq!(status(&app, req).await, 200);
        }
    }

    /// Issue 16, item 7: a refused request must not charge the quotas that allowed it.
    #[tokio::test]
    async fn refused_requests_do_not_use_up_the_other_quotas_of_a_multi_quota_limit() {
        let (limit, clock) = manual("10/day; 1/minute");
        let app = app(limit, &[]);
        assert_eq!(status(&app, request("192.0.2.1", &[])).await, 200);
        for _ in 0..9 {
            assert_eq!(status(&app, request("192.0.2.1", &[])).await, 429);
        }
        clock.advance(Duration::from_secs(61));
        let served = app
            .clone()
            .oneshot(request("192.0.2.1", &[]))
            .await
            .unwrap();
        assert_eq!(
            served.status(),
            200,
            "only one of the ten daily requests was spent"
        );
        // Two of the day's ten are spent now: 8 left, the fewest of both quotas but the
        // minute's 0.
        assert_eq!(served.headers()["ratelimit"], "\"ip-60s\";r=0;t=60");
    }

    #[tokio::test]
    async fn multi_quota_refusal_reports_the_longest_wait() {
        let (limit, _clock) = manual("1/minute; 1/hour");
        let app = app(limit, &[]);
        assert_eq!(status(&app, request("192.0.2.1", &[])).await, 200);
        let refused = app
            .clone()
            .oneshot(request("192.0.2.1", &[]))
            .await
            .unwrap();
        assert_eq!(refused.status(), 429);
        // Coming back after the minute would only meet the hour's refusal.
        assert_eq!(refused.headers()["retry-after"], "3600");
        assert!(refused.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"ip-3600s\";r=0;"));
    }

    fn principal_request(kind: crate::principal::PrincipalKind, id: &str) -> Request<Body> {
        let mut req = request("192.0.2.1", &[]);
        req.extensions_mut().insert(Principal::new(kind, id));
        req
    }

    /// Issue 16, item 10: per-principal keys name the principal's kind, so a JWT whose `sub`
    /// equals an API key's id shares neither its bucket, nor its exemption, nor its tier.
    #[tokio::test]
    async fn jwt_subject_equal_to_an_api_key_id_has_its_own_bucket_exemption_and_tier() {
        use crate::principal::PrincipalKind::{ApiKey, Jwt};
        let clock = FakeRelativeClock::default();
        let limit = RateLimit::per_principal("1/minute")
            .unwrap()
            .exempt_keys(["svc-internal"])
            .tier("gold", "3/minute", ["k-gold"])
            .unwrap()
            .clock(clock)
            .layer();
        let svc = tower::ServiceBuilder::new()
            .layer(limit)
            .service(Router::new().route("/", get(|| async { "ok" })));
        let mut seen = Vec::new();
        for (kind, id) in [
            (ApiKey, "svc-internal"),
            (ApiKey, "svc-internal"),
            (Jwt, "svc-internal"),
            (Jwt, "svc-internal"),
            (ApiKey, "k1"),
            (Jwt, "k1"),
            (ApiKey, "k1"),
            (Jwt, "k1"),
            (ApiKey, "k-gold"),
            (ApiKey, "k-gold"),
            (ApiKey, "k-gold"),
            (ApiKey, "k-gold"),
            (Jwt, "k-gold"),
            (Jwt, "k-gold"),
        ] {
            let res = svc
                .clone()
                .oneshot(principal_request(kind, id))
                .await
                .unwrap();
            seen.push(res.status().as_u16());
        }
        assert_eq!(
            seen,
            [200, 200, 200, 429, 200, 200, 429, 429, 200, 200, 200, 429, 200, 429]
        );
    }

    /// A JWT `sub` is unique only within its issuer: two issuers' "alice" are two principals.
    #[cfg(feature = "jwt")]
    #[tokio::test]
    async fn same_jwt_subject_from_two_issuers_gets_two_buckets() {
        use crate::auth::TokenIssuer;
        let secret = [7u8; 32];
        let jwt = crate::JwtAuth::hs256(secret)
            .unwrap()
            .issuer("https://a.example")
            .issuer("https://b.example")
            .layer()
            .unwrap();
        let limit = RateLimit::per_principal("1/minute")
            .unwrap()
            .clock(FakeRelativeClock::default())
            .layer();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route_layer(limit)
            .route_layer(jwt);
        let token = |iss: &str| {
            TokenIssuer::hs256(secret)
                .unwrap()
                .issuer(iss)
                .issue("alice", &serde_json::json!({}))
                .unwrap()
                .token
        };
        let (a, b) = (token("https://a.example"), token("https://b.example"));
        let mut seen = Vec::new();
        for t in [&a, &b, &a, &b] {
            let auth = format!("Bearer {t}");
            let req = request("192.0.2.1", &[("authorization", &auth)]);
            seen.push(status(&app, req).await);
        }
        assert_eq!(seen, [200, 200, 429, 429]);
    }

    /// Issue 16, item 13: at the key cap a new client gets a fresh bucket of its own (the
    /// keys closest to fully refilled make room), memory stays at the cap, and a flood of
    /// fresh /64s cannot push out the bucket of a client it has limited.
    #[tokio::test]
    async fn new_clients_get_their_own_bucket_when_the_key_cap_is_full() {
        let (limit, clock) = manual("2/minute");
        let layer = limit.max_keys(16).unwrap().layer();
        let svc = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(Router::new().route("/", get(|| async { "ok" })));
        let limited = "2001:db8:ffff:1::1";
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(
                svc.clone()
                    .oneshot(request(limited, &[]))
                    .await
                    .unwrap()
                    .status(),
            );
        }
        assert_eq!(seen, [200, 200, 429]);
        for i in 0..2_000u32 {
            clock.advance(Duration::from_millis(5));
            let fresh = format!("2001:db8:{:x}:{:x}::1", i / 1000, i % 1000);
            let res = svc.clone().oneshot(request(&fresh, &[])).await.unwrap();
            assert_eq!(res.status(), 200, "first request of {fresh}");
            assert!(layer.tracked_keys() <= 16, "{} keys", layer.tracked_keys());
            if i % 250 == 0 {
                let res = svc.clone().oneshot(request(limited, &[])).await.unwrap();
                assert_eq!(res.status(), 429, "the limited client, during the flood");
            }
        }
        let res = svc.clone().oneshot(request(limited, &[])).await.unwrap();
        assert_eq!(res.status(), 429, "the limited client stays limited");
        let res = svc
            .clone()
            .oneshot(request("192.0.2.200", &[]))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn missing_client_address_is_a_clear_500_not_a_shared_bucket() {
        let limit = RateLimit::per_ip("1/minute").unwrap().layer();
        let svc = tower::ServiceBuilder::new()
            .layer(limit)
            .service(Router::new().route("/", get(|| async { "ok" })));
        let req = Request::builder().uri("/").body(Body::empty()).unwrap();
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 500);
    }

    #[test]
    fn bad_settings_are_config_errors() {
        assert!(RateLimit::per_ip("5 per fortnight").is_err());
        assert!(RateLimit::per_ip("5/minute").unwrap().cost(6).is_err());
        assert!(RateLimit::per_ip("5/minute").unwrap().cost(0).is_err());
        assert!(RateLimit::per_ip("5/minute").unwrap().max_keys(0).is_err());
        assert!(RateLimit::per_ip("5/minute").unwrap().name("a b").is_err());
        assert!(RateLimit::per_ip("5/minute")
            .unwrap()
            .exempt_ips(["nope"])
            .is_err());
        assert!(RateLimit::per_header("bad header", "5/minute").is_err());
        let b = RateLimit::per_ip("5/minute").unwrap().cost(5).unwrap();
        assert!(b.tier("t", "2/minute", ["x"]).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_evicted_by_the_background_task_which_ends_with_the_layer() {
        let clock = FakeRelativeClock::default();
        let layer = RateLimit::per_ip("6/minute")
            .unwrap()
            .clock(clock.clone())
            .evict_idle_every(Duration::from_secs(5))
            .unwrap()
            .layer();
        let svc = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(Router::new().route("/", get(|| async { "ok" })));
        for i in 0..20 {
            let req = request(&format!("192.0.2.{i}"), &[]);
            svc.clone().oneshot(req).await.unwrap();
        }
        assert_eq!(layer.tracked_keys(), 20);
        let metrics = tokio::runtime::Handle::current().metrics();
        assert_eq!(metrics.num_alive_tasks(), 1, "one eviction task");
        clock.advance(Duration::from_secs(11));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            layer.tracked_keys(),
            0,
            "idle keys evicted without user action"
        );
        drop(svc);
        drop(layer);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            metrics.num_alive_tasks(),
            0,
            "the task ended with the layer"
        );
    }
}
