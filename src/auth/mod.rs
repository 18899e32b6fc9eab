//! Authentication and authorization.
//!
//! Authentication layers put a [`Principal`] into request extensions; rate limiting,
//! authorization and the security log read it from there.
//!
//! - `jwt` (feature `jwt`): strict JWT verification (`jwt::JwtAuth`), the `jwt::Claims`
//!   extractor, and `TokenIssuer` to sign tokens; `jwt::jwks` (feature `jwks`): keys from a
//!   JWKS URL or OIDC discovery.
//! - [`ApiKeyLayer`]: API keys stored as SHA-256 digests, compared in constant time.
//! - [`AuthorizeLayer`]: scope and role requirements (`all`/`any`), answering RFC 6750 403s.
//! - [`RevocationStore`]: a denylist keyed by (`iss`, `jti`), with an in-memory store.

mod api_key;
mod challenge;
mod revocation;
#[cfg(feature = "redis")]
mod revocation_redis;
mod scope;

#[cfg(feature = "jwt")]
mod issuer;
#[cfg(feature = "jwt")]
pub mod jwt;

use crate::principal::{Principal, PrincipalKind};
pub use api_key::{ApiKey, ApiKeyFuture, ApiKeyLayer, ApiKeyService, ApiKeys, GeneratedApiKey};
#[cfg(feature = "jwt")]
pub use issuer::{IssueError, IssuedToken, TokenIssuer};
pub use revocation::{MemoryRevocationStore, RevocationError, RevocationFuture, RevocationStore};
#[cfg(feature = "redis")]
pub use revocation_redis::RedisRevocationList;
pub use scope::{Authorize, AuthorizeFuture, AuthorizeLayer, ClaimPath, PrincipalClaims};
