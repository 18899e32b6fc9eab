//! The response future of the JWT service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::Request;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::token::{insert, VerifiedToken};
use super::verifier::{Failure, JwtVerifier};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::rejection::{Rejection, RejectionKind};

/// A check that needs I/O (revocation store, JWKS refresh), run before the inner service.
pub(crate) type CheckFuture = Pin<Box<dyn Future<Output = Result<VerifiedToken, Failure>> + Send>>;

pin_project! {
    /// Response future of [`JwtAuth`](super::JwtAuth): a refusal, the inner service's
    /// response, or first an asynchronous check (revocation, a JWKS refresh) and then one
    /// of the two.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Refused { response: Option<Response> },
        Checking {
            check: CheckFuture,
            req: Option<Request<ReqBody>>,
            inner: Option<S>,
            verifier: JwtVerifier,
        },
        Inner { #[pin] fut: S::Future },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    /// Runs the inner service's future.
    pub(crate) fn run(fut: S::Future) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    /// Answers with `response`, a refusal, without running the inner service.
    pub(crate) fn refused(response: Response) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }

    /// Runs `check` first, then calls `inner` with `req` or refuses.
    pub(crate) fn checking(
        check: CheckFuture,
        req: Request<ReqBody>,
        inner: S,
        verifier: JwtVerifier,
    ) -> Self {
        Self {
            state: State::Checking {
                check,
                req: Some(req),
                inner: Some(inner),
                verifier,
            },
        }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { response } => {
                    return Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                        Rejection::new(RejectionKind::Internal).into_response()
                    })));
                }
                StateProj::Checking {
                    check,
                    req,
                    inner,
                    verifier,
                } => {
                    let outcome = ready!(check.as_mut().poll(cx));
                    let (Some(mut request), Some(mut service)) = (req.take(), inner.take()) else {
                        return Poll::Ready(Ok(
                            Rejection::new(RejectionKind::Internal).into_response()
                        ));
                    };
                    match outcome {
                        Ok(token) => {
                            insert(&mut request, token);
                            let fut = service.call(request);
                            this.state.set(State::Inner { fut });
                        }
                        Err(failure) => {
                            let (kind, reason) = match failure {
                                Failure::Token(e) => (e.event_kind(), e.reason()),
                                Failure::Dependency(reason) => {
                                    (SecurityEventKind::SysDependencyFail, reason)
                                }
                            };
                            SecurityEvent::for_request(
                                kind,
                                request.method(),
                                request.uri(),
                                request.extensions(),
                            )
                            .reason(reason)
                            .emit();
                            let rejection = verifier.refusal(failure);
                            return Poll::Ready(Ok(
                                rejection.into_response_for(request.extensions())
                            ));
                        }
                    }
                }
                StateProj::Inner { fut } => {
                    return fut.poll(cx).map(|r| r.map(|res| res.map(Body::new)));
                }
            }
        }
    }
}
