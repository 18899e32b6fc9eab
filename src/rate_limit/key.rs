//! What a limit counts against: client IP, principal, header, route, a global key or your own
//! function.

use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::MatchedPath;
use http::request::Parts;
use http::HeaderName;

use crate::client_ip::{ip_key, ClientIp, ClientIpResolver};
use crate::principal::{Principal, PrincipalKind};
use crate::rejection::Rejection;

/// The key a request is counted under.
///
/// To name principals in [`exempt_keys`](super::RateLimitBuilder::exempt_keys) or
/// [`tier`](super::RateLimitBuilder::tier), use [`LimitKey::api_key`], [`LimitKey::jwt`] or
/// [`LimitKey::principal`]. A plain string there also names the API key with that id (API key
/// ids are yours to choose), never a JWT subject (chosen by an issuer).
///
/// ```
/// use axum_shield::rate_limit::{LimitKey, RateLimitLayer};
///
/// let limit = RateLimitLayer::per_principal("1000/hour")
///     .exempt_keys(["monitoring"]) // the API key "monitoring"
///     .exempt_keys([LimitKey::jwt("https://id.example", "batch-job")])
///     .build()?;
/// # let _ = limit;
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// A client address, already grouped (IPv4-mapped normalised, IPv6 cut to its prefix).
    Ip(IpAddr),
    /// Any text: a header value, a route, your own key.
    Text(Arc<str>),
    /// An authenticated principal: its kind, issuer and id.
    Principal(PrincipalKey),
    /// One key shared by every request.
    Global,
}

/// The rate-limit key of an authenticated principal: how it authenticated
/// ([`PrincipalKind`]), who issued it (the JWT `iss`; none for API keys) and its id (the JWT
/// `sub`, the API key id).
///
/// An id is unique only within its kind and issuer: a JWT whose `sub` equals an API key's id,
/// or the same `sub` from two issuers, are different principals, with their own buckets,
/// exemptions and tiers. An empty issuer is the same as none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrincipalKey {
    kind: PrincipalKind,
    /// Length of the issuer at the start of `text` (0: none). A `u32` keeps `LimitKey` at
    /// 24 bytes, the size of every key in the in-memory maps.
    issuer_len: u32,
    /// The issuer followed by the id, in one allocation.
    text: Arc<str>,
}

impl PrincipalKey {
    fn new(kind: PrincipalKind, issuer: Option<&str>, id: &str) -> Self {
        // No issuer is 4 GiB long; one that were would be dropped, never mis-split.
        let issuer = issuer
            .filter(|issuer| u32::try_from(issuer.len()).is_ok())
            .unwrap_or_default();
        let mut text = String::with_capacity(issuer.len() + id.len());
        text.push_str(issuer);
        text.push_str(id);
        Self {
            kind,
            issuer_len: u32::try_from(issuer.len()).unwrap_or(0),
            text: text.into(),
        }
    }

    /// How the principal authenticated.
    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// Who issued it (the JWT `iss`), if anyone said.
    pub fn issuer(&self) -> Option<&str> {
        (self.issuer_len > 0).then(|| self.text.get(..self.split()).unwrap_or_default())
    }

    /// Its id: the JWT `sub` or the API key id.
    pub fn id(&self) -> &str {
        self.text.get(self.split()..).unwrap_or_default()
    }

    fn split(&self) -> usize {
        usize::try_from(self.issuer_len).unwrap_or(usize::MAX)
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            PrincipalKind::Jwt => "jwt",
            PrincipalKind::ApiKey => "api_key",
        }
    }
}

/// One hasher write per key: the in-memory limiter hashes the key (keyed SipHash, so chosen
/// keys cannot collide on purpose) on every request, and SipHash's cost grows with every
/// 8-byte block and every write. An IPv4 key is a single block; the derived impl wrote 28
/// bytes in four writes. Keys of different kinds may share a hash; `Eq` still tells them apart.
impl Hash for LimitKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Self::Ip(IpAddr::V4(ip)) => state.write_u64(u64::from(ip.to_bits()) | 1 << 32),
            Self::Ip(IpAddr::V6(ip)) => state.write_u128(ip.to_bits()),
            Self::Text(text) => text.hash(state),
            Self::Principal(principal) => principal.hash(state),
            Self::Global => state.write_u8(0),
        }
    }
}

impl LimitKey {
    /// A text key.
    pub fn text(text: impl Into<Arc<str>>) -> Self {
        Self::Text(text.into())
    }

    /// The key of a principal of `kind`, issued by `issuer` (the JWT `iss`; `None` for API
    /// keys), with `id` (the JWT `sub`, the API key id).
    pub fn principal(kind: PrincipalKind, issuer: Option<&str>, id: &str) -> Self {
        Self::Principal(PrincipalKey::new(kind, issuer, id))
    }

    /// The key of the API key with public id `id`.
    pub fn api_key(id: &str) -> Self {
        Self::principal(PrincipalKind::ApiKey, None, id)
    }

    /// The key of the JWT subject `subject` of `issuer`.
    pub fn jwt(issuer: &str, subject: &str) -> Self {
        Self::principal(PrincipalKind::Jwt, Some(issuer), subject)
    }

    /// The key of a request's principal: its kind, issuer and id.
    pub(crate) fn of_principal(principal: &Principal) -> Self {
        Self::principal(principal.kind(), principal.issuer(), principal.id())
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            Self::Text(t) => write!(f, "k:{t}"),
            // The issuer's length makes the split between issuer and id unambiguous.
            Self::Principal(p) => write!(
                f,
                "p:{}:{}:{}:{}",
                p.kind_name(),
                p.issuer_len,
                p.issuer().unwrap_or_default(),
                p.id()
            ),
            Self::Global => f.write_str("global"),
        }
    }
}

impl From<IpAddr> for LimitKey {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

impl From<&str> for LimitKey {
    fn from(text: &str) -> Self {
        Self::Text(text.into())
    }
}

impl From<String> for LimitKey {
    fn from(text: String) -> Self {
        Self::Text(text.into())
    }
}

/// The boxed future of a user key function.
type KeyFuture = Pin<Box<dyn Future<Output = Option<LimitKey>> + Send + 'static>>;

type KeyFn = Arc<dyn Fn(&Parts) -> KeyFuture + Send + Sync>;

/// Where the key of a request comes from.
#[derive(Clone)]
pub(crate) enum KeySource {
    Ip,
    Principal,
    Header(HeaderName),
    Route,
    Global,
    Custom(KeyFn),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip => f.write_str("Ip"),
            Self::Principal => f.write_str("Principal"),
            Self::Header(h) => f.debug_tuple("Header").field(h).finish(),
            Self::Route => f.write_str("Route"),
            Self::Global => f.write_str("Global"),
            Self::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl KeySource {
    pub(crate) fn custom<F, Fut>(f: F) -> Self
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<LimitKey>> + Send + 'static,
    {
        Self::Custom(Arc::new(move |parts| Box::pin(f(parts))))
    }

    pub(crate) fn short_name(&self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Principal => "principal",
            Self::Header(_) => "header",
            Self::Route => "route",
            Self::Global => "global",
            Self::Custom(_) => "custom",
        }
    }
}

/// The grouped client-IP key of a request: the address `Shield` resolved (trusted proxies
/// only), cut to the resolver's IPv6 prefix. Headers are never read here.
///
/// # Errors
///
/// A `Misconfigured` rejection when the client address is unknown (no `Shield`, no
/// `ConnectInfo`).
pub(crate) fn client_ip_key(parts: &Parts) -> Result<LimitKey, Rejection> {
    ip_key_of(&parts.extensions)
}

/// [`client_ip_key`] from request extensions.
pub(crate) fn ip_key_of(extensions: &http::Extensions) -> Result<LimitKey, Rejection> {
    let ip = ClientIp::from_extensions(extensions)?.0;
    // `ClientIp` is normalised, so an IPv4 key needs no prefix: skip the resolver lookup.
    if ip.is_ipv4() {
        return Ok(LimitKey::Ip(ip));
    }
    Ok(LimitKey::Ip(match extensions.get::<ClientIpResolver>() {
        Some(resolver) => resolver.key(ip),
        // `Shield` leaves the resolver out when it uses the default prefix.
        None => ip_key(ip, crate::client_ip::DEFAULT_IPV6_PREFIX),
    }))
}

/// The key from a synchronous source, or `None` for a custom function (resolved async).
/// Missing principals or headers fall back to the client IP, so a request without them can
/// never escape into a shared or empty key.
pub(crate) fn sync_key<H: Head>(
    source: &KeySource,
    head: &H,
) -> Option<Result<LimitKey, Rejection>> {
    let extensions = head.extensions();
    Some(match source {
        KeySource::Ip => ip_key_of(extensions),
        KeySource::Principal => match extensions.get::<Principal>() {
            Some(p) => Ok(LimitKey::of_principal(p)),
            None => ip_key_of(extensions),
        },
        KeySource::Header(name) => match head.headers().get(name).and_then(|v| v.to_str().ok()) {
            Some(v) if !v.is_empty() && v.len() <= 256 => Ok(LimitKey::text(v)),
            _ => ip_key_of(extensions),
        },
        KeySource::Route => Ok(LimitKey::text(
            extensions
                .get::<MatchedPath>()
                .map(|p| p.as_str())
                .unwrap_or_else(|| head.uri().path()),
        )),
        KeySource::Global => Ok(LimitKey::Global),
        KeySource::Custom(_) => return None,
    })
}

/// The parts of a request the limiter reads: a whole `Request` on the synchronous path (no
/// `into_parts` and back on every request), its `Parts` on the asynchronous one.
pub(crate) trait Head {
    fn method(&self) -> &http::Method;
    fn uri(&self) -> &http::Uri;
    fn headers(&self) -> &http::HeaderMap;
    fn extensions(&self) -> &http::Extensions;
}

impl Head for Parts {
    fn method(&self) -> &http::Method {
        &self.method
    }
    fn uri(&self) -> &http::Uri {
        &self.uri
    }
    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }
    fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }
}

impl<B> Head for http::Request<B> {
    fn method(&self) -> &http::Method {
        self.method()
    }
    fn uri(&self) -> &http::Uri {
        self.uri()
    }
    fn headers(&self) -> &http::HeaderMap {
        self.headers()
    }
    fn extensions(&self) -> &http::Extensions {
        self.extensions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn keys_of_every_kind_stay_apart_and_equal_keys_meet() {
        let v4 = Ipv4Addr::new(192, 0, 2, 1);
        // The IPv4 key's bits, written as an IPv6 address and as text: different keys.
        let lookalike = Ipv6Addr::from(u128::from(v4.to_bits()) | 1 << 32);
        let keys = [
            LimitKey::Ip(IpAddr::V4(v4)),
            LimitKey::Ip(IpAddr::V6(lookalike)),
            LimitKey::text("192.0.2.1"),
            LimitKey::text(""),
            LimitKey::api_key("192.0.2.1"),
            LimitKey::jwt("https://a.example", "192.0.2.1"),
            LimitKey::jwt("https://a.example/", "192.0.2.1"),
            LimitKey::jwt("https://a.example/1", "92.0.2.1"),
            LimitKey::Global,
        ];
        let set: HashSet<LimitKey> = keys.iter().cloned().collect();
        assert_eq!(set.len(), keys.len());
        for key in &keys {
            assert!(set.contains(&key.clone()), "{key}");
        }
        assert!(set.contains(&LimitKey::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))));
        assert!(!set.contains(&LimitKey::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)))));
    }

    #[test]
    fn principal_keys_say_kind_issuer_and_id_unambiguously() {
        let key = LimitKey::jwt("https://id.example", "alice");
        assert_eq!(key.to_string(), "p:jwt:18:https://id.example:alice");
        assert_eq!(LimitKey::api_key("k1").to_string(), "p:api_key:0::k1");
        let LimitKey::Principal(p) = key else {
            unreachable!()
        };
        assert_eq!(p.kind(), PrincipalKind::Jwt);
        assert_eq!(p.issuer(), Some("https://id.example"));
        assert_eq!(p.id(), "alice");
        assert_eq!(
            LimitKey::principal(PrincipalKind::Jwt, Some(""), "alice"),
            LimitKey::principal(PrincipalKind::Jwt, None, "alice")
        );
        assert_ne!(
            LimitKey::jwt("a", "bc").to_string(),
            LimitKey::jwt("ab", "c").to_string()
        );
        // Every key of the in-memory maps has this size; principals must not grow it.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<LimitKey>(), 24);
    }
}
