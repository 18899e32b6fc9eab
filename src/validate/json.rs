//! The guarded JSON extractor and the [`JsonGuardLayer`] that configures it and enforces the
//! content type.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use axum::RequestExt;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::request::Parts;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::json;
use tower_layer::Layer;
use tower_service::Service;

use super::guard::{self, JsonError, JsonLimits};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::error::ConfigError;
use crate::future::ResponseFuture;
use crate::rejection::{Rejection, RejectionKind};

/// Whether `headers` declare a JSON body: `application/json` or any `application/*+json`
/// (RFC 6839 §3.1), parameters such as `charset` ignored.
pub(crate) fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || (subtype.len() > 5
                && subtype.is_char_boundary(subtype.len() - 5)
                && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json")))
}

/// A JSON body deserialized through the [JSON guard](super::JsonGuardLayer) in one pass.
///
/// Like `axum::Json`, but the body must be declared JSON (else 415), fit the body limit (else
/// 413), be well-formed (else 400), respect the [`JsonLimits`] installed by a
/// [`JsonGuardLayer`] on the route (or the defaults) (else 400) and fit `T` (else 422, with
/// the field path and rule, never the submitted value or serde's message). Every refusal is a
/// problem+json [`Rejection`] and emits an `input_validation_fail` security event.
///
/// ```
/// use axum::{routing::post, Router};
/// use axum_shield::validate::GuardedJson;
///
/// async fn ingest(GuardedJson(doc): GuardedJson<serde_json::Value>) -> String {
///     doc.to_string()
/// }
/// let app: Router = Router::new().route("/ingest", post(ingest));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedJson<T>(pub T);

impl<T> std::ops::Deref for GuardedJson<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for GuardedJson<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T, S> FromRequest<S> for GuardedJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Rejection> {
        let (value, _parts) = extract_json(req).await?;
        Ok(Self(value))
    }
}

/// Reads and deserializes a guarded JSON body, returning the request parts for later events.
pub(crate) async fn extract_json<T: DeserializeOwned>(
    req: Request,
) -> Result<(T, Parts), Rejection> {
    if !is_json_content_type(req.headers()) {
        let (parts, _) = req.into_parts();
        return Err(refuse(
            &parts,
            Rejection::new(RejectionKind::UnsupportedMediaType)
                .with_detail("The request body must be JSON (Content-Type: application/json)."),
            "unsupported_media_type",
            "",
        ));
    }
    let (parts, body) = req.with_limited_body().into_parts();
    let bytes = read_body(&parts, body).await?;
    let limits = parts
        .extensions
        .get::<JsonLimits>()
        .copied()
        .unwrap_or_default();
    match guard::from_slice::<T>(&bytes, &limits) {
        Ok(value) => Ok((value, parts)),
        Err(err) => Err(json_rejection(&parts, &err)),
    }
}

/// Buffers a (limited) body, mapping a limit overrun to 413 and other failures to 400.
pub(crate) async fn read_body(parts: &Parts, body: Body) -> Result<Bytes, Rejection> {
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            let too_large = is_length_limit(&err);
            let (kind, reason) = if too_large {
                (RejectionKind::PayloadTooLarge, "payload_too_large")
            } else {
                (RejectionKind::BadRequest, "body_unreadable")
            };
            Err(refuse(parts, Rejection::new(kind), reason, ""))
        }
    }
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Turns a guard or deserialization failure into its rejection and emits the event.
pub(crate) fn json_rejection(parts: &Parts, err: &JsonError) -> Rejection {
    match err {
        JsonError::Syntax => refuse(
            parts,
            Rejection::new(RejectionKind::MalformedBody)
                .with_detail("The request body is not well-formed JSON."),
            "malformed_json",
            "",
        ),
        JsonError::Guard { violation, path } => refuse(
            parts,
            Rejection::new(RejectionKind::MalformedBody)
                .with_detail(violation.message())
                .with_extension(
                    "errors",
                    json!([{ "field": path, "rule": violation.rule(), "message": violation.message() }]),
                ),
            violation.rule(),
            path,
        ),
        JsonError::Data { path, rule } => refuse(
            parts,
            Rejection::new(RejectionKind::ValidationFailed)
                .with_detail("The request body does not match the expected shape.")
                .with_extension(
                    "errors",
                    json!([{ "field": path, "rule": rule, "message": data_message(rule) }]),
                ),
            rule,
            path,
        ),
    }
}

fn data_message(rule: &str) -> &'static str {
    match rule {
        "required" => "This field is required.",
        "unknown_field" => "This field is not allowed.",
        "type" => "This value has the wrong type.",
        "length" => "This value has the wrong number of elements.",
        "variant" => "This value is not one of the allowed choices.",
        "duplicate_key" => "This field appears more than once.",
        _ => "This value is invalid.",
    }
}

/// Emits one `input_validation_fail` event (rule and field names only) and returns `rejection`.
pub(crate) fn refuse(
    parts: &Parts,
    rejection: Rejection,
    reason: &'static str,
    fields: &str,
) -> Rejection {
    let mut event = SecurityEvent::for_parts(SecurityEventKind::InputValidationFail, parts)
        .reason(reason)
        .field("status", rejection.status().as_str());
    if !fields.is_empty() {
        event = event.field("fields", fields);
    }
    event.emit();
    rejection
}

/// Configuration of a [`JsonGuardLayer`], for loading from a file or the environment; turn it
/// into a layer with [`JsonGuardLayer::from_config`] and [`build`](JsonGuardBuilder::build).
///
/// ```
/// use axum_shield::validate::{JsonGuardConfig, JsonGuardLayer};
///
/// # fn main() -> Result<(), axum_shield::ConfigError> {
/// let config: JsonGuardConfig =
///     toml::from_str("require_json = true\n[limits]\nmax_depth = 16").unwrap();
/// assert_eq!(config.limits.max_depth, 16);
/// let guard = JsonGuardLayer::from_config(config).build()?;
/// # let _ = guard;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct JsonGuardConfig {
    /// The limits the guarded extractors enforce on these routes.
    pub limits: JsonLimits,
    /// Refuse (415) requests that carry a body without a JSON content type, before the
    /// handler runs. Default `true`.
    #[serde(default = "yes")]
    pub require_json: bool,
}

fn yes() -> bool {
    true
}

/// A layer that puts the JSON guard in front of handlers.
///
/// It refuses requests whose body is not declared JSON with 415 (RFC 9110 §15.5.16) before
/// any handler work, and installs its [`JsonLimits`] in the request extensions, where
/// [`GuardedJson`] and `Valid<Json<T>>` read them and enforce them while deserializing, in
/// one pass. Requests without a body (no `Content-Length` or a zero one, no
/// `Transfer-Encoding`) pass through.
///
/// [`JsonGuardLayer::default()`] has the default limits (see [`JsonLimits`]); change them
/// with [`JsonGuardLayer::builder`]:
///
/// ```
/// use axum::{routing::post, Router};
/// use axum_shield::validate::{GuardedJson, JsonGuardLayer};
///
/// # fn main() -> Result<(), axum_shield::ConfigError> {
/// let guard = JsonGuardLayer::builder().max_depth(8).reject_control_chars(true).build()?;
/// let app: Router = Router::new()
///     .route("/notes", post(|GuardedJson(v): GuardedJson<serde_json::Value>| async move { v.to_string() }))
///     .layer(guard);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JsonGuardLayer {
    config: Arc<JsonGuardConfig>,
}

impl Default for JsonGuardLayer {
    /// The default limits, and a JSON content type required.
    fn default() -> Self {
        Self {
            config: Arc::new(JsonGuardConfig {
                limits: JsonLimits::default(),
                require_json: true,
            }),
        }
    }
}

impl JsonGuardLayer {
    /// A builder starting from the default limits, with a JSON content type required.
    pub fn builder() -> JsonGuardBuilder {
        Self::from_config(JsonGuardConfig {
            limits: JsonLimits::default(),
            require_json: true,
        })
    }

    /// A builder starting from a loaded configuration; [`build`](JsonGuardBuilder::build)
    /// checks it.
    pub fn from_config(config: JsonGuardConfig) -> JsonGuardBuilder {
        JsonGuardBuilder { config }
    }
}

/// Builder of a [`JsonGuardLayer`]: every setter is infallible, [`build`](Self::build)
/// checks the limits once.
#[derive(Debug, Clone, Copy)]
#[must_use = "call `.build()?` to get the layer"]
pub struct JsonGuardBuilder {
    config: JsonGuardConfig,
}

impl JsonGuardBuilder {
    /// Deepest nesting of objects and arrays allowed (the top-level container is depth 1),
    /// 1 to 128 (default 32).
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.config.limits.max_depth = depth;
        self
    }

    /// Longest string or object key allowed, in bytes of UTF-8 after unescaping
    /// (default 64 KiB).
    pub fn max_string_len(mut self, bytes: usize) -> Self {
        self.config.limits.max_string_len = bytes;
        self
    }

    /// Most keys allowed in one object (default 1 000).
    pub fn max_object_keys(mut self, keys: usize) -> Self {
        self.config.limits.max_object_keys = keys;
        self
    }

    /// Most elements allowed in one array (default 10 000).
    pub fn max_array_len(mut self, elements: usize) -> Self {
        self.config.limits.max_array_len = elements;
        self
    }

    /// Whether objects that repeat a key are refused (default `true`; RFC 8259 §4 leaves
    /// their meaning undefined).
    pub fn reject_duplicate_keys(mut self, reject: bool) -> Self {
        self.config.limits.reject_duplicate_keys = reject;
        self
    }

    /// Whether NUL and other control characters are refused in strings and keys
    /// (default `false`; tab, LF and CR are always allowed).
    pub fn reject_control_chars(mut self, reject: bool) -> Self {
        self.config.limits.reject_control_chars = reject;
        self
    }

    /// Whether requests that carry a body without a JSON content type are refused with 415
    /// before the handler runs (default `true`).
    pub fn require_json(mut self, require: bool) -> Self {
        self.config.require_json = require;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_depth` is 0 or above 128, or when a length or count
    /// limit is 0.
    pub fn build(self) -> Result<JsonGuardLayer, ConfigError> {
        let limits = self.config.limits.validated()?;
        Ok(JsonGuardLayer {
            config: Arc::new(JsonGuardConfig {
                limits,
                ..self.config
            }),
        })
    }
}

impl<S> Layer<S> for JsonGuardLayer {
    type Service = JsonGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonGuard {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`JsonGuardLayer`].
#[derive(Clone)]
pub struct JsonGuard<S> {
    inner: S,
    config: Arc<JsonGuardConfig>,
}

impl<S: fmt::Debug> fmt::Debug for JsonGuard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonGuard")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

fn has_body<B>(req: &http::Request<B>) -> bool {
    if req.headers().contains_key(TRANSFER_ENCODING) {
        return true;
    }
    match req.headers().get(CONTENT_LENGTH) {
        Some(len) => len.as_bytes() != b"0",
        None => false,
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for JsonGuard<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        if self.config.require_json && has_body(&req) && !is_json_content_type(req.headers()) {
            SecurityEvent::for_request(
                SecurityEventKind::InputValidationFail,
                req.method(),
                req.uri(),
                req.extensions(),
            )
            .reason("unsupported_media_type")
            .emit();
            let rejection = Rejection::new(RejectionKind::UnsupportedMediaType)
                .with_detail("The request body must be JSON (Content-Type: application/json).");
            return ResponseFuture::refused(rejection.into_response());
        }
        req.extensions_mut().insert(self.config.limits);
        ResponseFuture::run(self.inner.call(req))
    }
}

/// A copy of what a security event needs from a request that will be consumed: method, URI
/// and the event context of its extensions ([`SecurityEvent::context_of`]: request id, client
/// IP, principal, matched route, sinks and pseudonymization key).
pub(crate) fn event_parts(method: &http::Method, uri: &http::Uri, ext: &http::Extensions) -> Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method.clone();
    parts.uri = uri.clone();
    parts.extensions = SecurityEvent::context_of(ext);
    parts
}
