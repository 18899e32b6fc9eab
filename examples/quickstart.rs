//! The quickstart: a small, realistic API secured with axum-shield.
//!
//! ```text
//! JWT_SECRET=$(openssl rand -base64 48) cargo run --example quickstart   # 127.0.0.1:3000 (PORT overrides)
//! curl -i http://127.0.0.1:3000/health
//! TOKEN=$(curl -s -X POST http://127.0.0.1:3000/login -H 'content-type: application/json' \
//!           -d '{"username":"admin","password":"admin-demo-password"}' | jq -r .access_token)
//! curl -i http://127.0.0.1:3000/me -H "authorization: Bearer $TOKEN"
//! curl -i http://127.0.0.1:3000/admin/stats -H "authorization: Bearer $TOKEN"
//! ```
//!
//! Every response carries a request id and the API security headers; every refusal is an
//! RFC 9457 problem+json document.

use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_shield::audit::{SecurityEvent, SecurityEventKind};
use axum_shield::auth::{AuthorizeLayer, TokenIssuer};
use axum_shield::{Claims, JwtAuth, Rejection, RejectionKind, Shield};
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The `iss` of the tokens this API issues and accepts.
const ISSUER: &str = "https://quickstart.axum-shield.local";
/// The `aud` of the tokens: this API.
const AUDIENCE: &str = "quickstart-api";

/// DEMO ONLY. Two users with salted SHA-256 password hashes: `sha256(salt + ":" + password)`.
/// A real application stores users in a database and hashes passwords with a slow, memory-hard
/// function (Argon2id, scrypt or bcrypt); a fast hash like SHA-256 is only acceptable here
/// because the passwords are public demo values.
///
/// | user  | password              | roles |
/// |-------|-----------------------|-------|
/// | alice | `alice-demo-password` | user  |
/// | admin | `admin-demo-password` | admin |
const DEMO_USERS: [DemoUser; 2] = [
    DemoUser {
        name: "alice",
        salt: "c2FsdC1hbGljZQ",
        sha256: "a8cab3bfcb8338e696a50650b0354d9a135df2ec38e44b8d80982dfa40c60a52",
        roles: &["user"],
    },
    DemoUser {
        name: "admin",
        salt: "c2FsdC1hZG1pbg",
        sha256: "ebf1e515eebfb85b1256b574249f58f4fcde39f22cb4e151f634381f4e313458",
        roles: &["admin"],
    },
];

struct DemoUser {
    name: &'static str,
    salt: &'static str,
    sha256: &'static str,
    roles: &'static [&'static str],
}

#[derive(Clone)]
struct AppState {
    tokens: TokenIssuer,
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

/// Builds the application; `main` serves it, tests and benchmarks call it directly.
fn app(secret: &[u8]) -> Result<Router, axum_shield::ConfigError> {
    let shield = Shield::api().build()?;
    let jwt = JwtAuth::hs256(secret)?
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()?;
    let tokens = TokenIssuer::hs256(secret)?
        .issuer(ISSUER)
        .audience(AUDIENCE);

    let protected = Router::new()
        .route("/me", get(me))
        .route(
            "/admin/stats",
            get(admin_stats).route_layer(AuthorizeLayer::any_roles(["admin"])?),
        )
        .route_layer(jwt.layer());

    Ok(Router::new()
        .route("/health", get(health))
        .route("/login", post(login))
        .merge(protected)
        .with_state(AppState { tokens })
        .layer(shield))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
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

/// Why a login failed; kept apart from success so that a login guard (rate limit, lockout)
/// can hook into failures only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginFailure {
    UnknownUser,
    WrongPassword,
}

/// Checks a username and password against the demo users, in constant time per user and
/// with the same work for unknown users.
fn check_credentials(username: &str, password: &str) -> Result<&'static DemoUser, LoginFailure> {
    let user = DEMO_USERS.iter().find(|u| u.name == username);
    let (salt, expected) = user.map_or(("unknown-user-salt", [0u8; 32]), |u| {
        (u.salt, decode_hex(u.sha256))
    });
    let digest = Sha256::digest(format!("{salt}:{password}").as_bytes());
    let matches: bool = expected.ct_eq(&digest[..]).into();
    match (user, matches) {
        (Some(user), true) => Ok(user),
        (Some(_), false) => Err(LoginFailure::WrongPassword),
        (None, _) => Err(LoginFailure::UnknownUser),
    }
}

fn decode_hex(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    out
}

async fn login(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Json<TokenResponse>, Rejection> {
    let (parts, body) = request.into_parts();
    let Json(credentials) = Json::<LoginRequest>::from_bytes(
        &axum::body::to_bytes(body, 4096)
            .await
            .map_err(|_| Rejection::new(RejectionKind::PayloadTooLarge))?,
    )
    .map_err(|_| Rejection::new(RejectionKind::MalformedBody))?;

    let user = match check_credentials(&credentials.username, &credentials.password) {
        Ok(user) => user,
        Err(failure) => {
            // Failure path: one event, one generic answer (never say which part was wrong).
            SecurityEvent::for_parts(SecurityEventKind::AuthnLoginFail, &parts)
                .reason(match failure {
                    LoginFailure::UnknownUser => "unknown_user",
                    LoginFailure::WrongPassword => "wrong_password",
                })
                .field("username", credentials.username)
                .emit();
            // RFC 9110 §15.5.2: a 401 carries a challenge.
            return Err(Rejection::new(RejectionKind::InvalidToken)
                .with_detail("The username or password is incorrect.")
                .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
    };

    // Success path.
    let issued = state
        .tokens
        .issue(user.name, &json!({ "roles": user.roles }))
        .map_err(|_| Rejection::new(RejectionKind::Internal))?;
    SecurityEvent::for_parts(SecurityEventKind::AuthnLoginSuccess, &parts)
        .principal(user.name)
        .emit();
    SecurityEvent::for_parts(SecurityEventKind::AuthnTokenCreated, &parts)
        .principal(user.name)
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let app = app(&jwt_secret()?)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
