//! [`Shield`]: the recommended stack of layers, in the recommended order.
//!
//! Outermost first:
//!
//! 1. request id (a client's `x-request-id` kept only if short and safe), client IP
//!    resolution, and rendering of every rejection as problem+json with the request id;
//! 2. security headers, and removal of `Server`, `X-Powered-By` and other leaking headers;
//! 3. the security log span (request id, client IP, method, matched route; principal, status
//!    and latency), with `Authorization`, `Cookie`, `Set-Cookie`, API-key and proxy-auth
//!    headers marked sensitive on the request before it and on the response inside it;
//! 4. panic catching: a 500 problem+json that reveals nothing, and the server keeps serving;
//! 5. HTTPS redirect (only if configured): 308 to the canonical origin, before any work;
//! 6. CORS (only if configured): preflights answered before authentication;
//! 7. request timeout (503 problem+json by default) and request body limit (413
//!    problem+json; 1 MiB by default);
//! 8. the default rate limit, only when set with [`ShieldBuilder::rate_limit`] (429
//!    problem+json), directly around your router: cheap refusal before any handler work.
//!
//! Concerns switched off (redirect, CORS, rate limit) cost a branch at most, no work.
//!
//! Layers outside others see their responses: a 401 from a route layer, a 413 or a 500 from a
//! panic all get the security headers, a log line and the request id.
//!
//! # The API-security checklist, line by line
//!
//! Each recommendation of the common API-security checklist, and the few lines of this crate that
//! implement it (most of them wired in `examples/quickstart.rs`):
//!
//! | recommendation | with axum-shield |
//! |----------------|------------------|
//! | Strong authentication (no JWT without expiry, no weak secret) | `let jwt = JwtAuthLayer::hs256(&secret).issuer(ISSUER).audience(AUDIENCE).build()?` then `.route_layer(jwt)`: `exp` required, `nbf`/`iat` checked, `iss`/`aud` exact, `alg` fixed by the key, secrets under 32 bytes refused; `TokenIssuer` signs with the same persistent key |
//! | Authorization | `.route_layer(AuthorizeLayer::any_roles(["admin"]).build()?)` → 403 `insufficient_scope` |
//! | Rate limiting (100/hour by default, 5/minute on login) | `Shield::api().rate_limit(RateLimitLayer::per_ip("100/hour").build()?)` and `.route_layer(RateLimitLayer::per_ip("5/minute").name("login").build()?)` on `/login`, plus `LoginGuardLayer` (per-account and per-IP exponential backoff) (`examples/rate_limits.rs`) |
//! | Input validation and sanitization | `Valid<Json<NewUser>>` with `#[derive(Validate)]`, behind `JsonGuardLayer` (depth, size, duplicate keys); `validate::sanitize::encode_html` for output |
//! | HTTPS everywhere | `.https_redirect("https://api.example.com")` (308, never to `Host`), HSTS only over HTTPS; `examples/tls.rs` serves TLS 1.2/1.3 with rustls |
//! | Security headers | `Shield::api()` sends the API preset on every response, rejections included; `.security_headers(SecurityHeadersLayer::web())` for HTML apps, with CSP nonces |
//! | Monitoring and logging | one span per request and an OWASP-named event per refusal (`axum_shield::security` target); `Audit` for high-risk actions; `LOG_FORMAT=json` |
//! | Excessive data exposure | response DTOs, plus `validate::redact::RedactFieldsLayer::default()` removing `password`, `token`, `ssn`, … from JSON responses and `validate::scrub::ScrubServerErrorsLayer` hiding internal 5xx text |

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use tower_http::cors::CorsLayer;

use crate::audit::{
    EventSinks, LogSettings, Pseudonymizer, SecurityEventSink, DEFAULT_SENSITIVE_HEADERS,
};
use crate::client_ip::{ClientIpResolver, ForwardedHeader, DEFAULT_IPV6_PREFIX};
use crate::headers::{
    CorsPolicy, HttpsRedirectLayer, RedirectOrigin, SecurityHeadersBuilder, SecurityHeadersLayer,
};
use crate::rate_limit::RateLimitLayer;
use crate::rejection::RenderRejection;
use crate::ConfigError;

mod catch_panic;
mod service;
mod timeout;

use service::CoreShared;

/// Default request body limit: 1 MiB.
const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The limit axum's body extractors apply when no `DefaultBodyLimit` is set (2 MB).
const AXUM_DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Default request timeout: 30 seconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of [`Shield`] that can be loaded from a file or the environment with serde.
///
/// ```
/// use axum_shield::{Shield, ShieldConfig};
///
/// let config: ShieldConfig = toml::from_str(r#"
///     trusted_proxies = ["10.0.0.0/8"]
///     timeout_ms = 10000
///     body_limit = 65536
/// "#).unwrap();
/// let shield = Shield::from_config(config).build()?;
/// # let _ = shield;
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ShieldConfig {
    /// Proxies allowed to name the client (CIDRs or addresses). Default: none.
    pub trusted_proxies: Vec<String>,
    /// Which forwarding header the trusted proxies write. Default: `x-forwarded-for`.
    pub forwarded_header: ForwardedHeader,
    /// IPv6 prefix length that groups addresses into one rate-limit key. Default: 64.
    pub ipv6_prefix: u8,
    /// Request timeout in milliseconds. Default: 30 000.
    pub timeout_ms: u64,
    /// Request body limit in bytes. Default: 1 MiB.
    pub body_limit: usize,
    /// Whether to write one INFO access line per request. Default: true.
    pub access_log: bool,
    /// Whether to record the query string in the request span. Default: false (query
    /// strings often carry tokens and personal data).
    pub log_query: bool,
    /// Extra headers to mark sensitive (never logged), e.g. your API-key header; added to
    /// `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie` and `X-Api-Key`.
    pub sensitive_headers: Vec<String>,
}

impl Default for ShieldConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            timeout_ms: DEFAULT_TIMEOUT.as_millis() as u64,
            body_limit: DEFAULT_BODY_LIMIT,
            access_log: true,
            log_query: false,
            sensitive_headers: Vec::new(),
        }
    }
}

/// The recommended security stack as one tower layer.
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_shield::Shield;
///
/// # fn main() -> Result<(), axum_shield::ConfigError> {
/// let shield = Shield::api()
///     .trusted_proxies(["10.0.0.0/8"])
///     .build()?;
/// let app: Router = Router::new().route("/health", get(|| async { "ok" })).layer(shield);
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the client address
/// is known; in tests, add `axum::extract::connect_info::MockConnectInfo`.
#[derive(Clone)]
pub struct Shield {
    core: Arc<CoreShared>,
    headers: SecurityHeadersLayer,
    https_redirect: HttpsRedirectLayer,
    cors: Option<CorsLayer>,
    timeout: Duration,
    timeout_status: StatusCode,
    body_limit: usize,
    rate_limit: Option<RateLimitLayer>,
    log: LogSettings,
}

impl fmt::Debug for Shield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shield")
            .field("client_ip", &self.core.resolver)
            .field("headers", &self.headers)
            .field("https_redirect", &self.https_redirect)
            .field("cors", &self.cors)
            .field("timeout", &self.timeout)
            .field("timeout_status", &self.timeout_status)
            .field("body_limit", &self.body_limit)
            .field("rate_limit", &self.rate_limit)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Shield {
    /// Secure defaults for a JSON API: the `api` security headers, a 30 s timeout, a 1 MiB
    /// body limit, no trusted proxies.
    pub fn api() -> ShieldBuilder {
        ShieldBuilder {
            config: ShieldConfig::default(),
            headers: SecurityHeadersLayer::api(),
            https_redirect: None,
            cors: None,
            timeout_status: StatusCode::SERVICE_UNAVAILABLE,
            render: None,
            sinks: Vec::new(),
            rate_limit: None,
            pseudonymizer: None,
        }
    }

    /// A builder starting from loaded settings (otherwise as [`Shield::api`]); they are
    /// checked in [`ShieldBuilder::build`] like the setters'.
    pub fn from_config(config: ShieldConfig) -> ShieldBuilder {
        ShieldBuilder {
            config,
            ..Self::api()
        }
    }
}

/// Builder of a [`Shield`]: setters record, [`ShieldBuilder::build`] checks every setting.
#[derive(Clone)]
#[must_use = "call .build() to get the layer"]
pub struct ShieldBuilder {
    config: ShieldConfig,
    headers: SecurityHeadersBuilder,
    https_redirect: Option<String>,
    cors: Option<CorsPolicy>,
    timeout_status: StatusCode,
    render: Option<RenderRejection>,
    sinks: Vec<Arc<dyn SecurityEventSink>>,
    rate_limit: Option<RateLimitLayer>,
    /// Made at once so that the key is not kept: the error, if any, waits for `build`.
    pseudonymizer: Option<Result<Pseudonymizer, ConfigError>>,
}

impl fmt::Debug for ShieldBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShieldBuilder")
            .field("config", &self.config)
            .field("headers", &self.headers)
            .field("https_redirect", &self.https_redirect)
            .field("cors", &self.cors)
            .field("timeout_status", &self.timeout_status)
            .field("render", &self.render)
            .field("sinks", &self.sinks.len())
            .field("rate_limit", &self.rate_limit)
            .field("pseudonymizer", &self.pseudonymizer)
            .finish()
    }
}

impl ShieldBuilder {
    /// Sets the proxies allowed to name the client, as CIDRs or addresses.
    /// [`build`](Self::build) refuses an entry that is neither.
    pub fn trusted_proxies<I, T>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.config.trusted_proxies = proxies.into_iter().map(|p| p.as_ref().to_owned()).collect();
        self
    }

    /// Sets which forwarding header the trusted proxies write (default `X-Forwarded-For`).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.config.forwarded_header = header;
        self
    }

    /// Sets the IPv6 prefix length that groups addresses into one rate-limit key (default
    /// 64); [`build`](Self::build) refuses a length outside 1–128.
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.config.ipv6_prefix = bits;
        self
    }

    /// Replaces the security headers (start from
    /// [`SecurityHeadersLayer::api`](crate::headers::SecurityHeadersLayer::api)); they are
    /// checked in [`build`](Self::build).
    pub fn security_headers(mut self, headers: SecurityHeadersBuilder) -> Self {
        self.headers = headers;
        self
    }

    /// Redirects requests that did not arrive over HTTPS to `origin` with `308 Permanent
    /// Redirect` (RFC 9110 §15.4.9, which keeps method and body), path and query kept. Off
    /// by default.
    ///
    /// The target host is `origin`, **never** the request's `Host`, `:authority` or
    /// `X-Forwarded-Host`: those are client-controlled, and redirecting to them is an open
    /// redirect and a cache-poisoning vector (OWASP Unvalidated Redirects Cheat Sheet).
    /// Requests count as HTTPS with a [`TlsConnection`](crate::headers::TlsConnection)
    /// marker or when a trusted proxy says so ([`is_https`](crate::headers::is_https)).
    /// [`build`](Self::build) refuses an `origin` that is not `https://host[:port]` (user
    /// info, a path, a query or a fragment included).
    pub fn https_redirect(mut self, origin: &str) -> Self {
        self.https_redirect = Some(origin.to_owned());
        self
    }

    /// Answers CORS (and its preflights) with `cors`, inside the panic catcher and outside
    /// the timeout, rate limits and any authentication layer. Off by default (same-origin
    /// only). Checked in [`build`](Self::build).
    pub fn cors(mut self, cors: CorsPolicy) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Sets the request timeout (default 30 s); [`build`](Self::build) refuses zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// Sets the status of a timed-out request: 503 (default, safe for clients to retry
    /// idempotent requests later) or 408; [`build`](Self::build) refuses any other.
    pub fn timeout_status(mut self, status: StatusCode) -> Self {
        self.timeout_status = status;
        self
    }

    /// Sets the request body limit in bytes (default 1 MiB), enforced on `Content-Length`
    /// and while streaming; [`build`](Self::build) refuses zero.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// Turns the per-request INFO access line on or off (security events stay on).
    pub fn access_log(mut self, enabled: bool) -> Self {
        self.config.access_log = enabled;
        self
    }

    /// Records the query string in the request span (off by default: query strings often
    /// carry tokens, reset codes and personal data). It is escaped when recorded.
    pub fn log_query(mut self, enabled: bool) -> Self {
        self.config.log_query = enabled;
        self
    }

    /// Marks one more request and response header sensitive, e.g. your API-key header, so
    /// that it is never logged (in addition to `Authorization`, `Proxy-Authorization`,
    /// `Cookie`, `Set-Cookie` and `X-Api-Key`); [`build`](Self::build) refuses an invalid
    /// header name.
    pub fn sensitive_header(mut self, name: &str) -> Self {
        self.config.sensitive_headers.push(name.to_owned());
        self
    }

    /// Replaces client IPs, principals and user names in the request span and in security
    /// events with keyed pseudonyms (HMAC-SHA256, see
    /// [`Pseudonymizer`]). Read `key` from your secret store;
    /// [`build`](Self::build) refuses a key shorter than 32 bytes.
    pub fn pseudonymize(mut self, key: impl AsRef<[u8]>) -> Self {
        self.pseudonymizer = Some(Pseudonymizer::new(key));
        self
    }

    /// Renders every rejection with your own function instead of problem+json.
    pub fn render_rejections_with(mut self, render: RenderRejection) -> Self {
        self.render = Some(render);
        self
    }

    /// Adds a sink that receives every security event of requests through this stack.
    pub fn event_sink(mut self, sink: impl SecurityEventSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Sets the default rate limit for every route, e.g.
    /// `RateLimitLayer::per_ip("100/hour").build()?`.
    /// It sits innermost, directly around the router (inside the body limit), so its 429s
    /// get the request id, security headers and a log line. Without it nothing is added.
    pub fn rate_limit(mut self, limit: RateLimitLayer) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Checks every setting and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first problem, in this order: a malformed proxy, an IPv6
    /// prefix outside 1–128, an HTTPS redirect origin that is not `https://host[:port]`, a
    /// pseudonymization key under 32 bytes, a zero timeout or body limit, a timeout status
    /// other than 408 or 503, an invalid sensitive header, a security header that cannot be
    /// prepared, or an unsafe CORS configuration (credentials with any origin, a bad
    /// origin).
    pub fn build(self) -> Result<Shield, ConfigError> {
        let resolver = ClientIpResolver::new(
            &self.config.trusted_proxies,
            self.config.forwarded_header,
            self.config.ipv6_prefix,
        )?;
        let https_redirect = match &self.https_redirect {
            Some(origin) => RedirectOrigin::parse(origin)?.layer(),
            None => HttpsRedirectLayer::default(),
        };
        let pseudonymizer = self.pseudonymizer.transpose()?;
        if self.config.timeout_ms == 0 {
            return Err(ConfigError::new(
                "timeout",
                "a zero timeout refuses every request",
                "set a timeout such as 30 s (timeout_ms = 30000)",
            ));
        }
        if self.config.body_limit == 0 {
            return Err(ConfigError::new(
                "body_limit",
                "a zero body limit refuses every request with a body",
                "set a limit in bytes such as 1048576 (1 MiB)",
            ));
        }
        if ![StatusCode::REQUEST_TIMEOUT, StatusCode::SERVICE_UNAVAILABLE]
            .contains(&self.timeout_status)
        {
            return Err(ConfigError::new(
                "timeout_status",
                format!("{} is not a timeout status", self.timeout_status),
                "use 503 (Service Unavailable) or 408 (Request Timeout)",
            ));
        }
        let mut sensitive_headers = DEFAULT_SENSITIVE_HEADERS.to_vec();
        for name in &self.config.sensitive_headers {
            let name = ConfigError::header_name(
                "sensitive_headers",
                name,
                "use a header name such as x-api-key",
            )?;
            if !sensitive_headers.contains(&name) {
                sensitive_headers.push(name);
            }
        }
        let sensitive_headers: Arc<[http::HeaderName]> = sensitive_headers.into();
        Ok(Shield {
            core: Arc::new(CoreShared {
                resolver,
                render: self.render,
                sinks: EventSinks::new(self.sinks),
                sensitive_headers: sensitive_headers.clone(),
            }),
            headers: self.headers.build()?,
            https_redirect,
            cors: self.cors.as_ref().map(CorsPolicy::build).transpose()?,
            timeout: Duration::from_millis(self.config.timeout_ms),
            timeout_status: self.timeout_status,
            body_limit: self.config.body_limit,
            rate_limit: self.rate_limit,
            log: LogSettings {
                access_log: self.config.access_log,
                record_query: self.config.log_query,
                sensitive_headers,
                pseudonymizer,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::routing::get;
    use axum::Router;
    use http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::rejection::tests::RENDERED;
    use crate::{Rejection, RejectionKind};

    async fn problem(app: &Router, uri: &str) -> (StatusCode, serde_json::Value, usize) {
        RENDERED.with(|n| n.set(0));
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap();
        (status, body, RENDERED.with(|n| n.get()))
    }

    /// A rejection returned by a handler was rendered without the request id by
    /// `IntoResponse`, then again by the Shield with it; a 5xx refused by a layer was rendered
    /// by the layer and again by the Shield.
    #[tokio::test]
    async fn each_rejection_body_is_rendered_once_through_shield() {
        let refuse = axum::middleware::from_fn(
            |req: Request<Body>, _next: axum::middleware::Next| async move {
                Rejection::new(RejectionKind::ServiceUnavailable)
                    .into_response_for(req.extensions())
            },
        );
        let app = Router::new()
            .route(
                "/handler",
                get(|| async { Rejection::new(RejectionKind::Forbidden) }),
            )
            .route("/layer", get(|| async { "never" }).route_layer(refuse))
            .layer(Shield::api().build().unwrap())
            .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1))));
        for (uri, status) in [("/handler", 403), ("/layer", 503), ("/missing", 404)] {
            let (got, body, rendered) = problem(&app, uri).await;
            assert_eq!(got, status, "{uri}");
            assert!(body["request_id"].is_string(), "{uri}: {body}");
            assert_eq!(rendered, 1, "{uri}: body rendered {rendered} times");
        }
    }
}
