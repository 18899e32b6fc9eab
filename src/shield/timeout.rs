//! Request timeout whose timer is only registered if the request actually waits.
//!
//! tower-http's `Timeout` registers a tokio timer for every request; measured on the stack
//! benchmark that costs about as much as the bare router itself. Most requests that finish on
//! their first poll never need a timer, so this one starts the clock at `call` and registers
//! the timer only when the inner future first returns `Pending`. Semantics are the same: the
//! response is an empty-bodied `status` (408 or 503) once `timeout` has elapsed since `call`,
//! which `Shield` renders as problem+json.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// Applies a timeout to every request (see the module docs).
#[derive(Debug, Clone)]
pub struct RequestTimeout<S> {
    pub(super) inner: S,
    pub(super) timeout: Duration,
    pub(super) status: StatusCode,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestTimeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        TimeoutFuture {
            deadline: Instant::now() + self.timeout,
            inner: self.inner.call(req),
            sleep: None,
            status: self.status,
        }
    }
}

pin_project! {
    /// Response future of [`RequestTimeout`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        // Boxed: a `Sleep` is large, and every layer outside moves this future by value; the
        // box is only allocated for requests that are still pending after their first poll.
        sleep: Option<Pin<Box<Sleep>>>,
        deadline: Instant,
        status: StatusCode,
    }
}

impl<F, B, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*this.deadline)));
        {
            if sleep.as_mut().poll(cx).is_ready() {
                let mut response = Response::new(B::default());
                *response.status_mut() = *this.status;
                return Poll::Ready(Ok(response));
            }
        }
        Poll::Pending
    }
}
