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

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use serde::Serialize;

/// The media type of RFC 9457 problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

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
    /// 429: a rate limit or login guard refused the request.
    RateLimited,
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
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
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

    /// The RFC 9457 problem document for this rejection.
    pub fn problem<'a>(&'a self, request_id: Option<&'a str>) -> Problem<'a> {
        Problem {
            type_uri: "about:blank",
            title: self.inner.kind.title(),
            status: self.status().as_u16(),
            detail: &self.inner.detail,
            code: self.inner.kind.code(),
            request_id,
            extensions: self.inner.extensions.as_ref(),
        }
    }

    /// Renders the default problem+json response, with the request id when known.
    pub fn to_response(&self, request_id: Option<&str>) -> Response {
        let mut response = self.to_response_without_headers(request_id);
        self.finish(&mut response);
        response
    }

    /// The problem+json response without the protocol headers.
    pub(crate) fn to_response_without_headers(&self, request_id: Option<&str>) -> Response {
        problem_response(self.inner.kind, self.problem_json(request_id))
    }

    /// Copies the protocol headers onto `response` and records the rejection in its
    /// extensions, so that an outer [`Shield`](crate::Shield) can render it again with the
    /// request id or a custom renderer. Custom renderers should call this.
    pub fn finish<B>(&self, response: &mut http::Response<B>) {
        self.clone().finish_owned(response);
    }

    /// Appends the protocol headers to `response`.
    fn append_headers<B>(&self, response: &mut http::Response<B>) {
        for (name, value) in &self.inner.headers {
            response.headers_mut().append(name, value.clone());
        }
    }

    /// [`problem`](Self::problem) serialized, member by member into one buffer (the same
    /// bytes `serde_json` writes for [`Problem`], without its map machinery): refusals are
    /// rendered on every flooded request.
    fn problem_json(&self, request_id: Option<&str>) -> Vec<u8> {
        let inner = &*self.inner;
        problem_body(
            inner.kind,
            &inner.detail,
            inner.extensions.as_ref(),
            request_id,
        )
    }

    /// Renders this rejection for the request whose `extensions` are given, the way an outer
    /// [`Shield`](crate::Shield) would: with the request id in the body and through the
    /// Shield's [`RenderRejection`] hook when it has one. The Shield then passes the response
    /// through instead of rendering it a second time, so layers that can see the request
    /// should prefer this to [`into_response`](IntoResponse::into_response).
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
        self.respond(extensions, [])
    }

    /// [`into_response_for`](Self::into_response_for) with protocol headers added straight to
    /// the response rather than collected in the rejection first (the rate limiter's 429).
    pub(crate) fn respond<I>(self, extensions: &http::Extensions, headers: I) -> Response
    where
        I: IntoIterator<Item = (HeaderName, HeaderValue)>,
    {
        self.log();
        let id = crate::request_id::of(extensions);
        let custom = extensions.get::<RenderRejection>();
        let mut response = match custom {
            Some(render) => render.render_body(&self, id),
            None => self.to_response_without_headers(id),
        };
        let response_headers = response.headers_mut();
        for (name, value) in headers {
            response_headers.append(name, value);
        }
        // Server errors keep the marker so that `ScrubErrors` knows the body is a rendered
        // rejection. With a custom renderer the Shield renders again from the marker (same
        // output): only problem+json without a marker passes through it untouched.
        if custom.is_some() || self.status().is_server_error() {
            self.finish_owned(&mut response);
        } else {
            self.append_headers(&mut response);
        }
        response
    }

    /// [`finish`](Self::finish) without the clone, for a rejection rendering itself.
    fn finish_owned<B>(self, response: &mut http::Response<B>) {
        self.append_headers(response);
        response
            .extensions_mut()
            .insert(RenderedRejection(Arc::new(self)));
    }

    pub(crate) fn log(&self) {
        log_rejection(self.inner.kind);
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

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.log();
        let mut response = self.to_response_without_headers(None);
        self.finish_owned(&mut response);
        response
    }
}

fn log_rejection(kind: RejectionKind) {
    tracing::debug!(
        target: "axum_shield::rejection",
        status = kind.status().as_u16(),
        code = kind.code(),
        "request rejected"
    );
}

/// `Rejection::new(kind).respond(extensions, headers)` without building the `Rejection`:
/// the same response for the default detail, for refusal paths that run on every request of a
/// flood (the rate limiter's 429). Server errors and custom renderers take the full path.
pub(crate) fn refuse<I>(kind: RejectionKind, extensions: &http::Extensions, headers: I) -> Response
where
    I: IntoIterator<Item = (HeaderName, HeaderValue)>,
{
    if kind.status().is_server_error() || extensions.get::<RenderRejection>().is_some() {
        return Rejection::new(kind).respond(extensions, headers);
    }
    log_rejection(kind);
    let id = crate::request_id::of(extensions);
    let body = match id.is_none().then(|| default_problem_body(kind)).flatten() {
        // Without a request id the body depends on the kind alone: rendered once.
        Some(kept) => Body::from(bytes::Bytes::from_static(kept)),
        None => Body::from(problem_body(kind, kind.default_detail(), None, id)),
    };
    let mut response = problem_response(kind, body);
    let response_headers = response.headers_mut();
    for (name, value) in headers {
        response_headers.append(name, value);
    }
    response
}

/// The problem+json body of `kind` with its default detail and no request id, rendered on
/// first use and kept for the life of the process (one per kind).
fn default_problem_body(kind: RejectionKind) -> Option<&'static [u8]> {
    const KINDS: usize = RejectionKind::ServiceUnavailable as usize + 1;
    static BODIES: [OnceLock<Box<[u8]>>; KINDS] = [const { OnceLock::new() }; KINDS];
    let kept = BODIES
        .get(kind as usize)?
        .get_or_init(|| problem_body(kind, kind.default_detail(), None, None).into_boxed_slice());
    Some(kept)
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

/// The problem+json body of a rejection: the same bytes `serde_json` writes for [`Problem`].
fn problem_body(
    kind: RejectionKind,
    detail: &str,
    members: Option<&serde_json::Map<String, serde_json::Value>>,
    request_id: Option<&str>,
) -> Vec<u8> {
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

/// Marker left in a response's extensions by a rendered [`Rejection`].
#[derive(Debug, Clone)]
pub(crate) struct RenderedRejection(pub(crate) Arc<Rejection>);

/// An RFC 9457 problem document, borrowed from a [`Rejection`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Problem<'a> {
    /// `type`: `about:blank`, since the `code` member identifies the kind.
    #[serde(rename = "type")]
    pub type_uri: &'a str,
    /// `title`: the HTTP status phrase.
    pub title: &'a str,
    /// `status`: the HTTP status code.
    pub status: u16,
    /// `detail`: a safe, human-readable explanation.
    pub detail: &'a str,
    /// `code`: a stable machine-readable identifier (see [`RejectionKind::code`]).
    pub code: &'a str,
    /// `request_id`: the id echoed in the `x-request-id` header, to quote to support.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    /// Extension members such as `errors`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// A hook that renders rejections in an API's own error format.
///
/// It receives the rejection and the request id (when the request went through
/// [`Shield`](crate::Shield)) and returns the response. The rejection's protocol headers are
/// added afterwards, so the hook only decides status and body.
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

    /// Renders `rejection` into a response, then adds its protocol headers.
    pub fn render(&self, rejection: &Rejection, request_id: Option<&str>) -> Response {
        let mut response = (self.0)(rejection, request_id);
        rejection.finish(&mut response);
        response
    }

    pub(crate) fn render_body(&self, rejection: &Rejection, request_id: Option<&str>) -> Response {
        (self.0)(rejection, request_id)
    }
}

impl fmt::Debug for RenderRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RenderRejection(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::WWW_AUTHENTICATE;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn renders_problem_json_with_headers_and_request_id() {
        let rejection = Rejection::new(RejectionKind::InvalidToken).with_header(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        let response = rejection.to_response(Some("abc"));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        assert!(response.extensions().get::<RenderedRejection>().is_some());
        let body = body_json(response).await;
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Unauthorized");
        assert_eq!(body["status"], 401);
        assert_eq!(body["code"], "invalid_token");
        assert_eq!(body["request_id"], "abc");
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

    /// The lean refusal path answers exactly what the full one does.
    #[tokio::test]
    async fn refuse_matches_respond() {
        let mut with_id = http::Extensions::new();
        with_id.insert(crate::request_id::RequestId::new(HeaderValue::from_static(
            "abc-1",
        )));
        for extensions in [http::Extensions::new(), with_id] {
            // Twice, so that the bodies kept on the first call are checked too.
            for kind in ALL_KINDS.into_iter().chain(ALL_KINDS) {
                let headers = || [(http::header::RETRY_AFTER, HeaderValue::from_static("7"))];
                let lean = refuse(kind, &extensions, headers());
                let full = Rejection::new(kind).respond(&extensions, headers());
                assert_eq!(lean.status(), full.status());
                assert_eq!(lean.headers(), full.headers());
                assert_eq!(body_json(lean).await, body_json(full).await);
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
                let expected = serde_json::to_vec(&rejection.problem(id)).unwrap();
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
        let body = body_json(rejection.to_response(None)).await;
        assert_eq!(body["status"], 422);
        assert_eq!(body["errors"][0]["field"], "email");
        assert!(body.get("request_id").is_none());
    }

    #[test]
    fn every_kind_has_a_title_and_an_error_status() {
        for kind in ALL_KINDS {
            assert!(kind.status().as_u16() >= 400, "{kind}");
            assert_ne!(kind.title(), "Error", "{kind}");
        }
    }

    const ALL_KINDS: [RejectionKind; 17] = {
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
            Internal,
            Misconfigured,
            ServiceUnavailable,
        ]
    };
}
