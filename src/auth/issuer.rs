//! Signing tokens that the verifier accepts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};
use serde::Serialize;
use serde_json::{Map, Value};

use super::jwt::{alg_name, configured_alg, min_hmac_secret, provider, KeyMaterial};
use super::revocation::now_unix;
use crate::ConfigError;

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The custom claims did not serialize to a JSON object.
    #[error("the claims must serialize to a JSON object")]
    ClaimsNotAnObject,
    /// The subject is empty.
    #[error("the subject is empty")]
    EmptySubject,
    /// The system random source failed (for the `jti`).
    #[error("no system randomness")]
    Random,
    /// The signing backend failed.
    #[error("signing failed")]
    Signing,
}

/// A signed token and what a caller may need to store about it.
#[derive(Clone)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// Its `jti`, to revoke it later.
    pub jti: String,
    /// Its `exp`, in Unix seconds.
    pub expires_at: u64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[redacted]")
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Signs access tokens with one configured, persistent key.
///
/// Every token gets `iss`, `aud` (when set), `sub`, `iat`, `nbf` (= `iat`), `exp`
/// (`iat` + TTL, default 15 minutes) and a random 128-bit `jti` (RFC 7519 §4.1), plus the
/// header `typ: JWT` and the key's `kid`. Verify them with a
/// [`JwtAuthLayer`](super::jwt::JwtAuthLayer) configured with the same key, issuer and
/// audience. Load the key from configuration: a key generated per process (or per call)
/// makes tokens unverifiable after a restart or on another instance.
///
/// [`TokenIssuer::hs256`] (and its siblings) return a [`TokenIssuerBuilder`] whose setters
/// never fail; [`build`](TokenIssuerBuilder::build) checks the key once.
///
/// ```
/// use axum_shield::auth::{jwt::JwtAuthLayer, TokenIssuer};
/// use serde_json::json;
///
/// let secret = b"a-32-byte-or-longer-secret-value!!";
/// let issuer = TokenIssuer::hs256(secret).issuer("https://api.example").audience("api").build()?;
/// let issued = issuer.issue("alice", &json!({ "scope": "orders:read" })).unwrap();
///
/// let jwt = JwtAuthLayer::hs256(secret).issuer("https://api.example").audience("api").build()?;
/// let verified = jwt.verify_at(&issued.token, issued.expires_at - 60).unwrap();
/// assert!(verified.principal().has_scope("orders:read"));
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct TokenIssuer {
    key: Arc<EncodingKey>,
    alg: Algorithm,
    provider: &'static CryptoProvider,
    kid: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    ttl: Duration,
}

impl TokenIssuer {
    /// An HS256 issuer; the secret must be at least 32 bytes (RFC 7518 §3.2).
    pub fn hs256(secret: impl AsRef<[u8]>) -> TokenIssuerBuilder {
        TokenIssuerBuilder::new("HS256", KeyMaterial::Secret(Arc::from(secret.as_ref())))
    }

    /// An HS384 issuer; the secret must be at least 48 bytes (RFC 7518 §3.2).
    pub fn hs384(secret: impl AsRef<[u8]>) -> TokenIssuerBuilder {
        TokenIssuerBuilder::new("HS384", KeyMaterial::Secret(Arc::from(secret.as_ref())))
    }

    /// An HS512 issuer; the secret must be at least 64 bytes (RFC 7518 §3.2).
    pub fn hs512(secret: impl AsRef<[u8]>) -> TokenIssuerBuilder {
        TokenIssuerBuilder::new("HS512", KeyMaterial::Secret(Arc::from(secret.as_ref())))
    }

    /// An issuer signing with a PKCS#8 private key in PEM form, for an asymmetric algorithm
    /// named as in a JWT header: `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`,
    /// `ES256`, `ES384` or `EdDSA`.
    pub fn from_pem(alg: &str, pem: impl AsRef<[u8]>) -> TokenIssuerBuilder {
        TokenIssuerBuilder::new(alg, KeyMaterial::Pem(Arc::from(pem.as_ref())))
    }

    /// Signs a token for `subject` with the custom `claims` (a struct or JSON object).
    /// Registered claims set by the issuer (`iss`, `aud`, `sub`, `iat`, `nbf`, `exp`, `jti`)
    /// replace any of the same name in `claims`.
    ///
    /// # Errors
    ///
    /// An [`IssueError`] when the claims are not an object, the subject is empty, or the
    /// random source or signer fails.
    pub fn issue<C: Serialize>(
        &self,
        subject: &str,
        claims: &C,
    ) -> Result<IssuedToken, IssueError> {
        self.issue_at(subject, claims, now_unix())
    }

    /// Like [`issue`](Self::issue), at time `now` (Unix seconds).
    ///
    /// # Errors
    ///
    /// As [`issue`](Self::issue).
    pub fn issue_at<C: Serialize>(
        &self,
        subject: &str,
        claims: &C,
        now: u64,
    ) -> Result<IssuedToken, IssueError> {
        if subject.is_empty() {
            return Err(IssueError::EmptySubject);
        }
        let Ok(Value::Object(mut map)) = serde_json::to_value(claims) else {
            return Err(IssueError::ClaimsNotAnObject);
        };
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|_| IssueError::Random)?;
        let jti = URL_SAFE_NO_PAD.encode(random);
        let exp = now.saturating_add(self.ttl.as_secs());
        if let Some(iss) = &self.issuer {
            map.insert("iss".into(), iss.clone().into());
        }
        if let Some(aud) = &self.audience {
            map.insert("aud".into(), aud.clone().into());
        }
        map.insert("sub".into(), subject.into());
        map.insert("iat".into(), now.into());
        map.insert("nbf".into(), now.into());
        map.insert("exp".into(), exp.into());
        map.insert("jti".into(), jti.clone().into());
        Ok(IssuedToken {
            token: self.sign(&map)?,
            jti,
            expires_at: exp,
        })
    }

    fn sign(&self, claims: &Map<String, Value>) -> Result<String, IssueError> {
        let mut header = Map::new();
        header.insert("alg".into(), alg_name(self.alg).into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = &self.kid {
            header.insert("kid".into(), kid.clone().into());
        }
        let header = serde_json::to_vec(&header).map_err(|_| IssueError::Signing)?;
        let payload = serde_json::to_vec(claims).map_err(|_| IssueError::Signing)?;
        let mut message = URL_SAFE_NO_PAD.encode(header);
        message.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut message);
        let signer = (self.provider.signer_factory)(&self.alg, &self.key)
            .map_err(|_| IssueError::Signing)?;
        let signature = signer
            .try_sign(message.as_bytes())
            .map_err(|_| IssueError::Signing)?;
        message.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut message);
        Ok(message)
    }
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("alg", &alg_name(self.alg))
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The settings of a [`TokenIssuer`]; made by [`TokenIssuer::hs256`] and its siblings,
/// checked by [`build`](Self::build).
#[derive(Clone)]
pub struct TokenIssuerBuilder {
    alg: String,
    material: KeyMaterial,
    kid: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    ttl: Duration,
}

impl TokenIssuerBuilder {
    fn new(alg: &str, material: KeyMaterial) -> Self {
        Self {
            alg: alg.to_owned(),
            material,
            kid: None,
            issuer: None,
            audience: None,
            ttl: Duration::from_secs(15 * 60),
        }
    }

    /// Sets `iss`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets `aud`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets the `kid` header.
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Sets the lifetime (default 15 minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Checks the key and builds the issuer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the algorithm is unknown, an HMAC secret is shorter than the
    /// hash output, a PEM is given for an HMAC algorithm or is not a private key that can
    /// sign with the algorithm, or no crypto backend feature is enabled.
    pub fn build(self) -> Result<TokenIssuer, ConfigError> {
        let provider = provider()?;
        let alg = configured_alg(&self.alg)?;
        let key = match &self.material {
            KeyMaterial::Secret(secret) => hmac_key(alg, secret)?,
            KeyMaterial::Pem(pem) => pem_key(alg, pem)?,
        };
        let issuer = TokenIssuer {
            key: Arc::new(key),
            alg,
            provider,
            kid: self.kid,
            issuer: self.issuer,
            audience: self.audience,
            ttl: self.ttl,
        };
        if matches!(self.material, KeyMaterial::Pem(_)) {
            // Sign once now so that a key of the wrong curve or size fails here, not per request.
            issuer.sign(&Map::new()).map_err(|_| {
                ConfigError::new(
                    "key",
                    format!("the key cannot sign {}", alg_name(alg)),
                    "use a key matching the algorithm",
                )
            })?;
        }
        Ok(issuer)
    }
}

fn hmac_key(alg: Algorithm, secret: &[u8]) -> Result<EncodingKey, ConfigError> {
    if alg.family() != AlgorithmFamily::Hmac {
        return Err(ConfigError::new(
            "algorithm",
            "not an HMAC algorithm",
            "use HS256, HS384 or HS512, or TokenIssuer::from_pem",
        ));
    }
    if secret.len() < min_hmac_secret(alg) {
        return Err(ConfigError::new(
            "secret",
            format!(
                "the {} secret is {} bytes, shorter than the hash output",
                alg_name(alg),
                secret.len()
            ),
            "use a random secret of at least 32 bytes for HS256 (RFC 7518 §3.2)",
        ));
    }
    Ok(EncodingKey::from_secret(secret))
}

fn pem_key(alg: Algorithm, pem: &[u8]) -> Result<EncodingKey, ConfigError> {
    match alg.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => {
            return Err(ConfigError::new(
                "algorithm",
                "HMAC keys are secrets, not PEM",
                "use TokenIssuer::hs256",
            ))
        }
    }
    .map_err(|_| {
        ConfigError::new(
            "key",
            format!("the PEM is not a {} private key", alg_name(alg)),
            "pass a PKCS#8 private key in PEM form",
        )
    })
}

impl fmt::Debug for TokenIssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        f.debug_struct("TokenIssuerBuilder")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}
