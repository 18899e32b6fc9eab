//! The built verifier: keys, rules, token extraction from a request, and the refusal for
//! each failure.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, Uri};
use jsonwebtoken::crypto::CryptoProvider;

use super::cache::VerifiedCache;
#[cfg(feature = "jwks")]
use super::jwks::JwksKeys;
use super::keys::Key;
use super::token::VerifiedToken;
use super::validation::{self, Rules, TokenError};
use crate::auth::challenge;
use crate::auth::revocation::{now_unix, RevocationStore};
use crate::auth::scope::PrincipalClaims;
use crate::rejection::{Rejection, RejectionKind};

/// The keys one verification uses: borrowed static keys, or a JWKS snapshot.
type KeySnapshot<'a> = Cow<'a, Arc<[Key]>>;

/// Where a verifier's keys come from: fixed at build time, or a refreshed JWKS key set.
#[derive(Clone)]
pub(crate) enum KeySource {
    Static(Arc<[Key]>),
    #[cfg(feature = "jwks")]
    Jwks(JwksKeys),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(keys) => f.debug_tuple("Static").field(keys).finish(),
            #[cfg(feature = "jwks")]
            Self::Jwks(jwks) => f.debug_tuple("Jwks").field(jwks).finish(),
        }
    }
}

/// What a built verifier holds; the builder fills it once.
pub(crate) struct VerifierInner {
    pub(crate) provider: &'static CryptoProvider,
    pub(crate) keys: KeySource,
    pub(crate) rules: Rules,
    pub(crate) mapping: PrincipalClaims,
    pub(crate) cookie: Option<String>,
    pub(crate) header: Option<HeaderName>,
    pub(crate) query: Option<String>,
    pub(crate) revocation: Option<Arc<dyn RevocationStore>>,
    pub(crate) cache: Option<VerifiedCache>,
    pub(crate) header_memo: validation::HeaderMemo,
    pub(crate) realm: Option<String>,
    pub(crate) error_description: bool,
}

/// A built, validated JWT verifier. Cheap to clone (an `Arc`): the layer, its services and
/// their futures share its key set, cache and revocation store.
#[derive(Clone)]
pub(crate) struct JwtVerifier {
    pub(crate) inner: Arc<VerifierInner>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.inner.keys)
            .field("rules", &self.inner.rules)
            .finish_non_exhaustive()
    }
}

/// Why a request's credentials could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extraction {
    /// More than one `Authorization` header, or a token sent by more than one method.
    Ambiguous,
    /// The token is larger than the cap.
    TooLarge,
    /// The bearer credentials are not a token68 value.
    Malformed,
}

/// How the verification of one token ended, beyond success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Token(TokenError),
    /// A dependency (JWKS endpoint, revocation store) failed: fail closed with 503.
    Dependency(&'static str),
}

impl JwtVerifier {
    /// Verifies `token` completely: current keys (refreshing a JWKS key set on an unknown
    /// `kid`), all claim rules at the current time, and revocation.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] that refused the token; [`TokenError::KeysUnavailable`] also when
    /// the revocation store fails.
    pub(crate) async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.verify_full(token).await.map_err(|f| match f {
            Failure::Token(e) => e,
            Failure::Dependency(_) => TokenError::KeysUnavailable,
        })
    }

    /// Verifies `token` against the keys held now and the claim rules at `now` (Unix
    /// seconds), without revocation or key refresh. For tests and published test vectors.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] that refused the token.
    pub(crate) fn verify_at(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        self.check_sync(token, now)
    }

    /// The number of tokens in the verified-token cache (0 when it is off).
    pub(crate) fn cached_tokens(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, VerifiedCache::len)
    }

    pub(crate) async fn verify_full(&self, token: &str) -> Result<VerifiedToken, Failure> {
        let verified = match self.check_sync(token, now_unix()) {
            Ok(v) => v,
            Err(e) if self.may_refresh(e) => self.refresh_and_check(token).await?,
            Err(e) => return Err(Failure::Token(e)),
        };
        self.check_revocation(verified).await
    }

    pub(crate) fn may_refresh(&self, e: TokenError) -> bool {
        #[cfg(feature = "jwks")]
        if matches!(self.inner.keys, KeySource::Jwks(_)) {
            return matches!(e, TokenError::UnknownKey | TokenError::KeysUnavailable);
        }
        let _ = e;
        false
    }

    pub(crate) async fn refresh_and_check(&self, token: &str) -> Result<VerifiedToken, Failure> {
        #[cfg(feature = "jwks")]
        if let KeySource::Jwks(jwks) = &self.inner.keys {
            jwks.refresh_for_unknown_kid().await;
            return match self.check_sync(token, now_unix()) {
                Ok(v) => Ok(v),
                Err(TokenError::KeysUnavailable) => Err(Failure::Dependency("jwks_unavailable")),
                Err(e) => Err(Failure::Token(e)),
            };
        }
        self.check_sync(token, now_unix()).map_err(Failure::Token)
    }

    pub(crate) fn needs_revocation_check(&self, token: &VerifiedToken) -> bool {
        self.inner.revocation.is_some() && token.jti().is_some()
    }

    pub(crate) async fn check_revocation(
        &self,
        token: VerifiedToken,
    ) -> Result<VerifiedToken, Failure> {
        let (Some(store), Some(jti)) = (&self.inner.revocation, token.jti()) else {
            return Ok(token);
        };
        match store.is_revoked(token.issuer().unwrap_or(""), jti).await {
            Ok(false) => Ok(token),
            Ok(true) => Err(Failure::Token(TokenError::Revoked)),
            Err(error) => {
                tracing::warn!(target: crate::audit::SECURITY_TARGET, %error, "revocation store unavailable");
                Err(Failure::Dependency("revocation_store_unavailable"))
            }
        }
    }

    /// The keys to verify with and their generation: borrowed when static (no reference
    /// count to bump on every request; always generation 0), a snapshot of the current set
    /// and the generation it belongs to for JWKS.
    fn current_keys(&self) -> Result<(KeySnapshot<'_>, u64), TokenError> {
        match &self.inner.keys {
            KeySource::Static(keys) => Ok((Cow::Borrowed(keys), 0)),
            #[cfg(feature = "jwks")]
            KeySource::Jwks(jwks) => {
                jwks.refresh_in_background_if_stale();
                jwks.current()
                    .map(|(keys, generation)| (Cow::Owned(keys), generation))
                    .ok_or(TokenError::KeysUnavailable)
            }
        }
    }

    /// Everything that needs no I/O: cache, header, signature, claims.
    pub(crate) fn check_sync(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        let inner = &*self.inner;
        if token.len() > inner.rules.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        // The key set first: a cached result counts only for the key-set generation that
        // verified it, so a token whose key was rotated out is verified again (and refused).
        let (keys, generation) = self.current_keys()?;
        if let Some(cache) = &inner.cache {
            if let Some(hit) = cache.get(token, now, inner.rules.leeway, generation) {
                if let Some(max_age) = inner.rules.max_age {
                    let fresh = hit.issued_at().is_some_and(|iat| {
                        now <= iat
                            .saturating_add(max_age)
                            .saturating_add(inner.rules.leeway)
                    });
                    if !fresh {
                        return Err(TokenError::TooOld);
                    }
                }
                return Ok(hit);
            }
        }
        let signed = validation::verify_signature(
            inner.provider,
            &inner.rules,
            &keys,
            &inner.header_memo,
            token,
        )?;
        let checked = validation::check_claims(&inner.rules, &inner.mapping, signed.payload, now)?;
        let verified = VerifiedToken::from_checked(checked);
        if signed.asymmetric {
            if let Some(cache) = &inner.cache {
                cache.insert(token, verified.clone(), now, generation);
            }
        }
        let _ = signed.kid_known;
        Ok(verified)
    }

    /// Finds the one token in a request (RFC 6750 §2: a client uses exactly one method).
    pub(crate) fn extract<'r>(
        &self,
        headers: &'r HeaderMap,
        uri: &'r Uri,
    ) -> Result<Option<Cow<'r, str>>, Extraction> {
        let inner = &*self.inner;
        let cap = inner.rules.max_token_bytes;
        let mut found: Option<Cow<'r, str>> = None;
        let mut put = |token: Cow<'r, str>| -> Result<(), Extraction> {
            if found.is_some() {
                return Err(Extraction::Ambiguous);
            }
            found = Some(token);
            Ok(())
        };

        let mut auth = headers.get_all(AUTHORIZATION).iter();
        if let Some(value) = auth.next() {
            if auth.next().is_some() {
                return Err(Extraction::Ambiguous);
            }
            // Bound the work before looking at the bytes ("Bearer " + token).
            if value.len() > cap + 64 {
                return Err(Extraction::TooLarge);
            }
            let value = value.to_str().map_err(|_| Extraction::Malformed)?;
            if let Some((scheme, rest)) = value.split_once(' ') {
                // RFC 7235 §2.1: the scheme is case-insensitive.
                if scheme.eq_ignore_ascii_case("bearer") {
                    let token = rest.trim_matches(' ');
                    if !is_token68(token) {
                        return Err(Extraction::Malformed);
                    }
                    if token.len() > cap {
                        return Err(Extraction::TooLarge);
                    }
                    put(Cow::Borrowed(token))?;
                }
            } else if value.eq_ignore_ascii_case("bearer") {
                return Err(Extraction::Malformed);
            }
        }
        if let Some(name) = &inner.header {
            let mut values = headers.get_all(name).iter();
            if let Some(value) = values.next() {
                if values.next().is_some() {
                    return Err(Extraction::Ambiguous);
                }
                if value.len() > cap {
                    return Err(Extraction::TooLarge);
                }
                let token = value.to_str().map_err(|_| Extraction::Malformed)?.trim();
                if !is_token68(token) {
                    return Err(Extraction::Malformed);
                }
                put(Cow::Borrowed(token))?;
            }
        }
        if let Some(name) = &inner.cookie {
            let mut seen = None;
            for value in headers.get_all(COOKIE) {
                let Ok(value) = value.to_str() else { continue };
                for pair in value.split(';') {
                    if let Some((k, v)) = pair.trim().split_once('=') {
                        if k == name {
                            if seen.is_some() {
                                return Err(Extraction::Ambiguous);
                            }
                            seen = Some(v.trim_matches('"'));
                        }
                    }
                }
            }
            if let Some(token) = seen {
                if token.len() > cap {
                    return Err(Extraction::TooLarge);
                }
                if !is_token68(token) {
                    return Err(Extraction::Malformed);
                }
                put(Cow::Borrowed(token))?;
            }
        }
        if let Some(name) = &inner.query {
            let mut seen = None;
            for pair in uri.query().unwrap_or("").split('&') {
                if let Some((k, v)) = pair.split_once('=') {
                    if k == name {
                        if seen.is_some() {
                            return Err(Extraction::Ambiguous);
                        }
                        seen = Some(v);
                    }
                }
            }
            if let Some(token) = seen {
                if token.len() > cap {
                    return Err(Extraction::TooLarge);
                }
                if !is_token68(token) {
                    return Err(Extraction::Malformed);
                }
                put(Cow::Borrowed(token))?;
            }
        }
        Ok(found)
    }
}

/// Bytes allowed in an RFC 6750 §2.1 `b64token` body, as a table: this runs over every byte
/// of every bearer token.
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    // A fold without early exit: branch-free over the token, which is valid in the common case.
    !body.is_empty()
        && body
            .bytes()
            .fold(true, |ok, b| ok & B64TOKEN[usize::from(b)])
}

impl JwtVerifier {
    /// The refusal for `failure`: 503 when a dependency failed (fail closed), else 401
    /// `Bearer error="invalid_token"` (RFC 6750 §3.1), with the coarse description when
    /// enabled.
    pub(crate) fn refusal(&self, failure: Failure) -> Rejection {
        match failure {
            Failure::Token(TokenError::KeysUnavailable) | Failure::Dependency(_) => {
                Rejection::new(RejectionKind::ServiceUnavailable)
            }
            Failure::Token(e) => challenge::invalid_token(
                self.inner.realm.as_deref(),
                self.inner.error_description.then(|| e.description()),
            ),
        }
    }
}
