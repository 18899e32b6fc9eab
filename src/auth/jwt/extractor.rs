//! `Claims<T>`: typed claims of the verified token, in handlers.

use std::ops::{Deref, DerefMut};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::token::VerifiedToken;
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::auth::challenge;
use crate::{Rejection, RejectionKind};

/// The claims of the request's verified JWT, deserialized into `T`.
///
/// Use it behind [`JwtAuthLayer`](super::JwtAuthLayer). Without a verified token it answers
/// 401 `WWW-Authenticate: Bearer`; as `Option<Claims<T>>` (behind a layer built with
/// [`optional(true)`](super::JwtAuthBuilder::optional)) it is `None` for anonymous
/// requests. Claims that do not fit `T` are a 401 `invalid_token`: the token is
/// authentic but not one this route accepts.
///
/// ```
/// use axum_shield::auth::jwt::Claims;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct MyClaims { sub: String, email: Option<String> }
///
/// async fn me(Claims(claims): Claims<MyClaims>) -> String {
///     claims.sub
/// }
///
/// async fn greeting(claims: Option<Claims<MyClaims>>) -> String {
///     match claims {
///         Some(Claims(c)) => format!("hello {}", c.sub),
///         None => "hello stranger".into(),
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Claims<T>(pub T);

impl<T> Deref for Claims<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Claims<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

// `Rejection` is the crate-wide error type; extractors return it unboxed like axum's own.
#[allow(clippy::result_large_err)]
fn decode<T: DeserializeOwned>(parts: &Parts, token: &VerifiedToken) -> Result<T, Rejection> {
    serde_json::from_str(token.claims_json()).map_err(|_| {
        SecurityEvent::for_parts(SecurityEventKind::AuthnTokenInvalid, parts)
            .reason("claims_shape")
            .emit();
        challenge::invalid_token(None, None)
    })
}

impl<T, S> FromRequestParts<S> for Claims<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<VerifiedToken>() {
            Some(token) => decode(parts, token).map(Claims),
            None => {
                SecurityEvent::for_parts(SecurityEventKind::AuthnTokenMissing, parts)
                    .reason("no_token")
                    .emit();
                Err(challenge::missing("Bearer", None))
            }
        }
    }
}

impl<T, S> OptionalFromRequestParts<S> for Claims<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<VerifiedToken>() {
            Some(token) => decode(parts, token).map(|c| Some(Claims(c))),
            None => Ok(None),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedToken {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<VerifiedToken>()
            .cloned()
            .ok_or_else(|| Rejection::new(RejectionKind::MissingCredentials))
            .map_err(|_| challenge::missing("Bearer", None))
    }
}
