//! Authentication and authorization.
//!
//! Authentication layers put a [`Principal`] into request extensions; rate limiting,
//! authorization and the security log read it from there.

mod principal;

pub use principal::{Principal, PrincipalKind};
