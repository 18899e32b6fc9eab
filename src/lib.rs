//! # axum-shield
//!
//! Composable tower layers that secure an [axum](https://docs.rs/axum) HTTP API: request ids,
//! security headers, a security log, panic catching, timeouts and body limits in one
//! [`Shield`] layer, plus authentication, rate limiting and validation layers you place per
//! route. Secure by default, configured up front ([`ConfigError`] at build time, never a
//! panic at request time), and every refusal is one [`Rejection`] rendered as RFC 9457
//! problem+json.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{routing::get, Router};
//! use axum_shield::{ClientIp, Shield};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let shield = Shield::api()
//!         .trusted_proxies(["10.0.0.0/8"])?   // who may set X-Forwarded-For
//!         .build()?;                          // configuration errors surface here
//!
//!     let app = Router::new()
//!         .route("/health", get(|| async { "ok" }))
//!         .route("/ip", get(|ClientIp(ip): ClientIp| async move { ip.to_string() }))
//!         .layer(shield);
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod audit;
pub mod auth;
pub mod client_ip;
mod error;
pub mod headers;
mod interned;
pub mod rate_limit;
pub mod rejection;
pub mod request_id;
pub mod shield;
pub mod validate;

#[cfg(feature = "jwt")]
pub use auth::jwt::{Claims, JwtAuth};
pub use client_ip::ClientIp;
pub use error::ConfigError;
pub use rejection::{Rejection, RejectionKind};
pub use shield::{
    CoreFuture, Shield, ShieldBuilder, ShieldConfig, ShieldCore, ShieldService, DEFAULT_BODY_LIMIT,
    DEFAULT_TIMEOUT,
};
