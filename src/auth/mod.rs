//! Authentication and authorization.
//!
//! Authentication layers put a [`Principal`](crate::Principal) into request extensions; rate
//! limiting, authorization and the security log read it from there.
//!
//! - [`jwt`] (feature `jwt`): strict JWT verification ([`jwt::JwtAuthLayer`]), the
//!   [`jwt::Claims`] extractor, and [`TokenIssuer`] to sign tokens; `jwt::JwksKeys` (feature
//!   `jwks`): keys from a JWKS URL or OIDC discovery.
//! - [`ApiKeyAuthLayer`]: API keys stored as SHA-256 digests, compared in constant time.
//! - [`AuthorizeLayer`]: scope and role requirements (`all`/`any`), answering RFC 6750 403s.
//! - [`RevocationStore`]: a denylist keyed by (`iss`, `jti`), with an in-memory store and a
//!   Redis one (feature `redis`).
//!
//! Every layer here is made the same way: an entry point on the layer returns a builder whose
//! setters never fail, and `build()?` checks everything once and returns the layer.
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum_shield::auth::{jwt::JwtAuthLayer, AuthorizeLayer};
//!
//! let jwt = JwtAuthLayer::hs256(b"0123456789abcdef0123456789abcdef")
//!     .issuer("https://id.example")
//!     .audience("orders-api")
//!     .build()?;
//! let admin = AuthorizeLayer::any_roles(["admin"]).build()?;
//! let app: Router = Router::new()
//!     .route("/admin", get(|| async { "admin" }).route_layer(admin))
//!     .route_layer(jwt);
//! # Ok::<(), axum_shield::ConfigError>(())
//! ```

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

pub use api_key::{ApiKey, ApiKeyAuth, ApiKeyAuthBuilder, ApiKeyAuthLayer, GeneratedApiKey};
#[cfg(feature = "jwt")]
pub use issuer::{IssueError, IssuedToken, TokenIssuer, TokenIssuerBuilder};
pub use revocation::{MemoryRevocationStore, RevocationError, RevocationFuture, RevocationStore};
#[cfg(feature = "redis")]
pub use revocation_redis::RedisRevocationList;
pub use scope::{Authorize, AuthorizeBuilder, AuthorizeLayer, PrincipalClaims};
