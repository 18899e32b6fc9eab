//! `VerifiedToken`: what the JWT layer puts into request extensions.

use std::fmt;
use std::sync::{Arc, OnceLock};

use http::Request;
use serde_json::Value;

use super::validation::{CheckedClaims, ClaimText};
use crate::principal::Principal;

/// A verified token: its claims and the [`Principal`] derived from them. The JWT layer puts
/// it into request extensions; [`Claims`](super::Claims) reads it.
///
/// Verification reads only the registered claims and the principal mapping's claims; the
/// whole claims set is kept as the signed JSON text, which [`Claims<T>`](super::Claims) decodes
/// straight into `T`, and [`claims`](Self::claims) parses once on first use.
#[derive(Clone)]
pub struct VerifiedToken {
    data: Arc<TokenData>,
    principal: Principal,
    pub(crate) exp: u64,
    iat: Option<u64>,
}

struct TokenData {
    json: String,
    iss: Option<ClaimText>,
    jti: Option<ClaimText>,
    value: OnceLock<Value>,
}

impl VerifiedToken {
    pub(crate) fn from_checked(checked: CheckedClaims) -> Self {
        let value = OnceLock::new();
        if let Some(v) = checked.value {
            let _ = value.set(v);
        }
        Self {
            data: Arc::new(TokenData {
                json: checked.json,
                iss: checked.iss,
                jti: checked.jti,
                value,
            }),
            principal: checked.principal,
            exp: checked.exp,
            iat: checked.iat,
        }
    }

    /// The whole claims set (parsed on the first call, then kept).
    pub fn claims(&self) -> &Value {
        self.data.value.get_or_init(|| {
            // Verification accepted this text as a JSON object, so this parse succeeds.
            serde_json::from_str(&self.data.json).unwrap_or(Value::Null)
        })
    }

    /// The claims set as the JSON text that was signed.
    pub fn claims_json(&self) -> &str {
        &self.data.json
    }

    /// The principal: `sub`, scopes and roles.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// `exp`, in Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.exp
    }

    /// `iat`, in Unix seconds, when present.
    pub fn issued_at(&self) -> Option<u64> {
        self.iat
    }

    /// `iss`, when present.
    pub fn issuer(&self) -> Option<&str> {
        self.data.iss.as_ref().map(|t| t.get(&self.data.json))
    }

    /// `jti`, when present.
    pub fn jti(&self) -> Option<&str> {
        self.data.jti.as_ref().map(|t| t.get(&self.data.json))
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claims may carry personal data: show only what identifies the token.
        f.debug_struct("VerifiedToken")
            .field("principal", &self.principal)
            .field("exp", &self.exp)
            .field("jti", &self.jti())
            .finish_non_exhaustive()
    }
}

/// Puts a verified token and its principal into the request's extensions, and records the
/// principal on the request span of `Shield` (a no-op without it).
pub(crate) fn insert<B>(req: &mut Request<B>, token: VerifiedToken) {
    crate::audit::record_principal(token.principal(), req.extensions());
    req.extensions_mut().insert(token.principal().clone());
    req.extensions_mut().insert(token);
}
