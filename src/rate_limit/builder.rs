//! [`RateLimitBuilder`]: the settings of a rate limit, kept as given and validated once, by
//! [`build`](RateLimitBuilder::build).

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;

use super::headers::is_safe_name;
use super::key::{KeySource, LimitKey};
use super::quota::{check_counts, IntoQuotas, Quota};
#[cfg(test)]
use super::store::memory::ManualClock;
use super::store::memory::{KeyCapPolicy, DEFAULT_EVICTION_INTERVAL, DEFAULT_MAX_KEYS};
use crate::ConfigError;

/// What a Redis-backed limit does when Redis cannot answer in time (within the store's
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
    /// The mode as events name it.
    pub(super) fn name(self) -> &'static str {
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
pub(super) struct RedisBackend {
    pub(super) store: crate::redis::RedisStore,
    pub(super) on_failure: FailureMode,
}

/// Which requests a tier applies to.
#[derive(Debug, Clone)]
pub(super) enum TierMatch {
    Keys(HashSet<LimitKey>),
    Role(String),
}

/// The key as given: a header name is checked by `build`.
#[derive(Debug, Clone)]
pub(super) enum KeyChoice {
    Source(KeySource),
    Header(String),
}

/// A tier as given.
#[derive(Debug, Clone)]
struct TierSettings {
    matcher: TierMatch,
    name: String,
    quotas: Result<Vec<Quota>, ConfigError>,
}

/// Builder of a [`RateLimitLayer`](super::RateLimitLayer): start with one of its key
/// constructors ([`RateLimitLayer::per_ip`](super::RateLimitLayer::per_ip),
/// [`per_principal`](super::RateLimitLayer::per_principal), …), tune it with the setters,
/// then call [`build`](Self::build), which reports the first bad setting.
///
/// ```
/// use axum_shield::rate_limit::RateLimitLayer;
///
/// let login = RateLimitLayer::per_ip("5/minute; 100/day")
///     .name("login")
///     .exempt_ips(["10.0.0.0/8"])
///     .build()?;
/// # let _ = login;
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RateLimitBuilder {
    key: KeyChoice,
    quotas: Result<Vec<Quota>, ConfigError>,
    name: Option<String>,
    tiers: Vec<TierSettings>,
    exempt_ips: Vec<String>,
    exempt_keys: HashSet<LimitKey>,
    exempt_paths: Vec<String>,
    cost: u32,
    headers_on_success: bool,
    legacy_headers: bool,
    dry_run: bool,
    max_keys: usize,
    when_full: KeyCapPolicy,
    eviction_interval: Duration,
    #[cfg(test)]
    clock: Option<ManualClock>,
    #[cfg(feature = "redis")]
    redis: Option<RedisBackend>,
}

impl fmt::Debug for RateLimitBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("quotas", &self.quotas)
            .field("tiers", &self.tiers)
            .field("cost", &self.cost)
            .field("dry_run", &self.dry_run)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// Every setting of a rate limit, validated: what [`RateLimitBuilder::build`] hands to the
/// layer.
pub(super) struct Settings {
    pub(super) name: String,
    pub(super) source: KeySource,
    pub(super) quotas: Vec<Quota>,
    pub(super) tiers: Vec<(TierMatch, String, Vec<Quota>)>,
    pub(super) exempt_nets: Vec<IpNet>,
    pub(super) exempt_keys: HashSet<LimitKey>,
    pub(super) exempt_paths: Vec<String>,
    pub(super) cost: NonZeroU32,
    pub(super) headers_on_success: bool,
    pub(super) legacy_headers: bool,
    pub(super) dry_run: bool,
    pub(super) max_keys: usize,
    pub(super) when_full: KeyCapPolicy,
    pub(super) eviction_interval: Duration,
    #[cfg(test)]
    pub(super) clock: Option<ManualClock>,
    #[cfg(feature = "redis")]
    pub(super) redis: Option<RedisBackend>,
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

fn check_cost(cost: u32, quotas: &[Quota]) -> Result<(), ConfigError> {
    match quotas.iter().find(|q| q.burst() < cost) {
        Some(q) => Err(cost_error(cost, q)),
        None => Ok(()),
    }
}

/// The quotas as given, parsed and checked: none of them zero.
fn checked(quotas: &Result<Vec<Quota>, ConfigError>) -> Result<Vec<Quota>, ConfigError> {
    let quotas = quotas.clone()?;
    check_counts(&quotas)?;
    Ok(quotas)
}

fn parse_net(text: &str) -> Result<IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            ConfigError::new(
                "rate_limit.exempt_ips",
                format!("{text:?} is not an address or CIDR"),
                "use CIDRs such as \"10.0.0.0/8\" or addresses such as \"192.0.2.1\"",
            )
        })
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
    pub(super) fn new(key: KeyChoice, quotas: impl IntoQuotas) -> Self {
        Self {
            key,
            quotas: quotas.into_quotas(),
            name: None,
            tiers: Vec::new(),
            exempt_ips: Vec::new(),
            exempt_keys: HashSet::new(),
            exempt_paths: Vec::new(),
            cost: 1,
            headers_on_success: true,
            legacy_headers: false,
            dry_run: false,
            max_keys: DEFAULT_MAX_KEYS,
            when_full: KeyCapPolicy::default(),
            eviction_interval: DEFAULT_EVICTION_INTERVAL,
            #[cfg(test)]
            clock: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// Names the limit in the `RateLimit-Policy` field, events and Redis keys (default: the
    /// key kind, e.g. `ip`): 1–64 characters of `A-Z a-z 0-9 - _ . :`, checked by
    /// [`build`](Self::build).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Units each request spends (default 1), for expensive endpoints. [`build`](Self::build)
    /// refuses 0, and a cost above the burst of any quota (it could never pass).
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// Never limits clients whose IP is inside one of these CIDRs or addresses (e.g. health
    /// checkers); [`build`](Self::build) names the first malformed entry. The unknown client
    /// ([`UNKNOWN_CLIENT`](crate::client_ip::UNKNOWN_CLIENT), a malformed forwarding header
    /// from a trusted proxy) is never exempt, whatever the CIDRs cover.
    pub fn exempt_ips<I, T>(mut self, cidrs: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.exempt_ips
            .extend(cidrs.into_iter().map(|c| c.as_ref().to_owned()));
        self
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
    /// [`build`](Self::build) checks the name (as for [`name`](Self::name)), the quotas, and
    /// that they fit the cost.
    pub fn tier<I, K>(mut self, name: &str, quotas: impl IntoQuotas, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<LimitKey>,
    {
        self.tiers.push(TierSettings {
            matcher: TierMatch::Keys(with_api_key_aliases(keys).collect()),
            name: name.to_owned(),
            quotas: quotas.into_quotas(),
        });
        self
    }

    /// Gives principals with `role` other quotas (a tier), checked before the defaults;
    /// checked by [`build`](Self::build) as for [`tier`](Self::tier).
    pub fn tier_for_role(mut self, role: &str, quotas: impl IntoQuotas) -> Self {
        self.tiers.push(TierSettings {
            matcher: TierMatch::Role(role.to_owned()),
            name: role.to_owned(),
            quotas: quotas.into_quotas(),
        });
        self
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
    /// tier; each key holds the state of all of its tier's quotas. [`build`](Self::build)
    /// refuses 0.
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// What happens to new keys once `max_keys` are tracked (default: room is made by
    /// forgetting the keys closest to refilled, and the new key gets a fresh bucket; see
    /// [`KeyCapPolicy`]).
    pub fn when_full(mut self, policy: KeyCapPolicy) -> Self {
        self.when_full = policy;
        self
    }

    /// How often the background task forgets idle keys (default 60 s, at least one second:
    /// [`build`](Self::build) refuses shorter ones).
    pub fn evict_idle_every(mut self, interval: Duration) -> Self {
        self.eviction_interval = interval;
        self
    }

    /// Drives the in-memory limiter from a manual clock instead of the monotonic clock (the
    /// crate's tests).
    #[cfg(test)]
    pub(crate) fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Shares the limit through Redis (see [`RedisStore`](crate::redis::RedisStore));
    /// `on_failure` decides what happens when Redis cannot answer.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, store: crate::redis::RedisStore, on_failure: FailureMode) -> Self {
        self.redis = Some(RedisBackend { store, on_failure });
        self
    }

    /// Checks every setting, in the order documented on `build` (in `layer.rs`).
    pub(super) fn validate(self) -> Result<Settings, ConfigError> {
        let source = match self.key {
            KeyChoice::Source(source) => source,
            KeyChoice::Header(name) => KeySource::Header(ConfigError::header_name(
                "rate_limit.header",
                &name,
                "use a header name such as \"x-tenant-id\"",
            )?),
        };
        let quotas = checked(&self.quotas)?;
        if let Some(name) = self.name.as_deref().filter(|n| !is_safe_name(n)) {
            return Err(ConfigError::new(
                "rate_limit.name",
                format!("{name:?} is not a usable limit name"),
                "use 1-64 characters of letters, digits, '-', '_', '.' or ':'",
            ));
        }
        let cost = NonZeroU32::new(self.cost).ok_or_else(|| {
            ConfigError::new(
                "rate_limit.cost",
                "a cost of 0 would make the limit count nothing",
                "use a cost of at least 1, or remove the limit",
            )
        })?;
        check_cost(self.cost, &quotas)?;
        let mut tiers = Vec::with_capacity(self.tiers.len());
        for tier in self.tiers {
            if !is_safe_name(&tier.name) {
                return Err(ConfigError::new(
                    "rate_limit.tier",
                    format!("{:?} is not a usable tier name", tier.name),
                    "use 1-64 characters of letters, digits, '-', '_', '.' or ':'",
                ));
            }
            let tier_quotas = checked(&tier.quotas)?;
            check_cost(self.cost, &tier_quotas)?;
            tiers.push((tier.matcher, tier.name, tier_quotas));
        }
        let exempt_nets = self
            .exempt_ips
            .iter()
            .map(|text| parse_net(text))
            .collect::<Result<Vec<_>, _>>()?;
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                "rate_limit.max_keys",
                "a key cap of 0 cannot track any client",
                "use a cap such as 100000 (the default)",
            ));
        }
        if self.eviction_interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "rate_limit.eviction_interval",
                format!(
                    "{:?} would sweep the key map continuously",
                    self.eviction_interval
                ),
                "use an interval of at least one second, such as 60 s",
            ));
        }
        Ok(Settings {
            name: self.name.unwrap_or_else(|| source.short_name().to_owned()),
            source,
            quotas,
            tiers,
            exempt_nets,
            exempt_keys: self.exempt_keys,
            exempt_paths: self.exempt_paths,
            cost,
            headers_on_success: self.headers_on_success,
            legacy_headers: self.legacy_headers,
            dry_run: self.dry_run,
            max_keys: self.max_keys,
            when_full: self.when_full,
            eviction_interval: self.eviction_interval,
            #[cfg(test)]
            clock: self.clock,
            #[cfg(feature = "redis")]
            redis: self.redis,
        })
    }
}
