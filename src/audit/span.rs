//! The per-request security log span and its access line.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::MatchedPath;
use http::{Request, Response};
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::field::{display, Empty};
use tracing::Span;

use super::escape::{escape, LogText};
use super::pseudonym::{Pseudonym, Pseudonymizer};
use crate::client_ip::ClientIp;
use crate::principal::Principal;
use crate::request_id;

/// The `tracing` target of the per-request span and its access line.
pub(crate) const REQUEST_TARGET: &str = "axum_shield::request";

/// Makes one `request` span per request (target [`REQUEST_TARGET`], level INFO).
///
/// Fields, set when the span opens: `request_id`, `client_ip` (the address resolved by the
/// Shield's trusted-proxy resolver, or its keyed pseudonym), `method`, `route` (the matched
/// route template such as `/users/{id}`, from axum's [`MatchedPath`]; the path without query
/// string when no route matched) and, only when enabled, `query`. Recorded later: `principal`
/// (by [`record_principal`] once authenticated) and, when the access line is off, `status`
/// and `latency_ms` (by [`OnRequestEnd`]; otherwise they are on the access line).
///
/// The query string is not recorded by default: it often carries tokens, reset codes or
/// personal data (OWASP Logging Cheat Sheet, "Data to exclude"). Using the route template
/// rather than the concrete path likewise keeps ids and tokens in path segments out of logs.
#[derive(Debug, Clone, Default)]
pub(crate) struct MakeRequestSpan {
    record_query: bool,
    pseudonymizer: Option<Pseudonymizer>,
    debug_level: bool,
}

impl MakeRequestSpan {
    /// A span maker that records no query string and no pseudonyms.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records the (escaped) query string in a `query` field. Off by default.
    pub(crate) fn record_query(mut self, enabled: bool) -> Self {
        self.record_query = enabled;
        self
    }

    /// Opens the span at DEBUG instead of INFO. `Shield` does this when the access line is
    /// off: security events carry the request id, client IP, method and route themselves, so
    /// at INFO nothing is lost, and a subscriber at INFO then pays nothing for the span.
    pub(crate) fn debug_level(mut self, enabled: bool) -> Self {
        self.debug_level = enabled;
        self
    }

    /// Records the client IP as a keyed pseudonym.
    pub(crate) fn pseudonymize(mut self, pseudonymizer: Pseudonymizer) -> Self {
        self.pseudonymizer = Some(pseudonymizer);
        self
    }

    fn client(&self, ip: IpAddr) -> ClientField {
        match &self.pseudonymizer {
            Some(p) => ClientField::Pseudonym(p.ip(ip)),
            None => ClientField::Ip(ip),
        }
    }
}

/// A client IP or its pseudonym, formatted without allocating.
pub(crate) enum ClientField {
    Ip(IpAddr),
    Pseudonym(Pseudonym),
}

impl fmt::Display for ClientField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(IpAddr::V4(ip)) => {
                // std's `Ipv4Addr` Display goes through `write!` four times; this writes the
                // same text in one call (it is on every request's span).
                let mut text = [0u8; 15];
                let mut len = 0;
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    let digits = [octet / 100, octet / 10 % 10, octet % 10];
                    let skip = if octet >= 100 {
                        0
                    } else if octet >= 10 {
                        1
                    } else {
                        2
                    };
                    for digit in &digits[skip..] {
                        text[len] = b'0' + digit;
                        len += 1;
                    }
                }
                f.pad(std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?)
            }
            Self::Ip(ip) => fmt::Display::fmt(ip, f),
            Self::Pseudonym(p) => f.write_str(p.as_str()),
        }
    }
}

#[cfg(test)]
mod client_field_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ipv4_is_written_as_std_writes_it(octets in any::<[u8; 4]>()) {
            let ip = IpAddr::from(octets);
            prop_assert_eq!(ClientField::Ip(ip).to_string(), ip.to_string());
            prop_assert_eq!(format!("{:>16}", ClientField::Ip(ip)), format!("{:>16}", ip));
        }
    }

    #[test]
    fn ipv4_edge_values() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "203.0.113.9"] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(ClientField::Ip(parsed).to_string(), ip);
        }
    }
}

fn route_of<B>(request: &Request<B>) -> Cow<'_, str> {
    match request.extensions().get::<MatchedPath>() {
        Some(matched) => Cow::Borrowed(matched.as_str()),
        None => escape(request.uri().path()),
    }
}

impl<B> MakeSpan<B> for MakeRequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        // Every value is computed inside the macro, so a disabled span costs nothing more.
        macro_rules! request_span {
            ($level:expr) => {
                tracing::span!(
                    target: REQUEST_TARGET,
                    $level,
                    "request",
                    request_id = request_id::of(request.extensions()).map(display),
                    client_ip = request
                        .extensions()
                        .get::<ClientIp>()
                        .map(|ip| display(self.client(ip.0))),
                    method = display(request.method().as_str()),
                    route = LogText::new(&route_of(request)).value(),
                    query = if self.record_query {
                        request.uri().query().map(escape)
                    } else {
                        None
                    }
                    .as_deref()
                    .map(LogText::new)
                    .as_ref()
                    .map(LogText::value),
                    principal = Empty,
                    status = Empty,
                    latency_ms = Empty,
                )
            };
        }
        // Checked first: with tracing's `log` feature (on through axum's default `tower-log`)
        // and no subscriber ever set, `span!` would otherwise compute every field for `log`.
        use tracing::metadata::Kind;
        if self.debug_level {
            if !tracing::enabled!(kind: Kind::SPAN, target: REQUEST_TARGET, tracing::Level::DEBUG) {
                return Span::none();
            }
            request_span!(tracing::Level::DEBUG)
        } else {
            if !tracing::enabled!(kind: Kind::SPAN, target: REQUEST_TARGET, tracing::Level::INFO) {
                return Span::none();
            }
            request_span!(tracing::Level::INFO)
        }
    }
}

/// Records the authenticated principal on the current request span, as the `principal`
/// field (escaped, or its keyed pseudonym when the [`Shield`](crate::Shield) has a key).
///
/// Authentication layers call it right where they insert the [`Principal`] into the request
/// extensions, from their `Service::call` or response future (both run inside the request
/// span that [`Shield`](crate::Shield) opens and enters for the inner `call` and every
/// `poll`). `extensions` are the request's, where the Shield leaves its
/// [`Pseudonymizer`]. Without a request span (no Shield, or logging off) it does nothing.
///
/// ```
/// use axum_shield::audit;
/// use axum_shield::principal::{Principal, PrincipalKind};
///
/// fn authenticated<B>(req: &mut http::Request<B>, principal: Principal) {
///     audit::record_principal(&principal, req.extensions());
///     req.extensions_mut().insert(principal);
/// }
/// # authenticated(&mut http::Request::new(()), Principal::new(PrincipalKind::Jwt, "alice"));
/// ```
pub fn record_principal(principal: &Principal, extensions: &http::Extensions) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    match extensions.get::<Pseudonymizer>() {
        Some(p) => span.record("principal", display(p.user(principal.id()))),
        None => span.record("principal", LogText::new(&escape(principal.id())).value()),
    };
}

/// Writes one INFO access line `request completed` (target [`REQUEST_TARGET`]) with `status`
/// and `latency_ms`, inside the request span so its fields (request id, client IP, method,
/// route, principal) come with it; when the access line is turned off with
/// [`ShieldBuilder::access_log`](crate::shield::ShieldBuilder::access_log), records `status` and
/// `latency_ms` on the span instead (for span-close consumers such as OpenTelemetry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OnRequestEnd {
    pub(crate) access_log: bool,
}

impl OnRequestEnd {
    /// Records on the span, and writes the access line if `access_log`.
    pub(crate) fn new(access_log: bool) -> Self {
        Self { access_log }
    }
}

impl<B> OnResponse<B> for OnRequestEnd {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        if span.is_disabled() && !self.access_log {
            return;
        }
        let status = response.status().as_u16();
        // Whole microseconds, so the value prints as e.g. `0.341`, not `0.34140800000000004`.
        let latency_ms = latency.as_micros() as f64 / 1000.0;
        if self.access_log {
            // The access line carries both values and is emitted inside the span. Recording
            // them on the span as well would make JSON subscribers re-parse and re-serialize
            // the span's fields: measured at about half the cost of the whole log
            // (benches/logging.rs), for no extra information.
            tracing::info!(target: REQUEST_TARGET, status, latency_ms, "request completed");
        } else {
            // Without an access line, span-close consumers (FmtSpan::CLOSE, OpenTelemetry)
            // get them from the span.
            span.record("status", status);
            span.record("latency_ms", latency_ms);
        }
    }
}
