//! The 5xx scrubber: internal error bodies never reach clients.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::RETRY_AFTER;
use http_body::Body as HttpBody;
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::{Rejection, RejectionKind, RenderedRejection};
use crate::request_id::RequestId;

/// A layer that replaces the body of every 5xx response a handler produced with a generic
/// RFC 9457 problem carrying the request id, so stack traces, SQL errors and file paths never
/// reach the client (OWASP API8:2023, CWE-209).
///
/// Responses that already are a [`Rejection`] of this crate pass unchanged. The inner body is
/// dropped unread; only `Retry-After` (useful on 503) is kept from the inner headers. The
/// status class is kept: 503 stays 503, every other 5xx becomes 500.
///
/// ```
/// use axum::{http::StatusCode, routing::get, Router};
/// use axum_shield::validate::scrub::ScrubServerErrorsLayer;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db password wrong at db.rs:42") }))
///     .layer(ScrubServerErrorsLayer::new());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubServerErrorsLayer {
    _priv: (),
}

impl ScrubServerErrorsLayer {
    /// The scrubber.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for ScrubServerErrorsLayer {
    type Service = ScrubServerErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ScrubServerErrors { inner }
    }
}

/// The service of [`ScrubServerErrorsLayer`].
#[derive(Debug, Clone)]
pub struct ScrubServerErrors<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ScrubServerErrors<S>
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
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|id| id.header_value().clone());
        future::ResponseFuture {
            future: self.inner.call(req),
            request_id,
        }
    }
}

/// The response future of [`ScrubServerErrors`].
pub mod future {
    use std::fmt;

    use http::HeaderValue;
    use pin_project_lite::pin_project;

    pin_project! {
        /// Response future of [`ScrubServerErrors`](super::ScrubServerErrors): the inner
        /// response, or a generic problem in place of a 5xx body.
        pub struct ResponseFuture<F> {
            #[pin]
            pub(super) future: F,
            pub(super) request_id: Option<HeaderValue>,
        }
    }

    impl<F> fmt::Debug for ResponseFuture<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ResponseFuture").finish_non_exhaustive()
        }
    }
}

impl<F, B, E> Future for future::ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let status = response.status();
        if !status.is_server_error() || response.extensions().get::<RenderedRejection>().is_some() {
            return Poll::Ready(Ok(response.map(Body::new)));
        }
        let kind = if status == http::StatusCode::SERVICE_UNAVAILABLE {
            RejectionKind::ServiceUnavailable
        } else {
            RejectionKind::Internal
        };
        tracing::warn!(
            target: "axum_shield::validate",
            status = status.as_u16(),
            "internal error body replaced by a generic problem"
        );
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        drop(response);
        let request_id = this.request_id.as_ref().and_then(|id| id.to_str().ok());
        let mut scrubbed = Rejection::new(kind).to_response(request_id);
        if let Some(value) = retry_after {
            scrubbed.headers_mut().insert(RETRY_AFTER, value);
        }
        Poll::Ready(Ok(scrubbed))
    }
}
