//! [`RateLimitLayer`] (with its key constructors) and the service [`RateLimit`].

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
#[cfg(feature = "redis")]
use axum::response::IntoResponse;
use axum::response::Response;
use http::request::Parts;
use http::Request;
use ipnet::IpNet;
use tokio::sync::Notify;
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "redis")]
use super::builder::{FailureMode, RedisBackend};
use super::builder::{KeyChoice, RateLimitBuilder, Settings, TierMatch};
use super::future::ResponseFuture;
use super::headers::{
    limit_value, policy_names, policy_value, retry_after_value, RateLimitFields, RATELIMIT,
    RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
use super::key::{client_ip_key, ip_key_of, sync_key, Head, KeySource, LimitKey};
use super::quota::{ceil_secs, IntoQuotas, Quota};
use super::store::memory::{Evict, EvictorStart, LimiterClock, MemoryLimiter};
use super::store::Decision;
#[cfg(feature = "redis")]
use super::store::{self, redis::RedisQuota};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::client_ip::{ClientIp, UNKNOWN_CLIENT};
use crate::principal::Principal;
use crate::rejection::{Rejection, RejectionKind};
use crate::ConfigError;

/// The rate-limit service: what [`RateLimitLayer`] wraps around your router or route.
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

/// A rate limit, as a tower layer: start with a key constructor, which returns a
/// [`RateLimitBuilder`], tune it, and [`build`](RateLimitBuilder::build) it. Pass the layer to
/// `.layer()`, `.route_layer()` or
/// [`ShieldBuilder::rate_limit`](crate::shield::ShieldBuilder::rate_limit).
///
/// ```
/// use axum::{routing::{get, post}, Router};
/// use axum_shield::rate_limit::RateLimitLayer;
///
/// # fn main() -> Result<(), axum_shield::ConfigError> {
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .route("/login", post(|| async { "ok" })
///         .route_layer(RateLimitLayer::per_ip("5/minute; 100/day").build()?));
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
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

/// The key constructors: each starts a [`RateLimitBuilder`] with the quotas given as a
/// [`Quota`], a list of them, or text such as `"100/hour"` or `"5/minute; 100/day"` (checked
/// by [`build`](RateLimitBuilder::build)).
impl RateLimitLayer {
    /// Limits each client IP, as resolved by [`Shield`](crate::Shield) from trusted proxies
    /// only (IPv4-mapped addresses normalised, IPv6 grouped by the resolver's prefix, /64 by
    /// default).
    pub fn per_ip(quotas: impl IntoQuotas) -> RateLimitBuilder {
        RateLimitBuilder::new(KeyChoice::Source(KeySource::Ip), quotas)
    }

    /// Limits each authenticated principal, keyed by its kind, issuer and id
    /// ([`PrincipalKey`](super::PrincipalKey)): a JWT whose `sub` equals an API key's id, or
    /// one `sub` from two issuers, are different principals with buckets of their own. Name
    /// principals in `exempt_keys` and tiers with [`LimitKey::api_key`], [`LimitKey::jwt`] or
    /// [`LimitKey::principal`]. Requests without a principal are counted by client IP.
    pub fn per_principal(quotas: impl IntoQuotas) -> RateLimitBuilder {
        RateLimitBuilder::new(KeyChoice::Source(KeySource::Principal), quotas)
    }

    /// Limits each value of header `name` (e.g. a tenant id set by a trusted gateway; the name
    /// is checked by [`build`](RateLimitBuilder::build)). Requests without it (or with a value
    /// over 256 bytes) are counted by client IP.
    pub fn per_header(name: &str, quotas: impl IntoQuotas) -> RateLimitBuilder {
        RateLimitBuilder::new(KeyChoice::Header(name.to_owned()), quotas)
    }

    /// One bucket per route (the matched route pattern when used as a `route_layer`, else the
    /// path), shared by every client.
    pub fn per_route(quotas: impl IntoQuotas) -> RateLimitBuilder {
        RateLimitBuilder::new(KeyChoice::Source(KeySource::Route), quotas)
    }

    /// One bucket for every request.
    pub fn global(quotas: impl IntoQuotas) -> RateLimitBuilder {
        RateLimitBuilder::new(KeyChoice::Source(KeySource::Global), quotas)
    }

    /// Keys requests with your own async function; `None` falls back to the client IP.
    ///
    /// ```
    /// use axum_shield::rate_limit::{LimitKey, RateLimitLayer};
    ///
    /// let limit = RateLimitLayer::per_key("1000/hour", |parts: &http::request::Parts| {
    ///     let tenant = parts.headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned);
    ///     async move { tenant.map(LimitKey::from) }
    /// })
    /// .build()?;
    /// # let _ = limit;
    /// # Ok::<(), axum_shield::ConfigError>(())
    /// ```
    pub fn per_key<F, Fut>(quotas: impl IntoQuotas, key: F) -> RateLimitBuilder
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<LimitKey>> + Send + 'static,
    {
        RateLimitBuilder::new(KeyChoice::Source(KeySource::custom(key)), quotas)
    }

    /// The layer of validated settings (see [`RateLimitBuilder::build`]).
    fn new(settings: Settings) -> Self {
        #[cfg(test)]
        let clock = settings
            .clock
            .as_ref()
            .map_or_else(LimiterClock::monotonic, |c| c.limiter_clock());
        #[cfg(not(test))]
        let clock = LimiterClock::monotonic();
        let wake = Arc::new(Notify::new());
        let make_tier = |tier_name: String, quotas: Vec<Quota>| {
            let names = policy_names(&tier_name, &quotas);
            Tier {
                policy: policy_value(&names, &quotas),
                limiter: MemoryLimiter::new(
                    &quotas,
                    settings.max_keys,
                    settings.when_full,
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
        let name = settings.name;
        let default = make_tier(name.clone(), settings.quotas);
        let tiers = settings
            .tiers
            .into_iter()
            .map(|(m, tier, q)| (m, make_tier(format!("{name}.{tier}"), q)))
            .collect();
        let shared = Arc::new(Shared {
            name: name.into(),
            source: settings.source,
            default,
            tiers,
            exempt_nets: settings.exempt_nets,
            exempt_keys: settings.exempt_keys,
            exempt_paths: settings.exempt_paths,
            cost: settings.cost,
            headers_on_success: settings.headers_on_success,
            legacy_headers: settings.legacy_headers,
            dry_run: settings.dry_run,
            evictor: EvictorStart::new(settings.eviction_interval, wake),
            #[cfg(feature = "redis")]
            redis: settings.redis,
        });
        shared.evictor.ensure(&shared);
        Self { shared }
    }
}

impl RateLimitBuilder {
    /// Checks every setting and builds the layer. Its in-memory state and its one eviction
    /// task are shared by every clone of the layer and end when the last clone is dropped.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first bad setting, in this order: the header name of
    /// [`per_header`](RateLimitLayer::per_header); the quotas (text that does not parse, or a
    /// quota of 0 requests); the [`name`](Self::name); the [`cost`](Self::cost) (0, or above
    /// a quota's burst); each [`tier`](Self::tier) (name, quotas, cost); the
    /// [`exempt_ips`](Self::exempt_ips); a [`max_keys`](Self::max_keys) of 0; an
    /// [`evict_idle_every`](Self::evict_idle_every) under one second.
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        self.validate().map(RateLimitLayer::new)
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
    /// use axum_shield::rate_limit::{LimitKey, RateLimitLayer};
    ///
    /// let limit = RateLimitLayer::global("2/second").build()?;
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
        let (retry_name, retry_value) = retry_after_value(d.retry_after());
        let mut response = Rejection::new(RejectionKind::RateLimited)
            .with_header(retry_name, retry_value)
            .with_header(RATELIMIT_POLICY, fields.policy)
            .with_header(RATELIMIT, fields.limit)
            .into_response_for(head.extensions());
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
            return ResponseFuture::boxed(Box::pin(async move {
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
            }));
        }
        let key = sync_key(&shared.source, &req).unwrap_or_else(|| ip_key_of(req.extensions()));
        match shared.decide_sync(&req, key) {
            Verdict::Refuse(response) => ResponseFuture::refused(response),
            Verdict::Pass(fields) => ResponseFuture::inner(self.inner.call(req), fields),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::SecurityEvent;
    use crate::rate_limit::store::memory::ManualClock;
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
            .rate_limit(limit.build().unwrap())
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

    fn manual(q: &str) -> (RateLimitBuilder, ManualClock) {
        let clock = ManualClock::default();
        (RateLimitLayer::per_ip(q).clock(clock.clone()), clock)
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
        let clock = ManualClock::default();
        let limit = RateLimitLayer::per_ip("2/second; 100/day")
            .legacy_headers(true)
            .clock(clock.clone())
            .build()
            .unwrap();
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
        let clock = ManualClock::default();
        let route = RateLimitLayer::per_ip("1/minute")
            .name("login")
            .clock(clock.clone())
            .build()
            .unwrap();
        let shield = Shield::api()
            .rate_limit(
                RateLimitLayer::per_ip("100/hour")
                    .clock(clock)
                    .build()
                    .unwrap(),
            )
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
            .tier(
                "gold",
                "3/minute",
                ["198.51.100.7".parse::<std::net::IpAddr>().unwrap()],
            );
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
        let clock = ManualClock::default();
        let limit = RateLimitLayer::per_principal("1/minute")
            .clock(clock.clone())
            .build()
            .unwrap();
        let svc = tower::ServiceBuilder::new()
            .layer(limit)
            .service(Router::new().route("/", get(|| async { "ok" })));
        for (who, expected) in [("alice", 200), ("bob", 200), ("alice", 429)] {
            let mut req = request("192.0.2.1", &[]);
            req.extensions_mut()
                .insert(Principal::new(crate::principal::PrincipalKind::Jwt, who));
            assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), expected);
        }
        let custom = RateLimitLayer::per_key("1/minute", |parts: &Parts| {
            let t = parts
                .headers
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            async move { t.map(LimitKey::from) }
        })
        .clock(clock)
        .build()
        .unwrap();
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
        let limit = limit.exempt_ips(["0.0.0.0/0", "10.0.0.0/8"]);
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
        let clock = ManualClock::default();
        let limit = RateLimitLayer::per_principal("1/minute")
            .exempt_keys(["svc-internal"])
            .tier("gold", "3/minute", ["k-gold"])
            .clock(clock)
            .build()
            .unwrap();
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
        let jwt = crate::auth::jwt::JwtAuthLayer::hs256(secret)
            .issuer("https://a.example")
            .issuer("https://b.example")
            .build()
            .unwrap();
        let limit = RateLimitLayer::per_principal("1/minute")
            .clock(ManualClock::default())
            .build()
            .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route_layer(limit)
            .route_layer(jwt);
        let token = |iss: &str| {
            TokenIssuer::hs256(secret)
                .issuer(iss)
                .build()
                .unwrap()
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
        let layer = limit.max_keys(16).build().unwrap();
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
        let limit = RateLimitLayer::per_ip("1/minute").build().unwrap();
        let svc = tower::ServiceBuilder::new()
            .layer(limit)
            .service(Router::new().route("/", get(|| async { "ok" })));
        let req = Request::builder().uri("/").body(Body::empty()).unwrap();
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 500);
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let setting = |b: RateLimitBuilder| b.build().unwrap_err().setting().to_owned();
        let five = || RateLimitLayer::per_ip("5/minute");
        assert_eq!(setting(RateLimitLayer::per_ip("5 per fortnight")), "quota");
        assert_eq!(setting(five().cost(6)), "rate_limit.cost");
        assert_eq!(setting(five().cost(0)), "rate_limit.cost");
        assert_eq!(setting(five().max_keys(0)), "rate_limit.max_keys");
        assert_eq!(setting(five().name("a b")), "rate_limit.name");
        assert_eq!(
            setting(five().exempt_ips(["nope"])),
            "rate_limit.exempt_ips"
        );
        assert_eq!(
            setting(RateLimitLayer::per_header("bad header", "5/minute")),
            "rate_limit.header"
        );
        assert_eq!(
            setting(five().evict_idle_every(Duration::from_millis(10))),
            "rate_limit.eviction_interval"
        );
        assert_eq!(
            setting(five().cost(5).tier("t", "2/minute", ["x"])),
            "rate_limit.cost"
        );
        assert_eq!(
            setting(five().tier("a b", "2/minute", ["x"])),
            "rate_limit.tier"
        );
        assert_eq!(setting(five().tier_for_role("admin", "nope")), "quota");
        // The first bad setting is reported, whatever order the setters ran in.
        assert_eq!(setting(five().max_keys(0).name("a b")), "rate_limit.name");
        assert!(five().cost(5).build().is_ok());
    }

    /// Issue 19: `Quota::per_hour(0)` was read as one request per hour; a quota of zero
    /// requests is a configuration mistake, reported when the limit is built.
    #[test]
    fn zero_quota_is_a_config_error_when_the_limit_is_built() {
        let err = RateLimitLayer::per_ip(Quota::per_hour(0))
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), "quota");
        assert!(err.problem().contains("0 requests"), "{err}");
        let tier = RateLimitLayer::per_ip("5/minute").tier("gold", [Quota::per_minute(0)], ["k"]);
        assert_eq!(tier.build().unwrap_err().setting(), "quota");
        let list = RateLimitLayer::global(vec![Quota::per_minute(5), Quota::per_day(0)]);
        assert!(list.build().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_evicted_by_the_background_task_which_ends_with_the_layer() {
        let clock = ManualClock::default();
        let layer = RateLimitLayer::per_ip("6/minute")
            .clock(clock.clone())
            .evict_idle_every(Duration::from_secs(5))
            .build()
            .unwrap();
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
