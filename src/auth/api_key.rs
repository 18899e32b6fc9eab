//! API keys for machine clients: stored as SHA-256 digests, compared in constant time.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::Request;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::future::ResponseFuture;
use crate::principal::{Principal, PrincipalKind};
use crate::rejection::{Rejection, RejectionKind};
use crate::ConfigError;

/// The longest key id accepted.
const MAX_ID: usize = 64;
/// The longest presented key accepted (id + `.` + secret), checked before any work.
const MAX_KEY: usize = 256;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A stored API key: its public id, the SHA-256 digest of its secret, and what it grants.
///
/// A full key as clients send it is `<id>.<secret>`: the id (for example `ak_live_7f3a`)
/// selects the record without a scan, the secret (32 random bytes, base64url) is compared by
/// digest in constant time. Only the digest is stored: a leaked key table does not reveal
/// usable keys. Plain SHA-256 suffices because the secrets are 256-bit random values, not
/// passwords.
#[derive(Clone)]
pub struct ApiKey {
    id: Arc<str>,
    sha256_hex: String,
    scopes: Vec<String>,
    roles: Vec<String>,
}

impl ApiKey {
    /// A stored key from its id and the hex SHA-256 digest of its secret (as printed by
    /// [`ApiKey::generate`]). Both are checked by [`ApiKeyAuthBuilder::build`]: the id must
    /// match `[A-Za-z0-9_-]{1,64}` and the digest be 64 hex digits.
    pub fn new(id: impl Into<Arc<str>>, sha256_hex: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            sha256_hex: sha256_hex.into(),
            scopes: Vec::new(),
            roles: Vec::new(),
        }
    }

    /// Checks the id and digest; the stored record.
    fn check(self) -> Result<(Arc<str>, Stored), ConfigError> {
        if !valid_id(&self.id) {
            return Err(ConfigError::new(
                "api_key.id",
                format!("{:?} is not a valid key id", self.id),
                "use 1 to 64 ASCII letters, digits, `_` or `-`",
            ));
        }
        let digest = parse_hex32(&self.sha256_hex).ok_or_else(|| {
            ConfigError::new(
                "api_key.sha256",
                "the digest is not 64 hex digits",
                "store the SHA-256 of the key's secret as printed by ApiKey::generate",
            )
        })?;
        let principal = Principal::new(PrincipalKind::ApiKey, self.id.clone())
            .with_scopes(self.scopes)
            .with_roles(self.roles);
        Ok((self.id, Stored { digest, principal }))
    }

    /// Generates a new key with id `<prefix>_<random>`: give [`GeneratedApiKey::key`] to the
    /// client once, store [`GeneratedApiKey::id`] and [`GeneratedApiKey::sha256_hex`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the prefix is not `[A-Za-z0-9_-]{1,40}` or the system random
    /// source fails.
    pub fn generate(prefix: &str) -> Result<GeneratedApiKey, ConfigError> {
        if prefix.len() > 40 || !valid_id(prefix) {
            return Err(ConfigError::new(
                "api_key.prefix",
                format!("{prefix:?} is not a valid prefix"),
                "use 1 to 40 ASCII letters, digits, `_` or `-`",
            ));
        }
        let mut random = [0u8; 40];
        getrandom::fill(&mut random).map_err(|e| {
            ConfigError::new(
                "api_key",
                format!("no system randomness: {e}"),
                "run on a system with a working random source",
            )
        })?;
        let id = format!("{prefix}_{}", hex(&random[..6]));
        let secret = URL_SAFE_NO_PAD.encode(&random[8..40]);
        let digest = Sha256::digest(secret.as_bytes());
        Ok(GeneratedApiKey {
            key: format!("{id}.{secret}"),
            id,
            sha256_hex: hex(&digest),
        })
    }

    /// Grants scopes to this key's principal.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Grants roles to this key's principal.
    pub fn roles<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The public key id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A freshly generated API key. `key` is the only copy of the secret: show it once.
#[derive(Clone)]
#[non_exhaustive]
pub struct GeneratedApiKey {
    /// The full key the client sends: `<id>.<secret>`.
    pub key: String,
    /// The public id, to store.
    pub id: String,
    /// The hex SHA-256 digest of the secret, to store.
    pub sha256_hex: String,
}

impl fmt::Debug for GeneratedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedApiKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

struct Stored {
    digest: [u8; 32],
    principal: Principal,
}

/// The keys and header of an [`ApiKeyAuthLayer`]; made by [`ApiKeyAuthLayer::builder`],
/// checked by [`build`](Self::build).
#[derive(Clone)]
pub struct ApiKeyAuthBuilder {
    keys: Vec<ApiKey>,
    header: HeaderName,
}

impl ApiKeyAuthBuilder {
    /// Accepts `key` (call again for each key).
    pub fn key(mut self, key: ApiKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Reads the key from `header` instead of `X-API-Key`.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Checks every key and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an id outside `[A-Za-z0-9_-]{1,64}`, a digest that is not 64 hex
    /// digits, two keys with the same id, or no key at all.
    pub fn build(self) -> Result<ApiKeyAuthLayer, ConfigError> {
        let mut keys = HashMap::with_capacity(self.keys.len());
        for key in self.keys {
            let (id, stored) = key.check()?;
            if keys.contains_key(&id) {
                return Err(ConfigError::new(
                    "api_keys",
                    format!("the key id {id:?} is used twice"),
                    "give every key a distinct id",
                ));
            }
            keys.insert(id, stored);
        }
        if keys.is_empty() {
            return Err(ConfigError::new(
                "api_keys",
                "no API key is configured",
                "add at least one ApiKey",
            ));
        }
        Ok(ApiKeyAuthLayer {
            inner: Arc::new(Shared {
                keys,
                header: self.header,
            }),
        })
    }
}

impl fmt::Debug for ApiKeyAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthBuilder")
            .field("keys", &self.keys)
            .field("header", &self.header)
            .finish()
    }
}

struct Shared {
    keys: HashMap<Arc<str>, Stored>,
    header: HeaderName,
}

/// Authenticates machine clients by API key and puts a [`Principal`] of kind
/// [`PrincipalKind::ApiKey`] (id = key id, with the key's scopes and roles) into request
/// extensions, so [`AuthorizeLayer`](super::AuthorizeLayer) and rate limiting treat it like a
/// JWT principal.
///
/// Missing key: 401 `WWW-Authenticate: ApiKey`, event `authn_token_missing`. Wrong, unknown,
/// malformed or duplicated key: 401, event `authn_token_invalid`.
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_shield::auth::{ApiKey, ApiKeyAuthLayer};
///
/// let generated = ApiKey::generate("ak_live")?;           // give generated.key to the client
/// let api_keys = ApiKeyAuthLayer::builder()
///     .key(ApiKey::new(generated.id.as_str(), &generated.sha256_hex).scopes(["reports:read"]))
///     .build()?;
/// let app: Router = Router::new()
///     .route("/reports", get(|| async { "[]" }))
///     .route_layer(api_keys);
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ApiKeyAuthLayer {
    inner: Arc<Shared>,
}

impl ApiKeyAuthLayer {
    /// A builder with no keys, reading the key from `X-API-Key`.
    pub fn builder() -> ApiKeyAuthBuilder {
        ApiKeyAuthBuilder {
            keys: Vec::new(),
            header: HeaderName::from_static("x-api-key"),
        }
    }

    /// Checks a presented key `<id>.<secret>` as the layer does; the principal when it
    /// matches. For keys that arrive outside HTTP headers.
    ///
    /// The comparison is constant-time, and an unknown id costs the same digest and
    /// comparison as a known one.
    pub fn verify(&self, presented: &str) -> Option<&Principal> {
        if presented.len() > MAX_KEY {
            return None;
        }
        let (id, secret) = presented.split_once('.')?;
        let digest = Sha256::digest(secret.as_bytes());
        match self.inner.keys.get(id) {
            Some(stored) => {
                bool::from(stored.digest.ct_eq(&digest[..])).then_some(&stored.principal)
            }
            None => {
                let _ = [0u8; 32].ct_eq(&digest[..]);
                None
            }
        }
    }
}

impl fmt::Debug for ApiKeyAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthLayer")
            .field("header", &self.inner.header)
            .field("ids", &self.inner.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<S> Layer<S> for ApiKeyAuthLayer {
    type Service = ApiKeyAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ApiKeyAuthLayer`].
#[derive(Clone)]
pub struct ApiKeyAuth<S> {
    inner: S,
    layer: ApiKeyAuthLayer,
}

impl<S: fmt::Debug> fmt::Debug for ApiKeyAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("inner", &self.inner)
            .field("header", &self.layer.inner.header)
            .finish()
    }
}

fn refuse(kind: RejectionKind) -> Rejection {
    Rejection::new(kind).with_header(WWW_AUTHENTICATE, HeaderValue::from_static("ApiKey"))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKeyAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let mut values = req.headers().get_all(&self.layer.inner.header).iter();
        let outcome = match (values.next(), values.next()) {
            (None, _) => Err((
                SecurityEventKind::AuthnTokenMissing,
                "no_api_key",
                RejectionKind::MissingCredentials,
            )),
            (Some(_), Some(_)) => Err((
                SecurityEventKind::MaliciousHeader,
                "duplicate_api_key",
                RejectionKind::InvalidToken,
            )),
            (Some(value), None) => match value
                .to_str()
                .ok()
                .and_then(|v| self.layer.verify(v.trim()))
            {
                Some(principal) => Ok(principal.clone()),
                None => Err((
                    SecurityEventKind::AuthnTokenInvalid,
                    "invalid_api_key",
                    RejectionKind::InvalidToken,
                )),
            },
        };
        match outcome {
            Ok(principal) => {
                crate::audit::record_principal(&principal, req.extensions());
                req.extensions_mut().insert(principal);
                ResponseFuture::run(self.inner.call(req))
            }
            Err((event, reason, kind)) => {
                SecurityEvent::for_request(event, req.method(), req.uri(), req.extensions())
                    .reason(reason)
                    .emit();
                ResponseFuture::refused(refuse(kind).into_response_for(req.extensions()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::StatusCode;
    use tower::ServiceExt;

    fn app(
        keys: ApiKeyAuthLayer,
    ) -> impl Service<Request<Body>, Response = Response, Error = std::convert::Infallible> + Clone
    {
        keys.layer(tower::service_fn(|req: Request<Body>| async move {
            let p = req.extensions().get::<Principal>().cloned().unwrap();
            assert_eq!(p.kind(), PrincipalKind::ApiKey);
            Ok::<_, std::convert::Infallible>(Response::new(Body::from(p.id().to_owned())))
        }))
    }

    fn setup() -> (String, ApiKeyAuthLayer) {
        let g = ApiKey::generate("ak_test").unwrap();
        let keys = ApiKeyAuthLayer::builder()
            .key(ApiKey::new(g.id.as_str(), &g.sha256_hex).scopes(["r"]))
            .build()
            .unwrap();
        (g.key, keys)
    }

    fn req(values: &[&str]) -> Request<Body> {
        let mut r = Request::new(Body::empty());
        for v in values {
            r.headers_mut()
                .append("x-api-key", HeaderValue::from_str(v).unwrap());
        }
        r
    }

    #[tokio::test]
    async fn generated_key_authenticates_with_its_scopes() {
        let (key, keys) = setup();
        assert!(keys.verify(&key).unwrap().has_scope("r"));
        let res = app(keys).oneshot(req(&[&key])).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn wrong_secret_for_known_id_is_rejected() {
        let (key, keys) = setup();
        let (id, _) = key.split_once('.').unwrap();
        let forged = format!("{id}.{}", "A".repeat(43));
        let res = app(keys).oneshot(req(&[&forged])).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()["www-authenticate"], "ApiKey");
    }

    #[tokio::test]
    async fn unknown_id_missing_duplicate_and_oversized_keys_are_rejected() {
        let (key, keys) = setup();
        let svc = app(keys);
        let oversized = format!("{key}{}", "a".repeat(300));
        for r in [
            req(&["nobody.secret"]),
            req(&[]),
            req(&[&key, &key]),
            req(&[&oversized]),
            req(&["no-dot"]),
        ] {
            let res = svc.clone().oneshot(r).await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn bad_records_are_config_errors() {
        let build = |keys: Vec<ApiKey>| {
            keys.into_iter()
                .fold(ApiKeyAuthLayer::builder(), ApiKeyAuthBuilder::key)
                .build()
        };
        let err = build(vec![ApiKey::new("bad id", "0".repeat(64))]).unwrap_err();
        assert_eq!(err.setting(), "api_key.id");
        let err = build(vec![ApiKey::new("ok", "abc")]).unwrap_err();
        assert_eq!(err.setting(), "api_key.sha256");
        assert_eq!(build(vec![]).unwrap_err().setting(), "api_keys");
        let k = ApiKey::new("dup", "0".repeat(64));
        let err = build(vec![k.clone(), k]).unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
        let g = ApiKey::generate("x").unwrap();
        assert!(!format!("{g:?}").contains(&g.key));
    }
}
