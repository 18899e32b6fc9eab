//! The response future of [`SecurityHeaders`](super::SecurityHeaders).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::layer::Prepared;
use super::CspNonce;

pin_project! {
    /// Response future of [`SecurityHeaders`](super::SecurityHeaders): the inner service's
    /// response with the security headers added and the leaking ones removed.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        prepared: Arc<Prepared>,
        https: bool,
        nonce: Option<CspNonce>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        inner: F,
        prepared: Arc<Prepared>,
        https: bool,
        nonce: Option<CspNonce>,
    ) -> Self {
        Self {
            inner,
            prepared,
            https,
            nonce,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("https", &self.https)
            .field("nonce", &self.nonce.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            other => return other,
        };
        this.prepared
            .apply_to(&mut response, *this.https, this.nonce.as_ref());
        Poll::Ready(Ok(response))
    }
}
