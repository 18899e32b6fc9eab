//! Panic catching without boxing the response body.
//!
//! A panic in the inner service (while called or polled) becomes an empty-bodied 500 that
//! `Shield` renders as problem+json. The panic message (truncated) travels in the response
//! extensions to the audit layer just outside, which emits the `sys_crash` security event with
//! the request's context; it is never sent to the client. Unlike tower-http's `CatchPanic`, the
//! response body type is unchanged, so no allocation happens on the normal path.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::audit::PanicMessage;

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
                panic: None,
            },
            Err(panic) => CatchPanicFuture {
                inner: None,
                panic: Some(message(panic)),
            },
        }
    }
}

pin_project! {
    /// Response future of [`CatchPanic`].
    pub struct CatchPanicFuture<F> {
        #[pin]
        inner: Option<F>,
        panic: Option<String>,
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
            let message = this.panic.take().unwrap_or_default();
            return Poll::Ready(Ok(internal_error(message)));
        };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                // Drop the poisoned future now; never poll it again.
                this.inner.set(None);
                Poll::Ready(Ok(internal_error(message(panic))))
            }
        }
    }
}

fn internal_error<B: Default>(message: String) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.extensions_mut().insert(PanicMessage(message));
    response
}

fn message(panic: Box<dyn Any + Send + 'static>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    message.chars().take(200).collect()
}
