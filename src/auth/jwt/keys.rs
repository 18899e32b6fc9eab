//! Verification keys and the crypto backend.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::crypto::CryptoProvider;
#[cfg(any(feature = "jwks", test))]
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::ConfigError;

/// The jsonwebtoken crypto backend chosen by this crate's features.
///
/// jsonwebtoken 11 panics at first use when neither or both of its backends are enabled and
/// no provider was installed. This crate never relies on the process default: it picks the
/// backend itself (aws-lc-rs when both `aws-lc-rs` and `rust-crypto` are on), calls it
/// directly, and also installs it as the process default (ignored if one is already
/// installed) so that direct `jsonwebtoken` calls elsewhere in the application work too.
///
/// # Errors
///
/// A [`ConfigError`] when neither the `aws-lc-rs` nor the `rust-crypto` feature is enabled.
pub(crate) fn provider() -> Result<&'static CryptoProvider, ConfigError> {
    #[cfg(feature = "aws-lc-rs")]
    let chosen: Option<&'static CryptoProvider> =
        Some(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let chosen: Option<&'static CryptoProvider> =
        Some(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER);
    #[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
    let chosen: Option<&'static CryptoProvider> = None;

    let provider = chosen.ok_or_else(|| {
        ConfigError::new(
            "features",
            "no JWT crypto backend is enabled",
            "enable the `aws-lc-rs` (default) or `rust-crypto` feature of axum-shield",
        )
    })?;
    // Ignore the error: another provider (perhaps the same) is already the process default.
    let _ = provider.install_default();
    Ok(provider)
}

/// The minimum HMAC secret length for `alg`: the hash output size (RFC 7518 §3.2).
pub(crate) fn min_hmac_secret(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

/// The `alg` header value of `alg` (RFC 7518 §3.1).
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // `Algorithm` is non-exhaustive; a future variant is never produced by `parse_alg`.
        _ => "unsupported",
    }
}

/// Parses an `alg` header value, case-sensitively (RFC 7515 §4.1.1: the value is a
/// case-sensitive string), so `none`, `None`, `NONE` and any other spelling are unknown.
pub(crate) fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn config_err(setting: &'static str, problem: impl Into<String>, fix: &'static str) -> ConfigError {
    ConfigError::new(setting, problem, fix)
}

/// Parses the algorithm name given to a key constructor (`VerifyingKey::from_pem`,
/// `TokenIssuer::from_pem`), case-sensitively as RFC 7515 §4.1.1 spells them.
///
/// # Errors
///
/// A [`ConfigError`] for `none` and every name that is not a supported signature algorithm.
pub(crate) fn configured_alg(name: &str) -> Result<Algorithm, ConfigError> {
    parse_alg(name).ok_or_else(|| {
        config_err(
            "algorithm",
            format!("{name:?} is not a supported signature algorithm"),
            "use HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA",
        )
    })
}

/// Key material as given to a constructor, checked when the layer or issuer is built.
#[derive(Clone)]
pub(crate) enum KeyMaterial {
    /// An HMAC shared secret.
    Secret(Arc<[u8]>),
    /// A PEM document (a public key for verifying, a PKCS#8 private key for signing).
    Pem(Arc<[u8]>),
}

/// A key that verifies JWT signatures, bound to exactly one algorithm.
///
/// Binding each key to one algorithm is what makes algorithm confusion impossible
/// (RFC 8725 §3.1, §2.1): a token is only checked with a key whose algorithm equals the
/// token's `alg`, so an HS256 token "signed" with an RSA public key is refused before any
/// cryptography runs, and `alg: none` is never an algorithm at all.
///
/// The constructors only store the key material; it is checked once, with every other
/// setting, when the layer is built: a short secret, an unknown algorithm or a PEM that does
/// not hold a key of the algorithm is a [`ConfigError`] from
/// [`JwtAuthBuilder::build`](super::JwtAuthBuilder::build).
///
/// ```
/// use axum_shield::auth::jwt::{JwtAuthLayer, VerifyingKey};
///
/// let current = VerifyingKey::hs256(b"a-32-byte-or-longer-secret-value!!").with_kid("2026-01");
/// let jwt = JwtAuthLayer::keys([current]).build()?;
///
/// let short = VerifyingKey::hs256(b"too short");
/// assert!(JwtAuthLayer::keys([short]).build().is_err());
/// # let _ = jwt;
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct VerifyingKey {
    pub(crate) kid: Option<Arc<str>>,
    alg: Arc<str>,
    material: KeyMaterial,
}

impl VerifyingKey {
    /// An HMAC-SHA-256 key; the secret must be at least 32 bytes (RFC 7518 §3.2).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self::secret("HS256", secret.as_ref())
    }

    /// An HMAC-SHA-384 key; the secret must be at least 48 bytes (RFC 7518 §3.2).
    pub fn hs384(secret: impl AsRef<[u8]>) -> Self {
        Self::secret("HS384", secret.as_ref())
    }

    /// An HMAC-SHA-512 key; the secret must be at least 64 bytes (RFC 7518 §3.2).
    pub fn hs512(secret: impl AsRef<[u8]>) -> Self {
        Self::secret("HS512", secret.as_ref())
    }

    fn secret(alg: &str, secret: &[u8]) -> Self {
        Self {
            kid: None,
            alg: Arc::from(alg),
            material: KeyMaterial::Secret(Arc::from(secret)),
        }
    }

    /// A public key in PEM form (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY` for RSA)
    /// for one asymmetric algorithm, named as in a JWT header: `RS256`, `RS384`, `RS512`,
    /// `PS256`, `PS384`, `PS512`, `ES256`, `ES384` or `EdDSA` (Ed25519).
    pub fn from_pem(alg: &str, pem: impl AsRef<[u8]>) -> Self {
        Self {
            kid: None,
            alg: Arc::from(alg),
            material: KeyMaterial::Pem(Arc::from(pem.as_ref())),
        }
    }

    /// Sets the key id matched against a token's `kid` header.
    ///
    /// A key with an id only verifies tokens naming that id; a key without one verifies
    /// tokens with any or no `kid`.
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the material: an HMAC key is a secret.
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A checked verification key, bound to one algorithm: what [`VerifyingKey`] becomes when
/// the layer is built, and what a JWKS document yields.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) alg: Algorithm,
    pub(crate) key: Arc<DecodingKey>,
    /// For HMAC keys: the keyed state, computed once, so a verification is one clone and
    /// one pass over the message.
    pub(crate) hmac: Option<Arc<HmacKey>>,
}

/// A precomputed HMAC key (RFC 7518 §3.2), verified in constant time.
pub(crate) enum HmacKey {
    S256(hmac::Hmac<sha2::Sha256>),
    S384(hmac::Hmac<sha2::Sha384>),
    S512(hmac::Hmac<sha2::Sha512>),
}

impl HmacKey {
    fn new(alg: Algorithm, secret: &[u8]) -> Option<Self> {
        use hmac::Mac;
        Some(match alg {
            Algorithm::HS256 => Self::S256(hmac::Hmac::new_from_slice(secret).ok()?),
            Algorithm::HS384 => Self::S384(hmac::Hmac::new_from_slice(secret).ok()?),
            Algorithm::HS512 => Self::S512(hmac::Hmac::new_from_slice(secret).ok()?),
            _ => return None,
        })
    }

    /// Whether `signature` is the MAC of `message`; `verify_slice` compares in constant time.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use hmac::Mac;
        match self {
            Self::S256(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.verify_slice(signature).is_ok()
            }
            Self::S384(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.verify_slice(signature).is_ok()
            }
            Self::S512(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.verify_slice(signature).is_ok()
            }
        }
    }
}

impl Key {
    /// Checks `spec` (its algorithm, and its secret length or PEM) and prepares it.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an unknown algorithm, an HMAC secret shorter than the hash
    /// output (RFC 7518 §3.2), a PEM for an HMAC algorithm, or a PEM that does not hold a
    /// public key of the algorithm's family.
    pub(crate) fn resolve(spec: &VerifyingKey) -> Result<Self, ConfigError> {
        let alg = configured_alg(&spec.alg)?;
        let mut key = match &spec.material {
            KeyMaterial::Secret(secret) => Self::hmac(alg, secret)?,
            KeyMaterial::Pem(pem) => Self::from_pem(alg, pem)?,
        };
        key.kid = spec.kid.clone();
        Ok(key)
    }

    fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Self, ConfigError> {
        provider()?;
        if alg.family() != AlgorithmFamily::Hmac {
            return Err(config_err(
                "key",
                format!("{} is not an HMAC algorithm", alg_name(alg)),
                "use VerifyingKey::from_pem with the issuer's public key",
            ));
        }
        let min = min_hmac_secret(alg);
        if secret.len() < min {
            return Err(config_err(
                "secret",
                format!(
                    "the {} secret is {} bytes, shorter than the {min}-byte hash output",
                    alg_name(alg),
                    secret.len()
                ),
                "use a random secret at least as long as the hash output (RFC 7518 §3.2), e.g. 32 random bytes for HS256",
            ));
        }
        Ok(Self {
            kid: None,
            alg,
            key: Arc::new(DecodingKey::from_secret(secret)),
            hmac: HmacKey::new(alg, secret).map(Arc::new),
        })
    }

    fn from_pem(alg: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        provider()?;
        let key = match alg.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(config_err(
                    "key",
                    "an HMAC algorithm cannot use a PEM public key",
                    "use VerifyingKey::hs256/hs384/hs512 with the shared secret",
                ))
            }
        }
        .map_err(|_| {
            config_err(
                "key",
                format!("the PEM is not a {} public key", alg_name(alg)),
                "pass the issuer's public key in PEM (SPKI) form",
            )
        })?;
        Ok(Self {
            kid: None,
            alg,
            key: Arc::new(key),
            hmac: None,
        })
    }

    /// A public key from a JWK (RFC 7517), as found in a JWKS document.
    ///
    /// The algorithm is the JWK's `alg`; without one it follows from the key type: `EC`
    /// P-256 → `ES256`, P-384 → `ES384`, `OKP` Ed25519 → `EdDSA`, `RSA` → `RS256`. Keys whose
    /// `use` is not `sig` or whose `key_ops` lack `verify` are refused (RFC 7517 §4.2, §4.3),
    /// and so are symmetric (`oct`) keys: a shared secret never comes from a key set.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the cases above and for malformed key material.
    #[cfg(any(feature = "jwks", test))]
    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        provider()?;
        match &jwk.common.public_key_use {
            None | Some(PublicKeyUse::Signature) => {}
            Some(_) => {
                return Err(config_err(
                    "jwk.use",
                    "the key is not for signatures",
                    "use a key whose `use` is `sig`",
                ))
            }
        }
        if let Some(ops) = &jwk.common.key_operations {
            if !ops.iter().any(|op| matches!(op, KeyOperations::Verify)) {
                return Err(config_err(
                    "jwk.key_ops",
                    "the key may not verify",
                    "use a key whose `key_ops` contain `verify`",
                ));
            }
        }
        let declared = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => Some(key_algorithm(alg).ok_or_else(|| {
                config_err(
                    "jwk.alg",
                    "the key's algorithm is not a supported signature algorithm",
                    "use RS*, PS*, ES256, ES384 or EdDSA keys",
                )
            })?),
        };
        let implied = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => {
                    return Err(config_err(
                        "jwk.crv",
                        "unsupported elliptic curve",
                        "use P-256 or P-384",
                    ))
                }
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => Algorithm::EdDSA,
                _ => return Err(config_err("jwk.crv", "unsupported curve", "use Ed25519")),
            },
            AlgorithmParameters::OctetKey(_) => {
                return Err(config_err(
                    "jwk.kty",
                    "symmetric (`oct`) keys are not accepted from a key set",
                    "configure shared secrets with VerifyingKey::hs256",
                ))
            }
            _ => {
                return Err(config_err(
                    "jwk.kty",
                    "unsupported key type",
                    "use RSA, EC or OKP keys",
                ))
            }
        };
        let alg = match declared {
            Some(alg) if alg.family() == implied.family() => {
                // ES256 on a P-384 key (or the reverse) is a mismatch, not a choice.
                if alg.family() == AlgorithmFamily::Ec && alg != implied {
                    return Err(config_err(
                        "jwk.alg",
                        "the algorithm does not match the curve",
                        "fix the key's `alg` or `crv`",
                    ));
                }
                alg
            }
            Some(_) => {
                return Err(config_err(
                    "jwk.alg",
                    "the algorithm does not match the key type",
                    "fix the key's `alg` or `kty`",
                ))
            }
            None => implied,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|_| {
            config_err(
                "jwk",
                "the key material is malformed",
                "check the key's parameters",
            )
        })?;
        Ok(Self {
            kid: jwk.common.key_id.as_deref().map(Arc::from),
            alg,
            key: Arc::new(key),
            hmac: None,
        })
    }

    /// Whether this is an asymmetric (public) key.
    pub(crate) fn is_asymmetric(&self) -> bool {
        self.alg.family() != AlgorithmFamily::Hmac
    }
}

#[cfg(any(feature = "jwks", test))]
fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &alg_name(self.alg))
            .finish_non_exhaustive()
    }
}
