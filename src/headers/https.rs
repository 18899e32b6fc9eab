//! Knowing whether a request arrived over HTTPS, and the HSTS header.

use std::time::Duration;

use http::{Extensions, HeaderValue};
use serde::Deserialize;

use crate::client_ip::ForwardedProto;
use crate::ConfigError;

/// Marker in request extensions: this request arrived on a TLS connection that this process
/// terminated.
///
/// HTTP gives a server no trustworthy in-band sign of TLS: an HTTP/1.1 request in absolute
/// form (`GET https://host/ HTTP/1.1`, RFC 9112 §3.2.2) and an HTTP/2 `:scheme` pseudo-header
/// (RFC 9113 §8.3.1) are both written by the client, also over plain TCP. So
/// `uri().scheme()` is **not** trusted here. Instead, the server that owns the TLS listener
/// marks the requests it accepted, by wrapping the router it serves over TLS:
///
/// ```
/// use axum::{routing::get, Extension, Router};
/// use axum_shield::headers::TlsConnection;
///
/// let app: Router = Router::new().route("/", get(|| async { "ok" }));
/// // Only the router given to the TLS listener (e.g. `axum_server::bind_rustls`) gets it:
/// let served_over_tls = app.clone().layer(Extension(TlsConnection));
/// # let _ = served_over_tls;
/// ```
///
/// Behind a TLS-terminating proxy, use
/// [`ShieldBuilder::trusted_proxies`](crate::shield::ShieldBuilder::trusted_proxies) instead:
/// the shared client-IP resolver then records it when a trusted proxy says
/// `X-Forwarded-Proto: https` or `Forwarded: proto=https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsConnection;

/// Whether a request arrived over HTTPS: a [`TlsConnection`] marker, or
/// [`Shield`](crate::Shield) found that a trusted proxy said so (`X-Forwarded-Proto: https`
/// or `Forwarded: proto=https`). Use it, for example, to set the `Secure` cookie attribute.
///
/// Client-supplied signals (the URI scheme, `X-Forwarded-Proto` from an untrusted peer) are
/// ignored.
///
/// ```
/// use axum_shield::headers::{is_https, TlsConnection};
///
/// let mut extensions = http::Extensions::new();
/// assert!(!is_https(&extensions));
/// extensions.insert(TlsConnection);
/// assert!(is_https(&extensions));
/// ```
#[inline]
pub fn is_https(extensions: &Extensions) -> bool {
    extensions.get::<TlsConnection>().is_some()
        || extensions
            .get::<ForwardedProto>()
            .is_some_and(|proto| proto.https)
}

/// `Strict-Transport-Security` (RFC 6797): tells browsers to use only HTTPS for this host.
///
/// Sent only on responses to requests that arrived over HTTPS ([`is_https`]): RFC 6797 §7.2
/// says a server MUST NOT send it over plain HTTP (browsers ignore it there, §8.1, and a
/// plain-HTTP response could be forged anyway).
///
/// Default: `max-age=31536000; includeSubDomains` (one year, OWASP HSTS Cheat Sheet).
/// `preload` is opt-in, since getting into the browser preload lists is hard to undo.
///
/// ```
/// use std::time::Duration;
/// use axum_shield::headers::{Hsts, SecurityHeadersLayer};
///
/// // Sends `max-age=63072000; includeSubDomains; preload` over HTTPS.
/// let hsts = Hsts::default().max_age(Duration::from_secs(63_072_000)).preload(true);
/// let layer = SecurityHeadersLayer::api().hsts(hsts).build()?;
///
/// // `preload` needs a max-age of at least a year: refused when the layer is built.
/// let short = Hsts::default().max_age(Duration::from_secs(60)).preload(true);
/// assert!(SecurityHeadersLayer::api().hsts(short).build().is_err());
/// # let _ = layer;
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hsts {
    /// `max-age` in seconds.
    pub max_age_secs: u64,
    /// `includeSubDomains`.
    pub include_subdomains: bool,
    /// `preload` (hstspreload.org).
    pub preload: bool,
}

impl Default for Hsts {
    fn default() -> Self {
        Self {
            max_age_secs: 31_536_000,
            include_subdomains: true,
            preload: false,
        }
    }
}

/// The minimum `max-age` hstspreload.org accepts: one year.
const PRELOAD_MIN_AGE: u64 = 31_536_000;

impl Hsts {
    /// Sets `max-age` (whole seconds). `0` tells browsers to forget the policy (§6.1.1).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age_secs = max_age.as_secs();
        self
    }

    /// Adds or removes `includeSubDomains`.
    pub fn include_subdomains(mut self, enabled: bool) -> Self {
        self.include_subdomains = enabled;
        self
    }

    /// Adds or removes `preload`.
    pub fn preload(mut self, enabled: bool) -> Self {
        self.preload = enabled;
        self
    }

    /// The header value, or a [`ConfigError`] when `preload` is set without
    /// `includeSubDomains` or with a `max-age` under one year: hstspreload.org refuses such a
    /// site, so the flag would only mislead.
    pub(crate) fn header_value(self) -> Result<HeaderValue, ConfigError> {
        if self.preload && (!self.include_subdomains || self.max_age_secs < PRELOAD_MIN_AGE) {
            return Err(ConfigError::new(
                "hsts",
                "preload needs includeSubDomains and a max-age of at least one year",
                "set include_subdomains(true) and max_age of 31536000 s or more, or drop preload",
            ));
        }
        let mut text = format!("max-age={}", self.max_age_secs);
        if self.include_subdomains {
            text.push_str("; includeSubDomains");
        }
        if self.preload {
            text.push_str("; preload");
        }
        // Copied into every HTTPS response: kept as a `'static` text.
        HeaderValue::try_from(text)
            .map(crate::interned::header_value)
            .map_err(|_| {
                ConfigError::new("hsts", "unreachable: invalid HSTS value", "report a bug")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_hsts_is_one_year_with_subdomains_without_preload() {
        assert_eq!(
            Hsts::default().header_value().unwrap(),
            "max-age=31536000; includeSubDomains"
        );
    }

    #[test]
    fn preload_without_requirements_is_rejected() {
        assert!(Hsts::default()
            .include_subdomains(false)
            .preload(true)
            .header_value()
            .is_err());
        assert!(Hsts::default()
            .max_age(Duration::from_secs(60))
            .preload(true)
            .header_value()
            .is_err());
    }

    #[test]
    fn untrusted_forwarded_proto_false_is_not_https() {
        let mut extensions = Extensions::new();
        extensions.insert(ForwardedProto { https: false });
        assert!(!is_https(&extensions));
        extensions.insert(TlsConnection);
        assert!(is_https(&extensions));
    }
}
