//! `JwtAuthBuilder`: the settings of the JWT layer, checked once in `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::cache::VerifiedCache;
#[cfg(feature = "jwks")]
use super::jwks::JwksKeys;
use super::keys::{provider, Key, VerifyingKey};
use super::layer::JwtAuthLayer;
use super::validation::{self, Rules, MAX_LEEWAY};
use super::verifier::{JwtVerifier, KeySource, VerifierInner};
use crate::auth::challenge;
use crate::auth::revocation::RevocationStore;
use crate::auth::scope::PrincipalClaims;
use crate::ConfigError;

// The entry points live beside the builder they return.
impl JwtAuthLayer {
    /// Verification with one HMAC-SHA-256 secret, at least 32 bytes long (RFC 7518 §3.2;
    /// checked by [`build`](JwtAuthBuilder::build)).
    pub fn hs256(secret: impl AsRef<[u8]>) -> JwtAuthBuilder {
        Self::keys([VerifyingKey::hs256(secret)])
    }

    /// Verification with one or several keys (for example during a rotation). Each key
    /// verifies only its own algorithm and, when it has one, its own `kid`.
    pub fn keys(keys: impl IntoIterator<Item = VerifyingKey>) -> JwtAuthBuilder {
        JwtAuthBuilder::new(Source::Keys(keys.into_iter().collect()))
    }

    /// Verification with keys fetched from a JWKS URL or OIDC discovery (feature `jwks`).
    /// When the key set came from discovery, the discovered issuer is required.
    #[cfg(feature = "jwks")]
    pub fn jwks(keys: JwksKeys) -> JwtAuthBuilder {
        let issuer = keys.issuer().map(str::to_owned);
        let mut builder = JwtAuthBuilder::new(Source::Jwks(keys));
        if let Some(issuer) = issuer {
            builder.rules.issuers.push(issuer.into());
        }
        builder
    }
}

/// Where the keys come from, as configured.
#[derive(Clone)]
enum Source {
    Keys(Vec<VerifyingKey>),
    #[cfg(feature = "jwks")]
    Jwks(JwksKeys),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keys(keys) => f.debug_tuple("Keys").field(keys).finish(),
            #[cfg(feature = "jwks")]
            Self::Jwks(jwks) => f.debug_tuple("Jwks").field(jwks).finish(),
        }
    }
}

/// Checks and prepares a static key set.
fn static_keys(specs: &[VerifyingKey]) -> Result<Arc<[Key]>, ConfigError> {
    if specs.is_empty() {
        return Err(ConfigError::new(
            "keys",
            "no verification key was given",
            "pass at least one VerifyingKey",
        ));
    }
    for (i, a) in specs.iter().enumerate() {
        if let Some(kid) = a.kid() {
            if specs[i + 1..].iter().any(|b| b.kid() == Some(kid)) {
                return Err(ConfigError::new(
                    "keys",
                    format!("two keys share the kid {kid:?}"),
                    "give every key a distinct kid",
                ));
            }
        }
    }
    specs.iter().map(Key::resolve).collect()
}

/// The settings of a [`JwtAuthLayer`]; made by [`JwtAuthLayer::hs256`],
/// [`JwtAuthLayer::keys`] or `JwtAuthLayer::jwks`, checked by [`build`](Self::build).
///
/// Every setter is infallible; `build` reports the first problem as a [`ConfigError`] that
/// names the setting and the fix.
///
/// Defaults (RFC 8725, the JWT best current practices): `exp` required, `nbf` and `iat`
/// checked, 60 s leeway, `typ` limited to `JWT`/`at+jwt` when present, `sub` required,
/// tokens up to 8 KiB, read from `Authorization: Bearer` only, a token required,
/// `error_description` off.
#[derive(Clone)]
pub struct JwtAuthBuilder {
    source: Source,
    rules: Rules,
    mapping: PrincipalClaims,
    cookie: Option<String>,
    header: Option<HeaderName>,
    query: Option<String>,
    revocation: Option<Arc<dyn RevocationStore>>,
    cache: Option<usize>,
    realm: Option<String>,
    error_description: bool,
    optional: bool,
}

impl JwtAuthBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            rules: Rules::default(),
            mapping: PrincipalClaims::default(),
            cookie: None,
            header: None,
            query: None,
            revocation: None,
            cache: None,
            realm: None,
            error_description: false,
            optional: false,
        }
    }

    /// Requires `iss` to be exactly `issuer` (call again to accept several).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.rules.issuers.push(issuer.into().into());
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
    /// keyed by the whole token (memory: at most `capacity` × the token size cap). Cached
    /// tokens are still checked for expiry and revocation on every request. An entry counts only for the key set that verified it:
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

    /// Lets requests without any token through anonymously (handlers see
    /// `Option<Claims<T>>` = `None`, no [`Principal`](crate::Principal) is set) while still
    /// refusing a token that fails verification. Off by default: a token is required.
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    /// Checks every setting and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for no key, two keys sharing a `kid`, an unknown algorithm, an HMAC
    /// secret shorter than the hash output (RFC 7518 §3.2), a PEM that is not a public key of
    /// the algorithm, an empty issuer or audience, a token cap outside 256 B..=64 KiB, a
    /// leeway above 10 minutes, an unusable realm, cookie or query name, a zero cache
    /// capacity, or no crypto backend.
    pub fn build(self) -> Result<JwtAuthLayer, ConfigError> {
        let provider = provider()?;
        let keys = match self.source {
            Source::Keys(specs) => KeySource::Static(static_keys(&specs)?),
            #[cfg(feature = "jwks")]
            Source::Jwks(jwks) => KeySource::Jwks(jwks),
        };
        let r = &self.rules;
        if r.issuers.iter().any(|i| i.is_empty()) {
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
        let verifier = JwtVerifier {
            inner: Arc::new(VerifierInner {
                provider,
                keys,
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
        };
        Ok(JwtAuthLayer::new(verifier, self.optional))
    }
}

impl fmt::Debug for JwtAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthBuilder")
            .field("source", &self.source)
            .field("rules", &self.rules)
            .field("revocation", &self.revocation.is_some())
            .field("cache", &self.cache)
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}
