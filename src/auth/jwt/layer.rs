//! The JWT authentication layer and its service.

use std::fmt;
use std::task::{Context, Poll};

use axum::response::Response;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::future::{CheckFuture, ResponseFuture};
use super::token::{insert, VerifiedToken};
use super::validation::TokenError;
use super::verifier::{Extraction, Failure, JwtVerifier};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::auth::challenge;
use crate::auth::revocation::now_unix;
use crate::rejection::Rejection;

/// Authenticates requests with a bearer JWT: the layer that
/// [`JwtAuthBuilder::build`](super::JwtAuthBuilder::build) returns, made from
/// [`JwtAuthLayer::hs256`], [`JwtAuthLayer::keys`] or `JwtAuthLayer::jwks` (feature `jwks`).
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_shield::auth::jwt::{Claims, JwtAuthLayer};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct MyClaims { sub: String }
///
/// let jwt = JwtAuthLayer::hs256(b"0123456789abcdef0123456789abcdef")
///     .issuer("https://id.example")
///     .audience("orders-api")
///     .build()?;
/// let app: Router = Router::new()
///     .route("/me", get(|Claims(c): Claims<MyClaims>| async move { c.sub }))
///     .route_layer(jwt);                   // 401 only on routes that exist
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
///
/// On success the [`VerifiedToken`] and its [`Principal`](crate::Principal) are put
/// into request extensions. Refusals follow RFC 6750 §3:
///
/// | request | answer |
/// |---|---|
/// | no token (token required, the default) | 401 `WWW-Authenticate: Bearer`, event `authn_token_missing` |
/// | no token ([`optional`](super::JwtAuthBuilder::optional) layer) | passed through without a principal |
/// | token fails any check | 401 `Bearer error="invalid_token"`, event `authn_token_invalid` (reason) |
/// | revoked token | 401 `Bearer error="invalid_token"`, event `authn_token_revoked` |
/// | two `Authorization` headers, or two methods | 400 `Bearer error="invalid_request"`, event `malicious_header` |
/// | key set or revocation store unreachable | 503, event `sys_dependency_fail` (fail closed) |
///
/// Outside HTTP (a WebSocket message, a job queue), verify a token with the layer itself:
/// [`verify`](Self::verify). Clones share the key set, cache and revocation store.
#[derive(Clone)]
pub struct JwtAuthLayer {
    verifier: JwtVerifier,
    optional: bool,
}

impl JwtAuthLayer {
    pub(crate) fn new(verifier: JwtVerifier, optional: bool) -> Self {
        Self { verifier, optional }
    }

    /// Verifies `token` completely, as the layer does for a request: current keys
    /// (refreshing a JWKS key set on an unknown `kid`), all claim rules at the current time,
    /// and revocation.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] that refused the token; [`TokenError::KeysUnavailable`] also when
    /// the revocation store fails.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.verifier.verify(token).await
    }

    /// Verifies `token` against the keys held now and the claim rules at `now` (Unix
    /// seconds), without revocation or key refresh. For tests and published test vectors.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] that refused the token.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        self.verifier.verify_at(token, now)
    }

    /// The number of tokens in the verified-token cache (0 when it is off).
    pub fn cached_tokens(&self) -> usize {
        self.verifier.cached_tokens()
    }

    #[cfg(test)]
    pub(crate) fn verifier(&self) -> &JwtVerifier {
        &self.verifier
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
    type Service = JwtAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth {
            inner,
            verifier: self.verifier.clone(),
            optional: self.optional,
        }
    }
}

/// The service of [`JwtAuthLayer`].
#[derive(Clone)]
pub struct JwtAuth<S> {
    inner: S,
    verifier: JwtVerifier,
    optional: bool,
}

impl<S: fmt::Debug> fmt::Debug for JwtAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("inner", &self.inner)
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

enum Decision {
    Pass(Option<VerifiedToken>),
    Refuse(Rejection),
    Async(CheckFuture),
}

impl<S> JwtAuth<S> {
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
                event(e.event_kind(), e.reason());
                Decision::Refuse(self.invalid(e))
            }
        }
    }

    fn invalid(&self, e: TokenError) -> Rejection {
        self.verifier.refusal(Failure::Token(e))
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

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
                ResponseFuture::run(self.inner.call(req))
            }
            // Rendered here, with the request id: an outer Shield keeps it as is.
            Decision::Refuse(rejection) => {
                ResponseFuture::refused(rejection.into_response_for(req.extensions()))
            }
            Decision::Async(check) => {
                // The ready service goes into the future; a fresh clone stays here
                // (tower's documented pattern for services called after an await).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, req, inner, self.verifier.clone())
            }
        }
    }
}
