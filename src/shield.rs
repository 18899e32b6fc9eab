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
//! | Strong authentication (no JWT without expiry, no weak secret) | `JwtAuth::hs256(&secret)?.issuer(ISSUER).audience(AUDIENCE).build()?` then `.route_layer(jwt.layer())`: `exp` required, `nbf`/`iat` checked, `iss`/`aud` exact, `alg` fixed by the key, secrets under 32 bytes refused; `TokenIssuer` signs with the same persistent key |
//! | Authorization | `.route_layer(AuthorizeLayer::any_roles(["admin"])?)` → 403 `insufficient_scope` |
//! | Rate limiting (100/hour by default, 5/minute on login) | `Shield::api().rate_limit(RateLimit::per_ip("100/hour")?)` and `.route_layer(RateLimit::per_ip("5/minute")?.layer())` on `/login`, plus `LoginGuard` (per-account and per-IP exponential backoff) |
//! | Input validation and sanitization | `Valid<Json<NewUser>>` with `#[derive(Validate)]`, behind `JsonGuardLayer` (depth, size, duplicate keys); `validate::sanitize::encode_html` for output |
//! | HTTPS everywhere | `.https_redirect("https://api.example.com")?` (308, never to `Host`), HSTS only over HTTPS; `examples/tls.rs` serves TLS 1.2/1.3 with rustls |
//! | Security headers | `Shield::api()` sends the API preset on every response, rejections included; `SecurityHeaders::web()` for HTML apps, with CSP nonces |
//! | Monitoring and logging | one span per request and an OWASP-named event per refusal (`axum_shield::security` target); `Audit` for high-risk actions; `LOG_FORMAT=json` |
//! | Excessive data exposure | response DTOs, plus `RedactFieldsLayer::default()` removing `password`, `token`, `ssn`, … from JSON responses and `ScrubServerErrorsLayer` hiding internal 5xx text |

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use pin_project_lite::pin_project;
use serde::Deserialize;
use tower::util::{option_layer, Either};
use tower_http::cors::{Cors as CorsService, CorsLayer};
use tower_http::limit::{RequestBodyLimit, RequestBodyLimitLayer};
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::{
    EventSinks, LogSettings, OnRequestEnd, Pseudonymizer, RequestAudit, RequestAuditLayer,
    SecurityEventSink, DEFAULT_SENSITIVE_HEADERS,
};
use crate::client_ip::{
    missing_connect_info, ClientIp, ClientIpConfig, ClientIpResolver, ForwardedHeader,
    ForwardedProto,
};
use crate::headers::{
    Cors, HttpsRedirect, HttpsRedirectLayer, HttpsRedirectService, SecurityHeaders,
    SecurityHeadersLayer, SecurityHeadersService,
};
use crate::rate_limit::{RateLimit, RateLimitLayer};
use crate::rejection::{self, Rejection, RejectionKind, RenderRejection, PROBLEM_JSON};
use crate::request_id::{self, RequestId, REQUEST_ID_HEADER};
use crate::ConfigError;

mod catch_panic;
mod timeout;

pub use catch_panic::{CatchPanic, CatchPanicFuture};
pub use timeout::{RequestTimeout, TimeoutFuture};

/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The limit axum's body extractors apply when no `DefaultBodyLimit` is set (2 MB).
const AXUM_DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Default request timeout: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
/// let shield = Shield::from_config(config)?.build()?;
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
            ipv6_prefix: 64,
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
///     .trusted_proxies(["10.0.0.0/8"])?
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
            headers: SecurityHeaders::api(),
            https_redirect: None,
            cors: None,
            timeout_status: StatusCode::SERVICE_UNAVAILABLE,
            render: None,
            sinks: Vec::new(),
            rate_limit: None,
            pseudonymizer: None,
        }
    }

    /// A builder starting from loaded settings (otherwise as [`Shield::api`]).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a malformed proxy CIDR (other checks run in `build`).
    pub fn from_config(config: ShieldConfig) -> Result<ShieldBuilder, ConfigError> {
        let mut builder = Self::api();
        builder = builder.trusted_proxies(config.trusted_proxies.iter())?;
        builder.config = config;
        Ok(builder)
    }
}

/// Builder of a [`Shield`]; settings are checked in [`ShieldBuilder::build`].
#[derive(Clone)]
pub struct ShieldBuilder {
    config: ShieldConfig,
    headers: SecurityHeaders,
    https_redirect: Option<HttpsRedirect>,
    cors: Option<Cors>,
    timeout_status: StatusCode,
    render: Option<RenderRejection>,
    sinks: Vec<Arc<dyn SecurityEventSink>>,
    rate_limit: Option<RateLimitLayer>,
    pseudonymizer: Option<Pseudonymizer>,
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
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first malformed entry.
    pub fn trusted_proxies<I, T>(mut self, proxies: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let proxies: Vec<String> = proxies.into_iter().map(|p| p.as_ref().to_owned()).collect();
        ClientIpConfig::new().trusted_proxies(proxies.iter())?;
        self.config.trusted_proxies = proxies;
        Ok(self)
    }

    /// Sets which forwarding header the trusted proxies write (default `X-Forwarded-For`).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.config.forwarded_header = header;
        self
    }

    /// Sets the IPv6 prefix length that groups addresses into one rate-limit key (default 64).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.config.ipv6_prefix = bits;
        self
    }

    /// Replaces the security headers (start from [`SecurityHeaders::api`]).
    pub fn security_headers(mut self, headers: SecurityHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// Redirects requests that did not arrive over HTTPS to `origin` (308, path and query
    /// kept, never to the request's `Host`); see [`HttpsRedirect`]. Requests count as HTTPS
    /// with a [`TlsConnection`](crate::headers::TlsConnection) marker or when a trusted proxy
    /// says so. Off by default.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `origin` is not `https://host[:port]`.
    pub fn https_redirect(mut self, origin: &str) -> Result<Self, ConfigError> {
        self.https_redirect = Some(HttpsRedirect::to(origin)?);
        Ok(self)
    }

    /// Answers CORS (and its preflights) with `cors`, inside the panic catcher and outside
    /// the timeout, rate limits and any authentication layer. Off by default (same-origin
    /// only). Checked in [`ShieldBuilder::build`].
    pub fn cors(mut self, cors: Cors) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Sets the request timeout (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// Sets the status of a timed-out request: 503 (default, safe for clients to retry
    /// idempotent requests later) or 408.
    pub fn timeout_status(mut self, status: StatusCode) -> Self {
        self.timeout_status = status;
        self
    }

    /// Sets the request body limit in bytes (default 1 MiB), enforced on `Content-Length`
    /// and while streaming.
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
    /// that it is never logged (in addition to [`DEFAULT_SENSITIVE_HEADERS`]).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `name` is not a valid header name.
    pub fn sensitive_header(mut self, name: &str) -> Result<Self, ConfigError> {
        parse_sensitive_header(name)?;
        self.config.sensitive_headers.push(name.to_owned());
        Ok(self)
    }

    /// Replaces client IPs, principals and user names in the request span and in security
    /// events with keyed pseudonyms (HMAC-SHA256, see [`Pseudonymizer`]). Read `key` from
    /// your secret store.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the key is shorter than 32 bytes.
    pub fn pseudonymize(mut self, key: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.pseudonymizer = Some(Pseudonymizer::new(key)?);
        Ok(self)
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

    /// Sets the default rate limit for every route, e.g. `RateLimit::per_ip("100/hour")?`.
    /// It sits innermost, directly around the router (inside the body limit), so its 429s
    /// get the request id, security headers and a log line. Without it nothing is added.
    pub fn rate_limit(mut self, limit: impl Into<RateLimitLayer>) -> Self {
        self.rate_limit = Some(limit.into());
        self
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a malformed proxy, an IPv6 prefix outside 1–128, a zero timeout
    /// or body limit, a timeout status other than 408 or 503, a security header that cannot
    /// be prepared, an unsafe CORS configuration (credentials with any origin), or an invalid
    /// sensitive header.
    pub fn build(self) -> Result<Shield, ConfigError> {
        let resolver = ClientIpConfig::new()
            .trusted_proxies(self.config.trusted_proxies.iter())?
            .header(self.config.forwarded_header)
            .ipv6_prefix(self.config.ipv6_prefix)
            .build()?;
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
            let name = parse_sensitive_header(name)?;
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
            headers: self.headers.layer()?,
            https_redirect: self
                .https_redirect
                .as_ref()
                .map(HttpsRedirect::layer)
                .unwrap_or_default(),
            cors: self.cors.as_ref().map(Cors::build).transpose()?,
            timeout: Duration::from_millis(self.config.timeout_ms),
            timeout_status: self.timeout_status,
            body_limit: self.config.body_limit,
            rate_limit: self.rate_limit,
            log: LogSettings {
                access_log: self.config.access_log,
                record_query: self.config.log_query,
                sensitive_headers,
                pseudonymizer: self.pseudonymizer,
            },
        })
    }
}

fn parse_sensitive_header(name: &str) -> Result<http::HeaderName, ConfigError> {
    ConfigError::header_name(
        "sensitive_headers",
        name,
        "use a header name such as x-api-key",
    )
}

/// Sensitive request headers are marked by [`ShieldCore`] before the request span opens;
/// sensitive response headers by [`RequestAudit`] before its access line sees the response.
type TraceStack<S> = RequestAudit<S>;

type Limited<S> = Either<RateLimit<S>, S>;
type AxumLimit<S> = Either<<DefaultBodyLimit as Layer<Limited<S>>>::Service, Limited<S>>;
type Limits<S> = RequestTimeout<RequestBodyLimit<AxumLimit<S>>>;
type WithCors<S> = Either<CorsService<Limits<S>>, Limits<S>>;
type WithRedirect<S> = HttpsRedirectService<WithCors<S>>;

type Stack<S> = ShieldCore<SecurityHeadersService<TraceStack<CatchPanic<WithRedirect<S>>>>>;

impl<S> Layer<S> for Shield {
    type Service = ShieldService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = match &self.rate_limit {
            Some(limit) => Either::Left(limit.layer(inner)),
            None => Either::Right(inner),
        };
        // axum's extractors stop at their own 2 MB default; only a larger limit needs to tell
        // them (a per-request extension). Up to 2 MB, `RequestBodyLimit` below already stops
        // every body first.
        let inner = if self.body_limit > AXUM_DEFAULT_BODY_LIMIT {
            Either::Left(DefaultBodyLimit::max(self.body_limit).layer(inner))
        } else {
            Either::Right(inner)
        };
        let inner = RequestBodyLimitLayer::new(self.body_limit).layer(inner);
        let inner = RequestTimeout {
            inner,
            timeout: self.timeout,
            status: self.timeout_status,
        };
        let inner = option_layer(self.cors.clone()).layer(inner);
        let inner = self.https_redirect.layer(inner);
        let inner = CatchPanic { inner };
        let inner = RequestAuditLayer::new(self.log.pseudonymizer.clone())
            .sensitive_headers(self.log.sensitive_headers.clone())
            .with_span(self.log.make_span(), OnRequestEnd::new(self.log.access_log))
            .layer(inner);
        let inner = self.headers.layer(inner);
        ShieldService {
            inner: ShieldCore {
                inner,
                shared: self.core.clone(),
            },
        }
    }
}

/// The service produced by [`Shield`].
#[derive(Clone)]
pub struct ShieldService<S> {
    inner: Stack<S>,
}

impl<S> fmt::Debug for ShieldService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShieldService").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for ShieldService<S>
where
    Stack<S>: Service<Request<B>>,
{
    type Response = <Stack<S> as Service<Request<B>>>::Response;
    type Error = <Stack<S> as Service<Request<B>>>::Error;
    type Future = <Stack<S> as Service<Request<B>>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}

struct CoreShared {
    resolver: ClientIpResolver,
    render: Option<RenderRejection>,
    sinks: EventSinks,
    /// Request headers marked sensitive before the request span sees the request.
    sensitive_headers: Arc<[http::HeaderName]>,
}

/// The outermost service of [`Shield`]: request id, client IP, rejection rendering.
#[derive(Clone)]
pub struct ShieldCore<S> {
    inner: S,
    shared: Arc<CoreShared>,
}

impl<S: fmt::Debug> fmt::Debug for ShieldCore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShieldCore")
            .field("inner", &self.inner)
            .field("client_ip", &self.shared.resolver)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ShieldCore<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CoreFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        crate::audit::mark_sensitive(req.headers_mut(), &self.shared.sensitive_headers);
        let id = match req.headers().get(&REQUEST_ID_HEADER) {
            Some(value) if request_id::is_acceptable(value) => value.clone(),
            _ => {
                let id = request_id::generate();
                req.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
                id
            }
        };
        req.extensions_mut().insert(RequestId::new(id.clone()));
        // Layers that render their own refusals (`Rejection::into_response_for`) use it.
        if let Some(render) = &self.shared.render {
            req.extensions_mut().insert(render.clone());
        }
        let Some(peer) = crate::client_ip::peer_ip(req.extensions()) else {
            let response = missing_connect_info().into_response_for(req.extensions());
            return CoreFuture::ready(response, id);
        };
        let resolved = self.shared.resolver.resolve(peer, req.headers());
        let extensions = req.extensions_mut();
        extensions.insert(ClientIp(resolved.ip()));
        if let Some(https) = resolved.forwarded_https() {
            extensions.insert(ForwardedProto { https });
        }
        // Read by rate-limit keys for the IPv6 prefix; without it they use the default /64, so
        // the common configuration saves an allocation per request.
        if self.shared.resolver.ipv6_prefix() != crate::client_ip::DEFAULT_IPV6_PREFIX {
            extensions.insert(self.shared.resolver.clone());
        }
        if !self.shared.sinks.is_empty() {
            extensions.insert(self.shared.sinks.clone());
        }
        CoreFuture {
            state: CoreState::Inner {
                future: self.inner.call(req),
                shared: self.shared.clone(),
                id,
            },
        }
    }
}

/// The kind of problem a bare error response from an inner layer or axum itself stands for.
fn bare_error_kind<B: HttpBody>(response: &Response<B>) -> Option<RejectionKind> {
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return None;
    }
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return None;
    }
    // A 413 always means the body limit: replace tower-http's and axum's plain-text bodies.
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Some(RejectionKind::PayloadTooLarge);
    }
    let empty = response.body().size_hint().exact() == Some(0)
        && !response.headers().contains_key(CONTENT_TYPE);
    if !empty {
        return None;
    }
    match status {
        StatusCode::NOT_FOUND => Some(RejectionKind::NotFound),
        StatusCode::METHOD_NOT_ALLOWED => Some(RejectionKind::MethodNotAllowed),
        StatusCode::REQUEST_TIMEOUT => Some(RejectionKind::RequestTimeout),
        StatusCode::INTERNAL_SERVER_ERROR => Some(RejectionKind::Internal),
        StatusCode::SERVICE_UNAVAILABLE => Some(RejectionKind::ServiceUnavailable),
        _ => None,
    }
}

pin_project! {
    /// Response future of [`ShieldCore`].
    pub struct CoreFuture<F> {
        #[pin]
        state: CoreState<F>,
    }
}

impl<F> CoreFuture<F> {
    fn ready(response: Response<Body>, id: HeaderValue) -> Self {
        Self {
            state: CoreState::Ready {
                response: Some(response),
                id,
            },
        }
    }
}

pin_project! {
    #[project = CoreProj]
    enum CoreState<F> {
        Inner {
            #[pin]
            future: F,
            shared: Arc<CoreShared>,
            id: HeaderValue,
        },
        Ready {
            response: Option<Response<Body>>,
            id: HeaderValue,
        },
    }
}

impl<F, B, E> Future for CoreFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (mut response, id) = match self.project().state.project() {
            CoreProj::Ready { response, id } => (
                response
                    .take()
                    .unwrap_or_else(|| Rejection::new(RejectionKind::Internal).into_response()),
                id,
            ),
            CoreProj::Inner { future, shared, id } => {
                let response = ready!(future.poll(cx))?;
                // Rendered here, once: a rejection a handler returned (its body is still
                // pending) and a bare error status from axum or tower-http. Rejections
                // rendered by a layer (`into_response_for`) pass untouched.
                let (id_text, hook) = (id.to_str().ok(), shared.render.as_ref());
                let response = if let Some(rejection) = rejection::pending(&response) {
                    rejection.render_over(response, id_text, hook)
                } else if let Some(kind) = bare_error_kind(&response) {
                    Rejection::new(kind).render_over(response, id_text, hook)
                } else {
                    response.map(Body::new)
                };
                (response, id)
            }
        };
        response.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::connect_info::MockConnectInfo;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;
    use crate::rejection::tests::RENDERED;

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
