#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod auth;
pub mod client_ip;
mod error;
pub mod future;
pub mod headers;
mod interned;
pub mod principal;
pub mod rate_limit;
#[cfg(feature = "redis")]
pub mod redis;
pub mod rejection;
pub mod request_id;
pub mod shield;
pub mod validate;

#[cfg(feature = "jwt")]
pub use auth::jwt::{Claims, JwtAuthLayer};
pub use client_ip::ClientIp;
pub use error::ConfigError;
pub use principal::Principal;
pub use rejection::{Rejection, RejectionKind};
pub use shield::{Shield, ShieldConfig};
