//! The strict validation of one compact JWS/JWT: parsing, header rules, signature, claims.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::Algorithm;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::keys::{parse_alg, Key};
use super::scan::{self, Audience, Claim, ScanError};
use crate::audit::SecurityEventKind;
use crate::auth::scope::PrincipalClaims;
use crate::principal::{Principal, PrincipalKind};

/// Why a token was refused. Shown only in logs and security events (its
/// [`reason`](Self::reason)), never to the client unless `error_description` is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than the configured size cap; refused before any decoding.
    TooLarge,
    /// Not three base64url segments of JSON, or a header that is not a JSON object.
    Malformed,
    /// `alg` is `none`, unknown, or not the algorithm of any configured key (RFC 8725 §3.1).
    AlgorithmNotAllowed,
    /// `typ` is not in the allow-list (RFC 8725 §3.11).
    TypeNotAllowed,
    /// The header has a `crit` parameter this implementation does not understand
    /// (RFC 7515 §4.1.11).
    CriticalHeader,
    /// The header points at a key (`jku`, `x5u`, `jwk`, `x5c`): keys are never taken from
    /// the token (RFC 8725 §3.10).
    KeyReferenceHeader,
    /// The `kid` is malformed or names no configured key.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// The payload is not a JSON object (a JWS, but not a JWT).
    NotAClaimsSet,
    /// `exp` is missing (RFC 8725 §3.10: tokens must expire).
    MissingExpiry,
    /// A registered claim has the wrong type (for example a string or float `exp`).
    InvalidClaim,
    /// The token has expired.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is in the future.
    IssuedInFuture,
    /// `iat` is older than the configured maximum age, or missing while one is configured.
    TooOld,
    /// `iss` is missing while an issuer is configured.
    MissingIssuer,
    /// `iss` is not a configured issuer.
    WrongIssuer,
    /// `aud` is missing while an audience is configured.
    MissingAudience,
    /// `aud` names no configured audience (or one is present and none is configured,
    /// RFC 7519 §4.1.3).
    WrongAudience,
    /// `sub` is missing or empty.
    MissingSubject,
    /// The token's (`iss`, `jti`) is on the revocation list.
    Revoked,
    /// No keys are available (the key set could not be fetched): fail closed.
    KeysUnavailable,
}

impl TokenError {
    /// A short machine-readable reason, used in security events.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::TooLarge => "token_too_large",
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::TypeNotAllowed => "type_not_allowed",
            Self::CriticalHeader => "unknown_crit",
            Self::KeyReferenceHeader => "key_reference_header",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::NotAClaimsSet => "not_a_claims_set",
            Self::MissingExpiry => "missing_exp",
            Self::InvalidClaim => "invalid_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::TooOld => "too_old",
            Self::MissingIssuer => "missing_iss",
            Self::WrongIssuer => "wrong_iss",
            Self::MissingAudience => "missing_aud",
            Self::WrongAudience => "wrong_aud",
            Self::MissingSubject => "missing_sub",
            Self::Revoked => "revoked",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }

    /// The security event a refusal for this reason is reported as.
    pub(crate) fn event_kind(self) -> SecurityEventKind {
        match self {
            Self::Revoked => SecurityEventKind::AuthnTokenRevoked,
            Self::TooLarge => SecurityEventKind::MaliciousHeader,
            Self::KeysUnavailable => SecurityEventKind::SysDependencyFail,
            _ => SecurityEventKind::AuthnTokenInvalid,
        }
    }

    /// The `error_description` sent when descriptions are enabled: deliberately coarse.
    pub(crate) const fn description(self) -> &'static str {
        match self {
            Self::Expired => "The access token expired",
            Self::NotYetValid | Self::IssuedInFuture => "The access token is not valid yet",
            Self::Revoked => "The access token was revoked",
            _ => "The access token is invalid",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for TokenError {}

/// The validation rules: strict by default.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) issuers: Vec<std::sync::Arc<str>>,
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: u64,
    pub(crate) max_age: Option<u64>,
    pub(crate) types: Vec<String>,
    pub(crate) require_typ: bool,
    pub(crate) require_sub: bool,
    pub(crate) max_token_bytes: usize,
}

/// The default token size cap: 8 KiB.
pub(crate) const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The default clock-skew leeway: 60 seconds.
pub(crate) const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// The largest clock-skew leeway [`JwtAuthBuilder::build`](super::JwtAuthBuilder::build)
/// accepts: 10 minutes. Revocation stores keep every entry this long after the token's
/// `exp`, so that no verifier can accept a revoked token during its leeway.
pub(crate) const MAX_LEEWAY: Duration = crate::auth::revocation::MAX_LEEWAY;

impl Default for Rules {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY.as_secs(),
            max_age: None,
            types: vec!["JWT".into(), "at+jwt".into()],
            require_typ: false,
            require_sub: true,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

/// The protected header, as far as this implementation reads it. Unknown members are
/// ignored, duplicate members refused (serde rejects duplicate fields; RFC 7515 §5.2).
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    typ: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
    #[serde(default)]
    jku: Option<IgnoredAny>,
    #[serde(default)]
    x5u: Option<IgnoredAny>,
    #[serde(default)]
    jwk: Option<IgnoredAny>,
    #[serde(default)]
    x5c: Option<IgnoredAny>,
}

/// What passed the signature check.
/// The first header segment (base64url text, no `kid`) whose token verified, and its `alg`.
pub(crate) type HeaderMemo = std::sync::OnceLock<(Box<str>, Algorithm)>;

pub(crate) struct SignedParts {
    pub(crate) kid_known: bool,
    pub(crate) payload: Vec<u8>,
    pub(crate) asymmetric: bool,
}

/// The maximum `kid` length we look up; longer ids are refused as malformed.
const MAX_KID_BYTES: usize = 256;

/// The longest signature segment accepted: an RSA-8192 signature is 1 366 base64url
/// characters; anything longer cannot verify and is refused before decoding.
const MAX_SIGNATURE_B64: usize = 1400;

/// Header segments up to this many decoded bytes are decoded on the stack.
const MAX_STACK_HEADER: usize = 512;

/// Splits, decodes and checks the header and signature of a compact JWS against `keys`.
///
/// Errors are the header-level failures and [`TokenError::UnknownKey`] when no key fits
/// (the JWKS source refreshes on it).
pub(crate) fn verify_signature(
    provider: &CryptoProvider,
    rules: &Rules,
    keys: &[Key],
    header_memo: &HeaderMemo,
    token: &str,
) -> Result<SignedParts, TokenError> {
    // RFC 8725 §3.x / our cap: bound all work by the token's size before decoding anything.
    if token.len() > rules.max_token_bytes {
        return Err(TokenError::TooLarge);
    }
    let mut segments = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if h64.is_empty() || p64.is_empty() || s64.is_empty() {
        return Err(TokenError::Malformed);
    }
    // The header of a token that verified before, byte for byte, parses to the same result:
    // skip decoding and parsing it again (only headers without `kid` are remembered, and
    // only once their token's signature verified).
    let mut header_buf = [0u8; MAX_STACK_HEADER];
    let header_json;
    let header: Header<'_>;
    let (alg, kid) = match header_memo.get() {
        Some((known, alg)) if **known == *h64 => (*alg, None),
        _ => {
            // URL_SAFE_NO_PAD refuses padding and non-canonical trailing bits (RFC 7515 §2).
            // Headers are small: decode into the stack, not the heap (this runs on every request).
            header_json = decode_into(h64, &mut header_buf)?;
            // RFC 7515 §4: the header is a JSON object (serde would also accept an array for a struct).
            if header_json.trim_ascii_start().first() != Some(&b'{') {
                return Err(TokenError::Malformed);
            }
            header = serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;

            // RFC 7515 §4.1.11: a `crit` we do not understand (we understand none) must be refused.
            if header.crit.is_some() {
                return Err(TokenError::CriticalHeader);
            }
            // RFC 8725 §3.10 and §2.1: never fetch or trust key material named by the token.
            if header.jku.is_some()
                || header.x5u.is_some()
                || header.jwk.is_some()
                || header.x5c.is_some()
            {
                return Err(TokenError::KeyReferenceHeader);
            }
            // RFC 8725 §3.11 explicit typing; RFC 7515 §4.1.9: compare case-insensitively, the
            // `application/` prefix may be omitted.
            match header.typ.as_deref() {
                Some(typ) => {
                    let typ = strip_prefix_ci(typ, "application/").unwrap_or(typ);
                    if !rules.types.iter().any(|t| t.eq_ignore_ascii_case(typ)) {
                        return Err(TokenError::TypeNotAllowed);
                    }
                }
                None if rules.require_typ => return Err(TokenError::TypeNotAllowed),
                None => {}
            }
            // RFC 8725 §3.1: `none` and unknown names never parse.
            let alg = parse_alg(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
            (alg, header.kid.as_deref())
        }
    };
    if let Some(kid) = kid {
        // The kid is only ever compared with configured ids, never used as a path or query.
        if kid.len() > MAX_KID_BYTES || kid.chars().any(char::is_control) {
            return Err(TokenError::UnknownKey);
        }
        // A kid no key carries is "unknown" (a JWKS source refreshes on it), whatever the alg.
        if !keys
            .iter()
            .any(|k| k.kid.as_deref().is_none_or(|have| have == kid))
        {
            return Err(TokenError::UnknownKey);
        }
    }
    // Only the algorithms of configured keys (RFC 8725 §3.1): each key has exactly one.
    if !keys.iter().any(|k| k.alg == alg) {
        return Err(if keys.is_empty() {
            TokenError::UnknownKey
        } else {
            TokenError::AlgorithmNotAllowed
        });
    }

    if s64.len() > MAX_SIGNATURE_B64 {
        return Err(TokenError::BadSignature);
    }
    let mut signature_buf = [0u8; MAX_SIGNATURE_B64 * 3 / 4 + 3];
    let signature = decode_into(s64, &mut signature_buf)?;
    let message = &token.as_bytes()[..h64.len() + 1 + p64.len()];
    let mut tried = 0usize;
    let mut verified = None;
    for key in keys.iter().filter(|k| k.alg == alg) {
        let matches = match (kid, key.kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            (None, Some(_)) | (_, None) => true,
        };
        if !matches {
            continue;
        }
        // Bound the work a token without `kid` can cause against a large key set.
        tried += 1;
        if tried > 4 {
            break;
        }
        if verify_with(provider, alg, key, message, &signature) {
            verified = Some(key);
            break;
        }
    }
    if tried == 0 {
        return Err(TokenError::UnknownKey);
    }
    let key = verified.ok_or(TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(p64)
        .map_err(|_| TokenError::Malformed)?;
    if kid.is_none() && header_memo.get().is_none() {
        let _ = header_memo.set((Box::from(h64), alg));
    }
    Ok(SignedParts {
        kid_known: kid.is_some(),
        payload,
        asymmetric: key.is_asymmetric(),
    })
}

/// Base64url-decodes `text` into `buf` when it fits, else onto the heap.
fn decode_into<'b>(text: &str, buf: &'b mut [u8]) -> Result<Cow<'b, [u8]>, TokenError> {
    if text.len() / 4 * 3 + 3 <= buf.len() {
        let n = URL_SAFE_NO_PAD
            .decode_slice(text, buf)
            .map_err(|_| TokenError::Malformed)?;
        Ok(Cow::Borrowed(&buf[..n]))
    } else {
        URL_SAFE_NO_PAD
            .decode(text)
            .map(Cow::Owned)
            .map_err(|_| TokenError::Malformed)
    }
}

fn verify_with(
    provider: &CryptoProvider,
    alg: Algorithm,
    key: &Key,
    message: &[u8],
    signature: &[u8],
) -> bool {
    if let Some(hmac) = &key.hmac {
        return hmac.verify(message, signature);
    }
    match (provider.verifier_factory)(&alg, &key.key) {
        // jsonwebtoken verifiers take a `Vec`; the copy is small next to an asymmetric check.
        Ok(verifier) => verifier.verify(message, &signature.to_vec()).is_ok(),
        Err(_) => false,
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// The claims of a verified token, read in one pass by [`scan`](super::scan).
#[derive(Debug)]
pub(crate) struct CheckedClaims {
    pub(crate) exp: u64,
    pub(crate) iat: Option<u64>,
    pub(crate) iss: Option<ClaimText>,
    pub(crate) jti: Option<ClaimText>,
    pub(crate) principal: Principal,
    /// The whole claims set, as signed (valid UTF-8 JSON object).
    pub(crate) json: String,
    /// Already parsed when the principal mapping needed it.
    pub(crate) value: Option<Value>,
}

/// Where a claim's text is kept: a byte range of the signed JSON when it had no escapes
/// (nothing to copy), else its own decoded copy.
#[derive(Debug)]
pub(crate) enum ClaimText {
    Range(u32, u32),
    Owned(Box<str>),
}

impl ClaimText {
    fn new(text: Cow<'_, str>, payload: &[u8]) -> Self {
        if let Cow::Borrowed(t) = &text {
            let start = (t.as_ptr() as usize).wrapping_sub(payload.as_ptr() as usize);
            let end = start.wrapping_add(t.len());
            if start <= end && end <= payload.len() {
                if let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(end)) {
                    return Self::Range(start, end);
                }
            }
        }
        Self::Owned(Box::from(text.as_ref()))
    }

    /// The text, given the claims set it came from.
    pub(crate) fn get<'a>(&'a self, json: &'a str) -> &'a str {
        match self {
            Self::Range(start, end) => json.get(*start as usize..*end as usize).unwrap_or(""),
            Self::Owned(text) => text,
        }
    }
}

fn numeric_date(claim: Claim<u64>) -> Result<Option<u64>, TokenError> {
    match claim {
        Claim::Absent => Ok(None),
        Claim::Invalid => Err(TokenError::InvalidClaim),
        Claim::Present(n) => Ok(Some(n)),
    }
}

/// Checks the registered claims of a verified payload at time `now` (Unix seconds) and maps
/// it to a [`Principal`] with `mapping`.
pub(crate) fn check_claims(
    rules: &Rules,
    mapping: &PrincipalClaims,
    payload: Vec<u8>,
    now: u64,
) -> Result<CheckedClaims, TokenError> {
    // One UTF-8 check of the whole payload, up front: the claims text is kept as a `String`
    // (handlers decode `Claims<T>` from it) and the scan then reads it as `str`. Moved, not
    // copied, so the `ClaimText` ranges below point into the kept text.
    let json = String::from_utf8(payload).map_err(|_| TokenError::NotAClaimsSet)?;
    let fast = scan::fast_path_fits(mapping);
    let none = PrincipalClaims::none();
    let mut claims = scan::scan(&json, &rules.audiences, if fast { mapping } else { &none })
        .map_err(|e| match e {
            // RFC 7519 §4: duplicate claim names are refused rather than resolved.
            ScanError::Duplicate => TokenError::InvalidClaim,
            ScanError::NotAClaimsSet => TokenError::NotAClaimsSet,
        })?;
    let leeway = rules.leeway;
    // RFC 8725 §3.10 / RFC 7519 §4.1.4: tokens without an expiry are refused.
    let exp = numeric_date(std::mem::take(&mut claims.exp))?.ok_or(TokenError::MissingExpiry)?;
    let nbf = numeric_date(std::mem::take(&mut claims.nbf))?;
    let iat = numeric_date(std::mem::take(&mut claims.iat))?;
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    // RFC 7519 §4.1.5.
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
    }
    if let Some(max_age) = rules.max_age {
        let iat = iat.ok_or(TokenError::TooOld)?;
        if now > iat.saturating_add(max_age).saturating_add(leeway) {
            return Err(TokenError::TooOld);
        }
    }
    // RFC 7519 §4.1.1 / RFC 8725 §3.8: exact, case-sensitive issuer match.
    let iss = match std::mem::take(&mut claims.iss) {
        Claim::Invalid => return Err(TokenError::InvalidClaim),
        Claim::Absent if !rules.issuers.is_empty() => return Err(TokenError::MissingIssuer),
        Claim::Present(iss)
            if !rules.issuers.is_empty() && !rules.issuers.iter().any(|i| **i == *iss) =>
        {
            return Err(TokenError::WrongIssuer)
        }
        Claim::Absent => None,
        Claim::Present(iss) => Some(iss),
    };
    // RFC 7519 §4.1.3 / RFC 8725 §3.9: a present `aud` must name us; configured means required.
    match claims.aud {
        Audience::Absent if !rules.audiences.is_empty() => return Err(TokenError::MissingAudience),
        Audience::Absent | Audience::Matched => {}
        Audience::NotMatched => return Err(TokenError::WrongAudience),
        Audience::Invalid => return Err(TokenError::InvalidClaim),
    }
    let sub = match std::mem::take(&mut claims.sub) {
        Claim::Invalid => return Err(TokenError::InvalidClaim),
        Claim::Present(sub) if !sub.is_empty() => sub,
        Claim::Absent | Claim::Present(_) if rules.require_sub => {
            return Err(TokenError::MissingSubject)
        }
        Claim::Absent | Claim::Present(_) => std::borrow::Cow::Borrowed(""),
    };
    let jti = match std::mem::take(&mut claims.jti) {
        Claim::Invalid => return Err(TokenError::InvalidClaim),
        Claim::Absent => None,
        Claim::Present(jti) => Some(ClaimText::new(jti, json.as_bytes())),
    };
    let (principal, value) = if fast {
        (claims.principal(mapping, PrincipalKind::Jwt, &sub), None)
    } else {
        let value: Value = serde_json::from_str(&json).map_err(|_| TokenError::NotAClaimsSet)?;
        let principal = mapping.principal(PrincipalKind::Jwt, &sub, &value);
        (principal, Some(value))
    };
    // The principal carries its issuer, so per-principal rate-limit keys need no token.
    // The configured issuer it matched is shared, not copied per request.
    let principal = match iss.as_deref() {
        Some(issuer) => match rules.issuers.iter().find(|i| &***i == issuer) {
            Some(configured) => principal.with_issuer(std::sync::Arc::clone(configured)),
            None => principal.with_issuer(issuer),
        },
        None => principal,
    };
    let iss = iss.map(|i| ClaimText::new(i, json.as_bytes()));
    drop(claims);
    Ok(CheckedClaims {
        exp,
        iat,
        iss,
        jti,
        principal,
        json,
        value,
    })
}
