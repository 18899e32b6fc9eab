//! Verification keys from a JWKS URL or OpenID Connect discovery (feature `jwks`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::keys::{provider, Key};
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::ConfigError;

/// A key set could not be fetched or used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("JWKS: {0}")]
pub struct JwksError(String);

/// Timeouts, intervals and limits for fetching keys.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    timeout: Duration,
    connect_timeout: Duration,
    refresh_interval: Duration,
    unknown_kid_cooldown: Duration,
    max_bytes: usize,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            refresh_interval: Duration::from_secs(600),
            unknown_kid_cooldown: Duration::from_secs(30),
            max_bytes: 256 * 1024,
        }
    }
}

impl JwksOptions {
    /// The total time allowed for one fetch (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time allowed to connect (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How old the key set may get before a background refresh (default 10 minutes).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The minimum time between fetches caused by unknown `kid`s (default 30 s).
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.unknown_kid_cooldown = cooldown;
        self
    }

    /// The largest JWKS or discovery document read (default 256 KiB).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "jwks.timeout",
                "a timeout is zero",
                "use a few seconds",
            ));
        }
        if self.refresh_interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "jwks.refresh_interval",
                "the interval is under a second",
                "refresh every few minutes",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_bytes) {
            return Err(ConfigError::new(
                "jwks.max_bytes",
                "the limit is out of range",
                "use 1 KiB to 16 MiB (default 256 KiB)",
            ));
        }
        Ok(())
    }
}

/// A cached, refreshed JWKS key set: verification keys from a JWKS URL or OpenID Connect
/// discovery (feature `jwks`). Cheap to clone; clones share the cache.
///
/// ```no_run
/// use axum_shield::auth::jwt::{JwksKeys, JwksOptions, JwtAuthLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // Keycloak, Auth0, Entra ID, Okta…: give the issuer URL, the rest is discovered.
/// let keys = JwksKeys::discover("https://id.example/realms/main", JwksOptions::default()).await?;
/// let jwt = JwtAuthLayer::jwks(keys).audience("orders-api").build()?;  // issuer already required
/// # let _ = jwt; Ok(()) }
/// ```
///
/// Keys are cached and refreshed in the background once `refresh_interval` has passed (or on
/// a timer with [`spawn_scheduled_refresh`](Self::spawn_scheduled_refresh)). A token naming an unknown `kid`
/// triggers one refresh, single-flight, and at most one per `unknown_kid_cooldown`: a flood
/// of random `kid`s cannot turn into a flood of fetches. Every fetch has connect and total
/// timeouts, follows no redirects and reads at most `max_bytes`. When no keys could ever be
/// fetched, requests are refused (fail closed); after a failed refresh the last good key set
/// stays in use.
#[derive(Clone)]
pub struct JwksKeys {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    issuer: Option<String>,
    client: reqwest::Client,
    options: JwksOptions,
    keys: RwLock<Option<Arc<[Key]>>>,
    fetched_at: Mutex<Option<Instant>>,
    last_attempt: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    fetches: AtomicU64,
    refreshing: AtomicBool,
}

fn check_url(setting: &'static str, url: &str) -> Result<reqwest::Url, ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        ConfigError::new(
            setting,
            format!("{url:?} is not a URL"),
            "use an absolute https:// URL",
        )
    })?;
    let host = parsed.host_str().unwrap_or("");
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(ConfigError::new(
            setting,
            format!("{url:?} is not an https URL"),
            "keys must come over https (plain http is accepted for loopback addresses only)",
        )),
    }
}

fn client(options: &JwksOptions) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            ConfigError::new(
                "jwks",
                format!("the HTTP client cannot start: {e}"),
                "check the TLS setup",
            )
        })
}

async fn fetch_json(client: &reqwest::Client, url: &str, max: usize) -> Result<Value, JwksError> {
    let mut response = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| JwksError(format!("request failed: {}", e.without_url())))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(JwksError(format!("status {}", response.status())));
    }
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(JwksError("document too large".into()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| JwksError(format!("read failed: {}", e.without_url())))?
    {
        if body.len() + chunk.len() > max {
            return Err(JwksError("document too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| JwksError("not JSON".into()))
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl JwksKeys {
    /// Keys from the JWKS document at `url`, fetched on first use (or with
    /// [`refresh`](Self::refresh)).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a URL that is not https (http is accepted for loopback only),
    /// invalid options, or an HTTP client that cannot start.
    pub fn from_url(url: &str, options: JwksOptions) -> Result<Self, ConfigError> {
        Self::new(url, None, options)
    }

    fn new(url: &str, issuer: Option<String>, options: JwksOptions) -> Result<Self, ConfigError> {
        provider()?;
        options.validate()?;
        check_url("jwks_url", url)?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                issuer,
                client: client(&options)?,
                options,
                keys: RwLock::new(None),
                fetched_at: Mutex::new(None),
                last_attempt: Mutex::new(None),
                fetch_lock: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
            }),
        })
    }

    /// OpenID Connect discovery: reads `<issuer>/.well-known/openid-configuration`, checks
    /// that its `issuer` is exactly `issuer` (OpenID Connect Discovery 1.0 §4.3, which stops a
    /// provider from impersonating another), then fetches the keys at its `jwks_uri`.
    /// [`JwtAuthLayer::jwks`](crate::auth::jwt::JwtAuthLayer::jwks) then requires that issuer in `iss`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the issuer URL is not https (http on loopback only), the
    /// metadata cannot be fetched or names another issuer, or no usable key can be fetched.
    pub async fn discover(issuer: &str, options: JwksOptions) -> Result<Self, ConfigError> {
        options.validate()?;
        check_url("issuer", issuer)?;
        let client = client(&options)?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let metadata = fetch_json(&client, &url, options.max_bytes)
            .await
            .map_err(|e| {
                ConfigError::new(
                    "issuer",
                    format!("discovery failed: {e}"),
                    "check the issuer URL and that the provider is reachable",
                )
            })?;
        let metadata: Discovery = serde_json::from_value(metadata).map_err(|_| {
            ConfigError::new(
                "issuer",
                "the discovery document lacks issuer or jwks_uri",
                "check the issuer URL",
            )
        })?;
        if metadata.issuer != issuer {
            return Err(ConfigError::new(
                "issuer",
                format!("the provider calls itself {:?}", metadata.issuer),
                "use exactly the issuer the provider publishes",
            ));
        }
        let keys = Self::new(&metadata.jwks_uri, Some(metadata.issuer), options)?;
        keys.refresh().await.map_err(|e| {
            ConfigError::new(
                "jwks_uri",
                e.to_string(),
                "check that the provider's key set is reachable",
            )
        })?;
        Ok(keys)
    }

    /// The issuer found by discovery, if any.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }

    /// How many times the key set was fetched (successfully or not).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Fetches the key set now, ignoring the cooldown (for example at startup); returns how
    /// many usable keys it holds.
    ///
    /// # Errors
    ///
    /// A [`JwksError`] when the fetch fails or yields no usable key; the previous key set
    /// stays in use.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _guard = self.inner.fetch_lock.lock().await;
        self.fetch_locked().await
    }

    /// Spawns a task that refreshes the key set every `refresh_interval`; it ends when every
    /// clone of this key set is dropped. Requires a Tokio runtime.
    pub fn spawn_scheduled_refresh(&self) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.options.refresh_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let keys = JwksKeys { inner };
                let _ = keys.refresh().await;
            }
        })
    }

    /// The current key set and its generation (bumped on every successful fetch, under the
    /// same lock, so the pair is consistent); `None` until a fetch succeeded. The JWT cache
    /// keeps the generation with each entry, so a refresh invalidates what the old key set
    /// verified.
    pub(crate) fn current(&self) -> Option<(Arc<[Key]>, u64)> {
        let keys = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
        let generation = self.inner.generation.load(Ordering::Acquire);
        keys.clone().map(|keys| (keys, generation))
    }

    /// Starts a background refresh when the key set is older than `refresh_interval`.
    pub(crate) fn refresh_in_background_if_stale(&self) {
        let stale = self
            .inner
            .fetched_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() >= self.inner.options.refresh_interval);
        if !stale || self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let keys = self.clone();
                handle.spawn(async move {
                    let _ = keys.refresh().await;
                    keys.inner.refreshing.store(false, Ordering::Release);
                });
            }
            Err(_) => self.inner.refreshing.store(false, Ordering::Release),
        }
    }

    /// Called when a token names an unknown `kid` (or no keys are loaded yet): one fetch,
    /// shared by every request waiting on it, at most once per cooldown.
    pub(crate) async fn refresh_for_unknown_kid(&self) {
        let seen = self.inner.generation.load(Ordering::Acquire);
        let _guard = self.inner.fetch_lock.lock().await;
        if self.inner.generation.load(Ordering::Acquire) != seen {
            return; // another request refreshed while this one waited
        }
        let recent = self
            .inner
            .last_attempt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < self.inner.options.unknown_kid_cooldown);
        if recent {
            return;
        }
        let _ = self.fetch_locked().await;
    }

    async fn fetch_locked(&self) -> Result<usize, JwksError> {
        let inner = &*self.inner;
        *inner.last_attempt.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        inner.fetches.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let document = fetch_json(&inner.client, &inner.url, inner.options.max_bytes).await?;
            let Some(Value::Array(entries)) = document.get("keys") else {
                return Err(JwksError("no `keys` array".into()));
            };
            let keys: Vec<Key> = entries
                .iter()
                .filter_map(|entry| serde_json::from_value(entry.clone()).ok())
                .filter_map(|jwk| Key::from_jwk(&jwk).ok())
                .collect();
            if keys.is_empty() {
                return Err(JwksError("no usable signature key".into()));
            }
            Ok(keys)
        }
        .await;
        match result {
            Ok(keys) => {
                let count = keys.len();
                {
                    // Keys and generation change together: a reader holding the read lock
                    // never pairs the new keys with the old generation or the reverse.
                    let mut slot = inner.keys.write().unwrap_or_else(|e| e.into_inner());
                    *slot = Some(keys.into());
                    inner.generation.fetch_add(1, Ordering::AcqRel);
                }
                *inner.fetched_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                Ok(count)
            }
            Err(error) => {
                SecurityEvent::new(SecurityEventKind::SysDependencyFail)
                    .reason("jwks_fetch_failed")
                    .field("error", error.to_string())
                    .emit();
                Err(error)
            }
        }
    }
}

impl fmt::Debug for JwksKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksKeys")
            .field("url", &self.inner.url)
            .field("issuer", &self.inner.issuer)
            .field("keys", &self.current().map_or(0, |(k, _)| k.len()))
            .finish_non_exhaustive()
    }
}
