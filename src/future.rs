//! The response future shared by every layer that either refuses a request or passes it on.
//!
//! A layer that checks a request (authentication, authorization, a rate limit, input limits)
//! answers in one of two ways: with its own refusal, ready at once, or with the inner
//! service's response. [`ResponseFuture`] is that choice, written once for the whole crate,
//! as tower-http's `limit::ResponseFuture` is for its body limit: no boxing, no allocation
//! per request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;

use crate::rejection::{Rejection, RejectionKind};

pin_project! {
    /// Response future of the crate's services that refuse or run: the refusal, or the inner
    /// service's response with its body turned into an axum [`Body`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Run { #[pin] future: F },
        Refused { response: Option<Response> },
    }
}

impl<F> ResponseFuture<F> {
    /// Runs the inner service's future.
    pub(crate) fn run(future: F) -> Self {
        Self {
            kind: Kind::Run { future },
        }
    }

    /// Answers with `response`, a refusal, without running the inner service.
    pub(crate) fn refused(response: Response) -> Self {
        Self {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Run { .. } => "run",
            Kind::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Run { future } => future.poll(cx).map(|r| r.map(|res| res.map(Body::new))),
            // Polled again after it answered: an internal error, never a panic.
            KindProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| Rejection::new(RejectionKind::Internal).into_response()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::StatusCode;

    use super::*;

    #[tokio::test]
    async fn runs_the_inner_future_or_answers_with_the_refusal() {
        let ran = ResponseFuture::run(async {
            Ok::<_, Infallible>(http::Response::new(Body::from("inner")))
        });
        assert_eq!(ran.await.unwrap().status(), StatusCode::OK);

        let refused = ResponseFuture::<std::future::Ready<Result<Response, Infallible>>>::refused(
            Rejection::new(RejectionKind::Forbidden).into_response(),
        );
        assert_eq!(refused.await.unwrap().status(), StatusCode::FORBIDDEN);
    }
}
