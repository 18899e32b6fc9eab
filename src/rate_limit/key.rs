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

use crate::auth::Principal;
use crate::client_ip::{ip_key, ClientIp, ClientIpResolver};
use crate::rejection::Rejection;

/// The key a request is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// A client address, already grouped (IPv4-mapped normalised, IPv6 cut to its prefix).
    Ip(IpAddr),
    /// Any text: a principal id, a header value, a route, your own key.
    Text(Arc<str>),
    /// One key shared by every request.
    Global,
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
            Self::Global => state.write_u8(0),
        }
    }
}

impl LimitKey {
    /// A text key.
    pub fn text(text: impl Into<Arc<str>>) -> Self {
        Self::Text(text.into())
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            Self::Text(t) => write!(f, "k:{t}"),
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
pub type KeyFuture = Pin<Box<dyn Future<Output = Option<LimitKey>> + Send + 'static>>;

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
pub fn client_ip_key(parts: &Parts) -> Result<LimitKey, Rejection> {
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
            Some(p) => Ok(LimitKey::Text(Arc::from(p.id()))),
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
}
