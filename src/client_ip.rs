//! The client IP address, resolved once and correctly behind proxies.
//!
//! Every layer of this crate that needs the client's address (rate limiting, the security log,
//! HSTS behind a proxy) reads it from here, so there is exactly one notion of "the client".
//!
//! * By default the client is the **connecting peer** (`ConnectInfo<SocketAddr>`). A
//!   `X-Forwarded-For` or `Forwarded` header sent by an ordinary client changes nothing.
//! * When the peer is a **trusted proxy** (a CIDR you configure), the forwarding header your
//!   proxy writes is read **right to left**, skipping further trusted hops, and the first
//!   untrusted address is the client. The leftmost entry, which any client can write, is used
//!   only when every hop to its right is trusted. This follows RFC 7239 §5.2 / §7.4 and the
//!   advice in MDN's `X-Forwarded-For` page ("rightmost untrusted").
//! * Ports are stripped, IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) become IPv4, and a
//!   malformed entry ends the walk at the last trusted hop: never a 500, never a guess.
//! * As a rate-limit key, IPv6 addresses are grouped by a prefix (default `/64`), since one
//!   subscriber usually owns a whole /64 and can rotate addresses inside it at will.
//!
//! ```
//! use std::net::{IpAddr, SocketAddr};
//! use axum_shield::client_ip::{ClientIpConfig, ForwardedHeader};
//! use http::HeaderMap;
//!
//! let resolver = ClientIpConfig::new()
//!     .trusted_proxies(["10.0.0.0/8"])?
//!     .header(ForwardedHeader::XForwardedFor)
//!     .build()?;
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2".parse().unwrap());
//! let peer: IpAddr = "10.0.0.1".parse().unwrap();
//! // 10.0.0.2 is a trusted hop, 203.0.113.7 is the client; 1.1.1.1 is whatever it claimed.
//! assert_eq!(resolver.resolve(peer, &headers).ip(), "203.0.113.7".parse::<IpAddr>().unwrap());
//! # Ok::<(), axum_shield::ConfigError>(())
//! ```

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use serde::Deserialize;

use crate::rejection::{Rejection, RejectionKind};
use crate::ConfigError;

/// The IPv6 prefix length that groups addresses into one rate-limit key unless configured.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// Which forwarding header the trusted proxies write.
///
/// Only one is read: if your proxy writes `X-Forwarded-For` but passes a client's `Forwarded`
/// through untouched, reading `Forwarded` would let that client choose its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (and `X-Forwarded-Proto`), the de facto standard. Default.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239): `for=` and `proto=` parameters.
    Forwarded,
}

/// Settings for resolving the client IP; build a [`ClientIpResolver`] from it.
///
/// Also loadable with serde:
///
/// ```
/// # use axum_shield::client_ip::ClientIpConfig;
/// let config: ClientIpConfig = serde_json::from_str(
///     r#"{ "trusted_proxies": ["10.0.0.0/8", "fd00::/8"], "header": "forwarded", "ipv6_prefix": 56 }"#,
/// ).unwrap();
/// let resolver = config.build().unwrap();
/// # let _ = resolver;
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientIpConfig {
    trusted_proxies: Vec<String>,
    header: ForwardedHeader,
    ipv6_prefix: u8,
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            header: ForwardedHeader::default(),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }
}

impl ClientIpConfig {
    /// No trusted proxies (the peer address is the client), `X-Forwarded-For`, IPv6 /64 keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the proxies allowed to name the client, as CIDRs (`10.0.0.0/8`) or single
    /// addresses (`192.0.2.10`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first entry that is not an address or CIDR.
    pub fn trusted_proxies<I, T>(mut self, proxies: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let proxies: Vec<String> = proxies
            .into_iter()
            .map(|p| p.as_ref().trim().to_owned())
            .collect();
        for proxy in &proxies {
            parse_net(proxy)?;
        }
        self.trusted_proxies = proxies;
        Ok(self)
    }

    /// Sets which forwarding header the trusted proxies write.
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Sets the IPv6 prefix length used to group addresses into one rate-limit key
    /// (default 64; 128 keys every address separately).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a malformed proxy CIDR or an IPv6 prefix outside 1–128.
    pub fn build(self) -> Result<ClientIpResolver, ConfigError> {
        let trusted = self
            .trusted_proxies
            .iter()
            .map(|p| parse_net(p))
            .collect::<Result<Vec<_>, _>>()?;
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err(ConfigError::new(
                "ipv6_prefix",
                format!("{} is not a prefix length", self.ipv6_prefix),
                "use a value from 1 to 128 (64 groups one subscriber's addresses)",
            ));
        }
        Ok(ClientIpResolver(Arc::new(Resolver {
            trusted,
            header: self.header,
            ipv6_prefix: self.ipv6_prefix,
        })))
    }
}

fn parse_net(text: &str) -> Result<IpNet, ConfigError> {
    let parsed = if text.contains('/') {
        IpNet::from_str(text).ok()
    } else {
        IpAddr::from_str(text).ok().map(IpNet::from)
    };
    parsed
        .map(|net| match net {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                // `::ffff:10.0.0.0/104` means `10.0.0.0/8`.
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net)
                }
                _ => net,
            },
            IpNet::V4(_) => net,
        })
        .map(|net| net.trunc())
        .ok_or_else(|| {
            ConfigError::new(
                "trusted_proxies",
                format!("{text:?} is not an IP address or CIDR"),
                "write addresses like \"192.0.2.10\" or CIDRs like \"10.0.0.0/8\" and \"fd00::/8\"",
            )
        })
}

/// Resolves the client IP of requests; cheap to clone (shared `Arc`).
#[derive(Clone)]
pub struct ClientIpResolver(Arc<Resolver>);

struct Resolver {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
    ipv6_prefix: u8,
}

impl Default for ClientIpResolver {
    fn default() -> Self {
        ClientIpConfig::new()
            .build()
            .unwrap_or_else(|_| unreachable!("the default client IP config is valid"))
    }
}

impl fmt::Debug for ClientIpResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIpResolver")
            .field("trusted_proxies", &self.0.trusted)
            .field("header", &self.0.header)
            .field("ipv6_prefix", &self.0.ipv6_prefix)
            .finish()
    }
}

/// What [`ClientIpResolver::resolve`] found out about a request's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    ip: IpAddr,
    forwarded_https: Option<bool>,
}

impl Resolved {
    /// The client address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Whether a trusted proxy said the original request used HTTPS (`X-Forwarded-Proto` or
    /// `Forwarded: proto=`); `None` when the peer is not trusted or said nothing.
    pub fn forwarded_https(&self) -> Option<bool> {
        self.forwarded_https
    }
}

impl ClientIpResolver {
    /// Whether `ip` belongs to a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        self.0.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The IPv6 prefix length used by [`ClientIpResolver::key`].
    pub fn ipv6_prefix(&self) -> u8 {
        self.0.ipv6_prefix
    }

    /// The rate-limit key of `ip`: itself for IPv4, its configured prefix for IPv6.
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        ip_key(ip, self.0.ipv6_prefix)
    }

    /// Resolves the client of a request that arrived from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Resolved {
        let peer = normalize(peer);
        if self.0.trusted.is_empty() || !self.is_trusted(peer) {
            return Resolved {
                ip: peer,
                forwarded_https: None,
            };
        }
        match self.0.header {
            ForwardedHeader::XForwardedFor => {
                let ip = walk(
                    peer,
                    headers,
                    &X_FORWARDED_FOR,
                    |value| value.rsplit(','),
                    parse_node,
                    self,
                );
                let forwarded_https = headers
                    .get_all(&X_FORWARDED_PROTO)
                    .iter()
                    .next_back()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit(',').next())
                    .map(|proto| proto.trim().eq_ignore_ascii_case("https"));
                Resolved {
                    ip,
                    forwarded_https,
                }
            }
            ForwardedHeader::Forwarded => {
                let ip = walk(
                    peer,
                    headers,
                    &http::header::FORWARDED,
                    ElementsRev::new,
                    |element| forwarded_param(element, "for").and_then(|v| parse_node(&v)),
                    self,
                );
                let forwarded_https = headers
                    .get_all(http::header::FORWARDED)
                    .iter()
                    .next_back()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| ElementsRev::new(v).next())
                    .and_then(|element| forwarded_param(element, "proto"))
                    .map(|proto| proto.eq_ignore_ascii_case("https"));
                Resolved {
                    ip,
                    forwarded_https,
                }
            }
        }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Walks the entries of `name` right to left while the current hop is trusted.
fn walk<'h, I>(
    peer: IpAddr,
    headers: &'h HeaderMap,
    name: &HeaderName,
    split: impl Fn(&'h str) -> I,
    parse: impl Fn(&'h str) -> Option<IpAddr>,
    resolver: &ClientIpResolver,
) -> IpAddr
where
    I: Iterator<Item = &'h str>,
{
    let mut client = peer;
    for value in headers.get_all(name).iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for entry in split(value) {
            match parse(entry) {
                Some(ip) => {
                    client = normalize(ip);
                    if !resolver.is_trusted(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
    }
    client
}

/// Parses one node: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`. Anything else (`unknown`, obfuscated ids, garbage) is `None`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = IpAddr::from_str(text) {
        return Some(ip);
    }
    if let Ok(addr) = SocketAddr::from_str(text) {
        return Some(addr.ip());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    Ipv6Addr::from_str(inner).ok().map(IpAddr::V6)
}

/// The value of parameter `key` in one `Forwarded` element (`for=...;proto=...`), unquoted.
fn forwarded_param(element: &str, key: &str) -> Option<String> {
    let mut found = None;
    for pair in split_outside_quotes(element, ';') {
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case(key) {
            if found.is_some() {
                return None; // a parameter given twice is malformed (RFC 7239 §4)
            }
            found = Some(unquote(value.trim())?);
        }
    }
    found
}

fn unquote(value: &str) -> Option<String> {
    match value.strip_prefix('"') {
        None => (!value.contains('"')).then(|| value.to_owned()),
        Some(rest) => {
            let rest = rest.strip_suffix('"')?;
            let mut out = String::with_capacity(rest.len());
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?),
                    '"' => return None,
                    c => out.push(c),
                }
            }
            Some(out)
        }
    }
}

fn split_outside_quotes(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    let mut escaped = false;
    text.split(move |c: char| {
        if escaped {
            escaped = false;
            return false;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => return true,
            _ => {}
        }
        false
    })
}

/// The comma-separated elements of a `Forwarded` value, last first, commas inside quoted
/// strings respected.
struct ElementsRev<'a> {
    elements: std::vec::IntoIter<&'a str>,
}

impl<'a> ElementsRev<'a> {
    fn new(value: &'a str) -> Self {
        let mut elements: Vec<&'a str> = split_outside_quotes(value, ',').collect();
        elements.reverse();
        Self {
            elements: elements.into_iter(),
        }
    }
}

impl<'a> Iterator for ElementsRev<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        self.elements.next()
    }
}

/// Turns IPv4-mapped IPv6 (`::ffff:192.0.2.1`) into IPv4; other addresses are unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The rate-limit key of `ip`: the normalised IPv4 address, or the IPv6 address with all but
/// the first `ipv6_prefix` bits cleared.
///
/// ```
/// use axum_shield::client_ip::ip_key;
/// let a = ip_key("2001:db8:1:2:aaaa::1".parse().unwrap(), 64);
/// let b = ip_key("2001:db8:1:2:bbbb::9".parse().unwrap(), 64);
/// assert_eq!(a, b);
/// assert_eq!(ip_key("::ffff:192.0.2.1".parse().unwrap(), 64), "192.0.2.1".parse::<std::net::IpAddr>().unwrap());
/// ```
pub fn ip_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match normalize(ip) {
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// The client IP of a request, as resolved by [`Shield`](crate::Shield).
///
/// As an extractor it reads the address `Shield` resolved (trusted proxies applied). Without
/// `Shield` it falls back to the peer address from `ConnectInfo<SocketAddr>`; if that is
/// missing too, the request fails with a 500 and an error log telling you to serve the app
/// with `into_make_service_with_connect_info::<SocketAddr>()`.
///
/// ```
/// use axum_shield::ClientIp;
///
/// async fn handler(ClientIp(ip): ClientIp) -> String {
///     format!("hello {ip}")
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(handler));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.0
    }

    /// Reads the client IP from request extensions (set by `Shield`), else the peer address.
    ///
    /// # Errors
    ///
    /// A [`RejectionKind::Misconfigured`] rejection when neither is present.
    pub fn from_extensions(extensions: &http::Extensions) -> Result<Self, Rejection> {
        if let Some(ip) = extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        peer_ip(extensions)
            .map(|ip| ClientIp(normalize(ip)))
            .ok_or_else(missing_connect_info)
    }
}

/// The connecting peer's address: `ConnectInfo<SocketAddr>`, or axum's `MockConnectInfo` in
/// tests.
pub(crate) fn peer_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(addr)| addr.ip())
        })
}

pub(crate) fn missing_connect_info() -> Rejection {
    tracing::error!(
        target: "axum_shield::config",
        "the client IP is unknown: no ConnectInfo<SocketAddr> in the request. Serve the router \
         with `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` \
         (or add `axum::extract::connect_info::MockConnectInfo` in tests)"
    );
    Rejection::new(RejectionKind::Misconfigured)
        .with_detail("The server is misconfigured; the error is in its log.")
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_extensions(&parts.extensions)
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(Self::from_extensions(&parts.extensions).ok())
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<ClientIp> for IpAddr {
    fn from(ip: ClientIp) -> Self {
        ip.0
    }
}

/// Set in request extensions by [`Shield`](crate::Shield) when a trusted proxy reported the
/// original scheme (`X-Forwarded-Proto` or `Forwarded: proto=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedProto {
    /// Whether the original request used HTTPS.
    pub https: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn trusting(proxies: &[&str], header: ForwardedHeader) -> ClientIpResolver {
        ClientIpConfig::new()
            .trusted_proxies(proxies)
            .unwrap()
            .header(header)
            .build()
            .unwrap()
    }

    #[test]
    fn spoofed_x_forwarded_for_from_untrusted_peer_is_ignored() {
        let resolver = ClientIpResolver::default();
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            resolver.resolve(ip("203.0.113.9"), &h).ip(),
            ip("203.0.113.9")
        );
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        assert_eq!(
            resolver.resolve(ip("203.0.113.9"), &h).ip(),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn spoofed_forwarded_from_untrusted_peer_is_ignored() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let h = headers(&[("forwarded", "for=1.2.3.4;proto=https")]);
        let resolved = resolver.resolve(ip("203.0.113.9"), &h);
        assert_eq!(resolved.ip(), ip("203.0.113.9"));
        assert_eq!(resolved.forwarded_https(), None);
    }

    #[test]
    fn rightmost_untrusted_address_wins_over_a_spoofed_leftmost_one() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.1.1.1")]);
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &h).ip(),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn multiple_header_lines_are_one_list() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.4, 10.1.1.1"),
        ]);
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &h).ip(),
            ip("198.51.100.4")
        );
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &h).ip(),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn all_trusted_hops_yield_the_leftmost_entry() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("10.9.9.9"));
    }

    #[test]
    fn malformed_entries_stop_at_the_last_trusted_hop() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        for bad in [
            "garbage",
            "",
            "1.2.3.4.5",
            "[::1",
            "unknown",
            "1.2.3.4, ,10.0.0.5",
        ] {
            let h = headers(&[("x-forwarded-for", bad)]);
            let got = resolver.resolve(ip("10.0.0.1"), &h).ip();
            assert!(resolver.is_trusted(got), "{bad:?} gave {got}");
        }
    }

    #[test]
    fn ports_are_stripped() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:4711")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("2001:db8::7"));
        let h = headers(&[("x-forwarded-for", "192.0.2.60:8080")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("192.0.2.60"));
    }

    #[test]
    fn forwarded_rfc7239_examples() {
        let resolver = trusting(&["10.0.0.0/8", "203.0.113.43"], ForwardedHeader::Forwarded);
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\";proto=https",
        )]);
        let resolved = resolver.resolve(ip("10.0.0.1"), &h);
        assert_eq!(resolved.ip(), ip("2001:db8:cafe::17"));
        assert_eq!(resolved.forwarded_https(), Some(true));
        let h = headers(&[("forwarded", "For=\"192.0.2.60:80\", for=10.2.2.2")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("192.0.2.60"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("10.0.0.1"));
        let h = headers(&[("forwarded", "for=\"_hidden\", for=\"a,b\";for=1.1.1.1")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_proto_only_from_trusted_peer() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-proto", "https")]);
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &h).forwarded_https(),
            Some(true)
        );
        assert_eq!(
            resolver.resolve(ip("192.0.2.1"), &h).forwarded_https(),
            None
        );
        let h = headers(&[("x-forwarded-proto", "http")]);
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &h).forwarded_https(),
            Some(false)
        );
    }

    #[test]
    fn ipv4_mapped_peers_and_proxies_are_normalised() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "::ffff:198.51.100.4")]);
        assert_eq!(
            resolver.resolve(ip("::ffff:10.0.0.1"), &h).ip(),
            ip("198.51.100.4")
        );
        assert_eq!(
            ClientIpResolver::default()
                .resolve(ip("::ffff:192.0.2.1"), &HeaderMap::new())
                .ip(),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn ipv6_keys_group_by_prefix() {
        assert_eq!(ip_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(ip_key(ip("2001:db8:0:0:1::1"), 64), ip("2001:db8::"));
        assert_eq!(ip_key(ip("2001:db8:ab:cd::1"), 48), ip("2001:db8:ab::"));
        assert_eq!(ip_key(ip("192.0.2.1"), 48), ip("192.0.2.1"));
    }

    #[test]
    fn bad_config_is_refused_with_a_fix() {
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/8/8", ""] {
            let err = ClientIpConfig::new().trusted_proxies([bad]).unwrap_err();
            assert_eq!(err.setting(), "trusted_proxies");
            assert!(err.fix().contains("CIDR"));
        }
        let err = ClientIpConfig::new().ipv6_prefix(0).build().unwrap_err();
        assert_eq!(err.setting(), "ipv6_prefix");
        let err = ClientIpConfig::new().ipv6_prefix(129).build().unwrap_err();
        assert_eq!(err.setting(), "ipv6_prefix");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_forwarding_header_never_panics(value in "\\PC{0,200}", peer in any::<[u8; 4]>(), forwarded in any::<bool>()) {
            let header = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
            let resolver = trusting(&["0.0.0.0/0", "::/0"], header);
            let mut h = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                h.insert("x-forwarded-for", v.clone());
                h.insert("forwarded", v.clone());
                h.insert("x-forwarded-proto", v);
            }
            let _ = resolver.resolve(IpAddr::from(peer), &h);
        }

        #[test]
        fn untrusted_peer_always_wins(value in "[0-9a-f:.,\\[\\] ]{0,80}", peer in any::<[u8; 4]>()) {
            let peer = IpAddr::from(peer);
            let resolver = ClientIpResolver::default();
            let mut h = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                h.insert("x-forwarded-for", v);
            }
            prop_assert_eq!(resolver.resolve(peer, &h).ip(), peer);
        }

        #[test]
        fn bytes_in_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let resolver = trusting(&["0.0.0.0/0"], ForwardedHeader::Forwarded);
            let mut h = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                h.insert("forwarded", v);
            }
            let _ = resolver.resolve(IpAddr::from([10, 0, 0, 1]), &h);
        }
    }
}
