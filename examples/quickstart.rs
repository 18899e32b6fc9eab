//! The quickstart: a small, realistic API secured with axum-shield. Copy from it.
//!
//! ```text
//! cargo run --example quickstart                  # human-readable logs, 127.0.0.1:3000
//! LOG_FORMAT=json cargo run --example quickstart  # JSON lines, for a log pipeline
//!
//! curl -i http://127.0.0.1:3000/health
//! TOKEN=$(curl -s -X POST http://127.0.0.1:3000/login -H 'content-type: application/json' \
//!           -d '{"username":"admin","password":"admin-demo-password"}' | jq -r .access_token)
//! curl -i http://127.0.0.1:3000/me -H "authorization: Bearer $TOKEN"
//! curl -i http://127.0.0.1:3000/admin/stats -H "authorization: Bearer $TOKEN"
//! curl -i -X POST http://127.0.0.1:3000/sensitive-action -H "authorization: Bearer $TOKEN"
//! curl -i http://127.0.0.1:3000/users -H 'content-type: application/json' \
//!   -d '{"email":"ann@example.com","name":"Ann","age":30,"address":{"city":"Oslo","zip":"0150"}}'
//! ```
//!
//! Every response carries a request id and the API security headers; every refusal is an
//! RFC 9457 problem+json document. Every route but `/health` is limited per client IP
//! (100 per hour by default); `POST /login` also to 5 per minute, and failed logins back off
//! per account and per IP. Every request is one log span with its access line, and every
//! refusal or high-risk action is one `axum_shield::security` event.
//!
//! Environment (all optional):
//!
//! | variable | meaning | default |
//! |----------|---------|---------|
//! | `PORT` | port on 127.0.0.1 | 3000 |
//! | `JWT_SECRET` | HMAC key for tokens, at least 32 bytes | random per process, with a warning |
//! | `RATE_LIMIT` | per-IP quota of every route but `/health` | `100/hour` |
//! | `RATE_LIMIT_MAX_KEYS` | key cap of that limiter | 100 000 |
//! | `TRUSTED_PROXIES` | comma-separated CIDRs allowed to set `X-Forwarded-For` | none |
//! | `ACCESS_LOG` | `0` turns the per-request access line off | on |
//! | `LOG_FORMAT` | `json` for JSON lines | text |
//! | `REDIS_URL` | share limits and the login guard through Redis (feature `redis`) | in memory |

use std::net::SocketAddr;
use std::sync::Arc;

use argon2::password_hash::{self, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_shield::audit::{Audit, SecurityEvent, SecurityEventKind};
#[cfg(feature = "json-log")]
use axum_shield::audit::{JsonLines, JsonLinesFields, LogWriter};
use axum_shield::auth::jwt::JwtAuthLayer;
use axum_shield::auth::{AuthorizeLayer, TokenIssuer};
use axum_shield::rate_limit::{LoginAttempt, LoginGuardLayer, RateLimitLayer};
use axum_shield::validate::redact::RedactFieldsLayer;
use axum_shield::validate::{GuardedJson, JsonGuardLayer, Valid};
use axum_shield::{Claims, ConfigError, Principal, Rejection, RejectionKind, Shield};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use validator::Validate;

/// The `iss` of the tokens this API issues and accepts.
pub const ISSUER: &str = "http://127.0.0.1:3000";
/// The `aud` of the tokens: this API.
pub const AUDIENCE: &str = "axum-shield-quickstart";

/// Settings read from the environment by `main` (tests build them directly).
#[derive(Debug, Clone)]
pub struct Settings {
    /// HMAC key for issuing and verifying tokens (at least 32 bytes).
    pub jwt_secret: Vec<u8>,
    /// Per-IP quota of every route but `/health`.
    pub rate_limit: String,
    /// Key cap of the per-IP limiter.
    pub rate_limit_max_keys: usize,
    /// Proxies allowed to set `X-Forwarded-For`.
    pub trusted_proxies: Vec<String>,
    /// Whether to write one access line per request.
    pub access_log: bool,
    /// Share the per-IP limit and the login guard through Redis (`REDIS_URL`, feature
    /// `redis`); while Redis is unreachable the limited routes answer 503 (fail closed).
    #[cfg(feature = "redis")]
    pub redis: Option<axum_shield::redis::RedisStore>,
}

impl Settings {
    /// Reads the environment (see the table in the module docs).
    pub fn from_env() -> Result<Self, Box<dyn std::error::Error>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Ok(Self {
            jwt_secret: jwt_secret()?,
            rate_limit: var("RATE_LIMIT").unwrap_or_else(|| "100/hour".into()),
            rate_limit_max_keys: match var("RATE_LIMIT_MAX_KEYS") {
                Some(v) => v
                    .parse()
                    .map_err(|_| "RATE_LIMIT_MAX_KEYS must be a number")?,
                None => 100_000,
            },
            trusted_proxies: var("TRUSTED_PROXIES")
                .map(|v| v.split(',').map(|p| p.trim().to_owned()).collect())
                .unwrap_or_default(),
            access_log: var("ACCESS_LOG").is_none_or(|v| v != "0"),
            #[cfg(feature = "redis")]
            redis: None,
        })
    }
}

/// The HMAC secret: `JWT_SECRET` (at least 32 bytes, RFC 7518 §3.2), or a random one
/// generated at start with a warning (tokens then stop verifying after a restart).
fn jwt_secret() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    match std::env::var("JWT_SECRET") {
        Ok(secret) if secret.len() >= 32 => Ok(secret.into_bytes()),
        Ok(_) => Err("JWT_SECRET must be at least 32 bytes (try `openssl rand -base64 48`)".into()),
        Err(_) => {
            tracing::warn!(
                "JWT_SECRET is not set: using a random secret for this process only; \
                 tokens will not survive a restart or work on another instance"
            );
            let mut secret = vec![0u8; 48];
            getrandom::fill(&mut secret).map_err(|e| format!("no system randomness: {e}"))?;
            Ok(secret)
        }
    }
}

/// Cloned by axum for every request that reaches a handler: one reference count to bump.
#[derive(Clone)]
struct AppState {
    tokens: Arc<TokenIssuer>,
    users: Arc<Users>,
}

/// Builds the application; `main` serves it, tests and benchmarks call it directly.
pub fn app(settings: &Settings) -> Result<Router, ConfigError> {
    // Layers 1–8, outermost first, with a default per-IP limit for every route.
    let per_ip = RateLimitLayer::per_ip(settings.rate_limit.as_str())
        .max_keys(settings.rate_limit_max_keys)
        .exempt_paths(["/health"]);
    #[allow(unused_mut)]
    let mut login_guard = LoginGuardLayer::builder();
    #[cfg(feature = "redis")]
    let (per_ip, login_guard) = match &settings.redis {
        Some(store) => (
            per_ip.redis(store.clone(), axum_shield::rate_limit::FailureMode::Closed),
            login_guard.redis(store.clone()),
        ),
        None => (per_ip, login_guard),
    };
    let login_guard = login_guard.build()?;
    let user_store = Users::demo().map_err(|e| {
        ConfigError::new(
            "demo users",
            format!("hashing the demo passwords failed: {e}"),
            "check that the system random number generator is available",
        )
    })?;
    let shield = Shield::api()
        .trusted_proxies(&settings.trusted_proxies)
        .access_log(settings.access_log)
        .rate_limit(per_ip.build()?)
        .build()?;

    // Authentication: strict HS256 verification (exp, nbf, iat, iss, aud, typ, crit).
    let jwt = JwtAuthLayer::hs256(&settings.jwt_secret)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()?;
    let tokens = TokenIssuer::hs256(&settings.jwt_secret)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()?;

    // Routes that need a valid token; `route_layer` keeps unknown paths a 404, not a 401.
    let protected = Router::new()
        .route("/me", get(me))
        .route(
            "/admin/stats",
            get(admin_stats).route_layer(AuthorizeLayer::any_roles(["admin"]).build()?),
        )
        .route("/sensitive-action", post(sensitive_action))
        .route_layer(jwt);

    // Input: the JSON guard's limits for the body, then `Valid<Json<_>>` in the handler.
    // Output: the redaction layer as a safety net in case a response leaks a secret field.
    let users = Router::new()
        .route("/users", post(create_user))
        .layer(JsonGuardLayer::default())
        .layer(RedactFieldsLayer::default());

    Ok(Router::new()
        .route("/health", get(health))
        .route(
            "/login",
            post(login)
                .route_layer(RateLimitLayer::per_ip("5/minute").name("login").build()?)
                .route_layer(login_guard),
        )
        .merge(protected)
        .merge(users)
        .with_state(AppState {
            tokens: Arc::new(tokens),
            users: Arc::new(user_store),
        })
        .layer(shield))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The demo users (a real application keeps them in a database):
///
/// | user  | password              | roles |
/// |-------|-----------------------|-------|
/// | alice | `alice-demo-password` | user  |
/// | admin | `admin-demo-password` | admin |
const DEMO_USERS: [(&str, &str, &[&str]); 2] = [
    ("alice", "alice-demo-password", &["user"]),
    ("admin", "admin-demo-password", &["admin"]),
];

/// A user as stored: the password only as an Argon2id hash in PHC form
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), the OWASP Password Storage Cheat Sheet's
/// first choice, with argon2's defaults (19 MiB, 2 passes, 1 lane, RFC 9106 §4).
struct User {
    name: &'static str,
    password_hash: String,
    roles: &'static [&'static str],
}

/// The user store. The demo hashes are computed at start from the table above, each with its
/// own random salt, so no hash is ever written in the source.
struct Users {
    users: Vec<User>,
    /// Verified against for unknown user names, so that they cost the same work as a wrong
    /// password (no user enumeration by timing).
    dummy_hash: String,
}

impl Users {
    fn demo() -> Result<Self, password_hash::Error> {
        let users = DEMO_USERS
            .iter()
            .map(|&(name, password, roles)| {
                Ok(User {
                    name,
                    password_hash: hash_password(password)?,
                    roles,
                })
            })
            .collect::<Result<_, password_hash::Error>>()?;
        Ok(Self {
            users,
            dummy_hash: hash_password("no user has this password")?,
        })
    }

    /// Checks a user name and password, with one Argon2id verification whether or not the
    /// user exists. CPU-heavy (tens of milliseconds): call it from `spawn_blocking`.
    fn check(&self, username: &str, password: &str) -> Option<&User> {
        let user = self.users.iter().find(|u| u.name == username);
        let hash = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let matches = PasswordHash::new(hash).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        });
        user.filter(|_| matches)
    }
}

fn hash_password(password: &str) -> Result<String, password_hash::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// `POST /login`: the credential check runs under the login guard: 429 during backoff, one
/// generic 401 for unknown users and wrong passwords alike, and `authn_login_success` /
/// `authn_login_fail` events. Success issues a token from the persistent key.
async fn login(
    State(state): State<AppState>,
    attempt: LoginAttempt,
    GuardedJson(credentials): GuardedJson<LoginRequest>,
) -> Result<Json<TokenResponse>, Rejection> {
    let LoginRequest { username, password } = credentials;
    let users = Arc::clone(&state.users);
    let name = username.clone();
    // Argon2id is deliberately slow: run it on the blocking pool, not on the async workers.
    let (user, roles) = attempt
        .verify(&username, || async move {
            tokio::task::spawn_blocking(move || {
                users.check(&name, &password).map(|u| (u.name, u.roles))
            })
            .await
            .ok()
            .flatten()
        })
        .await?;
    let issued = state
        .tokens
        .issue(user, &json!({ "roles": roles }))
        .map_err(|_| Rejection::new(RejectionKind::Internal))?;
    SecurityEvent::new(SecurityEventKind::AuthnTokenCreated)
        .principal(user)
        .field("jti", issued.jti.clone())
        .emit();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Json(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_at.saturating_sub(now),
    }))
}

/// The request DTO of `POST /users`: only what a client may set, each field validated.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct NewUser {
    #[validate(email)]
    email: String,
    #[validate(length(min = 1, max = 64))]
    name: String,
    #[validate(range(min = 13, max = 130))]
    age: u8,
    #[validate(nested)]
    address: Address,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct Address {
    #[validate(length(min = 1, max = 85))]
    city: String,
    #[validate(length(min = 3, max = 10))]
    zip: String,
}

/// The response DTO: only what a client may see.
#[derive(Debug, Serialize)]
struct UserCreated {
    email: String,
    name: String,
}

/// `POST /users`: 201 with the new user, or 415/413/400/422 problem+json before this runs.
async fn create_user(Valid(Json(user)): Valid<Json<NewUser>>) -> (StatusCode, Json<UserCreated>) {
    (
        StatusCode::CREATED,
        Json(UserCreated {
            email: user.email,
            name: user.name,
        }),
    )
}

#[derive(Deserialize)]
struct UserClaims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    exp: u64,
}

async fn me(Claims(claims): Claims<UserClaims>) -> Json<Value> {
    Json(json!({ "user": claims.sub, "roles": claims.roles, "token_expires_at": claims.exp }))
}

async fn admin_stats() -> Json<Value> {
    Json(json!({ "users": DEMO_USERS.len(), "uptime": "fine" }))
}

/// The guide's `sensitive_action`, done right: no user data formatted into a line; one
/// `sensitive_action` event when attempted and one when completed or failed, each with the
/// principal, request id and client IP.
async fn sensitive_action(audit: Audit, principal: Option<Principal>) -> (StatusCode, Json<Value>) {
    let action = audit.attempt("sensitive_action");
    match perform_sensitive_action().await {
        Ok(()) => {
            action.completed();
            let by = principal.map(|p| p.id().to_owned());
            (StatusCode::OK, Json(json!({ "status": "done", "by": by })))
        }
        Err(reason) => {
            action.failed(reason);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "failed" })),
            )
        }
    }
}

async fn perform_sensitive_action() -> Result<(), &'static str> {
    Ok(())
}

/// Human-readable logs by default; JSON lines (one object per event, with the request span's
/// fields) with `LOG_FORMAT=json`. Lines go through a non-blocking writer so a slow terminal
/// or pipe never stalls requests; keep the returned guard alive, its drop writes the last
/// lines. `RUST_LOG` filters as usual, e.g. `RUST_LOG=axum_shield::security=info` for
/// security events only.
fn init_logging() -> impl Sized {
    // With the `json-log` feature (`--features json-log`): axum-shield's `LogWriter` appends each line to a
    // shared 1 MiB buffer and a worker thread writes the buffer to stdout in one write every
    // millisecond at most while lines arrive, and sleeps while none do: no allocation and no
    // thread wake-up per line. A full buffer drops lines (counted) rather than block requests.
    #[cfg(feature = "json-log")]
    let (writer, guard) = LogWriter::new(std::io::stdout());
    // Without it (the default): tracing-appender's channel to a worker thread, which writes into a 64 KiB
    // buffer flushed each time the channel is empty.
    #[cfg(not(feature = "json-log"))]
    let (writer, guard) = tracing_appender::non_blocking(std::io::BufWriter::with_capacity(
        64 * 1024,
        std::io::stdout(),
    ));
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only for a terminal: escape codes in a file or a pipe cost time and garble it.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    if json {
        // With `json-log`, axum-shield's JSON-lines formatter: the same line shape as
        // tracing-subscriber's `.json()`, several times cheaper per line.
        #[cfg(feature = "json-log")]
        builder
            .fmt_fields(JsonLinesFields::new())
            .event_format(JsonLines::new())
            .init();
        #[cfg(not(feature = "json-log"))]
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
    guard
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _log_guard = init_logging();

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    #[allow(unused_mut)]
    let mut settings = Settings::from_env()?;
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        settings.redis = Some(axum_shield::redis::RedisStore::connect(&url).await?);
    }
    let app = app(&settings)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
