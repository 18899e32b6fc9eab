//! Strict JWT verification: keys, validation rules, the layer and the claims extractor.
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum_shield::auth::jwt::{Claims, JwtAuth};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct MyClaims { sub: String }
//!
//! async fn me(Claims(c): Claims<MyClaims>) -> String { c.sub }
//!
//! let jwt = JwtAuth::hs256(b"0123456789abcdef0123456789abcdef")?
//!     .issuer("https://id.example")
//!     .audience("orders-api")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route_layer(jwt.layer());           // 401 only on routes that exist
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

mod cache;
mod extractor;
#[cfg(feature = "jwks")]
pub mod jwks;
mod keys;
mod layer;
mod scan;
mod validation;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, Uri};
use jsonwebtoken::crypto::CryptoProvider;
use serde_json::Value;

pub use extractor::Claims;
pub use jsonwebtoken::Algorithm;
pub use keys::VerifyingKey;
pub use layer::{JwtAuthFuture, JwtAuthLayer, JwtAuthService};
pub use validation::{TokenError, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, MAX_LEEWAY};

pub(crate) use keys::{alg_name, min_hmac_secret, provider};

use self::cache::VerifiedCache;
use self::validation::Rules;
use super::challenge;
use super::revocation::{now_unix, RevocationStore};
use super::{Principal, PrincipalClaims};
use crate::ConfigError;

/// A verified token: its claims and the [`Principal`] derived from them. The JWT layer puts
/// it into request extensions; [`Claims`] reads it.
///
/// Verification reads only the registered claims and the principal mapping's claims; the
/// whole claims set is kept as the signed JSON text, which [`Claims<T>`](Claims) decodes
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
    iss: Option<validation::ClaimText>,
    jti: Option<validation::ClaimText>,
    value: std::sync::OnceLock<Value>,
}

impl VerifiedToken {
    fn from_checked(checked: validation::CheckedClaims) -> Self {
        let value = std::sync::OnceLock::new();
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

/// The keys one verification uses: borrowed static keys, or a JWKS snapshot.
type KeySnapshot<'a> = Cow<'a, Arc<[VerifyingKey]>>;

#[derive(Clone)]
enum KeySource {
    Static(Arc<[VerifyingKey]>),
    #[cfg(feature = "jwks")]
    Jwks(self::jwks::JwksKeys),
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

/// Configures strict JWT verification; [`build`](Self::build) it into a [`JwtVerifier`].
///
/// Defaults (RFC 8725, the JWT best current practices): `exp` required, `nbf` and `iat`
/// checked, 60 s leeway, `typ` limited to `JWT`/`at+jwt` when present, `sub` required,
/// tokens up to 8 KiB, read from `Authorization: Bearer` only, `error_description` off.
#[derive(Clone)]
pub struct JwtAuth {
    keys: KeySource,
    rules: Rules,
    mapping: PrincipalClaims,
    cookie: Option<String>,
    header: Option<HeaderName>,
    query: Option<String>,
    revocation: Option<Arc<dyn RevocationStore>>,
    cache: Option<usize>,
    realm: Option<String>,
    error_description: bool,
}

impl JwtAuth {
    /// Verification with one HMAC-SHA-256 secret.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the secret is shorter than 32 bytes (RFC 7518 §3.2) or no
    /// crypto backend feature is enabled.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::new(VerifyingKey::hs256(secret)?)
    }

    /// Verification with one key.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when no crypto backend feature is enabled.
    pub fn new(key: VerifyingKey) -> Result<Self, ConfigError> {
        Self::with_keys([key])
    }

    /// Verification with several keys (for example during a rotation). Each key verifies
    /// only its own algorithm and, when it has one, its own `kid`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the list is empty, two keys share a `kid`, or no crypto
    /// backend feature is enabled.
    pub fn with_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Result<Self, ConfigError> {
        provider()?;
        let keys: Vec<VerifyingKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(ConfigError::new(
                "keys",
                "no verification key was given",
                "pass at least one VerifyingKey",
            ));
        }
        for (i, a) in keys.iter().enumerate() {
            if let Some(kid) = a.kid() {
                if keys[i + 1..].iter().any(|b| b.kid() == Some(kid)) {
                    return Err(ConfigError::new(
                        "keys",
                        format!("two keys share the kid {kid:?}"),
                        "give every key a distinct kid",
                    ));
                }
            }
        }
        Ok(Self::from_source(KeySource::Static(keys.into())))
    }

    /// Verification with keys fetched from a JWKS URL or OIDC discovery (feature `jwks`).
    /// When the key set came from discovery, the discovered issuer is required.
    #[cfg(feature = "jwks")]
    pub fn jwks(keys: self::jwks::JwksKeys) -> Self {
        let issuer = keys.issuer().map(str::to_owned);
        let mut auth = Self::from_source(KeySource::Jwks(keys));
        if let Some(issuer) = issuer {
            auth.rules.issuers.push(issuer);
        }
        auth
    }

    fn from_source(keys: KeySource) -> Self {
        Self {
            keys,
            rules: Rules::default(),
            mapping: PrincipalClaims::default(),
            cookie: None,
            header: None,
            query: None,
            revocation: None,
            cache: None,
            realm: None,
            error_description: false,
        }
    }

    /// Requires `iss` to be exactly `issuer` (call again to accept several).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.rules.issuers.push(issuer.into());
        self
    }

    /// Requires `aud` to contain `audience` (call again to accept several).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.rules.audiences.push(audience.into());
        self
    }

    /// The clock-skew tolerance for `exp`, `nbf` and `iat` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.rules.leeway = leeway.as_secs();
        self
    }

    /// Refuses tokens whose `iat` is older than `max_age` (and tokens without `iat`).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.rules.max_age = Some(max_age.as_secs());
        self
    }

    /// Replaces the `typ` allow-list (default `JWT`, `at+jwt`); with `required`, tokens
    /// without `typ` are refused too (RFC 8725 §3.11, RFC 9068 §4 for `at+jwt`).
    pub fn allowed_types<I, T>(mut self, types: I, required: bool) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.rules.types = types.into_iter().map(Into::into).collect();
        self.rules.require_typ = required;
        self
    }

    /// Whether `sub` is required (default `true`); without it the principal id is empty.
    pub fn require_subject(mut self, required: bool) -> Self {
        self.rules.require_sub = required;
        self
    }

    /// The token size cap (default 8 KiB), checked before any decoding.
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.rules.max_token_bytes = bytes;
        self
    }

    /// Where scopes and roles are read from (default: [`PrincipalClaims::default`]).
    pub fn principal_claims(mut self, mapping: PrincipalClaims) -> Self {
        self.mapping = mapping;
        self
    }

    /// Also accepts the token from the cookie `name` (opt-in; a request may carry only one
    /// token). Pair cookies with CSRF protection.
    pub fn token_from_cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// Also accepts the token as the whole value of header `name` (opt-in).
    pub fn token_from_header(mut self, name: HeaderName) -> Self {
        self.header = Some(name);
        self
    }

    /// Also accepts the token from the query parameter `name`. Off by default and
    /// discouraged: URLs end up in logs and `Referer` headers (RFC 6750 §2.3, §5.3).
    pub fn token_from_query(mut self, name: impl Into<String>) -> Self {
        self.query = Some(name.into());
        self
    }

    /// Checks every verified token that has a `jti` against `store`, keyed by (`iss`, `jti`).
    /// When the store fails, requests are refused with 503 (fail closed).
    pub fn revocation(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocation = Some(store);
        self
    }

    /// Caches up to `capacity` verified tokens signed with asymmetric keys (RSA, EC, EdDSA),
    /// keyed by the whole token (memory: at most `capacity` × the token size cap). Cached tokens are still checked for expiry and
    /// revocation on every request. An entry counts only for the key set that verified it:
    /// once a JWKS key set is refreshed, each cached token is verified again against the new
    /// keys, so a token whose key was rotated out is refused, as without the cache. HMAC
    /// tokens are not cached: verifying them is cheaper than the lookup.
    pub fn cache_verified(mut self, capacity: usize) -> Self {
        self.cache = Some(capacity);
        self
    }

    /// The `realm` of `WWW-Authenticate` challenges.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Sends a coarse `error_description` ("expired", "revoked", "invalid") with
    /// `invalid_token`. Off by default: the reason is in the security event instead.
    pub fn error_description(mut self, enabled: bool) -> Self {
        self.error_description = enabled;
        self
    }

    /// Validates the configuration and builds the verifier.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an empty issuer or audience, a token cap outside 256 B..=64 KiB,
    /// a leeway above 10 minutes, an unusable realm, cookie or query name, a zero cache
    /// capacity, or no crypto backend.
    pub fn build(self) -> Result<JwtVerifier, ConfigError> {
        let provider = provider()?;
        let r = &self.rules;
        if r.issuers.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "issuer",
                "the issuer is empty",
                "set the exact `iss` your identity provider writes",
            ));
        }
        if r.audiences.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "audience",
                "the audience is empty",
                "set this API's audience identifier",
            ));
        }
        if !(256..=64 * 1024).contains(&r.max_token_bytes) {
            return Err(ConfigError::new(
                "max_token_bytes",
                format!("{} is out of range", r.max_token_bytes),
                "use a cap between 256 and 65536 bytes (default 8192)",
            ));
        }
        if r.leeway > MAX_LEEWAY.as_secs() {
            return Err(ConfigError::new(
                "leeway",
                format!("{} s is too lenient", r.leeway),
                "use at most 600 s (default 60 s)",
            ));
        }
        if r.types.is_empty() && r.require_typ {
            return Err(ConfigError::new(
                "allowed_types",
                "no type is allowed but one is required",
                "allow `JWT` or `at+jwt`",
            ));
        }
        if let Some(realm) = &self.realm {
            if !challenge::is_quotable(realm) {
                return Err(ConfigError::new(
                    "realm",
                    "the realm cannot be quoted in a header",
                    "use printable ASCII without quotes or backslashes",
                ));
            }
        }
        for (setting, name) in [
            ("token_from_cookie", &self.cookie),
            ("token_from_query", &self.query),
        ] {
            if let Some(name) = name {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err(ConfigError::new(
                        setting,
                        format!("{name:?} is not a usable name"),
                        "use ASCII letters, digits, `-`, `_` or `.`",
                    ));
                }
            }
        }
        if self.cache == Some(0) {
            return Err(ConfigError::new(
                "cache_verified",
                "the capacity is zero",
                "use a positive capacity such as 10000",
            ));
        }
        Ok(JwtVerifier {
            inner: Arc::new(VerifierInner {
                provider,
                keys: self.keys,
                rules: self.rules,
                mapping: self.mapping,
                cookie: self.cookie,
                header: self.header,
                query: self.query,
                revocation: self.revocation,
                cache: self.cache.map(VerifiedCache::new),
                header_memo: validation::HeaderMemo::new(),
                realm: self.realm,
                error_description: self.error_description,
            }),
        })
    }

    /// Shorthand for `build()?.layer()`.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn layer(self) -> Result<JwtAuthLayer, ConfigError> {
        Ok(self.build()?.layer())
    }
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("keys", &self.keys)
            .field("rules", &self.rules)
            .field("revocation", &self.revocation.is_some())
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

pub(crate) struct VerifierInner {
    provider: &'static CryptoProvider,
    keys: KeySource,
    pub(crate) rules: Rules,
    mapping: PrincipalClaims,
    cookie: Option<String>,
    header: Option<HeaderName>,
    query: Option<String>,
    pub(crate) revocation: Option<Arc<dyn RevocationStore>>,
    cache: Option<VerifiedCache>,
    header_memo: validation::HeaderMemo,
    pub(crate) realm: Option<String>,
    pub(crate) error_description: bool,
}

/// A built, validated JWT verifier. Cheap to clone (an `Arc`); every layer made from it
/// shares its key set, cache and revocation store.
#[derive(Clone)]
pub struct JwtVerifier {
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
    /// A layer that requires a valid token: 401 without one or with an invalid one.
    pub fn layer(&self) -> JwtAuthLayer {
        JwtAuthLayer::new(self.clone(), false)
    }

    /// A layer that lets requests without any token through anonymously (handlers see
    /// `Option<Claims<T>>` = `None`) but still refuses a token that fails verification.
    pub fn optional_layer(&self) -> JwtAuthLayer {
        JwtAuthLayer::new(self.clone(), true)
    }

    /// Verifies `token` completely: current keys (refreshing a JWKS key set on an unknown
    /// `kid`), all claim rules at the current time, and revocation.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] that refused the token; [`TokenError::KeysUnavailable`] also when
    /// the revocation store fails.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
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
    pub fn verify_at(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        self.check_sync(token, now)
    }

    /// The number of tokens in the verified-token cache (0 when it is off).
    pub fn cached_tokens(&self) -> usize {
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
                    let fresh = hit.iat.is_some_and(|iat| {
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

#[cfg(test)]
mod tests;
