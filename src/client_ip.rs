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
//! * The header is read as raw bytes, entry by entry: header lines last line first, and within
//!   a line the comma-separated entries from the right. An entry that is not UTF-8, not an
//!   address (`unknown`, an obfuscated `_id`, garbage) or, in `Forwarded`, not a well-formed
//!   element (an unterminated quoted string, a repeated parameter) **ends the walk, and that
//!   entry is the client**. Since it names no address, the client is then
//!   [`UNKNOWN_CLIENT`] (`0.0.0.0`): never the proxy or another trusted hop (whose exemptions
//!   and buckets it would get), never a 500, never a guess. Every such client shares that one
//!   rate-limit bucket, so rotating malformed values opens no new bucket, and rate-limit
//!   exemptions never apply to it.
//! * `Forwarded` elements are split at every comma, from the right: a quoted string the client
//!   left open (`for="`) cannot swallow the element the proxy appended after it. No node name,
//!   protocol or host contains a comma (RFC 7239 §4, §6), so only an extension parameter with a
//!   quoted comma is lost, and it ends the walk like any malformed element.
//! * Ports are stripped and IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) become IPv4.
//! * As a rate-limit key, IPv6 addresses are grouped by a prefix (default `/64`), since one
//!   subscriber usually owns a whole /64 and can rotate addresses inside it at will.
//!
//! Configure it on [`Shield`](crate::Shield) and read it with the [`ClientIp`] extractor:
//!
//! ```
//! use std::net::SocketAddr;
//!
//! use axum::{body::Body, extract::connect_info::MockConnectInfo, routing::get, Router};
//! use axum_shield::{ClientIp, Shield};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shield = Shield::api().trusted_proxies(["10.0.0.0/8"]).build()?;
//! let app = Router::new()
//!     .route("/ip", get(|ClientIp(ip): ClientIp| async move { ip.to_string() }))
//!     .layer(shield)
//!     .layer(MockConnectInfo(SocketAddr::from(([10, 0, 0, 1], 4711)))); // the proxy
//!
//! let request = http::Request::get("/ip")
//!     .header("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2")
//!     .body(Body::empty())?;
//! let response = app.oneshot(request).await?;
//! let body = axum::body::to_bytes(response.into_body(), 64).await?;
//! // 10.0.0.2 is a trusted hop, 203.0.113.7 is the client; 1.1.1.1 is whatever it claimed.
//! assert_eq!(body, "203.0.113.7");
//! # Ok(())
//! # }
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

use crate::rejection::Rejection;
use crate::ConfigError;

/// The IPv6 prefix length that groups addresses into one rate-limit key unless configured.
pub(crate) const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The client of a request whose forwarding header, read from a trusted proxy, ended in an
/// entry that names no address: `0.0.0.0`.
///
/// It is "this host on this network" (RFC 1122 §3.2.1.3), never the source address of a real
/// connection, so it cannot be mistaken for a peer. All such requests share its one rate-limit
/// bucket, and rate-limit exemptions (`exempt_ips`) never apply to it, whatever they cover.
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

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
pub(crate) struct ClientIpResolver(Arc<Resolver>);

struct Resolver {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
    ipv6_prefix: u8,
}

impl ClientIpResolver {
    /// A resolver trusting `trusted_proxies` (CIDRs or addresses) to write `header`, keying
    /// IPv6 addresses by their first `ipv6_prefix` bits.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first proxy entry that is not an address or CIDR, or an
    /// IPv6 prefix outside 1–128.
    pub(crate) fn new(
        trusted_proxies: &[String],
        header: ForwardedHeader,
        ipv6_prefix: u8,
    ) -> Result<Self, ConfigError> {
        let trusted = trusted_proxies
            .iter()
            .map(|p| parse_net(p.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if !(1..=128).contains(&ipv6_prefix) {
            return Err(ConfigError::new(
                "ipv6_prefix",
                format!("{ipv6_prefix} is not a prefix length"),
                "use a value from 1 to 128 (64 groups one subscriber's addresses)",
            ));
        }
        Ok(Self(Arc::new(Resolver {
            trusted,
            header,
            ipv6_prefix,
        })))
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
pub(crate) struct Resolved {
    ip: IpAddr,
    forwarded_https: Option<bool>,
}

impl Resolved {
    /// The client address: the peer, the rightmost untrusted forwarded address, or
    /// [`UNKNOWN_CLIENT`] (`0.0.0.0`) when the walk ended on an entry that names no address.
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Whether a trusted proxy said the original request used HTTPS (`X-Forwarded-Proto` or
    /// `Forwarded: proto=`); `None` when the peer is not trusted or said nothing.
    pub(crate) fn forwarded_https(&self) -> Option<bool> {
        self.forwarded_https
    }
}

impl ClientIpResolver {
    /// Whether `ip` belongs to a trusted proxy.
    pub(crate) fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        self.0.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The IPv6 prefix length used by [`ClientIpResolver::key`].
    pub(crate) fn ipv6_prefix(&self) -> u8 {
        self.0.ipv6_prefix
    }

    /// The rate-limit key of `ip`: itself for IPv4, its configured prefix for IPv6.
    pub(crate) fn key(&self, ip: IpAddr) -> IpAddr {
        ip_key(ip, self.0.ipv6_prefix)
    }

    /// Resolves the client of a request that arrived from `peer` with `headers`.
    pub(crate) fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Resolved {
        let peer = normalize(peer);
        if self.0.trusted.is_empty() || !self.is_trusted(peer) {
            return Resolved {
                ip: peer,
                forwarded_https: None,
            };
        }
        match self.0.header {
            ForwardedHeader::XForwardedFor => Resolved {
                ip: self.walk(peer, headers, &X_FORWARDED_FOR, |entry| {
                    parse_node(std::str::from_utf8(entry).ok()?)
                }),
                forwarded_https: last_entry(headers, &X_FORWARDED_PROTO)
                    .and_then(|proto| std::str::from_utf8(proto).ok())
                    .map(|proto| trim_ows(proto).eq_ignore_ascii_case("https")),
            },
            ForwardedHeader::Forwarded => Resolved {
                ip: self.walk(peer, headers, &http::header::FORWARDED, |element| {
                    let element = std::str::from_utf8(element).ok()?;
                    parse_node(&forwarded_param(element, "for")?)
                }),
                forwarded_https: last_entry(headers, &http::header::FORWARDED)
                    .and_then(|element| std::str::from_utf8(element).ok())
                    .and_then(|element| forwarded_param(element, "proto"))
                    .map(|proto| proto.eq_ignore_ascii_case("https")),
            },
        }
    }

    /// Walks the entries of `name` right to left (last header line first, then each line's
    /// comma-separated entries from the right) while the current hop is trusted. An entry
    /// `parse` cannot read ends the walk at [`UNKNOWN_CLIENT`].
    fn walk(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        name: &HeaderName,
        parse: impl Fn(&[u8]) -> Option<IpAddr>,
    ) -> IpAddr {
        let mut client = peer;
        for line in headers.get_all(name).iter().rev() {
            for entry in line.as_bytes().rsplit(|&b| b == b',') {
                let Some(ip) = parse(entry) else {
                    return UNKNOWN_CLIENT;
                };
                client = normalize(ip);
                if !self.is_trusted(client) {
                    return client;
                }
            }
        }
        client
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The rightmost comma-separated entry of the last `name` line: the one the nearest proxy
/// wrote, whatever bytes a client put before it.
fn last_entry<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h [u8]> {
    let line = headers.get_all(name).iter().next_back()?;
    line.as_bytes().rsplit(|&b| b == b',').next()
}

/// `text` without leading and trailing optional whitespace (spaces and tabs, RFC 9110 §5.6.3).
fn trim_ows(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// Parses one node: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`. Anything else (`unknown`, obfuscated ids, garbage) is `None`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = trim_ows(text);
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
/// `None` when the element is malformed (a pair without `=`, any value that is not a token or
/// a closed quoted string, `key` given twice: RFC 7239 §4) or has no `key`.
fn forwarded_param(element: &str, key: &str) -> Option<String> {
    let mut found = None;
    for pair in split_outside_quotes(element, ';') {
        let (name, value) = pair.split_once('=')?;
        let value = unquote(trim_ows(value))?;
        if trim_ows(name).eq_ignore_ascii_case(key) {
            if found.is_some() {
                return None;
            }
            found = Some(value);
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

/// Turns IPv4-mapped IPv6 (`::ffff:192.0.2.1`) into IPv4; other addresses are unchanged.
pub(crate) fn normalize(ip: IpAddr) -> IpAddr {
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
pub(crate) fn ip_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
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
    /// A [`RejectionKind::Misconfigured`](crate::RejectionKind::Misconfigured) rejection when
    /// neither is present.
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
    crate::rejection::misconfigured(
        "the client IP is unknown: no ConnectInfo<SocketAddr> in the request. Serve the router \
         with `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` \
         (or add `axum::extract::connect_info::MockConnectInfo` in tests)",
    )
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
/// original scheme (`X-Forwarded-Proto` or `Forwarded: proto=`); read through
/// [`is_https`](crate::headers::is_https).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForwardedProto {
    /// Whether the original request used HTTPS.
    pub(crate) https: bool,
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
        let proxies: Vec<String> = proxies.iter().map(|p| (*p).to_owned()).collect();
        ClientIpResolver::new(&proxies, header, DEFAULT_IPV6_PREFIX).unwrap()
    }

    fn untrusting() -> ClientIpResolver {
        trusting(&[], ForwardedHeader::XForwardedFor)
    }

    #[test]
    fn spoofed_x_forwarded_for_from_untrusted_peer_is_ignored() {
        let resolver = untrusting();
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

    fn raw(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn non_utf8_x_forwarded_for_entry_does_not_hide_the_client_the_proxy_appended() {
        // nginx's `$proxy_add_x_forwarded_for` turns a client's `X-Forwarded-For: \xff` into
        // `\xff, <client>`: the proxy's entry is still readable and names the client.
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = raw(&[("x-forwarded-for", b"\xff, 203.0.113.9")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("203.0.113.9"));
        let h = raw(&[(
            "x-forwarded-for",
            b"\xc3\xa9t\xc3\xa9, 203.0.113.9, 10.2.2.2",
        )]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("203.0.113.9"));
    }

    #[test]
    fn malformed_forwarding_entry_resolves_to_the_unknown_client_never_to_a_trusted_hop() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        for bad in [
            &b"\xff"[..],
            b"garbage",
            b"",
            b"1.2.3.4.5",
            b"[::1",
            b"unknown",
            b"1.2.3.4, ,10.0.0.5",
            b"203.0.113.9, \xff, 10.0.0.5",
        ] {
            let h = raw(&[("x-forwarded-for", bad)]);
            let got = resolver.resolve(ip("10.0.0.1"), &h).ip();
            assert_eq!(got, ip("0.0.0.0"), "{bad:?}");
            assert!(!resolver.is_trusted(got), "{bad:?} gave {got}");
        }
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        for bad in [
            &b"for=\""[..],
            b"for=\xff",
            b"for=unknown",
            b"for=\"_hidden\", for=10.2.2.2",
            b"for=203.0.113.9;by=\", for=10.2.2.2",
            b"for=1.2.3.4;for=1.2.3.4",
        ] {
            let h = raw(&[("forwarded", bad)]);
            let got = resolver.resolve(ip("10.0.0.1"), &h).ip();
            assert_eq!(got, ip("0.0.0.0"), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_open_quote_cannot_swallow_the_element_the_proxy_appended() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let h = raw(&[("forwarded", b"for=\", for=203.0.113.9")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("203.0.113.9"));
        let h = raw(&[(
            "forwarded",
            b"for=\"\xff;proto=http, for=203.0.113.9;proto=https, for=10.3.3.3",
        )]);
        let resolved = resolver.resolve(ip("10.0.0.1"), &h);
        assert_eq!(resolved.ip(), ip("203.0.113.9"));
        assert_eq!(
            resolved.forwarded_https(),
            None,
            "the last element says nothing"
        );
        let h = raw(&[("forwarded", b"for=\"[::1]\", for=203.0.113.9;proto=https")]);
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &h).forwarded_https(),
            Some(true)
        );
    }

    #[test]
    fn header_lines_are_walked_last_line_first_and_a_bad_earlier_line_ends_the_walk() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        // The last line's entries are read first, right to left.
        let h = raw(&[
            ("x-forwarded-for", b"\xff"),
            ("x-forwarded-for", b"203.0.113.9, 10.1.1.1"),
        ]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("203.0.113.9"));
        // Every hop of the last line is trusted: the walk goes on into the earlier line.
        let h = raw(&[
            ("x-forwarded-for", b"198.51.100.4, \xff"),
            ("x-forwarded-for", b"10.1.1.1"),
        ]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("0.0.0.0"));
        let h = raw(&[
            ("x-forwarded-for", b"198.51.100.4"),
            ("x-forwarded-for", b"\xff, 10.1.1.1"),
        ]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("0.0.0.0"));
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let h = raw(&[
            ("forwarded", b"for=198.51.100.4"),
            ("forwarded", b"for=\""),
            ("forwarded", b"for=10.1.1.1"),
        ]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("0.0.0.0"));
        let h = raw(&[
            ("forwarded", b"for=\""),
            ("forwarded", b"for=203.0.113.9, for=10.1.1.1"),
        ]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), ip("203.0.113.9"));
    }

    #[test]
    fn x_forwarded_proto_is_read_from_the_proxy_entry_even_after_client_bytes() {
        let resolver = trusting(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = raw(&[("x-forwarded-proto", b"\xff, https")]);
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &h).forwarded_https(),
            Some(true)
        );
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
        // Unknown and obfuscated nodes name no address: the unknown client.
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), UNKNOWN_CLIENT);
        let h = headers(&[("forwarded", "for=\"_hidden\", for=\"a,b\";for=1.1.1.1")]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &h).ip(), UNKNOWN_CLIENT);
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
            untrusting()
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
            let err = ClientIpResolver::new(&[bad.to_owned()], ForwardedHeader::Forwarded, 64)
                .unwrap_err();
            assert_eq!(err.setting(), "trusted_proxies");
            assert!(err.fix().contains("CIDR"));
        }
        for bits in [0, 129] {
            let err = ClientIpResolver::new(&[], ForwardedHeader::Forwarded, bits).unwrap_err();
            assert_eq!(err.setting(), "ipv6_prefix");
        }
    }

    /// Header-value bytes other than the list separator: visible ASCII, space, tab, obs-text.
    fn entry_byte() -> impl Strategy<Value = u8> {
        prop_oneof![Just(b'\t'), 0x20u8..0x2c, 0x2du8..0x7f, 0x80u8..=0xff,]
    }

    fn trusted_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<[u8; 3]>().prop_map(|[a, b, c]| format!("10.{a}.{b}.{c}")),
            any::<u16>().prop_map(|x| format!("[fd00::{x:x}]")),
            Just("127.0.0.1".to_owned()),
        ]
    }

    /// Any entry a client may write: addresses (trusted or not) or junk, commas excluded.
    fn entry_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            trusted_strategy().prop_map(String::into_bytes),
            any::<[u8; 4]>().prop_map(|o| IpAddr::from(o).to_string().into_bytes()),
            proptest::collection::vec(entry_byte(), 0..16),
        ]
    }

    #[derive(Debug, Clone)]
    struct Malformed {
        xff: Vec<u8>,
        forwarded: Vec<u8>,
    }

    /// Whether `bytes` name a node by the standard library's parsers alone (OWS trimmed), so
    /// that the test does not depend on the parser it tests.
    fn std_node(bytes: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return false;
        };
        let text = text.trim_matches([' ', '\t']);
        text.parse::<IpAddr>().is_ok()
            || text.parse::<SocketAddr>().is_ok()
            || text
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .is_some_and(|t| t.parse::<Ipv6Addr>().is_ok())
    }

    /// One entry that names no node, as an `X-Forwarded-For` entry and as a `Forwarded`
    /// element: malformed by construction (an unterminated quoted string, a `for` value that
    /// is no address, or no `for` at all).
    fn malformed_strategy() -> impl Strategy<Value = Malformed> {
        let junk = proptest::collection::vec(entry_byte(), 0..16);
        (junk, 0..4u8).prop_filter_map("names a node", |(junk, shape)| {
            if std_node(&junk) {
                return None;
            }
            let forwarded = match shape {
                0 if !junk.contains(&b'"') => [b"for=\"".to_vec(), junk.clone()].concat(),
                1 if !junk.contains(&b'"') && !junk.contains(&b';') => {
                    [b"for=".to_vec(), junk.clone()].concat()
                }
                2 if !junk.contains(&b'"') => {
                    [b"for=10.0.0.9;x=\"".to_vec(), junk.clone()].concat()
                }
                3 if !junk.contains(&b'=') => junk.clone(),
                _ => return None,
            };
            Some(Malformed {
                xff: junk,
                forwarded,
            })
        })
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
            let resolver = untrusting();
            let mut h = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                h.insert("x-forwarded-for", v);
            }
            prop_assert_eq!(resolver.resolve(peer, &h).ip(), peer);
        }

        /// Whatever a client writes to the left, and whatever the malformed entry is: once
        /// the walk (right to left, over trusted hops) meets an entry it cannot read, the
        /// client is the unknown client, never a trusted address.
        #[test]
        fn malformed_entry_right_of_the_first_untrusted_never_resolves_to_a_trusted_address(
            left in proptest::collection::vec(entry_strategy(), 0..5),
            bad in malformed_strategy(),
            hops in proptest::collection::vec(trusted_strategy(), 0..4),
            cuts in proptest::collection::vec(any::<bool>(), 12),
            forwarded in any::<bool>(),
        ) {
            let header = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
            let resolver = trusting(&["10.0.0.0/8", "fd00::/8", "127.0.0.1"], header);
            let wrap = |node: Vec<u8>| if forwarded { [b"for=".to_vec(), node].concat() } else { node };
            let bad = if forwarded { bad.forwarded } else { bad.xff };
            let mut entries: Vec<Vec<u8>> = left.into_iter().map(&wrap).collect();
            entries.push(bad);
            entries.extend(hops.into_iter().map(|h| wrap(h.into_bytes())));
            // Cut the list into header lines at some of the commas.
            let mut lines: Vec<Vec<u8>> = vec![Vec::new()];
            for (i, entry) in entries.into_iter().enumerate() {
                if i > 0 {
                    if cuts[i % cuts.len()] {
                        lines.push(Vec::new());
                    } else {
                        lines.last_mut().unwrap().extend_from_slice(b", ");
                    }
                }
                lines.last_mut().unwrap().extend_from_slice(&entry);
            }
            let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
            let mut h = HeaderMap::new();
            for line in &lines {
                h.append(name, http::HeaderValue::from_bytes(line).unwrap());
            }
            let got = resolver.resolve(ip("10.0.0.1"), &h).ip();
            prop_assert!(!resolver.is_trusted(got), "{lines:?} gave {got}");
            prop_assert_eq!(got, ip("0.0.0.0"), "{:?}", lines);
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
