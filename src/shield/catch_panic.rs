//! Panic catching without boxing the response body.
//!
//! A panic in the inner service (while called or polled) becomes an empty-bodied 500 that
//! `Shield` renders as problem+json, after a `sys_crash` security event. The panic message is
//! logged (truncated) but never sent to the client. Unlike tower-http's `CatchPanic`, the
//! response body type is unchanged, so no allocation happens on the normal path.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::audit::{SecurityEvent, SecurityEventKind};

/// Turns panics of the inner service into 500 responses.
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    pub(super) inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CatchPanic<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => CatchPanicFuture {
                inner: Some(future),
            },
            Err(panic) => {
                report(panic);
                CatchPanicFuture { inner: None }
            }
        }
    }
}

pin_project! {
    /// Response future of [`CatchPanic`].
    pub struct CatchPanicFuture<F> {
        #[pin]
        inner: Option<F>,
    }
}

impl<F, B, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Ok(internal_error()));
        };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                // Drop the poisoned future now; never poll it again.
                this.inner.set(None);
                report(panic);
                Poll::Ready(Ok(internal_error()))
            }
        }
    }
}

fn internal_error<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

fn report(panic: Box<dyn Any + Send + 'static>) {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    let message: String = message.chars().take(200).collect();
    SecurityEvent::new(SecurityEventKind::SysCrash)
        .reason("panic")
        .field("panic", message)
        .emit();
}
