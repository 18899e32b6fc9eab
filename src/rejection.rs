//! The one rejection type shared by every layer and extractor, rendered as RFC 9457 problem
//! details.
//!
//! Every refusal in this crate — a missing token, a rate limit, an oversized body, a panic —
//! is a [`Rejection`]. It turns into an `application/problem+json` response
//! ([RFC 9457](https://www.rfc-editor.org/rfc/rfc9457)) with `type`, `title`, `status`,
//! `detail`, a stable machine-readable `code` and, when the request went through
//! [`Shield`](crate::Shield), the request id:
//!
//! ```json
//! {"type":"about:blank","title":"Unauthorized","status":401,
//!  "detail":"The access token is missing, invalid or expired.",
//!  "code":"invalid_token","request_id":"2b1c…"}
//! ```
//!
//! plus the protocol headers the case needs (`WWW-Authenticate` on 401/403 as in RFC 6750,
//! `Retry-After` and the `RateLimit` fields on 429). Bodies never echo submitted values,
//! tokens, secrets or library internals.
//!
//! To use your API's own error format instead, give [`Shield`](crate::Shield) a
//! [`RenderRejection`] hook: every rejection that passes through the stack is then rendered
//! by your function.
//!
//! Each rejection is rendered once. Layers that see the request render with
//! [`Rejection::into_response_for`]; a rejection returned from a handler
//! ([`IntoResponse`]) is rendered by the `Shield` around it, with the request id, or without
//! a `Shield` when its body is read.

use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use http_body::{Frame, SizeHint};

/// The media type of RFC 9457 problem details.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// What kind of refusal a [`Rejection`] is: decides its status, title and `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// 400: the request is malformed (bad header, undecodable body).
    BadRequest,
    /// 400: the body could not be parsed (malformed JSON, form or query).
    MalformedBody,
    /// 401: no credentials were presented.
    MissingCredentials,
    /// 401: the presented token or key is invalid, expired or revoked.
    InvalidToken,
    /// 401: a login failed (wrong username or password); the same for unknown accounts.
    InvalidCredentials,
    /// 403: authenticated, but the principal lacks a required scope or role.
    InsufficientScope,
    /// 403: refused for another reason (for example a blocked origin).
    Forbidden,
    /// 404: no route matches the request.
    NotFound,
    /// 405: the route exists but not for this method.
    MethodNotAllowed,
    /// 408: the request did not complete within the configured timeout.
    RequestTimeout,
    /// 413: the request body is larger than the configured limit.
    PayloadTooLarge,
    /// 415: the request body has the wrong content type.
    UnsupportedMediaType,
    /// 422: the body parsed but failed validation.
    ValidationFailed,
    /// 429: a rate limit refused the request.
    RateLimited,
    /// 429: the login guard refused a sign-in attempt after repeated failures (for the
    /// account or the client); `code` `login_locked`, distinct from a rate limit's.
    LoginLocked,
    /// 500: an internal error (a panic, a failing dependency); details are never shown.
    Internal,
    /// 500: the server is misconfigured (for example `ConnectInfo` is missing).
    Misconfigured,
    /// 503: a dependency (for example Redis) is unavailable, or the request timed out inside.
    ServiceUnavailable,
}

impl RejectionKind {
    /// The HTTP status code of this kind.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::MalformedBody => StatusCode::BAD_REQUEST,
            Self::MissingCredentials | Self::InvalidToken | Self::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Self::InsufficientScope | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited | Self::LoginLocked => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal | Self::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable, machine-readable `code` member of the problem body.
    pub const fn code(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::MalformedBody => "malformed_body",
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidToken => "invalid_token",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InsufficientScope => "insufficient_scope",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ValidationFailed => "validation_failed",
            Self::RateLimited => "rate_limited",
            Self::LoginLocked => "login_locked",
            Self::Internal => "internal_error",
            Self::Misconfigured => "misconfigured",
            Self::ServiceUnavailable => "service_unavailable",
        }
    }

    /// The `title`: the status phrase, as RFC 9457 §4.2.1 asks for `about:blank` problems.
    pub fn title(self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Error")
    }

    /// The default `detail`: a short, safe sentence that reveals nothing about internals.
    pub const fn default_detail(self) -> &'static str {
        match self {
            Self::BadRequest => "The request is malformed.",
            Self::MalformedBody => "The request body could not be parsed.",
            Self::MissingCredentials => "Authentication is required to access this resource.",
            Self::InvalidToken => "The access token is missing, invalid or expired.",
            Self::InvalidCredentials => "The username or password is incorrect.",
            Self::InsufficientScope => "The access token does not grant access to this resource.",
            Self::Forbidden => "Access to this resource is forbidden.",
            Self::NotFound => "No resource matches this path.",
            Self::MethodNotAllowed => "This method is not allowed on this resource.",
            Self::RequestTimeout => "The request took too long to complete.",
            Self::PayloadTooLarge => "The request body is too large.",
            Self::UnsupportedMediaType => "The request body has an unsupported content type.",
            Self::ValidationFailed => "The request body failed validation.",
            Self::RateLimited => "Too many requests; retry later.",
            Self::LoginLocked => "Too many failed sign-in attempts; retry later.",
            Self::Internal => "An internal error occurred.",
            Self::Misconfigured => "The server is misconfigured.",
            Self::ServiceUnavailable => "The service is temporarily unavailable.",
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal by any layer or extractor of this crate.
///
/// Build one from a [`RejectionKind`], optionally with a safe `detail`, protocol headers and
/// extension members, and return it from a handler or middleware: it implements
/// [`IntoResponse`].
///
/// ```
/// use axum::response::IntoResponse;
/// use axum_shield::{Rejection, RejectionKind};
///
/// let rejection = Rejection::new(RejectionKind::Forbidden).with_detail("Orders are read-only.");
/// assert_eq!(rejection.status(), 403);
/// let response = rejection.into_response();
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    // Boxed: rejections are the cold path, and `Result<T, Rejection>` should stay small.
    inner: Box<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    kind: RejectionKind,
    detail: Cow<'static, str>,
    headers: HeaderMap,
    extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Rejection {
    /// A rejection of `kind` with its default detail.
    pub fn new(kind: RejectionKind) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                detail: Cow::Borrowed(kind.default_detail()),
                headers: HeaderMap::new(),
                extensions: None,
            }),
        }
    }

    /// Replaces the `detail`. It is shown to clients: never put submitted values, tokens or
    /// internal error text in it.
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.inner.detail = detail.into();
        self
    }

    /// Adds a response header (for example `WWW-Authenticate` or `Retry-After`).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.inner.headers.append(name, value);
        self
    }

    /// Adds an RFC 9457 extension member to the body (for example `errors` for validation).
    ///
    /// The names `type`, `title`, `status`, `detail`, `code` and `request_id` are reserved and
    /// ignored here.
    pub fn with_extension(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        let name = name.into();
        if !RESERVED_MEMBERS.contains(&name.as_str()) {
            self.inner
                .extensions
                .get_or_insert_with(Default::default)
                .insert(name, value);
        }
        self
    }

    /// The kind of refusal.
    pub fn kind(&self) -> RejectionKind {
        self.inner.kind
    }

    /// The HTTP status code.
    pub fn status(&self) -> StatusCode {
        self.inner.kind.status()
    }

    /// The client-safe detail sentence.
    pub fn detail(&self) -> &str {
        &self.inner.detail
    }

    /// The text a plain-text body would carry (axum-core's rejection convention).
    pub fn body_text(&self) -> String {
        self.inner.detail.to_string()
    }

    /// The protocol headers this rejection adds to its response.
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }

    /// The extension members of the problem body, if any.
    pub fn extensions(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.inner.extensions.as_ref()
    }

    /// Renders this rejection for the request whose `extensions` are given: problem+json
    /// with the request id (or the body of the [`Shield`](crate::Shield)'s
    /// [`RenderRejection`] hook when it has one), plus the protocol headers. This is the one
    /// rendering of the rejection: an outer `Shield` passes the response through untouched.
    /// Layers that can see the request should use it rather than
    /// [`into_response`](IntoResponse::into_response).
    ///
    /// ```
    /// use axum_shield::{Rejection, RejectionKind};
    ///
    /// fn refuse<B>(req: &http::Request<B>) -> axum::response::Response {
    ///     Rejection::new(RejectionKind::Forbidden).into_response_for(req.extensions())
    /// }
    /// # assert_eq!(refuse(&http::Request::new(())).status(), 403);
    /// ```
    pub fn into_response_for(self, extensions: &http::Extensions) -> Response {
        self.log();
        let hook = extensions.get::<RenderRejection>();
        let mut response = self.render_body(crate::request_id::of(extensions), hook);
        self.append_headers(&mut response);
        // Server errors carry the marker so that `ScrubServerErrors` lets them through; a
        // custom body so that the Shield does not take it for a bare error.
        if hook.is_some() || self.status().is_server_error() {
            response
                .extensions_mut()
                .insert(RenderedRejection { pending: None });
        }
        response
    }

    /// Renders this rejection over `inner`, the response from inside a
    /// [`Shield`](crate::Shield) that stands for it (a pending [`Rejection`] or a bare error
    /// status): status and body are rendered, with the request id `id` and the Shield's hook;
    /// the headers inner layers set (security headers, `WWW-Authenticate`, `Retry-After`)
    /// are kept.
    pub(crate) fn render_over<B>(
        &self,
        inner: http::Response<B>,
        id: Option<&str>,
        hook: Option<&RenderRejection>,
    ) -> Response {
        let (mut parts, _unread) = inner.into_parts();
        let (rendered, body) = self.render_body(id, hook).into_parts();
        parts.status = rendered.status;
        parts.headers.remove(CONTENT_LENGTH);
        parts.headers.remove(CONTENT_TYPE);
        for (name, value) in rendered.headers {
            if let Some(name) = name {
                parts.headers.insert(name, value);
            }
        }
        parts.extensions.insert(RenderedRejection { pending: None });
        Response::from_parts(parts, body)
    }

    /// Status, content type and body (no protocol headers): the hook's, or problem+json.
    fn render_body(&self, id: Option<&str>, hook: Option<&RenderRejection>) -> Response {
        match hook {
            Some(RenderRejection(render)) => render(self, id),
            None => problem_response(self.inner.kind, self.problem_json(id)),
        }
    }

    /// Appends the protocol headers to `response`.
    fn append_headers<B>(&self, response: &mut http::Response<B>) {
        for (name, value) in &self.inner.headers {
            response.headers_mut().append(name, value.clone());
        }
    }

    /// The problem+json body, member by member into one buffer (the same bytes `serde_json`
    /// writes for the problem document, checked by the tests).
    fn problem_json(&self, request_id: Option<&str>) -> Vec<u8> {
        let inner = &*self.inner;
        problem_body(
            inner.kind,
            &inner.detail,
            inner.extensions.as_ref(),
            request_id,
        )
    }

    /// A response whose body is rendered later, exactly once: by an outer
    /// [`Shield`](crate::Shield) with the request id and its hook, or, without one, when
    /// the body is first read (with `request_id`).
    fn pending(self, request_id: Option<&str>) -> Response {
        let kind = self.inner.kind;
        let rejection = Arc::new(self);
        let body = PendingBody {
            rejection: rejection.clone(),
            request_id: request_id.map(Box::from),
            rendered: OnceLock::new(),
            sent: false,
        };
        let mut response = problem_response(kind, Body::new(body));
        rejection.append_headers(&mut response);
        response.extensions_mut().insert(RenderedRejection {
            pending: Some(rejection),
        });
        response
    }

    /// The default problem+json response with `request_id`, rendered once (see
    /// [`IntoResponse`]).
    ///
    /// To be removed: kept for `validate::scrub` until it uses
    /// [`into_response_for`](Self::into_response_for) or `into_response`.
    pub(crate) fn to_response(&self, request_id: Option<&str>) -> Response {
        self.log();
        self.clone().pending(request_id)
    }

    fn log(&self) {
        tracing::debug!(
            target: "axum_shield::rejection",
            status = self.status().as_u16(),
            code = self.inner.kind.code(),
            "request rejected"
        );
    }
}

/// The refusal for a misconfiguration that only shows at request time (a missing
/// `ConnectInfo`, an extractor without its layer): a 500 `misconfigured` problem that reveals
/// nothing, and `fix` logged as an error under the target `axum_shield::config`. When no
/// tracing subscriber is installed the log line would be lost, so `fix` is then also written
/// to stderr, once per process for each distinct message.
pub(crate) fn misconfigured(fix: &'static str) -> Rejection {
    tracing::error!(target: "axum_shield::config", "{fix}");
    if !tracing::dispatcher::has_been_set() {
        static REPORTED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut reported = REPORTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !reported.contains(&fix) {
            reported.push(fix);
            eprintln!("axum-shield: misconfigured: {fix}");
        }
    }
    Rejection::new(RejectionKind::Misconfigured)
        .with_detail("The server is misconfigured; the error is in its log.")
}

const RESERVED_MEMBERS: [&str; 6] = ["type", "title", "status", "detail", "code", "request_id"];

impl From<RejectionKind> for Rejection {
    fn from(kind: RejectionKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status(),
            self.inner.kind.code(),
            self.inner.detail
        )
    }
}

impl std::error::Error for Rejection {}

/// For handlers and extractors, which cannot see the request: the response gets the status,
/// the protocol headers and a body that is rendered once, later. Inside a
/// [`Shield`](crate::Shield) the Shield renders it, with the request id and its
/// [`RenderRejection`] hook; without one, it is problem+json without a request id, rendered
/// when the body is read.
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.log();
        self.pending(None)
    }
}

/// The pending rejection `response` stands for, if its body is still to be rendered (see
/// [`IntoResponse`] for [`Rejection`]).
pub(crate) fn pending<B>(response: &http::Response<B>) -> Option<Arc<Rejection>> {
    response
        .extensions()
        .get::<RenderedRejection>()?
        .pending
        .clone()
}

/// A problem+json response of `kind`'s status with `body`.
fn problem_response(kind: RejectionKind, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = kind.status();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// The body of a pending rejection: rendered on first use (its size or its data), once.
struct PendingBody {
    rejection: Arc<Rejection>,
    request_id: Option<Box<str>>,
    rendered: OnceLock<Bytes>,
    sent: bool,
}

impl PendingBody {
    fn bytes(&self) -> &Bytes {
        self.rendered
            .get_or_init(|| Bytes::from(self.rejection.problem_json(self.request_id.as_deref())))
    }
}

impl http_body::Body for PendingBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sent {
            return Poll::Ready(None);
        }
        let data = self.bytes().clone();
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent
    }

    fn size_hint(&self) -> SizeHint {
        if self.sent {
            SizeHint::with_exact(0)
        } else {
            SizeHint::with_exact(self.bytes().len() as u64)
        }
    }
}

/// The problem+json body of a rejection: the same bytes `serde_json` writes for the RFC 9457
/// document (checked by the tests).
fn problem_body(
    kind: RejectionKind,
    detail: &str,
    members: Option<&serde_json::Map<String, serde_json::Value>>,
    request_id: Option<&str>,
) -> Vec<u8> {
    #[cfg(test)]
    tests::RENDERED.with(|n| n.set(n.get() + 1));
    // Built-in titles, codes and default details have nothing to escape (checked by the
    // tests), so they are copied without a scan.
    // Compared by content: the same text is safe whoever set it.
    let default_detail = detail == kind.default_detail();
    let (title, code) = (kind.title(), kind.code());
    let detail_len = if default_detail {
        detail.len() + 2
    } else {
        json_str_len(detail)
    };
    let id_len = request_id.map_or(0, |id| 14 + json_str_len(id));
    // Sized exactly when there are no extension members, so that the body's `Bytes` takes
    // the buffer over without another allocation.
    let mut out = Vec::with_capacity(62 + title.len() + 2 + detail_len + code.len() + 2 + id_len);
    out.extend_from_slice(br#"{"type":"about:blank","title":""#);
    out.extend_from_slice(title.as_bytes());
    out.extend_from_slice(br#"","status":"#);
    let status = kind.status().as_u16();
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.extend_from_slice(br#","detail":"#);
    if default_detail {
        out.push(b'"');
        out.extend_from_slice(detail.as_bytes());
        out.push(b'"');
    } else {
        json_str(&mut out, detail);
    }
    out.extend_from_slice(br#","code":""#);
    out.extend_from_slice(code.as_bytes());
    out.push(b'"');
    if let Some(id) = request_id {
        out.extend_from_slice(br#","request_id":"#);
        json_str(&mut out, id);
    }
    for (name, value) in members.into_iter().flatten() {
        out.push(b',');
        json_str(&mut out, name);
        out.push(b':');
        if serde_json::to_writer(&mut out, value).is_err() {
            out.extend_from_slice(b"null");
        }
    }
    out.push(b'}');
    out
}

/// Appends `text` as a JSON string (RFC 8259 §7 escapes, as `serde_json` writes them). Text
/// without a character to escape (every built-in title, code and detail, every generated
/// request id) is copied as is.
fn json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().any(needs_escape) {
        if serde_json::to_writer(&mut *out, text).is_err() {
            out.extend_from_slice(b"\"\"");
        }
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The length of `text` written by [`json_str`], quotes included.
fn json_str_len(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\x08' | b'\x0c' | b'\n' | b'\r' | b'\t' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Marks a response as a [`Rejection`] of this crate. `pending` holds the rejection while its
/// body is still to be rendered (see [`IntoResponse`] for [`Rejection`]); `None` once it is.
#[derive(Debug, Clone)]
pub(crate) struct RenderedRejection {
    pending: Option<Arc<Rejection>>,
}

/// A hook that renders rejections in an API's own error format.
///
/// It receives the rejection and the request id (when the request went through
/// [`Shield`](crate::Shield)) and returns the response. The rejection's protocol headers are
/// added afterwards, so the hook only decides status and body. It is called once per
/// rejection, wherever the rejection was made: by the layer that refuses
/// ([`Rejection::into_response_for`]), or by the `Shield` for a rejection a handler returned
/// and for axum's and tower-http's bare error statuses.
///
/// ```
/// use axum::{response::IntoResponse, Json};
/// use axum_shield::{rejection::RenderRejection, Shield};
///
/// let render = RenderRejection::new(|rejection, request_id| {
///     let body = serde_json::json!({
///         "error": { "code": rejection.kind().code(), "trace": request_id }
///     });
///     (rejection.status(), Json(body)).into_response()
/// });
/// let shield = Shield::api().render_rejections_with(render).build().unwrap();
/// # let _ = shield;
/// ```
#[derive(Clone)]
pub struct RenderRejection(Arc<RenderFn>);

type RenderFn = dyn Fn(&Rejection, Option<&str>) -> Response + Send + Sync;

impl RenderRejection {
    /// Wraps a rendering function.
    pub fn new<F>(render: F) -> Self
    where
        F: Fn(&Rejection, Option<&str>) -> Response + Send + Sync + 'static,
    {
        Self(Arc::new(render))
    }
}

impl fmt::Debug for RenderRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RenderRejection(..)")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::header::WWW_AUTHENTICATE;

    thread_local! {
        /// Problem bodies rendered on this thread (tests run their runtime on one thread).
        pub(crate) static RENDERED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn with_id(id: &'static str) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        extensions.insert(crate::request_id::RequestId::new(HeaderValue::from_static(
            id,
        )));
        extensions
    }

    #[tokio::test]
    async fn renders_problem_json_with_headers_and_request_id() {
        let rejection = Rejection::new(RejectionKind::InvalidToken).with_header(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        let response = rejection.into_response_for(&with_id("abc"));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let body = body_json(response).await;
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Unauthorized");
        assert_eq!(body["status"], 401);
        assert_eq!(body["code"], "invalid_token");
        assert_eq!(body["request_id"], "abc");
    }

    /// Without a Shield, a rejection returned by a handler is the same problem (without the
    /// request id it cannot know), with its length known before it is sent.
    #[tokio::test]
    async fn into_response_renders_the_same_problem_once_when_read() {
        let rejection = || {
            Rejection::new(RejectionKind::RateLimited)
                .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("7"))
        };
        let direct = rejection().into_response_for(&http::Extensions::new());
        RENDERED.with(|n| n.set(0));
        let pending = rejection().into_response();
        assert_eq!(
            RENDERED.with(|n| n.get()),
            0,
            "rendered before it is needed"
        );
        assert_eq!(pending.status(), direct.status());
        assert_eq!(pending.headers(), direct.headers());
        assert!(pending.extensions().get::<RenderedRejection>().is_some());
        let length = http_body::Body::size_hint(pending.body()).exact();
        let body = axum::body::to_bytes(pending.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(RENDERED.with(|n| n.get()), 1);
        assert_eq!(length, Some(body.len() as u64));
        let direct = axum::body::to_bytes(direct.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, direct);
    }

    /// An RFC 9457 problem document, as `serde_json` writes it.
    #[derive(serde::Serialize)]
    struct Problem<'a> {
        #[serde(rename = "type")]
        type_uri: &'a str,
        title: &'a str,
        status: u16,
        detail: &'a str,
        code: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        extensions: Option<&'a serde_json::Map<String, serde_json::Value>>,
    }

    fn problem<'a>(rejection: &'a Rejection, request_id: Option<&'a str>) -> Problem<'a> {
        Problem {
            type_uri: "about:blank",
            title: rejection.kind().title(),
            status: rejection.status().as_u16(),
            detail: rejection.detail(),
            code: rejection.kind().code(),
            request_id,
            extensions: rejection.extensions(),
        }
    }

    /// `problem_json` copies these without escaping.
    #[test]
    fn built_in_texts_need_no_escape() {
        for kind in ALL_KINDS {
            for text in [kind.title(), kind.code(), kind.default_detail()] {
                assert!(!text.bytes().any(needs_escape), "{text:?}");
            }
        }
    }

    /// The hand-written body is byte for byte what `serde_json` writes for `Problem`.
    #[test]
    fn problem_json_matches_serde() {
        let cases = [
            Rejection::new(RejectionKind::RateLimited),
            Rejection::new(RejectionKind::ValidationFailed)
                .with_detail("quote \" backslash \\ newline \n tab \t nul \u{0} bidi \u{202e} é")
                .with_extension(
                    "errors",
                    serde_json::json!([{"field": "e\"mail", "n": 1.5}]),
                )
                .with_extension("a_first", serde_json::json!(null)),
            Rejection::new(RejectionKind::Internal),
            Rejection::new(RejectionKind::Forbidden).with_detail("\u{1} \u{8} \u{c} \u{1f} \u{7f}"),
        ];
        for rejection in cases {
            for id in [None, Some("id-\"1\"\r\n")] {
                let expected = serde_json::to_vec(&problem(&rejection, id)).unwrap();
                let body = rejection.problem_json(id);
                if rejection.extensions().is_none() {
                    assert_eq!(body.len(), body.capacity(), "sized exactly");
                }
                assert_eq!(
                    String::from_utf8(body).unwrap(),
                    String::from_utf8(expected).unwrap()
                );
            }
        }
    }

    #[tokio::test]
    async fn extensions_cannot_override_reserved_members() {
        let rejection = Rejection::new(RejectionKind::ValidationFailed)
            .with_extension("status", serde_json::json!(200))
            .with_extension("errors", serde_json::json!([{"field": "email"}]));
        let body = body_json(rejection.into_response()).await;
        assert_eq!(body["status"], 422);
        assert_eq!(body["errors"][0]["field"], "email");
        assert!(body.get("request_id").is_none());
    }

    /// The login guard's 429 had the rate limiter's `code`, so clients could not tell a
    /// locked sign-in from a spent quota.
    #[tokio::test]
    async fn login_locked_has_its_own_code() {
        let kind = RejectionKind::LoginLocked;
        assert_eq!(kind.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(kind.title(), "Too Many Requests");
        assert_ne!(kind.code(), RejectionKind::RateLimited.code());
        let body = body_json(Rejection::new(kind).into_response()).await;
        assert_eq!(body["code"], "login_locked");
        assert_eq!(body["status"], 429);
        assert_eq!(
            body["detail"],
            "Too many failed sign-in attempts; retry later."
        );
    }

    #[test]
    fn every_kind_has_a_title_and_an_error_status() {
        for kind in ALL_KINDS {
            assert!(kind.status().as_u16() >= 400, "{kind}");
            assert_ne!(kind.title(), "Error", "{kind}");
        }
    }

    const ALL_KINDS: [RejectionKind; 18] = {
        use RejectionKind::*;
        [
            BadRequest,
            MalformedBody,
            MissingCredentials,
            InvalidToken,
            InvalidCredentials,
            InsufficientScope,
            Forbidden,
            NotFound,
            MethodNotAllowed,
            RequestTimeout,
            PayloadTooLarge,
            UnsupportedMediaType,
            ValidationFailed,
            RateLimited,
            LoginLocked,
            Internal,
            Misconfigured,
            ServiceUnavailable,
        ]
    };
}
