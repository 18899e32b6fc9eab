//! Strict JWT verification: keys, validation rules, the layer and the claims extractor.
//!
//! [`JwtAuthLayer::hs256`] (or [`JwtAuthLayer::keys`], or `JwtAuthLayer::jwks` with the
//! `jwks` feature) returns a [`JwtAuthBuilder`]; its setters never fail, and
//! [`build`](JwtAuthBuilder::build) checks everything once and returns the
//! [`JwtAuthLayer`] to pass to `.route_layer()`. Outside HTTP, the same layer verifies a
//! token: [`JwtAuthLayer::verify`].
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum_shield::auth::jwt::{Claims, JwtAuthLayer};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct MyClaims { sub: String }
//!
//! async fn me(Claims(c): Claims<MyClaims>) -> String { c.sub }
//!
//! let jwt = JwtAuthLayer::hs256(b"0123456789abcdef0123456789abcdef")
//!     .issuer("https://id.example")
//!     .audience("orders-api")
//!     .build()?;                           // every setting is checked here
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route_layer(jwt);                   // 401 only on routes that exist
//! # Ok::<(), axum_shield::ConfigError>(())
//! ```
//!
//! What is checked, in order, and the standard that decides it:
//!
//! | check | refusal |
//! |---|---|
//! | token ≤ 8 KiB (configurable), before any decoding | `token_too_large` |
//! | three base64url segments, header a JSON object without duplicate members | `malformed` |
//! | no `crit` (RFC 7515 §4.1.11), no `jku`/`x5u`/`jwk`/`x5c` (RFC 8725 §3.10) | `unknown_crit`, `key_reference_header` |
//! | `typ` absent or in the allow-list `JWT`, `at+jwt` (RFC 8725 §3.11) | `type_not_allowed` |
//! | `alg` is exactly the algorithm of a configured key; `none` never (RFC 8725 §3.1) | `algorithm_not_allowed` |
//! | `kid` names a configured key (only compared, never used as a path) | `unknown_key` |
//! | signature | `bad_signature` |
//! | `exp` present, an integer, not past (leeway 60 s) (RFC 7519 §4.1.4) | `missing_exp`, `invalid_claim`, `expired` |
//! | `nbf`, `iat` not in the future; optional maximum age | `not_yet_valid`, `issued_in_future`, `too_old` |
//! | `iss` exactly a configured issuer; `aud` names a configured audience (RFC 7519 §4.1.1, §4.1.3) | `missing_iss`, `wrong_iss`, `missing_aud`, `wrong_aud` |
//! | `sub` present | `missing_sub` |
//! | (`iss`, `jti`) not revoked | `revoked` |

mod builder;
mod cache;
mod extractor;
pub mod future;
#[cfg(feature = "jwks")]
mod jwks;
mod keys;
mod layer;
mod scan;
mod token;
mod validation;
mod verifier;

pub use builder::JwtAuthBuilder;
pub use extractor::Claims;
#[cfg(feature = "jwks")]
pub use jwks::{JwksError, JwksKeys, JwksOptions};
pub use keys::VerifyingKey;
pub use layer::{JwtAuth, JwtAuthLayer};
pub use token::VerifiedToken;
pub use validation::TokenError;

pub(crate) use keys::{alg_name, configured_alg, min_hmac_secret, provider, KeyMaterial};

#[cfg(test)]
mod tests;
