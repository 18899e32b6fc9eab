//! Scope and role requirements, and where scopes and roles are read from in a token.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use http::Request;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::challenge;
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::future::ResponseFuture;
use crate::principal::{Principal, PrincipalKind};
use crate::ConfigError;

/// A path to a claim inside a token's claims set, one segment per level: `["scope"]`,
/// `["realm_access", "roles"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimPath(Vec<String>);

impl ClaimPath {
    /// A path from its segments.
    pub(crate) fn segments<I, T>(segments: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self(segments.into_iter().map(Into::into).collect())
    }

    /// The path's segments.
    #[cfg(feature = "jwt")]
    pub(crate) fn parts(&self) -> &[String] {
        &self.0
    }

    fn lookup<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(claims, |v, key| v.get(key))
    }

    /// Appends the values found at this path: a space-separated string (`scope`, RFC 8693
    /// §4.2) or an array of strings (`scp`, `roles`, `permissions`). Other shapes add nothing.
    fn collect_into(&self, claims: &Value, out: &mut Vec<String>) {
        match self.lookup(claims) {
            Some(Value::String(s)) => out.extend(s.split_ascii_whitespace().map(str::to_owned)),
            Some(Value::Array(items)) => {
                out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
}

/// Where a [`Principal`]'s scopes and roles come from in a verified token.
///
/// The default reads the shapes real identity providers use:
///
/// | source | claims |
/// |---|---|
/// | scopes | `scope` (space-separated, RFC 8693 §4.2 / RFC 9068), `scp` (array or string, Entra ID, Okta), `permissions` (Auth0 RBAC) |
/// | roles  | `roles` (Entra ID, RFC 9068 §2.2.3.1), `realm_access.roles` (Keycloak) |
///
/// A claim is named by its path, one segment per level of the claims set:
/// `["resource_access", "orders-api", "roles"]`. A top-level claim whose name contains dots
/// is one segment: `["https://example.com/roles"]`.
///
/// ```
/// use axum_shield::auth::PrincipalClaims;
///
/// let mapping = PrincipalClaims::default()
///     .roles_from(["resource_access", "orders-api", "roles"]);
/// # let _ = mapping;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalClaims {
    scopes: Vec<ClaimPath>,
    roles: Vec<ClaimPath>,
}

impl Default for PrincipalClaims {
    fn default() -> Self {
        Self {
            scopes: vec![
                ClaimPath::segments(["scope"]),
                ClaimPath::segments(["scp"]),
                ClaimPath::segments(["permissions"]),
            ],
            roles: vec![
                ClaimPath::segments(["roles"]),
                ClaimPath::segments(["realm_access", "roles"]),
            ],
        }
    }
}

impl PrincipalClaims {
    /// Reads neither scopes nor roles; add paths with [`scopes_from`](Self::scopes_from) and
    /// [`roles_from`](Self::roles_from).
    pub fn none() -> Self {
        Self {
            scopes: Vec::new(),
            roles: Vec::new(),
        }
    }

    /// Also reads scopes from the claim at `path` (its segments, for example
    /// `["scope"]` or `["resource_access", "orders-api", "scopes"]`).
    pub fn scopes_from<I, T>(mut self, path: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.push(ClaimPath::segments(path));
        self
    }

    /// Also reads roles from the claim at `path` (its segments, for example
    /// `["realm_access", "roles"]` or `["https://example.com/roles"]`).
    pub fn roles_from<I, T>(mut self, path: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.roles.push(ClaimPath::segments(path));
        self
    }

    /// Where scopes are read, in order.
    #[cfg(feature = "jwt")]
    pub(crate) fn scope_paths(&self) -> &[ClaimPath] {
        &self.scopes
    }

    /// Where roles are read, in order.
    #[cfg(feature = "jwt")]
    pub(crate) fn role_paths(&self) -> &[ClaimPath] {
        &self.roles
    }

    /// The principal for `subject` with the scopes and roles found in `claims`.
    pub fn principal(&self, kind: PrincipalKind, subject: &str, claims: &Value) -> Principal {
        let mut scopes = Vec::new();
        for path in &self.scopes {
            path.collect_into(claims, &mut scopes);
        }
        let mut roles = Vec::new();
        for path in &self.roles {
            path.collect_into(claims, &mut roles);
        }
        scopes.dedup();
        roles.dedup();
        Principal::new(kind, subject)
            .with_scopes(scopes)
            .with_roles(roles)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Scopes,
    Roles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    All,
    Any,
}

struct Requirement {
    what: What,
    matching: Match,
    names: Vec<String>,
    /// The `scope` attribute of the 403 challenge (RFC 6750 §3).
    scope_attr: Option<String>,
}

impl Requirement {
    fn satisfied_by(&self, principal: &Principal) -> bool {
        let has = |name: &String| match self.what {
            What::Scopes => principal.has_scope(name),
            What::Roles => principal.has_role(name),
        };
        match self.matching {
            Match::All => self.names.iter().all(has),
            Match::Any => self.names.iter().any(has),
        }
    }
}

/// Requires the request's [`Principal`] (put there by an authentication layer such as
/// [`JwtAuthLayer`](crate::auth::jwt::JwtAuthLayer) or
/// [`ApiKeyAuthLayer`](crate::auth::ApiKeyAuthLayer)) to hold scopes or roles.
///
/// Place it inside the authentication layer. A request without a principal gets
/// 401 `WWW-Authenticate: Bearer`; a principal lacking the requirement gets 403
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` (RFC 6750 §3.1) and an
/// `authz_fail` security event.
///
/// [`all_scopes`](Self::all_scopes), [`any_scopes`](Self::any_scopes),
/// [`all_roles`](Self::all_roles) and [`any_roles`](Self::any_roles) return an
/// [`AuthorizeBuilder`]; its [`build`](AuthorizeBuilder::build) checks the names.
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_shield::auth::AuthorizeLayer;
///
/// let admin = AuthorizeLayer::any_roles(["admin"]).build()?;
/// let read = AuthorizeLayer::all_scopes(["orders:read"]).build()?;
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "orders" }).route_layer(read))
///     .route("/admin", get(|| async { "admin" }).route_layer(admin));
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct AuthorizeLayer {
    requirement: Arc<Requirement>,
}

impl AuthorizeLayer {
    /// Every one of `scopes` is required.
    pub fn all_scopes<I, T>(scopes: I) -> AuthorizeBuilder
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        AuthorizeBuilder::new(What::Scopes, Match::All, scopes)
    }

    /// At least one of `scopes` is required.
    pub fn any_scopes<I, T>(scopes: I) -> AuthorizeBuilder
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        AuthorizeBuilder::new(What::Scopes, Match::Any, scopes)
    }

    /// Every one of `roles` is required.
    pub fn all_roles<I, T>(roles: I) -> AuthorizeBuilder
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        AuthorizeBuilder::new(What::Roles, Match::All, roles)
    }

    /// At least one of `roles` is required.
    pub fn any_roles<I, T>(roles: I) -> AuthorizeBuilder
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        AuthorizeBuilder::new(What::Roles, Match::Any, roles)
    }
}

/// A scope or role requirement, checked by [`build`](Self::build); made by
/// [`AuthorizeLayer::all_scopes`] and its siblings.
#[derive(Debug, Clone)]
pub struct AuthorizeBuilder {
    what: What,
    matching: Match,
    names: Vec<String>,
}

impl AuthorizeBuilder {
    fn new<I, T>(what: What, matching: Match, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            what,
            matching,
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    /// Checks the names and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the list is empty or a name is not an RFC 6749 §3.3 scope
    /// token (printable ASCII without spaces, quotes or backslashes).
    pub fn build(self) -> Result<AuthorizeLayer, ConfigError> {
        let Self {
            what,
            matching,
            names,
        } = self;
        let setting = match what {
            What::Scopes => "scopes",
            What::Roles => "roles",
        };
        if names.is_empty() {
            return Err(ConfigError::new(
                setting,
                "the requirement lists nothing",
                "name at least one scope or role",
            ));
        }
        if let Some(bad) = names.iter().find(|n| !challenge::is_scope_token(n)) {
            return Err(ConfigError::new(
                setting,
                format!("{bad:?} is not a valid scope or role name"),
                "use printable ASCII without spaces, quotes or backslashes (RFC 6749 §3.3)",
            ));
        }
        let scope_attr = (what == What::Scopes).then(|| names.join(" "));
        Ok(AuthorizeLayer {
            requirement: Arc::new(Requirement {
                what,
                matching,
                names,
                scope_attr,
            }),
        })
    }
}

impl fmt::Debug for AuthorizeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("what", &self.requirement.what)
            .field("match", &self.requirement.matching)
            .field("names", &self.requirement.names)
            .finish()
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            requirement: self.requirement.clone(),
        }
    }
}

/// The service of [`AuthorizeLayer`].
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    requirement: Arc<Requirement>,
}

impl<S: fmt::Debug> fmt::Debug for Authorize<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .field("names", &self.requirement.names)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let refusal = match req.extensions().get::<Principal>() {
            Some(p) if self.requirement.satisfied_by(p) => None,
            Some(_) => {
                SecurityEvent::for_request(
                    SecurityEventKind::AuthzFail,
                    req.method(),
                    req.uri(),
                    req.extensions(),
                )
                .reason(match self.requirement.what {
                    What::Scopes => "missing_scope",
                    What::Roles => "missing_role",
                })
                .emit();
                Some(challenge::insufficient_scope(
                    None,
                    self.requirement.scope_attr.as_deref(),
                ))
            }
            None => {
                SecurityEvent::for_request(
                    SecurityEventKind::AuthnTokenMissing,
                    req.method(),
                    req.uri(),
                    req.extensions(),
                )
                .reason("no_principal")
                .emit();
                Some(challenge::missing("Bearer", None))
            }
        };
        match refusal {
            Some(rejection) => {
                ResponseFuture::refused(rejection.into_response_for(req.extensions()))
            }
            None => ResponseFuture::run(self.inner.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::StatusCode;
    use tower::ServiceExt;

    fn svc(
        layer: AuthorizeLayer,
    ) -> impl Service<Request<Body>, Response = Response, Error = std::convert::Infallible> + Clone
    {
        layer.layer(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Body::from("ok")))
        }))
    }

    fn req_with(p: Option<Principal>) -> Request<Body> {
        let mut req = Request::new(Body::empty());
        if let Some(p) = p {
            req.extensions_mut().insert(p);
        }
        req
    }

    #[tokio::test]
    async fn missing_scope_is_403_insufficient_scope_with_scope_attribute() {
        let layer = AuthorizeLayer::all_scopes(["orders:read", "orders:write"])
            .build()
            .unwrap();
        let p = Principal::new(PrincipalKind::Jwt, "alice").with_scopes(["orders:read"]);
        let res = svc(layer).oneshot(req_with(Some(p))).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer error=\"insufficient_scope\", scope=\"orders:read orders:write\""
        );
    }

    #[tokio::test]
    async fn all_and_any_scopes_and_roles() {
        let p = Principal::new(PrincipalKind::Jwt, "bob")
            .with_scopes(["a", "b"])
            .with_roles(["admin"]);
        for (layer, ok) in [
            (
                AuthorizeLayer::all_scopes(["a", "b"]).build().unwrap(),
                true,
            ),
            (
                AuthorizeLayer::all_scopes(["a", "c"]).build().unwrap(),
                false,
            ),
            (
                AuthorizeLayer::any_scopes(["c", "b"]).build().unwrap(),
                true,
            ),
            (
                AuthorizeLayer::any_scopes(["c", "d"]).build().unwrap(),
                false,
            ),
            (AuthorizeLayer::all_roles(["admin"]).build().unwrap(), true),
            (
                AuthorizeLayer::any_roles(["ops", "root"]).build().unwrap(),
                false,
            ),
        ] {
            let res = svc(layer).oneshot(req_with(Some(p.clone()))).await.unwrap();
            assert_eq!(res.status() == StatusCode::OK, ok);
        }
    }

    #[tokio::test]
    async fn no_principal_is_401_without_error() {
        let res = svc(AuthorizeLayer::any_roles(["admin"]).build().unwrap())
            .oneshot(req_with(None))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }

    #[test]
    fn bad_requirement_names_are_config_errors() {
        assert!(AuthorizeLayer::all_scopes(Vec::<String>::new())
            .build()
            .is_err());
        assert!(AuthorizeLayer::all_scopes(["has space"]).build().is_err());
        assert!(AuthorizeLayer::any_roles(["quote\""]).build().is_err());
    }

    #[test]
    fn reads_every_provider_shape() {
        let claims = serde_json::json!({
            "scope": "openid orders:read",
            "scp": ["orders:write"],
            "permissions": ["read:messages"],
            "roles": ["admin"],
            "realm_access": { "roles": ["ops"] },
            "resource_access": { "api": { "roles": ["auditor"] } }
        });
        let mapping = PrincipalClaims::default().roles_from(["resource_access", "api", "roles"]);
        let p = mapping.principal(PrincipalKind::Jwt, "u", &claims);
        for s in ["openid", "orders:read", "orders:write", "read:messages"] {
            assert!(p.has_scope(s), "{s}");
        }
        for r in ["admin", "ops", "auditor"] {
            assert!(p.has_role(r), "{r}");
        }
        let none = PrincipalClaims::none().principal(PrincipalKind::Jwt, "u", &claims);
        assert!(none.scopes().is_empty() && none.roles().is_empty());
    }
}
