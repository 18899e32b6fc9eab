//! The authenticated caller, shared by JWT, API keys, rate limiting and logging.

use std::fmt;
use std::sync::Arc;

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
    scopes: Arc<[String]>,
    roles: Arc<[String]>,
}

impl Principal {
    /// A principal with `id` and no scopes or roles.
    pub fn new(kind: PrincipalKind, id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            kind,
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
            scopes,
            roles,
        }
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
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .finish()
    }
}
