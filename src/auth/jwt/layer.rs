//! The JWT authentication layer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::Request;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Extraction, Failure, JwtVerifier, TokenError, VerifiedToken};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::auth::challenge;
use crate::auth::revocation::now_unix;
use crate::{Rejection, RejectionKind};

/// Authenticates requests with a bearer JWT; made by [`JwtVerifier::layer`] or
/// [`JwtVerifier::optional_layer`].
///
/// On success the [`VerifiedToken`] and its [`Principal`](crate::Principal) are put
/// into request extensions. Refusals follow RFC 6750 §3:
///
/// | request | answer |
/// |---|---|
/// | no token (required mode) | 401 `WWW-Authenticate: Bearer`, event `authn_token_missing` |
/// | no token (optional mode) | passed through without a principal |
/// | token fails any check | 401 `Bearer error="invalid_token"`, event `authn_token_invalid` (reason) |
/// | revoked token | 401 `Bearer error="invalid_token"`, event `authn_token_revoked` |
/// | two `Authorization` headers, or two methods | 400 `Bearer error="invalid_request"`, event `malicious_header` |
/// | key set or revocation store unreachable | 503, event `sys_dependency_fail` (fail closed) |
#[derive(Clone)]
pub struct JwtAuthLayer {
    verifier: JwtVerifier,
    optional: bool,
}

impl JwtAuthLayer {
    pub(crate) fn new(verifier: JwtVerifier, optional: bool) -> Self {
        Self { verifier, optional }
    }
}

impl fmt::Debug for JwtAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("verifier", &self.verifier)
            .field("optional", &self.optional)
            .finish()
    }
}

impl<S> Layer<S> for JwtAuthLayer {
    type Service = JwtAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuthService {
            inner,
            verifier: self.verifier.clone(),
            optional: self.optional,
        }
    }
}

/// The service of [`JwtAuthLayer`].
#[derive(Clone)]
pub struct JwtAuthService<S> {
    inner: S,
    verifier: JwtVerifier,
    optional: bool,
}

impl<S: fmt::Debug> fmt::Debug for JwtAuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthService")
            .field("inner", &self.inner)
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<VerifiedToken, Failure>> + Send>>;

enum Decision {
    Pass(Option<VerifiedToken>),
    Refuse(Rejection),
    Async(CheckFuture),
}

impl<S> JwtAuthService<S> {
    fn decide<B>(&self, req: &Request<B>) -> Decision {
        let verifier = &self.verifier;
        let realm = verifier.inner.realm.as_deref();
        let event = |kind: SecurityEventKind, reason: &'static str| {
            if SecurityEvent::is_wanted(kind, req.extensions()) {
                SecurityEvent::for_request(kind, req.method(), req.uri(), req.extensions())
                    .reason(reason)
                    .emit();
            }
        };
        let token = match verifier.extract(req.headers(), req.uri()) {
            Ok(Some(token)) => token,
            Ok(None) if self.optional => return Decision::Pass(None),
            Ok(None) => {
                event(SecurityEventKind::AuthnTokenMissing, "no_token");
                return Decision::Refuse(challenge::missing("Bearer", realm));
            }
            Err(Extraction::Ambiguous) => {
                event(SecurityEventKind::MaliciousHeader, "ambiguous_credentials");
                return Decision::Refuse(challenge::invalid_request(realm));
            }
            Err(Extraction::TooLarge) => {
                event(
                    SecurityEventKind::MaliciousHeader,
                    TokenError::TooLarge.reason(),
                );
                return Decision::Refuse(self.invalid(TokenError::TooLarge));
            }
            Err(Extraction::Malformed) => {
                event(
                    SecurityEventKind::AuthnTokenInvalid,
                    TokenError::Malformed.reason(),
                );
                return Decision::Refuse(self.invalid(TokenError::Malformed));
            }
        };
        match verifier.check_sync(&token, now_unix()) {
            Ok(verified) if !verifier.needs_revocation_check(&verified) => {
                Decision::Pass(Some(verified))
            }
            Ok(verified) => {
                let verifier = verifier.clone();
                Decision::Async(Box::pin(async move {
                    verifier.check_revocation(verified).await
                }))
            }
            Err(e) if verifier.may_refresh(e) => {
                let verifier = verifier.clone();
                let token = token.into_owned();
                Decision::Async(Box::pin(async move {
                    let verified = verifier.refresh_and_check(&token).await?;
                    verifier.check_revocation(verified).await
                }))
            }
            Err(e) => {
                event(event_kind(e), e.reason());
                Decision::Refuse(self.invalid(e))
            }
        }
    }

    fn invalid(&self, e: TokenError) -> Rejection {
        refusal(&self.verifier, Failure::Token(e))
    }
}

fn event_kind(e: TokenError) -> SecurityEventKind {
    match e {
        TokenError::Revoked => SecurityEventKind::AuthnTokenRevoked,
        TokenError::TooLarge => SecurityEventKind::MaliciousHeader,
        TokenError::KeysUnavailable => SecurityEventKind::SysDependencyFail,
        _ => SecurityEventKind::AuthnTokenInvalid,
    }
}

fn refusal(verifier: &JwtVerifier, failure: Failure) -> Rejection {
    let inner = &verifier.inner;
    match failure {
        Failure::Token(TokenError::KeysUnavailable) | Failure::Dependency(_) => {
            Rejection::new(RejectionKind::ServiceUnavailable)
        }
        Failure::Token(e) => challenge::invalid_token(
            inner.realm.as_deref(),
            inner.error_description.then(|| e.description()),
        ),
    }
}

fn insert<B>(req: &mut Request<B>, token: VerifiedToken) {
    // Records the principal on the request span of `Shield` (a no-op without it).
    crate::audit::record_principal(token.principal(), req.extensions());
    req.extensions_mut().insert(token.principal().clone());
    req.extensions_mut().insert(token);
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = JwtAuthFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.decide(&req) {
            Decision::Pass(token) => {
                if let Some(token) = token {
                    insert(&mut req, token);
                }
                JwtAuthFuture {
                    state: State::Inner {
                        fut: self.inner.call(req),
                    },
                }
            }
            Decision::Refuse(rejection) => JwtAuthFuture {
                state: State::Refused {
                    // Rendered here, with the request id: an outer Shield keeps it as is.
                    response: Some(rejection.into_response_for(req.extensions())),
                },
            },
            Decision::Async(check) => {
                // The ready service goes into the future; a fresh clone stays here
                // (tower's documented pattern for services called after an await).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                JwtAuthFuture {
                    state: State::Checking {
                        check,
                        req: Some(req),
                        inner: Some(inner),
                        verifier: self.verifier.clone(),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`JwtAuthService`].
    pub struct JwtAuthFuture<S, ReqBody>
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

impl<S, ReqBody> fmt::Debug for JwtAuthFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtAuthFuture")
    }
}

impl<S, ReqBody, ResBody> Future for JwtAuthFuture<S, ReqBody>
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
                                Failure::Token(e) => (event_kind(e), e.reason()),
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
                            let rejection = refusal(verifier, failure);
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
