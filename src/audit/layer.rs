//! The audit layer inside the request span: request context for events, and `sys_crash`.
//!
//! Internal to [`Shield`](crate::Shield), which builds it from its logging settings: without
//! the Shield's request id, client IP and panic catching it would have little to report.
//! [`RequestAudit`] and its [`ResponseFuture`] are `pub` only because they appear in the
//! Shield service's `Future` type; this module is private, so users cannot name them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use http::{HeaderName, Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use tower_http::trace::{MakeSpan, OnResponse};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use super::event::{EventSinks, SecurityEvent, SecurityEventKind};
use super::pseudonym::Pseudonymizer;
use super::span::{MakeRequestSpan, OnRequestEnd, REQUEST_TARGET};
use crate::client_ip::ClientIp;
use crate::request_id::RequestId;

/// Headers whose values are marked sensitive (`HeaderValue::set_sensitive`, as tower-http's sensitive-headers layers do), so
/// no `Debug` of a request or response and no trace formatter ever prints them:
/// `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie` and `X-Api-Key`
/// (RFC 9110 §11.6.2, §11.7.2; RFC 6265 §4). Add your own API-key headers with
/// [`ShieldBuilder::sensitive_header`](crate::shield::ShieldBuilder::sensitive_header).
pub(crate) const DEFAULT_SENSITIVE_HEADERS: [HeaderName; 5] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
    http::header::SET_COOKIE,
    HeaderName::from_static("x-api-key"),
];

/// The logging settings of a [`Shield`](crate::Shield), shared by its logging layers.
#[derive(Debug, Clone)]
pub(crate) struct LogSettings {
    pub(crate) access_log: bool,
    pub(crate) record_query: bool,
    pub(crate) sensitive_headers: Arc<[HeaderName]>,
    pub(crate) pseudonymizer: Option<Pseudonymizer>,
}

impl LogSettings {
    pub(crate) fn make_span(&self) -> MakeRequestSpan {
        let span = MakeRequestSpan::new()
            .record_query(self.record_query)
            .debug_level(!self.access_log);
        match &self.pseudonymizer {
            Some(p) => span.pseudonymize(p.clone()),
            None => span,
        }
    }
}

/// The message of a caught panic (escaped when logged, at most 200 characters), left in the
/// response extensions by the Shield's panic catcher so that [`RequestAudit`] reports it
/// as a `sys_crash` event with the request's context, then removes it.
#[derive(Debug, Clone)]
pub(crate) struct PanicMessage(pub(crate) String);

/// Layer of [`RequestAudit`]; [`Shield`](crate::Shield) places it outside panic catching.
#[derive(Debug, Clone, Default)]
pub struct RequestAuditLayer {
    pseudonymizer: Option<Pseudonymizer>,
    sensitive: Arc<[HeaderName]>,
    span: Option<(MakeRequestSpan, OnRequestEnd)>,
}

impl RequestAuditLayer {
    /// A layer that reports panics; with `pseudonymizer`, it also leaves the key in the
    /// request extensions for [`SecurityEvent::for_request`] and [`super::record_principal`].
    pub(crate) fn new(pseudonymizer: Option<Pseudonymizer>) -> Self {
        Self {
            pseudonymizer,
            sensitive: DEFAULT_SENSITIVE_HEADERS.to_vec().into(),
            span: None,
        }
    }

    /// Marks these response headers sensitive (instead of [`DEFAULT_SENSITIVE_HEADERS`])
    /// before the request's span sees the response.
    pub(crate) fn sensitive_headers(mut self, names: Arc<[HeaderName]>) -> Self {
        self.sensitive = names;
        self
    }

    /// Also opens the request span with `make` (entered while the inner service is called and
    /// polled, so every event inside carries its fields) and ends it with `on_end` (the access
    /// line). This is what tower-http's `TraceLayer` does, without wrapping the response body:
    /// the body type stays the inner one, so no layer outside has to box it, and no clock is
    /// read when neither the span nor the access line has a subscriber.
    pub(crate) fn with_span(mut self, make: MakeRequestSpan, on_end: OnRequestEnd) -> Self {
        self.span = Some((make, on_end));
        self
    }
}

/// Marks every value of the `names` headers sensitive, in one pass over `headers`.
///
/// tower-http's `SetSensitive*Headers` layers look each name up with `HeaderMap::entry`, which
/// reserves capacity on every call; with five names that was about 1 900 instructions per
/// request in the stack benchmark. Requests and responses carry few headers, so one pass
/// comparing names does the same work for a fraction of it.
pub(crate) fn mark_sensitive(headers: &mut http::HeaderMap, names: &[HeaderName]) {
    for (name, value) in headers.iter_mut() {
        if names.contains(name) {
            value.set_sensitive(true);
        }
    }
}

impl<S> Layer<S> for RequestAuditLayer {
    type Service = RequestAudit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestAudit {
            inner,
            pseudonymizer: self.pseudonymizer.clone(),
            make_span: self.span.as_ref().map(|(make, _)| make.clone()),
            shared: Arc::new(AuditShared {
                sensitive: self.sensitive.clone(),
                on_end: self.span.as_ref().map(|(_, on_end)| *on_end),
            }),
        }
    }
}

/// What every request of one [`RequestAudit`] shares: one reference count per request.
#[derive(Debug)]
struct AuditShared {
    sensitive: Arc<[HeaderName]>,
    on_end: Option<OnRequestEnd>,
}

/// Opens the request span (when configured with
/// [`RequestAuditLayer::with_span`]), puts the pseudonymization key into request extensions,
/// marks sensitive response headers, writes the access line, and emits `sys_crash`, with the
/// request id, client IP, method and route, when the inner panic catcher caught a panic.
#[derive(Debug, Clone)]
pub struct RequestAudit<S> {
    inner: S,
    pseudonymizer: Option<Pseudonymizer>,
    make_span: Option<MakeRequestSpan>,
    shared: Arc<AuditShared>,
}

/// What a `sys_crash` event needs to know about its request, captured cheaply (reference
/// counts, no copies of the request) before the request moves inward.
#[derive(Debug)]
struct CrashContext {
    method: Method,
    uri: Uri,
    request_id: Option<RequestId>,
    client_ip: Option<ClientIp>,
    route: Option<MatchedPath>,
    sinks: Option<EventSinks>,
    pseudonymizer: Option<Pseudonymizer>,
}

impl CrashContext {
    fn event(self) -> SecurityEvent {
        let mut extensions = http::Extensions::new();
        if let Some(id) = self.request_id {
            extensions.insert(id);
        }
        if let Some(ip) = self.client_ip {
            extensions.insert(ip);
        }
        if let Some(route) = self.route {
            extensions.insert(route);
        }
        if let Some(sinks) = self.sinks {
            extensions.insert(sinks);
        }
        if let Some(p) = self.pseudonymizer {
            extensions.insert(p);
        }
        SecurityEvent::for_request(
            SecurityEventKind::SysCrash,
            &self.method,
            &self.uri,
            &extensions,
        )
    }
}

impl<S, B, ResBody> Service<Request<B>> for RequestAudit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(p) = &self.pseudonymizer {
            req.extensions_mut().insert(p.clone());
        }
        let span = match &mut self.make_span {
            Some(make) => make.make_span(&req),
            None => Span::none(),
        };
        // The clock is read only for a span or an access line that someone records.
        let access_line = self.shared.on_end.is_some_and(|e| e.access_log)
            && tracing::enabled!(target: REQUEST_TARGET, tracing::Level::INFO);
        let start = (access_line || !span.is_disabled()).then(Instant::now);
        // A panic is rare; its context is captured only when its event has a listener.
        let extensions = req.extensions();
        let context =
            SecurityEvent::is_wanted(SecurityEventKind::SysCrash, extensions).then(|| {
                Box::new(CrashContext {
                    method: req.method().clone(),
                    uri: req.uri().clone(),
                    request_id: extensions.get::<RequestId>().cloned(),
                    client_ip: extensions.get::<ClientIp>().copied(),
                    route: extensions.get::<MatchedPath>().cloned(),
                    sinks: extensions.get::<EventSinks>().cloned(),
                    pseudonymizer: self.pseudonymizer.clone(),
                })
            });
        let future = if span.is_disabled() {
            self.inner.call(req)
        } else {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture {
            future,
            context,
            shared: self.shared.clone(),
            span,
            start,
        }
    }
}

pin_project! {
    /// Response future of [`RequestAudit`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        // Boxed: outer layers move this future by value on every request.
        context: Option<Box<CrashContext>>,
        shared: Arc<AuditShared>,
        span: Span,
        start: Option<Instant>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let span: &Span = this.span;
        let _entered = (!span.is_disabled()).then(|| span.enter());
        let mut response = ready!(this.future.poll(cx))?;
        mark_sensitive(response.headers_mut(), &this.shared.sensitive);
        if let Some(PanicMessage(message)) = response.extensions_mut().remove::<PanicMessage>() {
            if let Some(context) = this.context.take() {
                context
                    .event()
                    .reason("panic")
                    .field("panic", message)
                    .emit();
            }
        }
        if let Some(on_end) = this.shared.on_end {
            let latency = this.start.map_or(Duration::ZERO, |start| start.elapsed());
            on_end.on_response(&response, latency, span);
        }
        Poll::Ready(Ok(response))
    }
}
