//! The service a [`Shield`] builds: the stack of the module docs, outermost first.
//!
//! Every type here is `pub` only because it is part of the [`Shield`]'s service type
//! (`<Shield as Layer<S>>::Service`); this module is private, so none can be named outside
//! the crate.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use pin_project_lite::pin_project;
use tower::util::{option_layer, Either};
use tower_http::cors::{Cors, CorsLayer};
use tower_http::limit::{RequestBodyLimit, RequestBodyLimitLayer};
use tower_layer::Layer;
use tower_service::Service;

use super::catch_panic::CatchPanic;
use super::timeout::RequestTimeout;
use super::{Shield, AXUM_DEFAULT_BODY_LIMIT};
use crate::audit::{EventSinks, OnRequestEnd, RequestAuditLayer};
use crate::client_ip::{missing_connect_info, ClientIp, ClientIpResolver, ForwardedProto};
use crate::headers::{HttpsRedirect, SecurityHeadersLayer};
use crate::rate_limit::RateLimitLayer;
use crate::rejection::{self, Rejection, RejectionKind, RenderRejection, PROBLEM_JSON};
use crate::request_id::{self, RequestId, REQUEST_ID_HEADER};

type Limited<S> = Either<<RateLimitLayer as Layer<S>>::Service, S>;
type AxumLimit<S> = Either<<DefaultBodyLimit as Layer<Limited<S>>>::Service, Limited<S>>;
type Limits<S> = RequestTimeout<RequestBodyLimit<AxumLimit<S>>>;
type WithCors<S> = Either<Cors<Limits<S>>, Limits<S>>;
type WithRedirect<S> = HttpsRedirect<WithCors<S>>;
/// Sensitive request headers are marked by [`Core`] before the request span opens;
/// sensitive response headers by the audit layer before its access line sees the response.
type Audited<S> = <RequestAuditLayer as Layer<CatchPanic<WithRedirect<S>>>>::Service;
type Stack<S> = Core<<SecurityHeadersLayer as Layer<Audited<S>>>::Service>;

impl<S> Layer<S> for Shield {
    type Service = Shielded<S>;

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
        let inner = option_layer::<CorsLayer>(self.cors.clone()).layer(inner);
        let inner = self.https_redirect.layer(inner);
        let inner = CatchPanic { inner };
        let inner = RequestAuditLayer::new(self.log.pseudonymizer.clone())
            .sensitive_headers(self.log.sensitive_headers.clone())
            .with_span(self.log.make_span(), OnRequestEnd::new(self.log.access_log))
            .layer(inner);
        let inner = self.headers.layer(inner);
        Shielded {
            inner: Core {
                inner,
                shared: self.core.clone(),
            },
        }
    }
}

/// The service of [`Shield`].
#[derive(Clone)]
pub struct Shielded<S> {
    inner: Stack<S>,
}

impl<S> fmt::Debug for Shielded<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shielded").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for Shielded<S>
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

/// What every request shares: built once by [`ShieldBuilder::build`](super::ShieldBuilder::build).
pub(super) struct CoreShared {
    pub(super) resolver: ClientIpResolver,
    pub(super) render: Option<RenderRejection>,
    pub(super) sinks: EventSinks,
    /// Request headers marked sensitive before the request span sees the request.
    pub(super) sensitive_headers: Arc<[http::HeaderName]>,
}

/// The outermost service of [`Shield`]: request id, client IP, rejection rendering.
#[derive(Clone)]
pub struct Core<S> {
    inner: S,
    shared: Arc<CoreShared>,
}

impl<S: fmt::Debug> fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("inner", &self.inner)
            .field("client_ip", &self.shared.resolver)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Core<S>
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
    /// Response future of [`Core`].
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
