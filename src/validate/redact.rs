//! The response redaction layer: a safety net against excessive data exposure (OWASP API3:2023).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http_body::Body as HttpBody;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;
use serde::de;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::json::{event_parts, is_json_content_type};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::error::ConfigError;
use crate::rejection::{Rejection, RejectionKind};

/// Field names removed by [`RedactFieldsLayer::default`].
const DEFAULT_REDACTED_FIELDS: [&str; 10] = [
    "password",
    "password_hash",
    "passwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "ssn",
];

/// Default largest JSON response the layer buffers (8 MiB).
const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// A layer that removes configured fields, by name and at any depth, from JSON responses.
///
/// Response DTOs are the real defence (see [`crate::validate`]); this layer is the safety
/// net for the day someone returns the database row. Names match ignoring ASCII case, `_`
/// and `-`, so `password_hash` also removes `passwordHash` and `PASSWORD-HASH`. When it
/// removes anything it emits a `data_exposure_blocked` security event naming the fields
/// (never their values).
///
/// Only responses with a JSON content type (`application/json`, `*+json`) and no
/// `Content-Encoding` are read; any other response passes through untouched, its body never
/// polled by this layer. A JSON response that cannot be checked is replaced by a 500 problem
/// (fail closed) rather than passed on unchecked: one larger than the buffer limit, and one
/// that does not parse — invalid JSON, or JSON nested deeper than serde_json's 128 levels;
/// the latter also emits a `data_exposure_blocked` event (reason `response_unparseable`).
/// An empty (or all-whitespace) body passes: it holds nothing to remove.
///
/// [`RedactFieldsLayer::default()`] removes `password`, `password_hash`, `passwd`, `secret`,
/// `client_secret`, `token`, `access_token`, `refresh_token`, `api_key` and `ssn`, and
/// buffers JSON responses up to 8 MiB; [`RedactFieldsLayer::builder`] changes either:
///
/// ```
/// use axum::{routing::get, Json, Router};
/// use axum_shield::validate::redact::RedactFieldsLayer;
///
/// # fn main() -> Result<(), axum_shield::ConfigError> {
/// let redact = RedactFieldsLayer::builder().fields(["password_hash", "ssn"]).build()?;
/// let app: Router = Router::new()
///     .route("/me", get(|| async { Json(serde_json::json!({"id": 1, "password_hash": "x"})) }))
///     .layer(redact);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedactFieldsLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Normalised names.
    names: Vec<String>,
    max_bytes: usize,
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn matches(key: &str, name: &str) -> bool {
    let mut normalized = key
        .bytes()
        .filter(|b| *b != b'_' && *b != b'-')
        .map(|b| b.to_ascii_lowercase());
    let mut expected = name.bytes();
    loop {
        match (normalized.next(), expected.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

impl Default for RedactFieldsLayer {
    /// Removes the default names (see the type docs), buffering up to 8 MiB.
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                names: DEFAULT_REDACTED_FIELDS
                    .iter()
                    .map(|n| normalize(n))
                    .collect(),
                max_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            }),
        }
    }
}

impl RedactFieldsLayer {
    /// A builder starting from the defaults: the default names, buffering up to 8 MiB.
    pub fn builder() -> RedactFieldsBuilder {
        RedactFieldsBuilder {
            names: DEFAULT_REDACTED_FIELDS
                .iter()
                .map(|n| (*n).to_owned())
                .collect(),
            max_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Removes the configured fields from `value` at any depth, returning the removed
    /// names (as they appeared), in document order.
    ///
    /// ```
    /// use axum_shield::validate::redact::RedactFieldsLayer;
    ///
    /// let layer = RedactFieldsLayer::default();
    /// let mut v = serde_json::json!({"user": {"name": "a", "passwordHash": "x"}});
    /// assert_eq!(layer.redact(&mut v), ["passwordHash"]);
    /// assert_eq!(v, serde_json::json!({"user": {"name": "a"}}));
    /// ```
    pub fn redact(&self, value: &mut Value) -> Vec<String> {
        let mut removed = Vec::new();
        redact_value(value, &self.shared.names, &mut removed);
        removed
    }
}

/// Builder of a [`RedactFieldsLayer`]: every setter is infallible, [`build`](Self::build)
/// checks the settings once.
#[derive(Debug, Clone)]
#[must_use = "call `.build()?` to get the layer"]
pub struct RedactFieldsBuilder {
    names: Vec<String>,
    max_bytes: usize,
}

impl RedactFieldsBuilder {
    /// Removes exactly these field names, instead of the defaults.
    pub fn fields<I, T>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.names = names.into_iter().map(|n| n.as_ref().to_owned()).collect();
        self
    }

    /// Sets the largest JSON response body buffered (default 8 MiB).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the list of names is empty, a name is empty once `_` and `-`
    /// are ignored, or the response size is 0.
    pub fn build(self) -> Result<RedactFieldsLayer, ConfigError> {
        let mut normalized = Vec::new();
        for name in &self.names {
            let name = normalize(name);
            if name.is_empty() {
                return Err(ConfigError::new(
                    "redact_fields",
                    "a field name is empty",
                    "list field names such as \"password_hash\"",
                ));
            }
            if !normalized.contains(&name) {
                normalized.push(name);
            }
        }
        if normalized.is_empty() {
            return Err(ConfigError::new(
                "redact_fields",
                "no field names were given",
                "list at least one field name, or use RedactFieldsLayer::default()",
            ));
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::new(
                "max_response_bytes",
                "0 would refuse every JSON response",
                "use a positive size such as 8388608",
            ));
        }
        Ok(RedactFieldsLayer {
            shared: Arc::new(Shared {
                names: normalized,
                max_bytes: self.max_bytes,
            }),
        })
    }
}

fn redact_value(value: &mut Value, names: &[String], removed: &mut Vec<String>) {
    // Iterative, so a deeply nested response cannot overflow the stack.
    let mut stack: Vec<&mut Value> = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                map.retain(|key, _| {
                    let hit = names.iter().any(|name| matches(key, name));
                    if hit {
                        removed.push(key.clone());
                    }
                    !hit
                });
                stack.extend(map.values_mut());
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}

impl<S> Layer<S> for RedactFieldsLayer {
    type Service = RedactFields<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RedactFields {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`RedactFieldsLayer`].
#[derive(Clone)]
pub struct RedactFields<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for RedactFields<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactFields")
            .field("inner", &self.inner)
            .field("names", &self.shared.names)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RedactFields<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let request = event_parts(req.method(), req.uri(), req.extensions());
        future::ResponseFuture {
            state: RedactState::Inner {
                future: self.inner.call(req),
                shared: Some(self.shared.clone()),
                request: Some(request),
            },
        }
    }
}

/// The response future of [`RedactFields`].
pub mod future {
    use std::fmt;

    use pin_project_lite::pin_project;

    pin_project! {
        /// Response future of [`RedactFields`](super::RedactFields): the inner response, its
        /// JSON body with the configured fields removed.
        pub struct ResponseFuture<F> {
            #[pin]
            pub(super) state: super::RedactState<F>,
        }
    }

    impl<F> fmt::Debug for ResponseFuture<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ResponseFuture").finish_non_exhaustive()
        }
    }
}

pin_project! {
    #[project = RedactProj]
    enum RedactState<F> {
        Inner {
            #[pin]
            future: F,
            shared: Option<Arc<Shared>>,
            request: Option<Parts>,
        },
        Collecting {
            #[pin]
            collect: Collect<Limited<Body>>,
            response: Option<http::response::Parts>,
            shared: Arc<Shared>,
            request: Option<Parts>,
        },
    }
}

impl<F, B, E> Future for future::ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                RedactProj::Inner {
                    future,
                    shared,
                    request,
                } => {
                    let response = ready!(future.poll(cx))?;
                    let is_json = is_json_content_type(response.headers())
                        && !response.headers().contains_key(CONTENT_ENCODING);
                    if !is_json {
                        return Poll::Ready(Ok(response.map(Body::new)));
                    }
                    let (Some(shared), request) = (shared.take(), request.take()) else {
                        return Poll::Ready(Ok(response.map(Body::new)));
                    };
                    let (parts, body) = response.into_parts();
                    let collect = Limited::new(Body::new(body), shared.max_bytes).collect();
                    self.as_mut().project().state.set(RedactState::Collecting {
                        collect,
                        response: Some(parts),
                        shared,
                        request,
                    });
                }
                RedactProj::Collecting {
                    collect,
                    response,
                    shared,
                    request,
                } => {
                    let collected = ready!(collect.poll(cx));
                    let Some(mut parts) = response.take() else {
                        return Poll::Ready(Ok(internal()));
                    };
                    let bytes = match collected {
                        Ok(collected) => collected.to_bytes(),
                        Err(_) => {
                            tracing::error!(
                                target: "axum_shield::validate",
                                limit = shared.max_bytes,
                                "JSON response too large or unreadable for redaction; replaced by 500"
                            );
                            return Poll::Ready(Ok(internal()));
                        }
                    };
                    // An empty body (a 204, an answer to HEAD) has nothing to leak.
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        return Poll::Ready(Ok(Response::from_parts(parts, Body::from(bytes))));
                    }
                    // A cheap allocation-free pass first: most responses hold no such key.
                    // A body declared JSON that cannot be parsed (invalid, or nested beyond
                    // serde_json's 128 levels) cannot be checked: fail closed.
                    match has_redacted_key(&bytes, &shared.names) {
                        Ok(false) => {
                            return Poll::Ready(Ok(Response::from_parts(parts, Body::from(bytes))));
                        }
                        Ok(true) => {}
                        Err(_) => return Poll::Ready(Ok(unparseable(request.take()))),
                    }
                    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
                        return Poll::Ready(Ok(unparseable(request.take())));
                    };
                    let mut removed = Vec::new();
                    redact_value(&mut value, &shared.names, &mut removed);
                    if removed.is_empty() {
                        return Poll::Ready(Ok(Response::from_parts(parts, Body::from(bytes))));
                    }
                    removed.sort();
                    removed.dedup();
                    if let Some(request) = request.take() {
                        SecurityEvent::for_parts(SecurityEventKind::DataExposureBlocked, &request)
                            .reason("response_field_removed")
                            .field("fields", removed.join(","))
                            .emit();
                    }
                    let body = serde_json::to_vec(&value).unwrap_or_default();
                    parts.headers.remove(CONTENT_LENGTH);
                    return Poll::Ready(Ok(Response::from_parts(parts, Body::from(body))));
                }
            }
        }
    }
}

/// Whether any object key in the JSON document `bytes` matches `names`, without building
/// the document. Not JSON (or nested beyond serde_json's 128 levels) is an error.
fn has_redacted_key(bytes: &[u8], names: &[String]) -> Result<bool, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = de::DeserializeSeed::deserialize(Scan { names }, &mut de)?;
    de.end()?;
    Ok(found)
}

#[derive(Clone, Copy)]
struct Scan<'n> {
    names: &'n [String],
}

impl<'de> de::DeserializeSeed<'de> for Scan<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for Scan<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(hit) = seq.next_element_seed(self)? {
            found |= hit;
        }
        Ok(found)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(hit) = map.next_key_seed(KeyMatch { names: self.names })? {
            found |= hit;
            found |= map.next_value_seed(self)?;
        }
        Ok(found)
    }
}

struct KeyMatch<'n> {
    names: &'n [String],
}

impl<'de> de::DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> de::Visitor<'de> for KeyMatch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(self.names.iter().any(|name| matches(key, name)))
    }
}

fn internal() -> Response {
    Rejection::new(RejectionKind::Internal).into_response()
}

/// The answer to a JSON response that cannot be parsed: the 500 problem, and a
/// `data_exposure_blocked` event (the body is never logged).
fn unparseable(request: Option<Parts>) -> Response {
    tracing::error!(
        target: "axum_shield::validate",
        "JSON response could not be parsed for redaction (invalid, or nested deeper than 128 levels); replaced by 500"
    );
    if let Some(request) = request {
        SecurityEvent::for_parts(SecurityEventKind::DataExposureBlocked, &request)
            .reason("response_unparseable")
            .emit();
    }
    internal()
}
