//! The authenticated caller: part of the shared model.
//!
//! Authentication layers (`auth`) produce a [`Principal`] into request extensions; rate
//! limiting, authorization, validation and the security log only read it. It lives here, not
//! in `auth`, so that those concerns never import each other.
//!
//! Handlers take it as an extractor:
//!
//! ```
//! use axum_shield::Principal;
//!
//! async fn whoami(principal: Principal) -> String {
//!     format!("{} ({:?})", principal.id(), principal.kind())
//! }
//! async fn feed(principal: Option<Principal>) -> &'static str {
//!     if principal.is_some() { "your feed" } else { "the public feed" }
//! }
//! # let _ = axum::Router::<()>::new()
//! #     .route("/me", axum::routing::get(whoami))
//! #     .route("/feed", axum::routing::get(feed));
//! ```

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::rejection::Rejection;

/// How a [`Principal`] authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// A verified JWT; the id is its `sub` claim.
    Jwt,
    /// An API key; the id is the key's public id.
    ApiKey,
}

/// The authenticated caller of a request, put into request extensions by the authentication
/// layers.
///
/// Rate limiting keys on its kind, issuer and [`Principal::id`] (so a JWT subject never
/// shares an API key's bucket), authorization checks read its scopes and roles, and the
/// security log records its id. It never holds the credential itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    id: Arc<str>,
    kind: PrincipalKind,
    issuer: Option<Arc<str>>,
    scopes: Arc<[String]>,
    roles: Arc<[String]>,
}

impl Principal {
    /// A principal with `id` and no scopes or roles.
    pub fn new(kind: PrincipalKind, id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            kind,
            issuer: None,
            scopes: Arc::new([]),
            roles: Arc::new([]),
        }
    }

    /// A principal with its lists already built: no placeholder empty lists to allocate and
    /// drop (the JWT verifier builds one per request).
    #[cfg(feature = "jwt")]
    pub(crate) fn from_parts(
        kind: PrincipalKind,
        id: Arc<str>,
        scopes: Arc<[String]>,
        roles: Arc<[String]>,
    ) -> Self {
        Self {
            id,
            kind,
            issuer: None,
            scopes,
            roles,
        }
    }

    /// Sets who vouched for the principal: the `iss` of a verified JWT. Rate limiting keys a
    /// principal by kind, issuer and id, so one subject of two issuers is two callers.
    pub fn with_issuer(mut self, issuer: impl Into<Arc<str>>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets the granted scopes.
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the granted roles.
    pub fn with_roles<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The subject (`sub`) or API key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who vouched for the principal (a JWT's `iss`), when known.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// How the principal authenticated.
    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The granted roles.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether `role` was granted.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .finish()
    }
}

/// The principal an authentication layer put into the request. Without one (no
/// authentication layer ran before the handler) the request fails with a 500 `misconfigured`
/// problem, and the log names the fix; use `Option<Principal>` on routes where
/// authentication is optional.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            crate::rejection::misconfigured(
                "Principal extracted but no authentication layer ran before the handler: add \
                 `.route_layer(jwt.layer())` (or an API-key layer) to the route, or take \
                 `Option<Principal>` where authentication is optional",
            )
        })
    }
}

/// `Some` when an authentication layer admitted the request.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/me", get(|p: Principal| async move { p.id().to_owned() }))
            .route(
                "/feed",
                get(|p: Option<Principal>| async move { format!("{:?}", p.map(|p| p.kind())) }),
            )
    }

    #[tokio::test]
    async fn principal_extractor_without_an_authentication_layer_is_a_500_misconfigured() {
        let response = app()
            .oneshot(Request::get("/me").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "misconfigured");
    }

    #[tokio::test]
    async fn principal_extractor_reads_what_the_authentication_layer_put() {
        let mut request = Request::get("/me").body(Body::empty()).unwrap();
        request.extensions_mut().insert(
            Principal::new(PrincipalKind::ApiKey, "svc-1").with_issuer("https://id.example"),
        );
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert_eq!(&body[..], b"svc-1");
    }

    #[tokio::test]
    async fn optional_principal_is_none_without_authentication() {
        let response = app()
            .oneshot(Request::get("/feed").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert_eq!(&body[..], b"None");
    }
}
