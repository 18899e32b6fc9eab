//! The response future of the rate-limit service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;

use super::headers::RateLimitFields;
use crate::rejection::{Rejection, RejectionKind};

pub(super) type BoxedResponse<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit): the inner service's response
    /// with the rate-limit fields added, or the refusal.
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        Inner {
            #[pin]
            future: F,
            fields: Option<RateLimitFields>,
        },
        Ready {
            response: Option<Response>,
        },
        Boxed {
            future: BoxedResponse<E>,
        },
    }
}

impl<F, E> ResponseFuture<F, E> {
    /// Runs the inner service's future, then adds `fields` to its response.
    pub(super) fn inner(future: F, fields: Option<RateLimitFields>) -> Self {
        Self {
            state: State::Inner { future, fields },
        }
    }

    /// Answers with `response` (a refusal) without running the inner service.
    pub(super) fn refused(response: Response) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }

    /// Runs a future that decides asynchronously (a custom key, Redis) and then runs the
    /// inner service or refuses.
    pub(super) fn boxed(future: BoxedResponse<E>) -> Self {
        Self {
            state: State::Boxed { future },
        }
    }
}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E, ResBody> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, fields } => {
                let mut response = ready!(future.poll(cx))?.map(Body::new);
                if let Some(fields) = fields.take() {
                    fields.apply(response.headers_mut());
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| Rejection::new(RejectionKind::Internal).into_response()))),
            StateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
