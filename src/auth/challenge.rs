//! RFC 6750 §3 `WWW-Authenticate: Bearer` challenges, shared by the authentication and
//! authorization layers.

use http::header::{HeaderValue, WWW_AUTHENTICATE};

use crate::{Rejection, RejectionKind};

/// Whether `s` may appear inside a quoted `WWW-Authenticate` parameter without escaping:
/// RFC 6750 §3 limits `realm`, `scope` and `error_description` to printable ASCII minus
/// `"` and `\`.
#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
pub(crate) fn is_quotable(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// Whether `s` is one RFC 6749 §3.3 scope token (`NQCHAR`: printable ASCII minus space,
/// `"` and `\`).
pub(crate) fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn challenge(scheme: &str, realm: Option<&str>, params: &[(&str, &str)]) -> HeaderValue {
    let mut value = String::from(scheme);
    let mut first = true;
    let mut push = |name: &str, v: &str| {
        value.push_str(if first { " " } else { ", " });
        first = false;
        value.push_str(name);
        value.push_str("=\"");
        value.push_str(v);
        value.push('"');
    };
    if let Some(realm) = realm {
        push("realm", realm);
    }
    for (name, v) in params {
        push(name, v);
    }
    // Every piece was checked by `is_quotable` at configuration time or is a constant.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// 401 without an `error`: no credentials were sent (RFC 6750 §3.1, last paragraph).
pub(crate) fn missing(scheme: &str, realm: Option<&str>) -> Rejection {
    Rejection::new(RejectionKind::MissingCredentials)
        .with_header(WWW_AUTHENTICATE, challenge(scheme, realm, &[]))
}

/// 401 `error="invalid_token"`.
#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
pub(crate) fn invalid_token(realm: Option<&str>, description: Option<&str>) -> Rejection {
    let mut params = vec![("error", "invalid_token")];
    if let Some(d) = description {
        params.push(("error_description", d));
    }
    Rejection::new(RejectionKind::InvalidToken)
        .with_header(WWW_AUTHENTICATE, challenge("Bearer", realm, &params))
}

/// 400 `error="invalid_request"`: for example two `Authorization` headers or two methods
/// of sending the token (RFC 6750 §3.1).
#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
pub(crate) fn invalid_request(realm: Option<&str>) -> Rejection {
    Rejection::new(RejectionKind::BadRequest)
        .with_detail("The request carries more than one credential.")
        .with_header(
            WWW_AUTHENTICATE,
            challenge("Bearer", realm, &[("error", "invalid_request")]),
        )
}

/// 403 `error="insufficient_scope"`, with the `scope` needed when it is about scopes.
pub(crate) fn insufficient_scope(realm: Option<&str>, scope: Option<&str>) -> Rejection {
    let mut params = vec![("error", "insufficient_scope")];
    if let Some(scope) = scope {
        params.push(("scope", scope));
    }
    Rejection::new(RejectionKind::InsufficientScope)
        .with_header(WWW_AUTHENTICATE, challenge("Bearer", realm, &params))
}
