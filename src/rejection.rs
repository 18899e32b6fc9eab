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
use std::sync::Arc;

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
        let body = serde_json::to_vec(&self.problem(request_id))
            .unwrap_or_else(|_| br#"{"type":"about:blank","status":500}"#.to_vec());
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }

    /// Copies the protocol headers onto `response` and records the rejection in its
    /// extensions, so that an outer [`Shield`](crate::Shield) can render it again with the
    /// request id or a custom renderer. Custom renderers should call this.
    pub fn finish<B>(&self, response: &mut http::Response<B>) {
        for (name, value) in &self.inner.headers {
            response.headers_mut().append(name, value.clone());
        }
        response
            .extensions_mut()
            .insert(RenderedRejection(Arc::new(self.clone())));
    }

    pub(crate) fn log(&self) {
        tracing::debug!(
            target: "axum_shield::rejection",
            status = self.status().as_u16(),
            code = self.inner.kind.code(),
            "request rejected"
        );
    }
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
        self.to_response(None)
    }
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
        use RejectionKind::*;
        for kind in [
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
        ] {
            assert!(kind.status().as_u16() >= 400, "{kind}");
            assert_ne!(kind.title(), "Error", "{kind}");
        }
    }
}
